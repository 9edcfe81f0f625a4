//! Reporting: the JSON file, the results table (text and Markdown) with
//! ratios against the baselines, and a description of the machine.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::numbers::{number, unit};
use crate::scenarios::{BANDWIDTH, KEYS, Results};
use crate::systems::{Flavor, SYSTEMS};
use crate::targets;

/// The baseline each scenario's ratios are taken against: the raw tokio
/// stream for latency, rate and memory (switchboard's own transport with
/// nothing on top), the blocking Unix socket for bandwidth.
pub fn baseline(key: &str) -> &'static str {
    if key == BANDWIDTH {
        "raw_blocking_uds"
    } else {
        "raw_tokio_local"
    }
}

/// Writes the JSON file: `{scenario: {system: number}}`.
pub fn write_json(results: &Results, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(&results.values)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// `value / baseline` for one system, if both were measured.
pub fn ratio(results: &Results, key: &str, system: &str) -> Option<f64> {
    let base = results.get(key, baseline(key))?;
    Some(results.get(key, system)? / base).filter(|r| r.is_finite())
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), number)
}

/// A ratio as "1.07x" (three decimals below 0.1).
pub fn times(r: f64) -> String {
    if r < 0.1 {
        format!("{r:.3}x")
    } else {
        format!("{r:.2}x")
    }
}

fn ratio_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".into(), times)
}

/// The switchboard columns that get a ratio column in the main table.
const RATIO_COLUMNS: [&str; 4] = [
    "switchboard_local",
    "switchboard_local_json",
    "switchboard_local_msgpack",
    "switchboard_tcp_json",
];

/// Rows of the main table: scenario, unit, one value per system, the
/// baseline's name, then the switchboard ratios.
fn main_rows(results: &Results) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["scenario".to_string(), "unit".into()];
    header.extend(SYSTEMS.iter().map(|s| s.to_string()));
    header.push("baseline".into());
    header.extend(
        RATIO_COLUMNS
            .iter()
            .map(|s| format!("{} ÷ baseline", short(s))),
    );
    let rows = KEYS
        .iter()
        .map(|&key| {
            let mut row = vec![key.to_string(), unit(key).0.to_string()];
            row.extend(SYSTEMS.iter().map(|s| cell(results.get(key, s))));
            row.push(baseline(key).to_string());
            row.extend(
                RATIO_COLUMNS
                    .iter()
                    .map(|s| ratio_cell(ratio(results, key, s))),
            );
            row
        })
        .collect();
    (header, rows)
}

/// Rows of the ratio table: every system ÷ the scenario's baseline.
fn ratio_rows(results: &Results) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["scenario".to_string(), "baseline".into()];
    header.extend(SYSTEMS.iter().map(|s| s.to_string()));
    let rows = KEYS
        .iter()
        .map(|&key| {
            let mut row = vec![key.to_string(), baseline(key).to_string()];
            row.extend(SYSTEMS.iter().map(|s| ratio_cell(ratio(results, key, s))));
            row
        })
        .collect();
    (header, rows)
}

fn short(system: &str) -> &str {
    system.strip_prefix("switchboard_").unwrap_or(system)
}

/// A table as aligned plain text, transposed (one line per system) so it
/// fits a terminal.
fn text_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut lines: Vec<Vec<String>> = (0..header.len())
        .map(|col| {
            let mut line = vec![header[col].clone()];
            line.extend(rows.iter().map(|row| row[col].clone()));
            line
        })
        .collect();
    lines.retain(|line| line[0] != "unit");
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in &lines {
        for (c, text) in line.iter().enumerate() {
            let pad = widths[c] - text.chars().count();
            if c == 0 {
                let _ = write!(out, "{text}{}", " ".repeat(pad + 2));
            } else {
                let _ = write!(out, "{}{text}  ", " ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

fn markdown_table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        header
            .iter()
            .enumerate()
            .map(|(i, _)| if i < 2 { "---" } else { "---:" })
            .collect::<Vec<_>>()
            .join("|")
    );
    for row in rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

/// The results as plain text (values, then ratios).
pub fn text(results: &Results) -> String {
    let (h, r) = main_rows(results);
    let (rh, rr) = ratio_rows(results);
    format!(
        "{}\nratios (value ÷ baseline):\n{}",
        text_table(&h, &r),
        text_table(&rh, &rr)
    )
}

/// Facts about the machine and toolchain, as (name, value) pairs.
pub fn machine(python: Option<String>) -> Vec<(&'static str, String)> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mut facts = vec![
        ("switchboard", commit()),
        ("cores (nproc)", cores.to_string()),
        ("CPU model", model),
        ("kernel", kernel),
        ("rustc", rustc),
    ];
    if let Some(python) = python {
        facts.push(("python / communica", python));
    }
    facts
}

/// The library's commit ("abc1234 subject"), noting uncommitted changes
/// under src/.
fn commit() -> String {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(&workspace)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["log", "-1", "--format=commit %h (%s)"]) {
        Some(commit)
            if git(&["status", "--porcelain", "--", "src"]).is_some_and(|s| !s.is_empty()) =>
        {
            format!("{commit}, with uncommitted changes in src/")
        }
        Some(commit) => commit,
        None => "unknown commit".into(),
    }
}

/// Everything a run found, as the Markdown that goes into BENCHMARKS.md.
pub fn markdown(
    results: &Results,
    flavor: Flavor,
    facts: &[(&'static str, String)],
    settings: &[String],
    chart: Option<&str>,
) -> String {
    let mut out = String::new();
    out.push_str("### Machine\n\n");
    for (name, value) in facts {
        let _ = writeln!(out, "- {name}: {value}");
    }
    out.push_str("\n### Run\n\n");
    for line in settings {
        let _ = writeln!(out, "- {line}");
    }
    out.push_str("\n### Results\n\n");
    let (h, r) = main_rows(results);
    out.push_str(&markdown_table(&h, &r));
    out.push_str("\nEvery system ÷ the scenario's baseline (for latency and memory, below 1 is better; for rates, above 1):\n\n");
    let (h, r) = ratio_rows(results);
    out.push_str(&markdown_table(&h, &r));
    if let Some(chart) = chart {
        let _ = writeln!(out, "\n![benchmark chart]({chart})");
    }
    out.push_str("\n### Targets\n\n| target | result | numbers |\n|---|---|---|\n");
    for (target, status, detail) in targets::check_all(results, flavor) {
        let _ = writeln!(out, "| `{target}` | **{status}** | {detail} |");
    }
    if !results.absent.is_empty() {
        out.push_str("\n### Absent\n\n");
        for (key, system, reason) in &results.absent {
            let _ = writeln!(out, "- {system} in {key}: {reason}");
        }
    }
    out
}

/// Markers in BENCHMARKS.md between which the generated results go, for
/// runs on the current-thread runtime...
pub const BEGIN: &str = "<!-- results:begin (generated by switchboard-bench --markdown) -->";
pub const END: &str = "<!-- results:end -->";
/// ...and on the multi-thread runtime.
pub const BEGIN_MULTI: &str =
    "<!-- results-multi:begin (generated by switchboard-bench --markdown --runtime multi) -->";
pub const END_MULTI: &str = "<!-- results-multi:end -->";

/// Writes the Markdown: between the markers of `flavor` if `path` has
/// them, else as the whole file.
pub fn write_markdown(path: &Path, generated: &str, flavor: Flavor) -> Result<()> {
    let (begin_marker, end_marker) = match flavor {
        Flavor::Current => (BEGIN, END),
        Flavor::Multi => (BEGIN_MULTI, END_MULTI),
    };
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let text = match (existing.find(begin_marker), existing.find(end_marker)) {
        (Some(begin), Some(end)) if begin < end => format!(
            "{}{begin_marker}\n\n{generated}\n{}",
            &existing[..begin],
            &existing[end..]
        ),
        _ => format!("{begin_marker}\n\n{generated}\n{end_marker}\n"),
    };
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_goes_between_markers() {
        let dir = std::env::temp_dir().join(format!("sbbench-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("B.md");
        let both = format!("intro\n{BEGIN}\nold\n{END}\n{BEGIN_MULTI}\nold\n{END_MULTI}\n");
        std::fs::write(&path, &both).unwrap();
        write_markdown(&path, "new", Flavor::Current).unwrap();
        write_markdown(&path, "newer", Flavor::Multi).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected =
            format!("intro\n{BEGIN}\n\nnew\n{END}\n{BEGIN_MULTI}\n\nnewer\n{END_MULTI}\n");
        assert_eq!(text, expected);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
