//! Services found by name, with real processes: register, find, list,
//! a stale entry left by SIGKILL replaced, two live servers refused, a
//! registry directory another user owns refused, the services file, and
//! the order of the lookup.

mod support;

use std::time::Duration;

use switchboard::registry::{Liveness, Lookup, Registry, SERVICES_ENV_VAR, Services};
use switchboard::{Client, Connector, Error, Router, Server};

use support::{NamedServer, child};

/// Not a test: the body of the child processes. Without `SB_TEST_CHILD`
/// it returns at once.
#[test]
fn child_process_entry() {
    support::child_entry();
}

fn registry() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::at(dir.path().join("registry")).unwrap();
    (dir, registry)
}

fn named(name: &str, registry: &Registry) -> switchboard::ClientBuilder {
    Client::builder_named(name)
        .lookup(Lookup::default().registry(registry.clone()))
        .connect_timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn a_named_server_is_listed_found_and_removed_on_shutdown() {
    let (_dir, registry) = registry();
    let server = Server::builder(support::router())
        .name("calc")
        .registry(registry.clone())
        .bind(&Connector::local())
        .await
        .unwrap();
    assert_eq!(server.name(), Some("calc"));

    let entries = registry.list().unwrap();
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.name(), "calc");
    assert_eq!(entry.pid(), std::process::id());
    assert_eq!(entry.kind(), Connector::local().address().kind());
    assert_eq!(entry.connector(), server.connector());
    assert_eq!(entry.probe().await, Liveness::Answering);
    // The entry holds the secret: only its owner may read it.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let file = registry.dir().join("calc.json");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(registry.dir())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    let client = named("calc", &registry).connect().await.unwrap();
    let pid: u32 = client.request("pid", &()).await.unwrap();
    assert_eq!(pid, std::process::id());
    client.close().await;

    server.shutdown().await;
    assert!(registry.list().unwrap().is_empty());
    assert!(registry.get("calc").unwrap().is_none());
}

#[tokio::test]
async fn dropping_a_named_server_removes_its_entry() {
    let (_dir, registry) = registry();
    let server = Server::builder(Router::new())
        .name("dropped")
        .registry(registry.clone())
        .bind(&Connector::local())
        .await
        .unwrap();
    assert!(registry.get("dropped").unwrap().is_some());
    drop(server);
    assert!(registry.get("dropped").unwrap().is_none());
}

#[tokio::test]
async fn a_second_live_server_under_the_same_name_is_refused_with_the_first_ones_pid() {
    let (_dir, registry) = registry();
    let first = NamedServer::start(registry.dir(), "solo");
    let second = Server::builder(Router::new())
        .name("solo")
        .registry(registry.clone())
        .bind(&Connector::local())
        .await;
    match second {
        Err(ref error @ Error::NameInUse { ref name, pid, .. }) => {
            assert_eq!(name, "solo");
            assert_eq!(pid, first.pid);
            assert!(
                error.to_string().contains(&first.pid.to_string()),
                "{error}"
            );
        }
        other => panic!("expected NameInUse, got {other:?}"),
    }
    // The first keeps its entry and its clients.
    let client = named("solo", &registry).connect().await.unwrap();
    assert_eq!(
        client.request::<_, u32>("pid", &()).await.unwrap(),
        first.pid
    );
}

#[tokio::test]
async fn an_entry_left_by_a_killed_server_is_stale_and_replaced() {
    let (_dir, registry) = registry();
    let mut first = NamedServer::start(registry.dir(), "phoenix");
    first.kill();
    let stale = registry
        .get("phoenix")
        .unwrap()
        .expect("SIGKILL leaves the entry");
    assert_eq!(stale.pid(), first.pid);
    assert_eq!(stale.probe().await, Liveness::Stale);

    let second = NamedServer::start(registry.dir(), "phoenix");
    let entry = registry.get("phoenix").unwrap().unwrap();
    assert_eq!(entry.pid(), second.pid);
    assert_eq!(entry.probe().await, Liveness::Answering);
    let client = named("phoenix", &registry).connect().await.unwrap();
    assert_eq!(
        client.request::<_, u32>("pid", &()).await.unwrap(),
        second.pid
    );
}

#[tokio::test]
async fn a_name_that_is_not_registered_is_reported_with_where_it_was_looked_for() {
    let (_dir, registry) = registry();
    let error = named("nobody-here", &registry)
        .connect_timeout(Duration::from_millis(50))
        .connect()
        .await
        .unwrap_err();
    match &error {
        Error::NameNotFound { name, looked_in } => {
            assert_eq!(name, "nobody-here");
            assert!(
                looked_in.contains(&registry.dir().display().to_string()),
                "{looked_in}"
            );
        }
        other => panic!("expected NameNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn names_that_could_leave_the_registry_directory_are_refused() {
    let (_dir, registry) = registry();
    for bad in ["../escape", "a/b", ".hidden", ""] {
        let result = Server::builder(Router::new())
            .name(bad)
            .registry(registry.clone())
            .bind(&Connector::local())
            .await;
        assert!(
            matches!(
                result,
                Err(Error::InvalidArgument {
                    what: "service name",
                    ..
                })
            ),
            "{bad:?}: {result:?}"
        );
    }
    assert!(std::fs::read_dir(registry.dir()).unwrap().next().is_none());
}

#[cfg(unix)]
#[test]
fn a_registry_directory_open_to_others_or_a_symlink_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let error = Registry::at(&open).unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, Error::Registry { .. }), "{error:?}");
    assert!(
        text.contains(&open.display().to_string()) && text.contains("755"),
        "{text}"
    );

    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    let text = Registry::at(&link).unwrap_err().to_string();
    assert!(text.contains("symbolic link"), "{text}");
}

#[cfg(unix)]
#[test]
fn a_registry_directory_another_user_created_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: needs root to create a directory owned by another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("switchboard-0");
    std::fs::create_dir(&foreign).unwrap();
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(
        &foreign,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let error = Registry::at(&foreign).unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&foreign.display().to_string()), "{text}");
    assert!(text.contains("belongs to user 65534"), "{text}");

    // The same directory as the default one, found through TMPDIR.
    let output = child("user-registry")
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    let said = support::said(&output.stdout);
    assert!(
        said.contains("error:") && said.contains("belongs to user 65534"),
        "{said}"
    );
}

#[cfg(unix)]
#[test]
fn the_user_registry_is_under_xdg_runtime_dir_else_the_temp_dir() {
    let dir = tempfile::tempdir().unwrap();
    let output = child("user-registry")
        .env("XDG_RUNTIME_DIR", dir.path())
        .output()
        .unwrap();
    let said = support::said(&output.stdout);
    assert_eq!(
        said.trim(),
        dir.path().join("switchboard").display().to_string()
    );

    let output = child("user-registry")
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", dir.path())
        .output()
        .unwrap();
    let said = support::said(&output.stdout);
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let expected = dir.path().join(format!("switchboard-{uid}"));
    assert_eq!(said.trim(), expected.display().to_string());
    assert!(expected.is_dir());
}

fn secret_text() -> String {
    use base64::Engine;
    let secret = switchboard::Secret::generate();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.expose())
}

#[cfg(unix)]
#[tokio::test]
async fn a_services_file_maps_a_name_to_a_socket_and_a_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("engine.secret"), secret_text() + "\n").unwrap();
    let path = dir.path().join("services.toml");
    std::fs::write(
        &path,
        "[services.engine]\nsocket = \"engine.sock\"\nsecret_file = \"engine.secret\"\n",
    )
    .unwrap();
    let services = Services::load(&path).unwrap();
    assert_eq!(services.names().collect::<Vec<_>>(), ["engine"]);
    let connector = services.connector("engine").unwrap().unwrap();
    assert_eq!(
        connector.address(),
        &switchboard::Address::Unix(dir.path().join("engine.sock"))
    );
    let server = Server::bind(&connector, support::router()).await.unwrap();

    // Listed in the services file: the registry is not consulted (here it
    // has a different server under the same name).
    let (_registry_dir, registry) = registry();
    let _other = Server::builder(Router::new())
        .name("engine")
        .registry(registry.clone())
        .bind(&Connector::local())
        .await
        .unwrap();
    let lookup = Lookup::default().services_file(&path).registry(registry);
    let client = Client::builder_named("engine")
        .lookup(lookup.clone())
        .connect()
        .await
        .unwrap();
    assert_eq!(
        client.request::<_, u32>("pid", &()).await.unwrap(),
        std::process::id()
    );
    assert!(client.request::<_, String>("whoami", &()).await.is_ok());
    client.close().await;
    drop(server);
}

#[test]
fn the_services_file_can_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.toml");
    std::fs::write(
        &path,
        "[services.life-gen]\ntcp = \"127.0.0.1:5001\"\nsecret_env = \"LIFE_GEN_SECRET\"\n",
    )
    .unwrap();
    let output = child("services-from-env")
        .env(SERVICES_ENV_VAR, &path)
        .env("LIFE_GEN_SECRET", secret_text())
        .output()
        .unwrap();
    let said = support::said(&output.stdout);
    assert!(said.contains("tcp:127.0.0.1:5001"), "{said}");
}

#[test]
fn services_file_mistakes_name_the_service_and_the_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("services.toml");
    let cases = [
        (
            "[services.a]\nsocket = \"a.sock\"\n",
            "exactly one of secret_file",
        ),
        (
            "[services.a]\ntcp = \"127.0.0.1:1\"\nno_secret = true\n",
            "needs a secret",
        ),
        (
            "[services.a]\nsocket = \"a.sock\"\ntcp = \"h:1\"\nno_secret = true\n",
            "exactly one of socket",
        ),
        (
            "[services.a]\ntcp = \"nope\"\nsecret_env = \"X\"\n",
            "not HOST:PORT",
        ),
        (
            "[services.a]\nsocket = \"a\"\nno_secret = true\nformat = \"xml\"\n",
            "xml",
        ),
        (
            "[services.\"a/b\"]\nsocket = \"a\"\nno_secret = true\n",
            "path separator",
        ),
        ("[services.a]\nsockt = \"a\"\n", "line 2"),
        ("[services.a\n", "line 1"),
    ];
    for (text, expected) in cases {
        std::fs::write(&path, text).unwrap();
        let error = Services::load(&path).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, Error::ServicesFile { .. }), "{error:?}");
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains(expected), "{text:?}: {message}");
    }
    // A secret that is missing or malformed is found when asked for, and
    // never echoed.
    std::fs::write(
        &path,
        "[services.a]\nsocket = \"a\"\nsecret_env = \"SB_TEST_UNSET_VAR\"\n",
    )
    .unwrap();
    let message = Services::load(&path)
        .unwrap()
        .connector("a")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("SB_TEST_UNSET_VAR is not set"),
        "{message}"
    );
    std::fs::write(dir.path().join("s"), "c2hvcnQ").unwrap();
    std::fs::write(&path, "[services.a]\nsocket = \"a\"\nsecret_file = \"s\"\n").unwrap();
    let message = Services::load(&path)
        .unwrap()
        .connector("a")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("16 to 64 bytes") && !message.contains("c2hvcnQ"),
        "{message}"
    );
}

#[tokio::test]
async fn files_that_are_not_entries_are_skipped_by_list_and_replaced_by_a_claim() {
    let (_dir, registry) = registry();
    std::fs::write(registry.dir().join("garbled.json"), "{not json").unwrap();
    std::fs::write(registry.dir().join("notes.txt"), "hello").unwrap();
    assert!(registry.list().unwrap().is_empty());
    let error = registry.get("garbled").unwrap_err();
    assert!(matches!(error, Error::Registry { .. }), "{error:?}");
    assert!(error.to_string().contains("garbled.json"), "{error}");

    let server = Server::builder(Router::new())
        .name("garbled")
        .registry(registry.clone())
        .bind(&Connector::local())
        .await
        .unwrap();
    let entry = registry.get("garbled").unwrap().unwrap();
    assert_eq!(entry.connector(), server.connector());
    // Debug and Display never show the secret.
    let debug = format!("{entry:?}");
    assert!(debug.contains("<redacted>"), "{debug}");
    assert!(!debug.contains(&server.connector().dump_state()), "{debug}");
}
