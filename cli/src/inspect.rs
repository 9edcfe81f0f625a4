//! `switchboard inspect`: what a connector holds (kind, address,
//! serializer, limits, version), never its secret.

use serde_json::json;
use switchboard::Address;
use switchboard::registry::Lookup;
use switchboard::{Connector, Format};

use crate::endpoint::{Endpoint, read_endpoint};
use crate::exit::Failure;

pub(crate) const INSPECT_HELP: &str = "\
Examples:
  switchboard inspect sb1:eyJr...
  switchboard inspect @echo
  switchboard inspect - --json < connector.txt

Exit codes:
  0  success
  2  bad input: a malformed or missing connector
  3  @NAME: no service registered or listed under that name
  (1 and 4 are not used: inspect never connects)";

/// Resolves the CONNECTOR argument and shows what it holds.
pub(crate) fn inspect(argument: &str, json: bool) -> Result<(), Failure> {
    let connector = match read_endpoint(argument)? {
        Endpoint::Connector(connector) => connector,
        Endpoint::Name(name) => Lookup::default().resolve(&name)?,
    };
    show(&connector, json);
    Ok(())
}

fn show(connector: &Connector, as_json: bool) {
    let (kind, address) = match connector.address() {
        Address::Unix(path) => ("unix", path.display().to_string()),
        Address::Pipe(name) => ("pipe", format!(r"\\.\pipe\{name}")),
        Address::Tcp { host, port } if host.contains(':') => ("tcp", format!("[{host}]:{port}")),
        Address::Tcp { host, port } => ("tcp", format!("{host}:{port}")),
        // The URL shows with its password redacted.
        Address::Amqp { url, service } => ("amqp", format!("{service} at {url}")),
        other => (other.kind(), other.to_string()),
    };
    let secret = connector.secret().map(|_| "<redacted>");
    if as_json {
        let object = json!({
            "kind": kind,
            "address": address,
            "secret": secret,
            "serializer": serializer(connector),
            "max_frame": connector.max_frame(),
            "version": switchboard::connector::STATE_VERSION,
        });
        println!("{object}");
    } else {
        println!("kind:       {kind}");
        println!("address:    {address}");
        println!(
            "secret:     {}",
            secret.unwrap_or("none (no authentication)")
        );
        println!("serializer: {}", serializer(connector));
        println!("max frame:  {} bytes", connector.max_frame());
        println!("version:    {}", switchboard::connector::STATE_VERSION);
    }
}

/// The body format a connector insists on, or `auto` when the handshake
/// settles the fastest both sides have.
fn serializer(connector: &Connector) -> &'static str {
    connector.format().map_or("auto", Format::name)
}
