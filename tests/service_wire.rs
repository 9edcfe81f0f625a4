//! Typed services on the wire: a call is a request with named arguments
//! (so untyped clients, the CLI and Python can call a typed service), names
//! never clash with the generated code, services share a router and call
//! back, a trailing argument keeps old callers working, and every service
//! describes itself; the shutdown call is opt-in.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchboard::{Client, Connector, Context, Error, Format, Router, Server, Service, Shutdown};

mod support;

use support::calculator::{CalculatorClient, CalculatorServer, DivError, calc};

#[switchboard::service]
pub trait Echo {
    async fn echo(&self, text: String) -> String;
}

struct Echoer;

impl Echo for Echoer {
    async fn echo(&self, text: String) -> String {
        text
    }
}

/// Names the generated code also uses, as the user's own.
#[derive(Serialize, Deserialize)]
pub struct Params {
    pub value: i64,
}

#[switchboard::service]
pub trait Names {
    async fn params(&self, params: Params, service: i64, ctx: i64, router: i64) -> i64;
}

struct Adder;

impl Names for Adder {
    async fn params(&self, params: Params, service: i64, ctx: i64, router: i64) -> i64 {
        params.value + service + ctx + router
    }
}

#[tokio::test]
async fn argument_and_type_names_do_not_clash_with_the_generated_code() {
    let router = Router::new().service(NamesServer::new(Adder));
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let names = NamesClient::connect(server.connector()).await.unwrap();
    let sum = names.params(Params { value: 1 }, 2, 3, 4).await.unwrap();
    assert_eq!(sum, 10);
}

#[tokio::test]
async fn several_services_share_a_router_with_plain_routes() {
    let (service, _fixture) = calc();
    let router = Router::new()
        .route("plain", || async { Ok::<_, String>("plain") })
        .service(CalculatorServer::new(service))
        .service(EchoServer::new(Echoer));
    assert_eq!(
        router.route_names(),
        [
            "Calculator.add",
            "Calculator.count",
            "Calculator.div",
            "Calculator.endless",
            "Calculator.hang",
            "Calculator.log",
            "Calculator.whoami",
            "Echo.echo",
            "plain"
        ]
    );
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    let peer = client.peer();
    let calc = CalculatorClient::new(client);
    let echo = EchoClient::from_peer(peer.clone());
    assert_eq!(calc.add(20, 22).await.unwrap(), 42);
    assert_eq!(echo.echo("hi".to_owned()).await.unwrap(), "hi");
    assert_eq!(
        peer.request::<_, String>("plain", &()).await.unwrap(),
        "plain"
    );
}

#[tokio::test]
async fn a_server_calls_a_service_its_client_serves() {
    // The client serves Calculator; the server calls it back, from outside
    // any handler and from inside one (through the handler's Context).
    let (service, mut fixture) = calc();
    let router = Router::new().route("sum_back", |ctx: Context, (a, b): (i64, i64)| async move {
        let calc = CalculatorClient::from_peer(ctx.peer().clone());
        calc.add(a, b).await.map_err(|e| e.to_string())
    });
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::builder(server.connector())
        .id("serving-client")
        .router(Router::new().service(CalculatorServer::new(service)))
        .connect()
        .await
        .unwrap();

    let peer = server.client("serving-client").expect("connected");
    let calc = CalculatorClient::from_peer(peer);
    assert_eq!(calc.add(1, 2).await.unwrap(), 3);
    assert_eq!(calc.div(1, 0).await.unwrap(), Err(DivError::DivideByZero));
    calc.log("to the client".to_owned()).await.unwrap();
    assert_eq!(fixture.logs.recv().await.unwrap(), "to the client");

    let sum: i64 = client.request("sum_back", &(5, 6)).await.unwrap();
    assert_eq!(sum, 11);
}

#[tokio::test]
async fn on_the_wire_a_call_is_a_request_with_named_arguments() {
    let (service, mut fixture) = calc();
    let router = Router::new().service(CalculatorServer::new(service));
    let server = Server::bind(&Connector::local().with_format(Format::Json), router)
        .await
        .unwrap();
    let client = Client::connect(server.connector()).await.unwrap();

    let sum: i64 = client
        .request("Calculator.add", &json!({"a": 1, "b": 2}))
        .await
        .unwrap();
    assert_eq!(sum, 3);
    // The arguments in order are accepted too.
    let sum: i64 = client
        .request("Calculator.add", &json!([1, 2]))
        .await
        .unwrap();
    assert_eq!(sum, 3);
    // Unknown extra fields are ignored (a newer caller, an older server).
    let sum: i64 = client
        .request("Calculator.add", &json!({"a": 1, "b": 2, "c": 3}))
        .await
        .unwrap();
    assert_eq!(sum, 3);
    // A missing one is the caller's fault, and says which.
    match client
        .request::<_, i64>("Calculator.add", &json!({"a": 1}))
        .await
    {
        Err(Error::BadRequest { message }) => {
            assert!(message.contains("Calculator.add"), "{message}");
            assert!(message.contains("missing field `b`"), "{message}");
        }
        other => panic!("expected BadRequest, got {other:?}"),
    }
    // A method without arguments takes any parameters (a CLI sends null).
    let id: String = client.request("Calculator.whoami", &()).await.unwrap();
    assert_eq!(id, client.id());
    client
        .throw("Calculator.log", &json!({"line": "untyped"}))
        .await
        .unwrap();
    assert_eq!(fixture.logs.recv().await.unwrap(), "untyped");
    // The typed error arrives as a handler failure for untyped callers.
    match client
        .request::<_, i64>("Calculator.div", &json!({"a": 1, "b": 0}))
        .await
    {
        Err(Error::HandlerFailed { message, .. }) => {
            assert!(message.contains("DivideByZero"), "{message}")
        }
        other => panic!("expected HandlerFailed, got {other:?}"),
    }
}

/// The same service before and after a trailing argument was added.
// Only v1's client is used here.
#[allow(dead_code)]
mod v1 {
    #[switchboard::service]
    pub trait Greeter {
        async fn greet(&self, name: String) -> String;
    }
}

mod v2 {
    #[switchboard::service]
    pub trait Greeter {
        async fn greet(&self, name: String, #[serde(default)] excited: bool) -> String;
    }

    pub struct Greeting;

    impl Greeter for Greeting {
        async fn greet(&self, name: String, excited: bool) -> String {
            format!("Hello, {name}{}", if excited { "!" } else { "." })
        }
    }
}

#[tokio::test]
async fn a_trailing_argument_with_serde_default_keeps_old_callers_working() {
    let router = Router::new().service(v2::GreeterServer::new(v2::Greeting));
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let old = v1::GreeterClient::connect(server.connector())
        .await
        .unwrap();
    let new = v2::GreeterClient::connect(server.connector())
        .await
        .unwrap();
    assert_eq!(old.greet("old".to_owned()).await.unwrap(), "Hello, old.");
    assert_eq!(
        new.greet("new".to_owned(), true).await.unwrap(),
        "Hello, new!"
    );
}

#[test]
fn every_service_describes_itself() {
    let (service, _fixture) = calc();
    let description = CalculatorServer::new(service).description();
    let request = |name: &str, params: Value, returns: &str| {
        json!({
            "name": name,
            "route": format!("Calculator.{name}"),
            "kind": "request",
            "params": params,
            "returns": returns,
        })
    };
    assert_eq!(
        description,
        json!({
            "name": "Calculator",
            "methods": [
                request("add", json!([{"name": "a", "type": "i64"}, {"name": "b", "type": "i64"}]), "i64"),
                request("div", json!([{"name": "a", "type": "i64"}, {"name": "b", "type": "i64"}]), "Result<i64, DivError>"),
                {
                    "name": "log",
                    "route": "Calculator.log",
                    "kind": "notification",
                    "params": [{"name": "line", "type": "String"}],
                    "returns": "()",
                },
                request("whoami", json!([]), "String"),
                request("hang", json!([]), "()"),
                {
                    "name": "count",
                    "route": "Calculator.count",
                    "kind": "stream",
                    "params": [{"name": "to", "type": "u32"}],
                    "returns": "u32",
                },
                {
                    "name": "endless",
                    "route": "Calculator.endless",
                    "kind": "stream",
                    "params": [],
                    "returns": "u64",
                },
            ],
        })
    );
    assert_eq!(
        Shutdown::new().description()["methods"][0]["route"],
        "switchboard.shutdown"
    );
}

#[tokio::test]
async fn the_describe_route_lists_every_service_on_the_router() {
    let (service, _fixture) = calc();
    let calculator = CalculatorServer::new(service);
    let expected = json!({
        "services": [calculator.description(), EchoServer::new(Echoer).description()],
    });
    let router = Router::new()
        .service(calculator)
        .service(EchoServer::new(Echoer));
    let server = Server::bind(&Connector::local(), router).await.unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    let described: Value = client
        .request(switchboard::DESCRIBE_ROUTE, &())
        .await
        .unwrap();
    assert_eq!(described, expected);
}

#[tokio::test]
async fn the_shutdown_call_is_opt_in() {
    let server = Server::bind(&Connector::local(), Router::new())
        .await
        .unwrap();
    let client = Client::connect(server.connector()).await.unwrap();
    assert!(matches!(
        Shutdown::request(&client.peer()).await,
        Err(Error::NoSuchRoute { .. })
    ));
}
