//! The services file: a TOML file that maps names to connectors for a
//! project with a fixed layout (the way the Python libraries map names to
//! ports), found by an explicit path or the `SWITCHBOARD_SERVICES`
//! environment variable.
//!
//! ```toml
//! # One table per service, under [services].
//! [services.life-gen]
//! tcp = "127.0.0.1:5001"            # or socket = "/run/app/life-gen.sock", or pipe = "life-gen"
//! secret_env = "LIFE_GEN_SECRET"    # or secret_file = "life-gen.secret"
//!
//! [services.engine]
//! socket = "engine.sock"            # relative paths are relative to this file
//! secret_file = "engine.secret"
//! format = "msgpack"                # optional; default: the fastest both sides have
//!
//! [services.open]
//! socket = "/tmp/open.sock"
//! no_secret = true                  # local sockets only: no authentication
//! ```
//!
//! A secret (in its file or variable) is the base64url text of 16 to 64
//! random bytes, for instance from
//! `head -c 32 /dev/urandom | basenc --base64url`. Both the server and its
//! clients read the same entry: the server binds
//! [`Services::connector`], the clients connect by name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::check_name;
use crate::connector::{Connector, Secret};
use crate::error::{Error, Result};
use crate::protocol::format::Format;

/// The environment variable naming the services file that
/// [`Services::from_env`] (and so connecting by name) reads.
pub const SERVICES_ENV_VAR: &str = "SWITCHBOARD_SERVICES";

/// A loaded services file.
#[derive(Clone, Debug)]
pub struct Services {
    path: PathBuf,
    services: BTreeMap<String, Spec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    services: BTreeMap<String, Spec>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    socket: Option<PathBuf>,
    pipe: Option<String>,
    tcp: Option<String>,
    secret_file: Option<PathBuf>,
    secret_env: Option<String>,
    #[serde(default)]
    no_secret: bool,
    format: Option<String>,
}

impl Services {
    /// Reads and checks the services file at `path`. Every service is
    /// checked now (one address, one secret source, a known format); the
    /// secrets themselves are read when a connector is asked for.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("services.toml");
    /// std::fs::write(&path, "[services.calc]\nsocket = \"calc.sock\"\nno_secret = true\n").unwrap();
    /// let services = switchboard::registry::Services::load(&path)?;
    /// let connector = services.connector("calc")?.expect("listed");
    /// assert_eq!(connector.address().kind(), "unix");
    /// # Ok::<(), switchboard::Error>(())
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Services> {
        let path = path.as_ref().to_owned();
        let text = std::fs::read_to_string(&path).map_err(|e| Error::ServicesFile {
            path: path.clone(),
            reason: "the file could not be read".into(),
            source: Some(Box::new(e)),
        })?;
        let file: File = toml::from_str(&text).map_err(|e| Error::ServicesFile {
            path: path.clone(),
            reason: format!("not valid: {}", e.message().trim_end()) + &at_line(&text, &e),
            source: Some(Box::new(e)),
        })?;
        let services = Services {
            path,
            services: file.services,
        };
        for (name, spec) in &services.services {
            services.check(name, spec)?;
        }
        Ok(services)
    }

    /// The file named by [`SERVICES_ENV_VAR`], if that is set.
    pub fn from_env() -> Result<Option<Services>> {
        match std::env::var_os(SERVICES_ENV_VAR) {
            Some(path) if !path.is_empty() => Services::load(PathBuf::from(path)).map(Some),
            _ => Ok(None),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The service names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.services.keys().map(String::as_str)
    }

    /// The connector of the service `name` (`None` if the file does not
    /// list it), with its secret read from its file or variable now.
    pub fn connector(&self, name: &str) -> Result<Option<Connector>> {
        let Some(spec) = self.services.get(name) else {
            return Ok(None);
        };
        let connector = self.address(name, spec)?;
        let connector = match self.secret(name, spec)? {
            Some(secret) => connector.with_secret(secret),
            None => connector.without_secret(),
        };
        match spec.format.as_deref() {
            None => Ok(Some(connector)),
            Some(text) => {
                let format = Format::from_name(text).ok_or_else(|| {
                    self.error(name, format!("format {text:?} is not json or msgpack"))
                })?;
                Ok(Some(connector.with_format(format)))
            }
        }
    }

    fn error(&self, name: &str, reason: String) -> Error {
        Error::ServicesFile {
            path: self.path.clone(),
            reason: format!("service {name:?}: {reason}"),
            source: None,
        }
    }

    fn check(&self, name: &str, spec: &Spec) -> Result<()> {
        check_name(name).map_err(|e| self.error(name, e.to_string()))?;
        let addresses = [
            spec.socket.is_some(),
            spec.pipe.is_some(),
            spec.tcp.is_some(),
        ];
        if addresses.iter().filter(|set| **set).count() != 1 {
            return Err(self.error(
                name,
                "give exactly one of socket = \"PATH\", pipe = \"NAME\", tcp = \"HOST:PORT\""
                    .into(),
            ));
        }
        let secrets = [
            spec.secret_file.is_some(),
            spec.secret_env.is_some(),
            spec.no_secret,
        ];
        if secrets.iter().filter(|set| **set).count() != 1 {
            return Err(self.error(
                name,
                "give exactly one of secret_file = \"PATH\", secret_env = \"VAR\", \
                 no_secret = true"
                    .into(),
            ));
        }
        if spec.no_secret && spec.tcp.is_some() {
            return Err(self.error(
                name,
                "a TCP service needs a secret (secret_file or secret_env): \
                 anyone on the network could connect"
                    .into(),
            ));
        }
        if let Some(format) = &spec.format
            && Format::from_name(format).is_none()
        {
            return Err(self.error(name, format!("format {format:?} is not json or msgpack")));
        }
        self.address(name, spec).map(|_| ())
    }

    fn relative(&self, path: &Path) -> PathBuf {
        match self.path.parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        }
    }

    fn address(&self, name: &str, spec: &Spec) -> Result<Connector> {
        let invalid = |e: Error| self.error(name, e.to_string());
        if let Some(socket) = &spec.socket {
            return Connector::unix_socket(self.relative(socket)).map_err(invalid);
        }
        if let Some(pipe) = &spec.pipe {
            return Connector::named_pipe(pipe.clone()).map_err(invalid);
        }
        let tcp = spec.tcp.as_deref().unwrap_or_default();
        let (host, port) = tcp
            .rsplit_once(':')
            .ok_or_else(|| self.error(name, format!("tcp = {tcp:?} is not HOST:PORT")))?;
        let port = port.parse().map_err(|_| {
            self.error(
                name,
                format!("tcp = {tcp:?}: {port:?} is not a port number"),
            )
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Connector::tcp(host, port).map_err(invalid)
    }

    fn secret(&self, name: &str, spec: &Spec) -> Result<Option<Secret>> {
        let (text, from) = if let Some(file) = &spec.secret_file {
            let file = self.relative(file);
            let text = std::fs::read_to_string(&file).map_err(|e| Error::ServicesFile {
                path: self.path.clone(),
                reason: format!(
                    "service {name:?}: its secret_file {} could not be read",
                    file.display()
                ),
                source: Some(Box::new(e)),
            })?;
            (text, format!("secret_file {}", file.display()))
        } else if let Some(var) = &spec.secret_env {
            let text = std::env::var(var).map_err(|_| {
                self.error(
                    name,
                    format!("secret_env: the environment variable {var} is not set (or not text)"),
                )
            })?;
            (text, format!("secret_env {var}"))
        } else {
            return Ok(None);
        };
        // Never the secret's text in the message, only where it came from.
        let text = text.trim().trim_end_matches('=');
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| {
            self.error(
                name,
                format!("the secret in {from} is not base64url text (letters, digits, '-', '_')"),
            )
        })?;
        Secret::from_bytes(bytes)
            .map(Some)
            .map_err(|reason| self.error(name, format!("the secret in {from}: {reason}")))
    }
}

/// ` (line L, column C)` for a parse error, where the parser knows.
fn at_line(text: &str, error: &toml::de::Error) -> String {
    let Some(span) = error.span() else {
        return String::new();
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!(" (line {line}, column {column})")
}
