//! How results are shown: a number to about three significant digits, and
//! each scenario's unit. Used by the report, the chart and the targets.

use crate::scenarios::{BANDWIDTH, CONNECT, IDLE, PIPELINED, RTT_P50, RTT_P99};

/// Unit and direction of a result key.
pub fn unit(key: &str) -> (&'static str, &'static str) {
    match key {
        RTT_P50 | RTT_P99 => ("us", "lower is better"),
        PIPELINED => ("requests/s", "higher is better"),
        BANDWIDTH => ("GB/s", "higher is better"),
        CONNECT => ("ms", "lower is better"),
        IDLE => ("MiB", "lower is better"),
        _ => ("", ""),
    }
}

/// A number with about three significant digits (thousands separated).
pub fn number(value: f64) -> String {
    if value >= 10_000.0 {
        let digits = format!("{value:.0}");
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(number(312_456.2), "312,456");
        assert_eq!(number(1_000_000.0), "1,000,000");
        assert_eq!(number(123.4), "123");
        assert_eq!(number(23.45), "23.4");
        assert_eq!(number(2.345), "2.35");
        assert_eq!(number(0.1234), "0.123");
    }
}
