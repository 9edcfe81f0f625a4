//! The scenarios and how they are run: warm-up, batch sizes, and rounds
//! interleaved across systems so that a slow spell on this shared machine
//! hits every system alike instead of one.
//!
//! For each scenario, every system first warms up; the warm-up also
//! estimates how long one operation takes, which sets the batch size so a
//! batch lasts about the plan's target time. Then `rounds` rounds run; each
//! round runs one batch per system, starting with a different system each
//! round. Samples are pooled across rounds.

use std::collections::BTreeMap;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::ValueEnum;

use crate::procs;
use crate::stats::{self, median, micros, percentile};
use crate::steal::Ticks;
use crate::systems::{self, Options, Session};

/// Result keys (scenario names in the JSON file).
pub const RTT_P50: &str = "rtt_small_us";
pub const RTT_P99: &str = "rtt_small_p99_us";
/// The host's steal during each system's rtt batches, in percent: not a
/// result, the conditions of one (see `steal`).
pub const RTT_STEAL: &str = "rtt_small_steal_pct";
pub const PIPELINED: &str = "pipelined_rps";
pub const BANDWIDTH: &str = "bandwidth_16mib_gbps";
pub const CONNECT: &str = "connect_ms";
pub const IDLE: &str = "idle_1000_rss_mib";
/// The bulk sizes of the `sizes` scenario, and their result keys.
pub const SIZES: [(usize, &str); 4] = [
    (64 * 1024, "bulk_64kib_gbps"),
    (1024 * 1024, "bulk_1mib_gbps"),
    (16 * 1024 * 1024, "bulk_16mib_gbps"),
    (256 * 1024 * 1024, "bulk_256mib_gbps"),
];
/// The systems the `sizes` scenario runs (the rest would take minutes per
/// 256 MiB transfer, or do not move bytes).
pub const SIZES_SYSTEMS: [&str; 6] = [
    "raw_blocking_uds",
    "memcpy",
    "switchboard_local",
    "switchboard_local_loan",
    "switchboard_local_msgpack",
    "ipc_channel_shm",
];
/// Every result key, in report order.
pub const KEYS: [&str; 6] = [RTT_P50, RTT_P99, PIPELINED, BANDWIDTH, CONNECT, IDLE];

/// Requests in flight in the pipelined scenario.
pub const DEPTH: usize = 64;
/// The bulk payload: 16 MiB.
pub const BULK_SIZE: usize = 16 * 1024 * 1024;
/// Idle connections in the memory scenario.
pub const IDLE_CONNECTIONS: usize = 1000;

/// A scenario as selected on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Scenario {
    /// rtt_small_us and rtt_small_p99_us.
    Rtt,
    /// pipelined_rps.
    Pipelined,
    /// bandwidth_16mib_gbps.
    Bandwidth,
    /// connect_ms.
    Connect,
    /// idle_1000_rss_mib.
    Idle,
    /// bulk_64kib_gbps .. bulk_256mib_gbps: bandwidth at four sizes, for
    /// the systems in `SIZES_SYSTEMS`.
    Sizes,
}

impl Scenario {
    /// The result keys this scenario fills.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Scenario::Rtt => &[RTT_P50, RTT_P99],
            Scenario::Pipelined => &[PIPELINED],
            Scenario::Bandwidth => &[BANDWIDTH],
            Scenario::Connect => &[CONNECT],
            Scenario::Idle => &[IDLE],
            Scenario::Sizes => &[SIZES[0].1, SIZES[1].1, SIZES[2].1, SIZES[3].1],
        }
    }
}

/// How much to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// "quick" or "full".
    pub name: &'static str,
    /// Rounds per scenario.
    pub rounds: usize,
    /// Echo round trips in each system's warm-up.
    pub rtt_warmup: usize,
    /// Target length of one batch, per scenario.
    pub rtt_batch: Duration,
    pub pipelined_batch: Duration,
    pub bulk_batch: Duration,
    pub connect_batch: Duration,
}

impl Plan {
    /// About 1.5 minutes on two cores, all systems.
    pub fn quick() -> Plan {
        Plan {
            name: "quick",
            rounds: 8,
            rtt_warmup: 2_000,
            rtt_batch: Duration::from_millis(300),
            pipelined_batch: Duration::from_millis(300),
            bulk_batch: Duration::from_millis(400),
            connect_batch: Duration::from_millis(250),
        }
    }

    /// 2.5 times the rounds, twice the batch length (about 5 minutes).
    pub fn full() -> Plan {
        Plan {
            name: "full",
            rounds: 20,
            rtt_warmup: 10_000,
            rtt_batch: Duration::from_millis(600),
            pipelined_batch: Duration::from_millis(600),
            bulk_batch: Duration::from_millis(800),
            connect_batch: Duration::from_millis(500),
        }
    }

    /// One line describing the plan, for the report.
    pub fn describe(&self) -> String {
        format!(
            "{} mode: {} interleaved rounds per scenario; batches of about {} ms (rtt), {} ms (pipelined), {} ms (bandwidth), {} ms (connect); rtt warm-up {} round trips",
            self.name,
            self.rounds,
            self.rtt_batch.as_millis(),
            self.pipelined_batch.as_millis(),
            self.bulk_batch.as_millis(),
            self.connect_batch.as_millis(),
            self.rtt_warmup,
        )
    }
}

/// A system's session, by name.
pub struct Entry {
    pub name: &'static str,
    pub session: Box<dyn Session>,
}

/// What a run measured: scenario key -> system -> value, and why some
/// systems are absent from some scenarios.
#[derive(Default)]
pub struct Results {
    pub values: BTreeMap<&'static str, BTreeMap<&'static str, f64>>,
    pub absent: Vec<(&'static str, &'static str, String)>,
}

impl Results {
    /// The value of `system` in `key`, if measured.
    pub fn get(&self, key: &str, system: &str) -> Option<f64> {
        self.values.get(key)?.get(system).copied()
    }

    fn set(&mut self, key: &'static str, system: &'static str, value: f64) {
        self.values.entry(key).or_default().insert(system, value);
    }

    /// Records (and prints) that `system` is absent from `key`.
    pub fn absent(&mut self, key: &'static str, system: &'static str, reason: String) {
        println!("  {system:<27} absent from {key}: {reason}");
        self.absent.push((key, system, reason));
    }
}

/// Runs the selected scenarios except `Idle` on the open sessions.
pub fn run(entries: &mut [Entry], plan: &Plan, selected: &[Scenario], results: &mut Results) {
    for scenario in selected {
        let started = Instant::now();
        match scenario {
            Scenario::Rtt => rtt(entries, plan, results),
            Scenario::Pipelined => pipelined(entries, plan, results),
            Scenario::Bandwidth => bandwidth(entries, plan, results),
            Scenario::Connect => connect(entries, plan, results),
            Scenario::Sizes => sizes(entries, plan, results),
            Scenario::Idle => continue,
        }
        println!("  ({:.1} s)", started.elapsed().as_secs_f64());
    }
}

/// Warms every system up with `warm`, which returns the time one operation
/// took; turns that into a batch size with `size`. Systems whose warm-up
/// fails come back as errors.
fn warm_up(
    entries: &mut [Entry],
    mut warm: impl FnMut(&mut dyn Session) -> Result<Duration>,
    size: impl Fn(Duration) -> usize,
) -> Vec<Result<usize>> {
    entries
        .iter_mut()
        .map(|entry| {
            let session = entry.session.as_mut();
            let took = warm(session)?;
            session.rest()?;
            Ok(size(took))
        })
        .collect()
}

/// Runs `rounds` rounds of one batch per system (those whose warm-up
/// worked), rotating the starting system each round; returns each system's
/// batches, or the first error it hit.
fn interleave<T>(
    entries: &mut [Entry],
    rounds: usize,
    sizes: Vec<Result<usize>>,
    mut batch: impl FnMut(&mut dyn Session, usize) -> Result<T>,
) -> Vec<Result<Vec<T>>> {
    let count = entries.len();
    let mut out: Vec<Result<(usize, Vec<T>)>> = sizes
        .into_iter()
        .map(|size| size.map(|size| (size, Vec::with_capacity(rounds))))
        .collect();
    for round in 0..rounds {
        for k in 0..count {
            let i = (k + round) % count;
            if let Ok((size, batches)) = &mut out[i] {
                let session = entries[i].session.as_mut();
                match batch(session, *size).and_then(|value| session.rest().map(|()| value)) {
                    Ok(value) => batches.push(value),
                    Err(e) => out[i] = Err(e),
                }
            }
        }
    }
    out.into_iter()
        .map(|r| r.map(|(_, batches)| batches))
        .collect()
}

fn clamp_count(target: Duration, per_op: Duration, min: usize, max: usize) -> usize {
    let per_op = per_op.as_secs_f64().max(1e-9);
    ((target.as_secs_f64() / per_op) as usize).clamp(min, max)
}

fn median_duration(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted
        .get(sorted.len().saturating_sub(1) / 2)
        .copied()
        .unwrap_or_default()
}

fn rtt(entries: &mut [Entry], plan: &Plan, results: &mut Results) {
    println!("\n== rtt_small: one 64-byte echo at a time (p50, p99) ==");
    let sizes = warm_up(
        entries,
        |s| Ok(median_duration(&s.rtt(plan.rtt_warmup)?)),
        |op| clamp_count(plan.rtt_batch, op, 200, 100_000),
    );
    // Each batch with the host's steal while it ran (see `steal`).
    let batches = interleave(entries, plan.rounds, sizes, |s, n| {
        let before = Ticks::now();
        let samples = s.rtt(n)?;
        let stolen = Ticks::now()
            .zip(before)
            .map(|(after, before)| after.since(before));
        Ok((samples, stolen))
    });
    for (entry, outcome) in entries.iter().zip(batches) {
        let (batches, stolen): (Vec<_>, Vec<_>) = match outcome {
            Ok(b) => b.into_iter().unzip(),
            Err(e) => {
                results.absent(RTT_P50, entry.name, format!("failed: {e:#}"));
                results.absent(RTT_P99, entry.name, format!("failed: {e:#}"));
                continue;
            }
        };
        let round_p50: Vec<f64> = batches.iter().filter_map(|b| median(&micros(b))).collect();
        let all: Vec<f64> = batches.iter().flat_map(|b| micros(b)).collect();
        let (Some(p50), Some(p99)) = (median(&all), percentile(&all, 99.0)) else {
            continue;
        };
        let (lo, hi) = stats::range(&round_p50).unwrap_or((p50, p50));
        let steal = stolen
            .into_iter()
            .collect::<Option<Vec<Ticks>>>()
            .and_then(|spans| spans.into_iter().reduce(Ticks::plus))
            .and_then(Ticks::percent);
        println!(
            "  {:<27} p50 {p50:>9.1} us   p99 {p99:>9.1} us   (n = {}, round p50s {lo:.1}..{hi:.1}{})",
            entry.name,
            all.len(),
            steal.map_or_else(String::new, |s| format!(", host steal {s:.0} %")),
        );
        results.set(RTT_P50, entry.name, p50);
        results.set(RTT_P99, entry.name, p99);
        if let Some(steal) = steal {
            results.set(RTT_STEAL, entry.name, steal);
        }
    }
}

fn pipelined(entries: &mut [Entry], plan: &Plan, results: &mut Results) {
    println!("\n== pipelined: {DEPTH} echo requests in flight on one connection ==");
    const WARM: usize = 5_000;
    let sizes = warm_up(
        entries,
        |s| Ok(s.pipelined(WARM, DEPTH)? / WARM as u32),
        |op| clamp_count(plan.pipelined_batch, op, 1_000, 1_000_000),
    );
    let batches = interleave(entries, plan.rounds, sizes, |s, n| {
        Ok(n as f64 / s.pipelined(n, DEPTH)?.as_secs_f64())
    });
    for (entry, outcome) in entries.iter().zip(batches) {
        match outcome {
            Ok(rates) => {
                let Some(rps) = median(&rates) else { continue };
                let (lo, hi) = stats::range(&rates).unwrap_or((rps, rps));
                println!(
                    "  {:<27} {rps:>12.0} requests/s   (median of {} rounds, {lo:.0}..{hi:.0})",
                    entry.name,
                    rates.len()
                );
                results.set(PIPELINED, entry.name, rps);
            }
            Err(e) => results.absent(PIPELINED, entry.name, format!("failed: {e:#}")),
        }
    }
}

/// Bandwidth at each of [`SIZES`], for the systems of [`SIZES_SYSTEMS`],
/// with each system's ratio to the blocking Unix socket of the same run.
fn sizes(entries: &mut [Entry], plan: &Plan, results: &mut Results) {
    // The chosen systems first (the others keep their order after them).
    entries.sort_by_key(|entry| !SIZES_SYSTEMS.contains(&entry.name));
    let chosen = entries
        .iter()
        .take_while(|entry| SIZES_SYSTEMS.contains(&entry.name))
        .count();
    let (subset, others) = entries.split_at_mut(chosen);
    for entry in others.iter() {
        results.absent(SIZES[0].1, entry.name, "not in the sizes scenario".into());
    }
    for &(size, key) in &SIZES {
        println!(
            "\n== {key}: {} KiB request, 8-byte answer (GB = 1e9 bytes) ==",
            size / 1024
        );
        let payload = systems::bulk_payload(size);
        let counts = warm_up(
            subset,
            |s| Ok(median_duration(&s.bulk(&payload, 2)?)),
            |op| clamp_count(plan.bulk_batch, op, 1, 2000),
        );
        let batches = interleave(subset, plan.rounds, counts, |s, n| s.bulk(&payload, n));
        let mut rates = Vec::new();
        for (entry, outcome) in subset.iter().zip(batches) {
            match outcome {
                Ok(batches) => {
                    let samples: Vec<f64> = batches
                        .iter()
                        .flatten()
                        .map(|d| size as f64 / d.as_secs_f64() / 1e9)
                        .collect();
                    if let Some(gbps) = median(&samples) {
                        rates.push((entry.name, gbps, samples.len()));
                        results.set(key, entry.name, gbps);
                    }
                }
                Err(e) => results.absent(key, entry.name, format!("failed: {e:#}")),
            }
        }
        let raw = rates
            .iter()
            .find(|r| r.0 == "raw_blocking_uds")
            .map(|r| r.1);
        for (name, gbps, n) in rates {
            let ratio = raw.map_or(String::new(), |raw| format!("{:>6.2} x raw", gbps / raw));
            println!("  {name:<27} {gbps:>9.3} GB/s  {ratio}   (median of {n})");
        }
    }
}

fn bandwidth(entries: &mut [Entry], plan: &Plan, results: &mut Results) {
    println!("\n== bandwidth: 16 MiB request, 8-byte answer (GB = 1e9 bytes) ==");
    let payload = systems::bulk_payload(BULK_SIZE);
    let sizes = warm_up(
        entries,
        |s| Ok(median_duration(&s.bulk(&payload, 2)?)),
        |op| clamp_count(plan.bulk_batch, op, 1, 50),
    );
    let batches = interleave(entries, plan.rounds, sizes, |s, n| s.bulk(&payload, n));
    for (entry, outcome) in entries.iter().zip(batches) {
        match outcome {
            Ok(batches) => {
                let rates: Vec<f64> = batches
                    .iter()
                    .flatten()
                    .map(|d| BULK_SIZE as f64 / d.as_secs_f64() / 1e9)
                    .collect();
                let Some(gbps) = median(&rates) else { continue };
                let (lo, hi) = stats::range(&rates).unwrap_or((gbps, gbps));
                println!(
                    "  {:<27} {gbps:>9.3} GB/s   (median of {} transfers, {lo:.3}..{hi:.3})",
                    entry.name,
                    rates.len()
                );
                results.set(BANDWIDTH, entry.name, gbps);
            }
            Err(e) => results.absent(BANDWIDTH, entry.name, format!("failed: {e:#}")),
        }
    }
}

fn connect(entries: &mut [Entry], plan: &Plan, results: &mut Results) {
    println!("\n== connect: fresh connection + handshake + first echo answered ==");
    let sizes = warm_up(
        entries,
        |s| Ok(median_duration(&s.connect(10)?)),
        |op| clamp_count(plan.connect_batch, op, 5, 500),
    );
    let batches = interleave(entries, plan.rounds, sizes, |s, n| s.connect(n));
    for (entry, outcome) in entries.iter().zip(batches) {
        match outcome {
            Ok(batches) => {
                let ms: Vec<f64> = batches
                    .iter()
                    .flatten()
                    .map(|d| d.as_secs_f64() * 1e3)
                    .collect();
                let (Some(p50), Some(p99)) = (median(&ms), percentile(&ms, 99.0)) else {
                    continue;
                };
                println!(
                    "  {:<27} median {p50:>8.3} ms   p99 {p99:>8.3} ms   (n = {})",
                    entry.name,
                    ms.len()
                );
                results.set(CONNECT, entry.name, p50);
            }
            Err(e) => results.absent(CONNECT, entry.name, format!("failed: {e:#}")),
        }
    }
}

/// The memory scenario, on a fresh server per system (so buffers left over
/// from the bandwidth scenario do not count): the server's VmRSS with the
/// session's one connection, then with [`IDLE_CONNECTIONS`] more connected,
/// handshaken and idle.
pub fn idle(systems: &[&'static str], options: &Options, results: &mut Results) {
    println!("\n== idle: server VmRSS with {IDLE_CONNECTIONS} idle connections ==");
    for &system in systems {
        let outcome = systems::open(system, options).and_then(|mut session| {
            let pid = session.server_pid();
            thread::sleep(Duration::from_millis(200));
            let before = procs::vm_rss_kib(pid)?;
            let mut after = 0;
            let started = Instant::now();
            session.hold_idle(IDLE_CONNECTIONS, &mut || {
                thread::sleep(Duration::from_millis(500));
                after = procs::vm_rss_kib(pid)?;
                Ok(())
            })?;
            Ok((before, after, started.elapsed()))
        });
        match outcome {
            Ok((before, after, took)) => {
                let mib = |kib: u64| kib as f64 / 1024.0;
                println!(
                    "  {system:<27} {:>8.1} MiB  (before: {:.1} MiB; {:.1} KiB per connection; {:.1} s to connect all)",
                    mib(after),
                    mib(before),
                    (after as f64 - before as f64) / IDLE_CONNECTIONS as f64,
                    took.as_secs_f64()
                );
                results.set(IDLE, system, mib(after));
            }
            Err(e) => {
                let reason = match e.downcast_ref::<systems::Unsupported>() {
                    Some(u) => u.to_string(),
                    None => format!("failed: {e:#}"),
                };
                results.absent(IDLE, system, reason);
            }
        }
    }
}
