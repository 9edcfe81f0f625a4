//! `switchboard ls`: the services in this user's registry, each probed.

use serde_json::json;
use switchboard::registry::Registry;

use crate::exit::Failure;

pub(crate) const LS_HELP: &str = "\
Lists the services in this user's registry ($XDG_RUNTIME_DIR/switchboard, or
switchboard-<uid> in the temp directory) with their status, pid and connector kind.
A service is answering when its process is alive and its address accepts a
connection; stale when its server died without removing its entry (the next
server to take the name replaces it). Services file entries are not listed.

Examples:
  switchboard ls
  switchboard ls --json | jq -r '.[] | select(.status == \"answering\") | .name'

Exit codes:
  0  success (also when nothing is registered)
  2  the registry directory is not private to this user, or cannot be read";

pub(crate) async fn ls(as_json: bool) -> Result<(), Failure> {
    let registry = Registry::user()?;
    let entries = registry.list()?;
    let mut rows = Vec::with_capacity(entries.len());
    for entry in &entries {
        rows.push((entry, entry.probe().await));
    }
    if as_json {
        let list: Vec<_> = rows
            .iter()
            .map(|(entry, status)| {
                json!({
                    "name": entry.name(),
                    "status": status.name(),
                    "pid": entry.pid(),
                    "kind": entry.kind(),
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if rows.is_empty() {
        eprintln!(
            "switchboard: no services are registered (in {})",
            registry.dir().display()
        );
        return Ok(());
    }
    let width = rows
        .iter()
        .map(|(entry, _)| entry.name().len())
        .max()
        .unwrap_or(0)
        .max(4);
    println!("{:width$}  {:9}  {:>7}  KIND", "NAME", "STATUS", "PID");
    for (entry, status) in rows {
        println!(
            "{:width$}  {:9}  {:>7}  {}",
            entry.name(),
            status.name(),
            entry.pid(),
            entry.kind()
        );
    }
    Ok(())
}
