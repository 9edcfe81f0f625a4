//! Resolving a name to a connector: the services file first, then the
//! registry.
//!
//! The services file comes first because it is a deliberate, fixed choice
//! of the project (and cheap to read); the registry is what happens to be
//! running. A name the services file does not list is looked up in the
//! registry. Nothing is cached: a client that reconnects by name resolves
//! again, and finds a restarted server's new connector.

use std::path::PathBuf;

use super::{Registry, Services, check_name};
use crate::connector::Connector;
use crate::error::{Error, Result};

/// Where names are looked up. The default: the services file named by
/// `SWITCHBOARD_SERVICES` (if set), then this user's registry.
///
/// ```no_run
/// use switchboard::registry::Lookup;
///
/// let connector = Lookup::default().services_file("services.toml").resolve("life-gen")?;
/// # Ok::<(), switchboard::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Lookup {
    services: Option<PathBuf>,
    registry: Option<Registry>,
}

impl Lookup {
    /// Reads this services file instead of the one `SWITCHBOARD_SERVICES`
    /// names.
    pub fn services_file(mut self, path: impl Into<PathBuf>) -> Lookup {
        self.services = Some(path.into());
        self
    }

    /// Looks in this registry instead of the user's.
    pub fn registry(mut self, registry: Registry) -> Lookup {
        self.registry = Some(registry);
        self
    }

    /// The connector registered or listed under `name`. Fails with
    /// [`Error::NameNotFound`] (saying where it looked) when neither has
    /// it, and with the services file's or the registry's own error when
    /// one of them cannot be read. A registry entry is returned whether or
    /// not its server still answers (connecting tells).
    pub fn resolve(&self, name: &str) -> Result<Connector> {
        check_name(name)?;
        let services = match &self.services {
            Some(path) => Some(Services::load(path)?),
            None => Services::from_env()?,
        };
        let mut looked_in = Vec::new();
        if let Some(services) = &services {
            if let Some(connector) = services.connector(name)? {
                return Ok(connector);
            }
            looked_in.push(format!("the services file {}", services.path().display()));
        }
        let registry = match &self.registry {
            Some(registry) => registry.clone(),
            None => Registry::user()?,
        };
        if let Some(entry) = registry.get(name)? {
            return Ok(entry.connector);
        }
        looked_in.push(format!("the registry {}", registry.dir().display()));
        Err(Error::NameNotFound {
            name: name.to_owned(),
            looked_in: looked_in.join(" and "),
        })
    }
}
