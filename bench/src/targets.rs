//! The targets switchboard will be held to, as ratios or limits within one
//! run, checked as PASS, MISS or N/A (a system needed was not measured).

use crate::numbers::{number, unit};
use crate::scenarios::{BANDWIDTH, CONNECT, IDLE, PIPELINED, RTT_P50, RTT_P99, RTT_STEAL, Results};
use crate::systems::Flavor;

/// One of the library's targets.
struct Target {
    key: &'static str,
    system: &'static str,
    rule: Rule,
    /// Held on this runtime only; `None`: on both.
    only: Option<Flavor>,
}

enum Rule {
    AtMost(Bound),
    Below(Bound),
    AtLeast(Bound),
}

enum Bound {
    Value(f64),
    Times(f64, &'static str),
    /// A multiple of the same system's value in another scenario.
    TimesOwn(f64, &'static str),
}

const TARGETS: [Target; 26] = [
    // The socket near its own floor: both processes busy-polling it. The
    // default local connector (issue 20), which settles MessagePack since
    // issue 18; JSON's own ratio is in BENCHMARKS.md.
    Target {
        key: RTT_P50,
        system: "switchboard_local",
        rule: Rule::AtMost(Bound::Times(1.5, "raw_poll_uds")),
        only: Some(Flavor::Current),
    },
    // The shared-memory ring near the physical floor, and steady.
    Target {
        key: RTT_P50,
        system: "switchboard_shm",
        rule: Rule::AtMost(Bound::Times(20.0, "raw_spin_shm")),
        only: Some(Flavor::Current),
    },
    Target {
        key: RTT_P99,
        system: "switchboard_shm",
        rule: Rule::Below(Bound::TimesOwn(3.0, RTT_P50)),
        only: Some(Flavor::Current),
    },
    Target {
        key: RTT_P50,
        system: "switchboard_shm",
        rule: Rule::Below(Bound::Times(1.0, "raw_poll_uds")),
        only: None,
    },
    Target {
        key: RTT_P50,
        system: "switchboard_local_json",
        rule: Rule::AtMost(Bound::Times(1.25, "raw_tokio_local")),
        only: None,
    },
    Target {
        key: RTT_P50,
        system: "switchboard_local_json",
        rule: Rule::Below(Bound::Times(1.0, "tarpc_uds")),
        only: None,
    },
    Target {
        key: RTT_P50,
        system: "switchboard_local_json",
        rule: Rule::Below(Bound::Times(1.0, "ipc_channel")),
        only: None,
    },
    Target {
        key: RTT_P50,
        system: "switchboard_blocking",
        rule: Rule::AtMost(Bound::Times(1.2, "raw_blocking_uds")),
        only: None,
    },
    Target {
        key: PIPELINED,
        system: "switchboard_local_json",
        rule: Rule::AtLeast(Bound::Value(300_000.0)),
        only: None,
    },
    Target {
        key: PIPELINED,
        system: "switchboard_local_json",
        rule: Rule::AtLeast(Bound::Times(3.0, "tarpc_uds")),
        only: None,
    },
    // Most programs run `#[tokio::main]`: the multi-thread runtime.
    Target {
        key: PIPELINED,
        system: "switchboard_local_json",
        rule: Rule::AtLeast(Bound::Times(0.5, "raw_tokio_local")),
        only: Some(Flavor::Multi),
    },
    Target {
        key: BANDWIDTH,
        system: "switchboard_local_msgpack",
        rule: Rule::AtLeast(Bound::Times(0.7, "raw_blocking_uds")),
        only: None,
    },
    // The default settings (issue 18): no format chosen, shared memory.
    Target {
        key: BANDWIDTH,
        system: "switchboard_local",
        rule: Rule::AtLeast(Bound::Times(2.0, "raw_blocking_uds")),
        only: None,
    },
    Target {
        key: "bulk_64kib_gbps",
        system: "switchboard_local",
        rule: Rule::AtLeast(Bound::Times(0.7, "raw_blocking_uds")),
        only: None,
    },
    Target {
        key: "bulk_1mib_gbps",
        system: "switchboard_local",
        rule: Rule::AtLeast(Bound::Times(0.7, "raw_blocking_uds")),
        only: None,
    },
    Target {
        key: "bulk_16mib_gbps",
        system: "switchboard_local",
        rule: Rule::AtLeast(Bound::Times(2.0, "raw_blocking_uds")),
        only: None,
    },
    Target {
        key: "bulk_16mib_gbps",
        system: "switchboard_local_loan",
        rule: Rule::AtLeast(Bound::Times(3.0, "raw_blocking_uds")),
        only: None,
    },
    Target {
        key: CONNECT,
        system: "switchboard_local_json",
        rule: Rule::AtMost(Bound::Value(2.0)),
        only: None,
    },
    Target {
        key: IDLE,
        system: "switchboard_local_json",
        rule: Rule::Below(Bound::Value(64.0)),
        only: None,
    },
    // Over a RabbitMQ broker.
    Target {
        key: RTT_P50,
        system: "switchboard_amqp",
        rule: Rule::AtMost(Bound::Times(1.3, "raw_amqp")),
        only: None,
    },
    Target {
        key: RTT_P50,
        system: "switchboard_amqp",
        rule: Rule::AtMost(Bound::Times(0.7, "communica_rmq")),
        only: None,
    },
    Target {
        key: PIPELINED,
        system: "switchboard_amqp",
        rule: Rule::AtLeast(Bound::Times(3.0, "communica_rmq")),
        only: None,
    },
    // The Python package against the Rust server beats Python's own IPC.
    Target {
        key: RTT_P50,
        system: "switchboard_python",
        rule: Rule::AtMost(Bound::Times(1.0, "communica")),
        only: None,
    },
    Target {
        key: RTT_P50,
        system: "switchboard_python",
        rule: Rule::AtMost(Bound::Times(1.0, "mp_connection")),
        only: None,
    },
    Target {
        key: PIPELINED,
        system: "switchboard_python",
        rule: Rule::AtLeast(Bound::Times(1.0, "communica")),
        only: None,
    },
    Target {
        key: PIPELINED,
        system: "switchboard_python",
        rule: Rule::AtLeast(Bound::Times(1.0, "mp_connection")),
        only: None,
    },
];

impl Target {
    fn describe(&self) -> String {
        let (op, bound) = match &self.rule {
            Rule::AtMost(b) => ("<=", b),
            Rule::Below(b) => ("<", b),
            Rule::AtLeast(b) => (">=", b),
        };
        let bound = match bound {
            Bound::Value(v) => format!("{} {}", number(*v), unit(self.key).0),
            Bound::Times(f, s) if *f == 1.0 => s.to_string(),
            Bound::Times(f, s) => format!("{f} x {s}"),
            Bound::TimesOwn(f, key) => format!("{f} x its {key}"),
        };
        format!("{}: {} {op} {bound}", self.key, self.system)
    }

    /// PASS/MISS with the numbers, or N/A when something is missing.
    fn check(&self, results: &Results) -> (&'static str, String) {
        let bound = |b: &Bound| match b {
            Bound::Value(v) => Some(*v),
            Bound::Times(f, s) => results.get(self.key, s).map(|v| v * f),
            Bound::TimesOwn(f, key) => results.get(key, self.system).map(|v| v * f),
        };
        let (ok, limit) = match (&self.rule, results.get(self.key, self.system)) {
            (_, None) => return ("N/A", format!("{} not measured", self.system)),
            (Rule::AtMost(b), Some(v)) => (bound(b).map(|l| v <= l), bound(b)),
            (Rule::Below(b), Some(v)) => (bound(b).map(|l| v < l), bound(b)),
            (Rule::AtLeast(b), Some(v)) => (bound(b).map(|l| v >= l), bound(b)),
        };
        let value = results.get(self.key, self.system).unwrap_or_default();
        // A latency measured while the host took much of the machine's
        // time is partly the host's (see `steal`): said beside it.
        let steal = match results.get(RTT_STEAL, self.system) {
            Some(steal) if [RTT_P50, RTT_P99].contains(&self.key) && steal >= 1.0 => {
                format!(" (host steal {steal:.0} % during its batches)")
            }
            _ => String::new(),
        };
        match (ok, limit) {
            (Some(ok), Some(limit)) => (
                if ok { "PASS" } else { "MISS" },
                format!("measured {}, limit {}{steal}", number(value), number(limit)),
            ),
            _ => ("N/A", "the comparison system was not measured".into()),
        }
    }
}

/// Every target for runs on `flavor`, checked: (description,
/// `PASS`/`MISS`/`N/A`, the numbers).
pub fn check_all(results: &Results, flavor: Flavor) -> Vec<(String, &'static str, String)> {
    TARGETS
        .iter()
        .filter(|t| t.only.is_none_or(|only| only == flavor))
        .map(|t| {
            let (status, detail) = t.check(results);
            (t.describe(), status, detail)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_pass_miss_and_missing() {
        let mut results = Results::default();
        let mut set = |k, s, v| {
            results.values.entry(k).or_default().insert(s, v);
        };
        set(RTT_P50, "switchboard_local_json", 24.0);
        set(RTT_P50, "raw_tokio_local", 20.0);
        set(RTT_P50, "tarpc_uds", 23.0);
        set(CONNECT, "switchboard_local_json", 1.5);
        set(PIPELINED, "switchboard_local_json", 600_000.0);
        set(PIPELINED, "raw_tokio_local", 1_000_000.0);
        let status = |checks: &[(String, &str, String)], what: &str| {
            let found = checks.iter().find(|c| c.0 == what);
            found
                .map(|c| c.1.to_owned())
                .unwrap_or_else(|| "absent".into())
        };
        let checks = check_all(&results, Flavor::Current);
        let first = "rtt_small_us: switchboard_local_json <= 1.25 x raw_tokio_local";
        assert_eq!(status(&checks, first), "PASS"); // 24 <= 25
        let tarpc = "rtt_small_us: switchboard_local_json < tarpc_uds";
        assert_eq!(status(&checks, tarpc), "MISS"); // 24 < 23
        let ipc = "rtt_small_us: switchboard_local_json < ipc_channel";
        assert_eq!(status(&checks, ipc), "N/A"); // no ipc_channel
        let connect = "connect_ms: switchboard_local_json <= 2.00 ms";
        assert_eq!(status(&checks, connect), "PASS");
        let idle = "idle_1000_rss_mib: switchboard_local_json < 64.0 MiB";
        assert_eq!(status(&checks, idle), "N/A");
        let half_raw = "pipelined_rps: switchboard_local_json >= 0.5 x raw_tokio_local";
        assert_eq!(status(&checks, half_raw), "absent", "a multi-thread target");
        let checks = check_all(&results, Flavor::Multi);
        assert_eq!(status(&checks, half_raw), "PASS");
        results
            .values
            .entry(RTT_P50)
            .or_default()
            .insert("switchboard_shm", 2.0);
        results
            .values
            .entry(RTT_P99)
            .or_default()
            .insert("switchboard_shm", 5.0);
        let steady = "rtt_small_p99_us: switchboard_shm < 3 x its rtt_small_us";
        assert_eq!(
            status(&check_all(&results, Flavor::Current), steady),
            "PASS"
        );
        let detail = |results: &Results| {
            let checks = check_all(results, Flavor::Current);
            checks.into_iter().find(|c| c.0 == steady).map(|c| c.2)
        };
        assert_eq!(
            detail(&results).as_deref(),
            Some("measured 5.00, limit 6.00")
        );
        results
            .values
            .entry(RTT_STEAL)
            .or_default()
            .insert("switchboard_shm", 35.4);
        assert_eq!(
            detail(&results).as_deref(),
            Some("measured 5.00, limit 6.00 (host steal 35 % during its batches)")
        );
        assert_eq!(
            status(&check_all(&results, Flavor::Multi), steady),
            "absent"
        );
    }
}
