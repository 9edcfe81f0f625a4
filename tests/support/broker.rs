//! The gate in front of the tests that need a RabbitMQ broker.
//!
//! `cargo test --all-features` must pass on a machine that has only Rust, so
//! a broker test runs when a broker answers and is otherwise reported as
//! not run, by name, in the test output: never silently passed. CI sets
//! [`REQUIRE`] (`.ci/run` starts the broker first), which turns a missing
//! broker into a failure, so CI never passes without these tests.
//!
//! Two ways to use it:
//! - a test binary with `harness = false` (tests/amqp/main.rs) builds its
//!   tests with [`trial`] and runs them with [`run`] (libtest-mimic): a test
//!   not run is counted as `ignored` in cargo's summary line and listed as
//!   `test NAME ... ignored (SKIPPED: no broker at 127.0.0.1:5672)`;
//! - a test in an ordinary `#[test]` binary starts with
//!   `if !broker::answers_or_skip("its_name") { return; }`: the skip line
//!   goes to the process's stderr directly, which the harness does not
//!   capture, but the test counts as passed.
//!
//! [`url`] is the broker to use: `SWITCHBOARD_TEST_AMQP_URL`, or the local
//! default. Pointing it at a port where nothing listens
//! (`amqp://guest:guest@127.0.0.1:1/%2f`) shows what a machine without a
//! broker sees, without stopping a broker others use.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

/// Set (to anything but `0` or empty) by CI: a broker that does not answer
/// fails the broker tests instead of skipping them.
pub const REQUIRE: &str = "SWITCHBOARD_REQUIRE_BROKER";
/// Overrides [`DEFAULT_URL`].
pub const URL_VAR: &str = "SWITCHBOARD_TEST_AMQP_URL";
/// The broker `ci/rabbitmq.sh` starts, with RabbitMQ's default account.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The AMQP URL the broker tests use.
pub fn url() -> String {
    std::env::var(URL_VAR)
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// `host:port` of [`url`], without the account.
pub fn host_port() -> String {
    let url = url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:5672")
    }
}

/// Whether CI demands the broker ([`REQUIRE`]).
pub fn required() -> bool {
    std::env::var(REQUIRE).is_ok_and(|value| !value.is_empty() && value != "0")
}

/// Whether something accepts TCP connections at [`host_port`] (asked once
/// per process, with a short timeout).
pub fn answers() -> bool {
    static ANSWERS: OnceLock<bool> = OnceLock::new();
    *ANSWERS.get_or_init(|| {
        let Ok(addresses) = host_port().to_socket_addrs() else {
            return false;
        };
        addresses
            .into_iter()
            .any(|address| TcpStream::connect_timeout(&address, Duration::from_secs(2)).is_ok())
    })
}

/// Why a broker test did not run.
pub fn skip_reason() -> String {
    format!("SKIPPED: no broker at {}", host_port())
}

/// What a missing broker says when [`REQUIRE`] is set.
fn missing() -> String {
    format!(
        "RabbitMQ does not answer at {} and {REQUIRE} is set: the broker tests must run \
         (start it with `bash ci/rabbitmq.sh`)",
        host_port()
    )
}

/// For a test in an ordinary harness: `true` if the broker answers (go on);
/// `false` after printing the skip line, uncaptured, to stderr (return).
/// Panics when the broker is missing but [`REQUIRE`] is set.
pub fn answers_or_skip(test: &str) -> bool {
    if answers() {
        return true;
    }
    assert!(!required(), "{}", missing());
    // Straight to the stream: libtest captures `eprintln!`, not this.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED (no broker at {}): {test}",
        host_port()
    );
    false
}

/// A broker test for [`run`]: runs `test` if the broker answers, is
/// ignored (with the reason) if it does not, fails if it does not while
/// [`REQUIRE`] is set. A panic in `test` fails it, as in libtest.
pub fn trial(name: &str, test: impl FnOnce() + Send + 'static) -> libtest_mimic::Trial {
    libtest_mimic::Trial::ignorable_test(name, move || {
        if !answers() {
            if required() {
                return Err(missing().into());
            }
            return Ok(libtest_mimic::Completion::ignored_with(skip_reason()));
        }
        test();
        Ok(libtest_mimic::Completion::Completed)
    })
}

/// A test for [`run`] that needs no broker (it always runs).
pub fn offline(name: &str, test: impl FnOnce() + Send + 'static) -> libtest_mimic::Trial {
    libtest_mimic::Trial::test(name, move || {
        test();
        Ok(())
    })
}

/// An async test body on its own current-thread runtime, as
/// `#[tokio::test]` runs it.
pub fn block_on<F: std::future::Future<Output = ()>>(test: impl FnOnce() -> F) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime for the test")
        .block_on(test());
}

/// The `main` of a `harness = false` test binary: announces, before the
/// usual test lines, that the broker tests will not run (and why), then
/// runs `tests` with libtest's command line and summary.
pub fn run(tests: Vec<libtest_mimic::Trial>) -> ! {
    let args = libtest_mimic::Arguments::from_args();
    if !args.list && !answers() {
        let _ = if required() {
            writeln!(std::io::stderr(), "\n{}\n", missing())
        } else {
            writeln!(
                std::io::stderr(),
                "\n{}: the tests that need it are not run and are listed as ignored below \
                 (start RabbitMQ, e.g. `bash ci/rabbitmq.sh`, to run them; {REQUIRE}=1 \
                 makes a missing broker a failure)\n",
                skip_reason()
            )
        };
    }
    libtest_mimic::run(&args, tests).exit()
}
