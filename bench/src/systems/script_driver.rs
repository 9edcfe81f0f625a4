//! A Python driver script seen from the harness: the one line protocol the
//! communica and Python systems' drivers share (bench/python/*.py). The
//! harness sends one command per line (`rtt N`, `pipelined N DEPTH`,
//! `bulk SIZE N`, `connect N`, ...) and reads one JSON reply per line: an
//! `error`, or the times the driver measured itself (`ns`).

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

use crate::procs::ChildProcess;

/// The driver process, and the name its errors are reported under.
pub struct ScriptDriver {
    process: ChildProcess,
    name: &'static str,
}

impl ScriptDriver {
    /// Wraps a started driver and waits for its first reply
    /// (`{"ready": true}`).
    pub fn ready(process: ChildProcess, name: &'static str) -> Result<ScriptDriver> {
        let mut driver = ScriptDriver { process, name };
        driver.reply()?;
        Ok(driver)
    }

    /// Sends one command line and returns the driver's reply.
    pub fn command(&mut self, line: &str) -> Result<Value> {
        self.process.send_line(line)?;
        self.reply()
    }

    fn reply(&mut self) -> Result<Value> {
        let reply: Value = serde_json::from_str(&self.process.next_line()?)?;
        if let Some(error) = reply.get("error") {
            bail!("{}: {}", self.name, error.as_str().unwrap_or_default());
        }
        Ok(reply)
    }

    /// A command whose reply is a list of nanosecond timings.
    fn timings(&mut self, line: &str) -> Result<Vec<Duration>> {
        let reply = self.command(line)?;
        reply["ns"]
            .as_array()
            .ok_or_else(|| anyhow!("no timings in the reply to {line:?}"))?
            .iter()
            .map(|ns| {
                ns.as_u64()
                    .map(Duration::from_nanos)
                    .ok_or_else(|| anyhow!("bad timing {ns}"))
            })
            .collect()
    }

    pub fn rtt(&mut self, count: usize) -> Result<Vec<Duration>> {
        self.timings(&format!("rtt {count}"))
    }

    pub fn pipelined(&mut self, count: usize, depth: usize) -> Result<Duration> {
        let total = self.timings(&format!("pipelined {count} {depth}"))?;
        total
            .first()
            .copied()
            .ok_or_else(|| anyhow!("no total time"))
    }

    /// The driver makes its own payload of the same size.
    pub fn bulk(&mut self, payload: &[u8], count: usize) -> Result<Vec<Duration>> {
        self.timings(&format!("bulk {} {count}", payload.len()))
    }

    pub fn connect(&mut self, count: usize) -> Result<Vec<Duration>> {
        self.timings(&format!("connect {count}"))
    }
}
