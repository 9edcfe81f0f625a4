//! `switchboard call` and `switchboard throw`: one request (its answer
//! printed as JSON, a line per item for a stream) or one notification.

use std::time::Duration;

use serde_json::Value;
use switchboard::Error;

use crate::args::Target;
use crate::connect::ConnectArgs;
use crate::endpoint::read_endpoint;
use crate::exit::{Failure, exit_codes, usage};

pub(crate) const CALL_HELP: &str = concat!(
    "\
Examples:
  switchboard call sb1:eyJr... echo '{\"a\": 1}'      prints {\"a\":1}
  switchboard call @life-gen add '[1, 2]' 
  switchboard call - sleep 5000 --timeout 100 < connector.txt
  switchboard call env:SWITCHBOARD_CONNECTOR fail '\"disk full\"'
  switchboard call @calc Calculator.count '{\"to\": 3}'     prints 1, 2 and 3, one per line

The answer is printed as one line of JSON. A route that answers with a
stream prints one line per item as it arrives; an error after some items
exits with its code after printing them. --timeout then bounds the wait
for each item.

",
    exit_codes!()
);

pub(crate) const THROW_HELP: &str = "\
Examples:
  switchboard throw sb1:eyJr... echo '\"hi\"'
  switchboard throw env:SWITCHBOARD_CONNECTOR log '{\"line\": \"started\"}'

Exit codes:
  0  the notification was sent (nothing comes back, not even an error)
  1  (not used: a notification has no answer)
  2  bad input: arguments, PARAMS that are not JSON, a malformed or missing connector
  3  could not connect or authenticate
  4  (not used: a notification has no timeout)";

/// Sends a request and prints the answer, or each item of a streamed one.
pub(crate) async fn call(
    target: Target,
    params: Option<String>,
    timeout: Option<u64>,
    connect: ConnectArgs,
) -> Result<(), Failure> {
    let endpoint = read_endpoint(&target.connector)?;
    let params = parse_params(params)?;
    let client = connect.connect(&endpoint).await?;
    // Read as a stream: a plain answer is a stream of one, so one
    // way prints both, each item as soon as it arrives.
    let limit = timeout.map(Duration::from_millis);
    let mut items = client
        .request_stream::<_, Value>(&target.route, &params)
        .await?;
    loop {
        let next = match limit {
            Some(limit) => tokio::time::timeout(limit, items.next())
                .await
                .map_err(|_| Error::Timeout(limit))?,
            None => items.next().await,
        };
        let Some(item) = next else { break };
        println!("{}", item?);
    }
    client.close().await;
    Ok(())
}

/// Sends a notification.
pub(crate) async fn throw(
    target: Target,
    params: Option<String>,
    connect: ConnectArgs,
) -> Result<(), Failure> {
    let endpoint = read_endpoint(&target.connector)?;
    let params = parse_params(params)?;
    let client = connect.connect(&endpoint).await?;
    client.throw(&target.route, &params).await?;
    client.close().await;
    Ok(())
}

pub(crate) fn parse_params(params: Option<String>) -> Result<Value, Failure> {
    match params {
        None => Ok(Value::Null),
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| usage(format!("PARAMS is not valid JSON: {e}")))
        }
    }
}
