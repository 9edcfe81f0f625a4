//! The Python systems: `switchboard_python`, the `switchboard_ipc`
//! package (python/ in this repository) as the client of the Rust
//! switchboard server (the `switchboard_local_json` server: the client
//! offers MessagePack first, which that server also speaks), and
//! `mp_connection`, the standard library's `multiprocessing.connection`
//! between two Python processes. Both run in communica's virtual
//! environment (for msgpack), beside communica in the same run; the package
//! is imported from this checkout. The driver script
//! (bench/python/python_bench.py) times everything itself and answers the
//! same commands as communica's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, anyhow};
use serde_json::Value;

use super::script_driver::ScriptDriver;
use super::{Flavor, Unsupported};
use crate::procs::ChildProcess;

/// The driver script, shipped in bench/python and written into the venv.
const SCRIPT: &str = include_str!("../../python/python_bench.py");

/// Which Python system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// switchboard_ipc against the Rust server.
    Package,
    /// multiprocessing.connection, Python to Python.
    MpConnection,
}

fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("python")
        .join("src")
}

/// Client session: the Python client driver and its server (in that order,
/// so the driver stops first).
pub struct Client {
    driver: ScriptDriver,
    server: ChildProcess,
}

impl Client {
    /// Starts the server (the Rust one, or the Python Listener) and the
    /// driver connected to it.
    pub fn open(variant: Variant, venv: &Path, flavor: Flavor) -> Result<Client> {
        let python = super::prepare_venv(venv)?;
        let script = venv.join("python_bench.py");
        std::fs::write(&script, SCRIPT)?;
        let mut driver = Command::new(&python);
        driver.arg(&script).env("PYTHONPATH", package_dir());
        let server = match variant {
            Variant::Package => {
                let mut server =
                    ChildProcess::spawn_self("switchboard_local_json", &flavor.serve_args())?;
                driver.arg("client-sb").arg(server.next_line()?.trim());
                server
            }
            Variant::MpConnection => {
                let mut command = Command::new(&python);
                command.arg(&script).arg("serve-mp");
                let mut server = ChildProcess::spawn(command, "multiprocessing server")?;
                let line: Value = serde_json::from_str(&server.next_line()?)?;
                let field = |key: &str| {
                    line[key]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| anyhow!("no {key} in the server's line"))
                };
                driver
                    .arg("client-mp")
                    .arg(field("address")?)
                    .arg(field("authkey")?);
                server
            }
        };
        let driver = ScriptDriver::ready(ChildProcess::spawn(driver, "Python client")?, "python")?;
        Ok(Client { driver, server })
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
        self.driver.bulk(payload, count)
    }

    fn connect(&mut self, count: usize) -> Result<Vec<Duration>> {
        self.driver.connect(count)
    }

    fn hold_idle(&mut self, _: usize, _: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        Err(Unsupported("not measured for the Python clients".into()).into())
    }
}
