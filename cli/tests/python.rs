//! The Python package (python/) against this CLI and the Rust examples, so
//! that the README's test command exercises it too.
//!
//! With pytest importable by `python3` (CI's virtual environment, see
//! ci/python.sh), the whole pytest suite runs. Without it, the suite is
//! announced as skipped and a smoke test that needs only the standard
//! library runs instead: Python is on every machine this project runs on,
//! pytest is not.

use std::path::{Path, PathBuf};
use std::process::Command;

const CLI: &str = env!("CARGO_BIN_EXE_switchboard");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ sits in the repository")
        .to_owned()
}

fn python() -> Command {
    let mut command = Command::new(std::env::var("SWITCHBOARD_PYTHON").unwrap_or("python3".into()));
    command
        .env("PYTHONPATH", repo().join("python").join("src"))
        .env("SWITCHBOARD_BIN", CLI);
    // `cargo test` builds the root package's examples beside this test.
    if let Some(examples) = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("examples")))
    {
        command.env("SWITCHBOARD_EXAMPLES", examples);
    }
    command
}

fn has_pytest() -> bool {
    python()
        .args(["-c", "import pytest"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[cfg_attr(windows, ignore = "needs a Windows python3; under Wine there is none")]
#[test]
fn the_python_package_speaks_to_the_rust_side() {
    let python_dir = repo().join("python");
    let output = if has_pytest() {
        python()
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"])
            .current_dir(&python_dir)
            .output()
            .expect("python3 runs")
    } else {
        eprintln!(
            "SKIPPED: the pytest suite of python/ (pytest is not importable by python3; \
             ci/python.sh runs it in a virtual environment). Running the standard-library \
             smoke test instead."
        );
        python()
            .arg(python_dir.join("tests").join("stdlib_smoke.py"))
            .output()
            .expect("python3 runs")
    };
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
