//! `switchboard describe`: what a server offers, from its introspection
//! route `switchboard.describe`.

use serde_json::Value;
use switchboard::Error;

use crate::connect::ConnectArgs;
use crate::endpoint::Endpoint;
use crate::exit::Failure;

/// The introspection route (served by `#[switchboard::service]` servers).
const DESCRIBE_ROUTE: &str = "switchboard.describe";

pub(crate) const DESCRIBE_HELP: &str = "\
Asks the server's switchboard.describe route for its services and prints each
method with its route, argument names and types and what it returns. Every
switchboard server answers that route; it lists the services built with
#[switchboard::service] (a server with none says so on stderr and exits 0).

Examples:
  switchboard describe @calculator
      Calculator
        Calculator.add(a: i64, b: i64) -> i64
        Calculator.log(line: String)  (notification)
  switchboard describe - --json < connector.txt

Exit codes:
  0  success
  1  the server does not describe itself (an older one, without the route), or
     its description is not in the expected shape
  2  bad input: arguments, a malformed or missing connector
  3  could not connect or authenticate
  4  no answer in time";

pub(crate) async fn describe(
    endpoint: &Endpoint,
    as_json: bool,
    connect: ConnectArgs,
) -> Result<(), Failure> {
    let client = connect.connect(endpoint).await?;
    let description: Value =
        client
            .request(DESCRIBE_ROUTE, &Value::Null)
            .await
            .map_err(|error| match error {
                Error::NoSuchRoute { .. } => Failure {
                    code: 1,
                    message: format!(
                        "{} does not describe itself: it has no {DESCRIBE_ROUTE} route",
                        endpoint.label()
                    ),
                },
                other => other.into(),
            })?;
    client.close().await;
    if as_json {
        println!("{description}");
        return Ok(());
    }
    if description["services"]
        .as_array()
        .is_some_and(|services| services.is_empty())
    {
        eprintln!(
            "switchboard: {} describes no services (only #[switchboard::service] routes are described)",
            endpoint.label()
        );
        return Ok(());
    }
    let text = render(&description).map_err(|reason| Failure {
        code: 1,
        message: format!(
            "the description {} sent is not in the expected shape: {reason}",
            endpoint.label()
        ),
    })?;
    print!("{text}");
    Ok(())
}

/// The description as text; `Err` names the part that is missing.
fn render(description: &Value) -> Result<String, String> {
    let services = description
        .get("services")
        .and_then(Value::as_array)
        .ok_or("no \"services\" list")?;
    let mut out = String::new();
    for (i, service) in services.iter().enumerate() {
        let name = service
            .get("name")
            .and_then(Value::as_str)
            .ok_or(format!("service {i} has no \"name\""))?;
        out.push_str(name);
        out.push('\n');
        let methods = service
            .get("methods")
            .and_then(Value::as_array)
            .ok_or(format!("service {name:?} has no \"methods\" list"))?;
        for method in methods {
            out.push_str(&method_line(name, method)?);
            out.push('\n');
        }
    }
    Ok(out)
}

fn method_line(service: &str, method: &Value) -> Result<String, String> {
    let name = method
        .get("name")
        .and_then(Value::as_str)
        .ok_or(format!("a method of {service:?} has no \"name\""))?;
    let route = method
        .get("route")
        .and_then(Value::as_str)
        .map_or_else(|| format!("{service}.{name}"), str::to_owned);
    let params: Vec<String> = method
        .get("params")
        .and_then(Value::as_array)
        .map(|params| {
            params
                .iter()
                .map(|param| {
                    let name = param.get("name").and_then(Value::as_str).unwrap_or("?");
                    let kind = param.get("type").and_then(Value::as_str).unwrap_or("?");
                    format!("{name}: {kind}")
                })
                .collect()
        })
        .unwrap_or_default();
    let returns = method.get("returns").and_then(Value::as_str);
    let kind = method
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("request");
    let mut line = format!("  {route}({})", params.join(", "));
    match (kind, returns) {
        ("notification", _) => line.push_str("  (notification)"),
        ("stream", Some(item)) => line.push_str(&format!(" -> stream of {item}")),
        ("stream", None) => line.push_str(" -> stream"),
        (_, Some(returns)) if returns != "()" => line.push_str(&format!(" -> {returns}")),
        _ => {}
    }
    Ok(line)
}
