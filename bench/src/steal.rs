//! How much of this virtual machine's CPU time its host gave to others
//! while a system ran: the `steal` column of `/proc/stat`.
//!
//! A vCPU the host takes away mid-round-trip makes that round trip as slow
//! as the host's time slice, hundreds of microseconds, whatever the system
//! does. Such stalls are rare per round trip, so a system whose batches run
//! longer meets more of them: on a host stealing a third of the time, the
//! shared-memory ring's p99 (about 2 s of round trips in a quick run) was
//! 250 to 600 µs while the spin floor's (0.1 s) stayed under 1.2 µs. The
//! rtt scenario reports the steal during each system's batches beside its
//! percentiles, so a tail that is the host's can be told from one that is
//! ours.

/// CPU time as counted by the kernel, in clock ticks, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ticks {
    /// Time the host ran something else while this guest wanted to run.
    steal: u64,
    /// Every column: user, nice, system, idle, iowait, irq, softirq, steal.
    total: u64,
}

impl Ticks {
    /// The machine's counts now; `None` where there is no `/proc/stat`.
    pub fn now() -> Option<Ticks> {
        parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    /// What was counted between `earlier` and `self`.
    pub fn since(self, earlier: Ticks) -> Ticks {
        Ticks {
            steal: self.steal.saturating_sub(earlier.steal),
            total: self.total.saturating_sub(earlier.total),
        }
    }

    /// Both spans together.
    pub fn plus(self, other: Ticks) -> Ticks {
        Ticks {
            steal: self.steal + other.steal,
            total: self.total + other.total,
        }
    }

    /// Steal as a percentage of all the time counted; `None` if none was.
    pub fn percent(self) -> Option<f64> {
        (self.total > 0).then(|| 100.0 * self.steal as f64 / self.total as f64)
    }
}

/// The summary line (`cpu  user nice system idle iowait irq softirq steal
/// ...`); guest time is already inside user and nice, so it is not added.
fn parse(stat: &str) -> Option<Ticks> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let columns: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|c| c.parse().ok())
        .collect::<Option<_>>()?;
    let steal = *columns.get(7)?;
    Some(Ticks {
        steal,
        total: columns.iter().sum(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_summary_line_and_takes_differences() {
        let earlier = parse("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n")
            .expect("a summary line");
        assert_eq!(
            earlier,
            Ticks {
                steal: 35,
                total: 1000
            }
        );
        let later = parse("cpu  150 0 60 900 10 0 5 75 0 0\n").expect("a summary line");
        let span = later.since(earlier);
        assert_eq!(span.percent(), Some(20.0)); // 40 of 200
        assert_eq!(span.plus(span).percent(), Some(20.0));
        assert_eq!(Ticks::default().percent(), None);
    }

    #[test]
    fn a_line_without_the_steal_column_is_no_reading() {
        assert_eq!(parse("cpu  1 2 3 4\n"), None);
        assert_eq!(parse("intr 5\n"), None);
    }
}
