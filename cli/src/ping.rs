//! `switchboard ping`: round trips to a server, one line each, then a
//! summary.
//!
//! A round trip is a request to the built-in route `switchboard.ping`,
//! which every switchboard router answers at once. An error answer (a
//! server that routed the name to something else) is an answer too.

use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard::{Error, PING_ROUTE, Reconnect};

use crate::connect::ConnectArgs;
use crate::endpoint::Endpoint;
use crate::exit::Failure;

pub(crate) const PING_HELP: &str = "\
Each round trip is a request to the route switchboard.ping, which every
switchboard server answers; an error answer counts as an answer too. One line
per round trip, then a summary with the min/avg/max round-trip time.

With --reconnect, ping rides through a restart of the server: it reconnects
(looking @NAME up again, so a restarted service is found at its new address)
and the round trips made meanwhile wait for it, up to --timeout each.

Examples:
  switchboard ping @echo
  switchboard ping @life-gen --count 100 --interval 10
  switchboard ping - --count 0 < connector.txt          # until interrupted
  switchboard ping @worker --count 30 --reconnect      # while restarting it

Exit codes:
  0  the last round trip was answered
  2  bad input: arguments, a malformed or missing connector
  3  could not connect or authenticate, or the last round trip found the server gone
  4  the last round trip got no answer within --timeout";

#[derive(clap::Args)]
pub(crate) struct Options {
    /// How many round trips (0: until interrupted).
    #[arg(long, short = 'c', value_name = "N", default_value_t = 4)]
    count: u64,
    /// Milliseconds between round trips.
    #[arg(long, short = 'i', value_name = "MS", default_value_t = 1000)]
    interval: u64,
    /// Milliseconds to wait for each answer.
    #[arg(long, value_name = "MS", default_value_t = 2000)]
    timeout: u64,
    /// Reconnect when the server goes away (looking @NAME up again) and
    /// carry on.
    #[arg(long)]
    reconnect: bool,
}

pub(crate) async fn ping(
    endpoint: &Endpoint,
    options: &Options,
    connect: ConnectArgs,
) -> Result<(), Failure> {
    let mut builder = connect.builder(endpoint);
    if options.reconnect {
        builder = builder.reconnect(
            Reconnect::default()
                .initial_delay(Duration::from_millis(20))
                .max_delay(Duration::from_secs(1)),
        );
    }
    let client = connect.connect_with(builder).await?;
    let label = endpoint.label();
    let timeout = Duration::from_millis(options.timeout);
    let mut times = Vec::new();
    let mut sent = 0u64;
    let mut last: Option<Error>;
    // Signals only: a connector piped in on stdin ends stdin at once.
    let stop = crate::stop::signals();
    tokio::pin!(stop);
    loop {
        sent += 1;
        let started = Instant::now();
        let result = client
            .request_timeout::<_, Value>(PING_ROUTE, &Value::Null, timeout)
            .await;
        let elapsed = started.elapsed();
        match result {
            Ok(_)
            | Err(
                Error::NoSuchRoute { .. } | Error::BadRequest { .. } | Error::HandlerFailed { .. },
            ) => {
                println!("answer from {label}: seq={sent} time={}", ms(elapsed));
                times.push(elapsed);
                last = None;
            }
            Err(error) => {
                println!("no answer from {label}: seq={sent}: {error}");
                last = Some(error);
            }
        }
        if options.count != 0 && sent >= options.count {
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(options.interval)) => {}
            () = &mut stop => break,
        }
    }
    summary(&label, sent, &times);
    client.close().await;
    match last {
        None => Ok(()),
        Some(error) => {
            let failure = Failure::from(error);
            Err(Failure {
                code: failure.code,
                message: format!("the last round trip failed: {}", failure.message),
            })
        }
    }
}

fn summary(label: &str, sent: u64, times: &[Duration]) {
    let answered = times.len() as u64;
    println!(
        "--- {label}: {sent} sent, {answered} answered, {} lost",
        sent - answered
    );
    if let (Some(min), Some(max)) = (times.iter().min(), times.iter().max()) {
        let total: Duration = times.iter().sum();
        let avg = total / u32::try_from(times.len()).unwrap_or(u32::MAX);
        let number = |d: Duration| format!("{:.3}", d.as_secs_f64() * 1000.0);
        println!(
            "round trip min/avg/max = {}/{}/{} ms",
            number(*min),
            number(avg),
            number(*max)
        );
    }
}

/// `0.123 ms`.
fn ms(duration: Duration) -> String {
    format!("{:.3} ms", duration.as_secs_f64() * 1000.0)
}
