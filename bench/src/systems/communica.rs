//! `communica`: the Python library from PyPI, in a virtual environment the
//! harness creates on demand (`<target dir>/communica-venv`, with
//! `communica[msgpack]`). Both sides are Python: the harness starts
//! `communica_bench.py serve` and `communica_bench.py client`, sends the
//! client driver one command per batch, and reads back the times it
//! measured itself (see the script's docstring). Small requests use
//! communica's default JSON serializer; the bulk payload goes to a second
//! server with its msgpack serializer, as `bin`.
//!
//! `communica_rmq` is the same over communica's `RmqConnector` through the
//! RabbitMQ broker ([`super::amqp_url`]).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::script_driver::ScriptDriver;
use crate::procs::ChildProcess;

/// The driver script, shipped in bench/python and written into the venv.
const SCRIPT: &str = include_str!("../../python/communica_bench.py");
/// What gets installed into the venv.
const REQUIREMENT: &str = "communica[msgpack,rabbitmq]";

/// Makes sure `venv` exists with communica installed and the driver script
/// written; returns the venv's Python. Idempotent: an existing, complete
/// venv is left alone.
pub fn prepare_venv(venv: &Path) -> Result<PathBuf> {
    let python = venv.join("bin").join("python");
    if !python.exists() {
        eprintln!(
            "communica: creating a virtual environment in {}",
            venv.display()
        );
        run(Command::new("python3").args(["-m", "venv"]).arg(venv))
            .context("python3 -m venv (is python3 with the venv module installed?)")?;
    }
    let importable = || {
        Command::new(&python)
            .args(["-c", "import communica, msgpack, aiormq"])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if !importable() {
        eprintln!("communica: pip install {REQUIREMENT}");
        run(Command::new(&python).args(["-m", "pip", "install", "--quiet", REQUIREMENT]))
            .with_context(|| format!("pip install {REQUIREMENT}"))?;
        if !importable() {
            bail!("communica is still not importable after pip install");
        }
    }
    std::fs::write(script(venv), SCRIPT).context("writing the communica driver script")?;
    Ok(python)
}

/// "Python X, communica Y, msgpack Z" from a prepared venv.
pub fn describe_python(venv: &Path) -> Option<String> {
    const PROBE: &str = "import sys, importlib.metadata as m; \
        print('Python', sys.version.split()[0] + ', communica', m.version('communica') + ', msgpack', m.version('msgpack'))";
    let out = Command::new(venv.join("bin").join("python"))
        .args(["-c", PROBE])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn script(venv: &Path) -> PathBuf {
    venv.join("communica_bench.py")
}

fn run(command: &mut Command) -> Result<()> {
    let status = command.status()?;
    if !status.success() {
        bail!("exited with {status}");
    }
    Ok(())
}

/// Client session: the Python client driver and the Python server (in that
/// order, so the driver stops first).
pub struct Client {
    driver: ScriptDriver,
    server: ChildProcess,
    over_broker: bool,
}

impl Client {
    /// Prepares the venv, starts the server and the client driver; over
    /// the broker at `rmq` if given.
    pub fn open(venv: &Path, rmq: Option<&str>) -> Result<Client> {
        let python = prepare_venv(venv)?;
        let rmq: Vec<&str> = rmq.map(|url| vec!["--rmq", url]).unwrap_or_default();
        let mut command = Command::new(&python);
        command.arg(script(venv)).arg("serve").args(&rmq);
        let mut server = ChildProcess::spawn(command, "communica server")?;
        let names: Value = serde_json::from_str(&server.next_line()?)?;
        let name = |key: &str| {
            names[key]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("no {key} name in the server's line"))
        };
        let mut command = Command::new(&python);
        command
            .arg(script(venv))
            .arg("client")
            .arg(name("json")?)
            .arg(name("msgpack")?)
            .args(&rmq);
        // Ready once both of its clients are connected.
        let driver = ScriptDriver::ready(
            ChildProcess::spawn(command, "communica client")?,
            "communica",
        )?;
        Ok(Client {
            driver,
            server,
            over_broker: !rmq.is_empty(),
        })
    }
}

impl super::Session for Client {
    fn server_pid(&self) -> u32 {
        self.server.pid()
    }

    fn rtt(&mut self, count: usize) -> Result<Vec<Duration>> {
        self.driver.rtt(count)
    }

    fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration> {
        self.driver.pipelined(count, depth)
    }

    fn bulk(&mut self, payload: &[u8], count: usize) -> Result<Vec<Duration>> {
        // The driver makes its own payload of the same size (os.urandom).
        self.driver.bulk(payload, count)
    }

    fn connect(&mut self, count: usize) -> Result<Vec<Duration>> {
        self.driver.connect(count)
    }

    fn hold_idle(&mut self, count: usize, measure: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        if self.over_broker {
            return Err(super::Unsupported("not measured over the broker".into()).into());
        }
        self.driver.command(&format!("idle {count}"))?;
        let result = measure();
        self.driver.command("release")?;
        result
    }
}
