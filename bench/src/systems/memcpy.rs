//! `memcpy`: one copy of the payload in the harness's own process with the
//! C library's `memcpy` (into a buffer already touched, as a reused pool
//! slot is): what an application's own copy costs. Not a hard ceiling:
//! from 8 MiB switchboard's copy into its pool bypasses the cache and goes
//! faster. No server, no second process: only the bandwidth scenarios.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::Unsupported;

/// The in-process copy.
pub struct Copy;

fn unsupported<T>() -> Result<T> {
    Err(Unsupported("memcpy is a bandwidth ceiling, not a connection".into()).into())
}

impl super::Session for Copy {
    fn server_pid(&self) -> u32 {
        std::process::id()
    }

    fn rtt(&mut self, _: usize) -> Result<Vec<Duration>> {
        unsupported()
    }

    fn pipelined(&mut self, _: usize, _: usize) -> Result<Duration> {
        unsupported()
    }

    fn bulk(&mut self, payload: &[u8], count: usize) -> Result<Vec<Duration>> {
        let mut target = payload.to_vec();
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let start = Instant::now();
            target.copy_from_slice(std::hint::black_box(payload));
            std::hint::black_box(&mut target);
            samples.push(start.elapsed());
        }
        Ok(samples)
    }

    fn connect(&mut self, _: usize) -> Result<Vec<Duration>> {
        unsupported()
    }
}
