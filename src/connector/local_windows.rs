//! Windows named pipes through interprocess.

use std::io;

use interprocess::local_socket::tokio::{Listener, Stream, prelude::*};
use interprocess::local_socket::{GenericNamespaced, ListenerOptions, ToNsName};

use super::Address;
use super::link::Link;
use crate::error::{Error, Result};

pub(crate) struct LocalListener {
    listener: Listener,
}

/// A pipe vanishes with its last handle; nothing to remove.
pub(crate) struct Cleanup;

impl LocalListener {
    pub(crate) fn bind(address: &Address, display: &str) -> Result<(LocalListener, Cleanup)> {
        let Address::Pipe(name) = address else {
            return Err(Error::Unsupported(format!(
                "{display} (Unix sockets are not used on Windows; use a pipe connector)"
            )));
        };
        let name = name.as_str().to_ns_name::<GenericNamespaced>()?;
        let listener = ListenerOptions::new()
            .name(name)
            .create_tokio()
            .map_err(|source| match source.kind() {
                io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied => Error::AddrInUse {
                    address: display.to_owned(),
                },
                _ => Error::Bind {
                    address: display.to_owned(),
                    source,
                },
            })?;
        Ok((LocalListener { listener }, Cleanup))
    }

    pub(crate) async fn accept(&self) -> io::Result<Link> {
        Ok(Link::shared(self.listener.accept().await?))
    }
}

pub(crate) async fn connect(address: &Address) -> io::Result<Link> {
    let Address::Pipe(name) = address else {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{address}: Unix sockets are not used on Windows"),
        ));
    };
    let name = name.as_str().to_ns_name::<GenericNamespaced>()?;
    Ok(Link::shared(Stream::connect(name).await?))
}
