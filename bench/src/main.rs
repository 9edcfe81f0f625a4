//! switchboard-bench: measures switchboard against raw sockets, tarpc,
//! ipc-channel and communica, with client and server in separate processes.
//!
//! `switchboard-bench [--quick] [--json FILE] [--chart PNG] [--markdown MD]`
//! runs every scenario on every system (see BENCHMARKS.md for the method).
//! `switchboard-bench serve SYSTEM` is the server side, which the harness
//! starts itself.
//!
//! Modules: [`systems`] (one per system: server and client session),
//! [`scenarios`] (warm-up, batches, interleaved rounds), [`stats`]
//! (percentiles), [`procs`] (child processes, RSS, fd limit), [`report`]
//! (JSON, tables, Markdown), [`targets`] (PASS/MISS) and [`chart`] (the
//! PNG).

mod chart;
mod numbers;
mod procs;
mod report;
mod scenarios;
mod stats;
mod steal;
mod systems;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use scenarios::{Entry, Plan, Results, Scenario};
use systems::{Flavor, Options, SYSTEMS};

#[derive(Parser)]
#[command(
    version,
    about = "Benchmarks switchboard against other IPC systems, client and server in separate processes."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Internal>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand)]
enum Internal {
    /// The server side of SYSTEM (started by the harness itself): prints its
    /// address on stdout and serves until stdin closes.
    #[command(hide = true)]
    Serve {
        system: String,
        #[arg(long, value_enum, default_value = "current")]
        runtime: Flavor,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Fewer rounds and shorter batches: about 1.5 minutes on two cores
    /// (the full run takes about 5).
    #[arg(long)]
    quick: bool,
    /// Write results here: {scenario: {system: number}}.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw the chart here (PNG).
    #[arg(long, value_name = "PNG")]
    chart: Option<PathBuf>,
    /// Write the results as Markdown here; a file with the results markers
    /// (like BENCHMARKS.md) has only the part between them replaced.
    #[arg(long, value_name = "MD")]
    markdown: Option<PathBuf>,
    /// Only these systems (comma-separated): raw_blocking_uds,
    /// raw_tokio_local, raw_poll_uds, raw_spin_shm, memcpy, switchboard_local,
    /// switchboard_local_loan, switchboard_local_json, switchboard_local_msgpack,
    /// switchboard_shm, iceoryx2_rr,
    /// switchboard_tcp_json, switchboard_blocking, tarpc_uds, ipc_channel,
    /// communica, switchboard_python, mp_connection, raw_amqp,
    /// switchboard_amqp, communica_rmq.
    #[arg(long, value_delimiter = ',', value_name = "SYSTEM,...")]
    systems: Vec<String>,
    /// Only these scenarios (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SCENARIO,...")]
    scenarios: Vec<Scenario>,
    /// Tokio runtime of the tokio-based systems, in both processes.
    #[arg(long, value_enum, default_value = "current")]
    runtime: Flavor,
    /// communica's virtual environment [default: TARGET_DIR/communica-venv].
    #[arg(long, value_name = "DIR")]
    venv: Option<PathBuf>,
}

fn main() -> ExitCode {
    procs::raise_nofile_limit();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Internal::Serve { system, runtime }) => systems::serve(&system, runtime),
        None => run(cli.run),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchboard-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The target directory this binary was built in (`<target>/release/..`).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent()
        .and_then(|profile| profile.parent())
        .map(PathBuf::from)
        .context("locating the target directory")
}

fn run(args: RunArgs) -> Result<()> {
    let started = Instant::now();
    let plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    let systems: Vec<&'static str> = if args.systems.is_empty() {
        SYSTEMS.to_vec()
    } else {
        let mut chosen = Vec::new();
        for name in &args.systems {
            match SYSTEMS.iter().find(|s| **s == name) {
                Some(s) => chosen.push(*s),
                None => bail!("unknown system {name:?}; known: {}", SYSTEMS.join(", ")),
            }
        }
        chosen
    };
    let mut selected = if args.scenarios.is_empty() {
        vec![
            Scenario::Rtt,
            Scenario::Pipelined,
            Scenario::Bandwidth,
            Scenario::Connect,
            Scenario::Idle,
            Scenario::Sizes,
        ]
    } else {
        args.scenarios.clone()
    };
    selected.sort();
    selected.dedup();
    let options = Options {
        flavor: args.runtime,
        venv: match args.venv {
            Some(dir) => dir,
            None => target_dir()?.join("communica-venv"),
        },
    };

    let python = systems
        .contains(&"communica")
        .then(|| match systems::prepare_venv(&options.venv) {
            Ok(_) => systems::describe_python(&options.venv),
            Err(e) => {
                println!("communica: {e:#}");
                None
            }
        })
        .flatten();
    let facts = report::machine(python);
    let runtime = match options.flavor {
        Flavor::Current => "tokio current_thread runtime in both processes",
        Flavor::Multi => "tokio multi_thread runtime (2 workers) in both processes",
    };
    println!("switchboard-bench");
    for (name, value) in &facts {
        println!("  {name}: {value}");
    }
    println!("  {}", plan.describe());
    println!("  tokio-based systems: {runtime}");

    let mut results = Results::default();
    let mut entries = Vec::new();
    println!("\nstarting servers and connecting");
    for &system in &systems {
        match systems::open(system, &options) {
            Ok(session) => entries.push(Entry {
                name: system,
                session,
            }),
            Err(e) => {
                for key in selected.iter().flat_map(|s| s.keys()) {
                    results.absent(key, system, format!("could not start: {e:#}"));
                }
            }
        }
    }
    // The idle scenario starts servers of its own, for the systems that started.
    let startable: Vec<&'static str> = entries.iter().map(|e| e.name).collect();
    scenarios::run(&mut entries, &plan, &selected, &mut results);
    drop(entries);
    if selected.contains(&Scenario::Idle) {
        let idle_started = Instant::now();
        scenarios::idle(&startable, &options, &mut results);
        println!("  ({:.1} s)", idle_started.elapsed().as_secs_f64());
    }
    let took = started.elapsed();

    println!("\n== results ==\n{}", report::text(&results));
    println!("== targets ==");
    for (target, status, detail) in targets::check_all(&results, options.flavor) {
        println!("  {status:<4}  {target:<68} {detail}");
    }
    println!("\nran in {:.0} s ({} mode)", took.as_secs_f64(), plan.name);

    if let Some(path) = &args.json {
        report::write_json(&results, path)?;
        println!("wrote {}", path.display());
    }
    let mut chart_link = None;
    if let Some(path) = &args.chart {
        let flavor = match options.flavor {
            Flavor::Current => "current_thread",
            Flavor::Multi => "multi_thread",
        };
        let title = format!(
            "switchboard-bench, {} run, tokio {flavor}: bars are absolute values; labels: value (value ÷ baseline)",
            plan.name
        );
        match chart::draw(&results, path, &title) {
            Ok(()) => {
                println!("wrote {}", path.display());
                chart_link = Some(chart_path_for_markdown(path, args.markdown.as_deref()));
            }
            Err(e) => println!("chart skipped: {e:#}"),
        }
    }
    if let Some(path) = &args.markdown {
        let settings = vec![
            plan.describe(),
            format!("tokio-based systems: {runtime}"),
            format!("the whole run took {:.0} s", took.as_secs_f64()),
        ];
        let text = report::markdown(
            &results,
            options.flavor,
            &facts,
            &settings,
            chart_link.as_deref(),
        );
        report::write_markdown(path, &text, options.flavor)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// The chart's path as a Markdown link relative to the Markdown file.
fn chart_path_for_markdown(chart: &std::path::Path, markdown: Option<&std::path::Path>) -> String {
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    let chart = absolute(chart);
    markdown
        .map(absolute)
        .and_then(|md| md.parent().map(PathBuf::from))
        .and_then(|dir| chart.strip_prefix(dir).ok().map(PathBuf::from))
        .unwrap_or(chart)
        .display()
        .to_string()
}
