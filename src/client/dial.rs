//! Reaching a server: resolving the target (a connector, or a name looked
//! up again on every attempt), connecting the link with retries while the
//! server is not up yet, and the handshake.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Resumption;
use crate::config::Config;
use crate::connector::{self, Connector, Format, Link, random_bytes};
use crate::error::{Error, Result};
use crate::peer::{Connection, Inbound, Settings};
use crate::protocol::handshake;
use crate::registry::Lookup;
use crate::ring_switch::{self, Side};
use crate::transport::{FrameReader, FrameWriter};

/// What a client connects to.
#[derive(Clone, Debug)]
pub(crate) enum Target {
    Connector(Connector),
    Name { name: String, lookup: Lookup },
}

impl Target {
    fn resolve(&self) -> Result<Connector> {
        match self {
            Target::Connector(connector) => Ok(connector.clone()),
            Target::Name { name, lookup } => lookup.resolve(name),
        }
    }
}

/// Everything needed to open a connection as one client, again and again.
pub(super) struct Dialer {
    pub(super) target: Target,
    pub(super) id: String,
    pub(super) router: Arc<dyn Inbound>,
    pub(super) config: Config,
    /// Insists on this body format, whatever the connector says.
    pub(super) format: Option<Format>,
}

impl Dialer {
    fn resolve(&self) -> Result<Connector> {
        let connector = self.target.resolve()?;
        if let connector::Address::Inherited { serve: true, .. } = connector.address() {
            return Err(Error::InvalidArgument {
                what: "connector",
                reason: format!(
                    "{} is an inherited channel for this process to serve on: its parent \
                     is the client, so no client can connect with it. Serve it with \
                     Server::bind(&connector, router) (or blocking::Server::bind)",
                    connector.address()
                ),
            });
        }
        Ok(match self.format {
            Some(format) => connector.with_format(format),
            None => connector,
        })
    }

    /// True when the target can be connected only once (an inherited
    /// channel), so a dropped link is final.
    pub(super) fn connects_once(&self) -> bool {
        matches!(
            &self.target,
            Target::Connector(connector)
                if matches!(connector.address(), connector::Address::Inherited { .. })
        )
    }

    /// Connects, retrying while the server is not up yet (nothing listens,
    /// the name is not registered) until `deadline`, then authenticates.
    pub(super) async fn dial_until(
        &self,
        token: Option<&[u8]>,
        deadline: Instant,
        waited: Duration,
    ) -> Result<(Connection, Resumption)> {
        let mut delay = Duration::from_millis(2);
        // The last "not up yet" answer: when the deadline cuts the attempt
        // in flight, the caller learns why the earlier ones failed (no
        // instance holds the secret, nothing listens), not just that time
        // ran out.
        let mut last_answer: Option<io::Error> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let error = match self.resolve() {
                Ok(connector) => match connect_or_refused(&connector, remaining).await {
                    Ok(Ok(link)) => {
                        let limit = self.config.handshake_timeout;
                        return self.start(link, &connector, token, limit).await;
                    }
                    Ok(Err(refused)) => return Err(refused),
                    Err(error) if retryable(&error) && Instant::now() + delay < deadline => {
                        last_answer = Some(error);
                        None
                    }
                    Err(error) => {
                        let error = match last_answer.take() {
                            Some(answer) if cut_by_deadline(&error, deadline) => answer,
                            _ => error,
                        };
                        let source = if retryable(&error) {
                            io::Error::new(
                                error.kind(),
                                format!("{error} (kept trying for {waited:?}: no server answered)"),
                            )
                        } else {
                            error
                        };
                        return Err(Error::Connect {
                            address: connector.address().to_string(),
                            source,
                        });
                    }
                },
                // Not registered yet: a server started alongside may
                // register in a moment.
                Err(error @ Error::NameNotFound { .. }) => Some(error),
                Err(error) => return Err(error),
            };
            if let Some(error) = error
                && Instant::now() + delay >= deadline
            {
                return Err(error);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(100));
        }
    }

    /// One attempt: resolve, connect within `limit`, authenticate.
    pub(super) async fn dial_once(
        &self,
        token: Option<&[u8]>,
        limit: Duration,
    ) -> Result<(Connection, Resumption)> {
        let connector = self.resolve()?;
        connector.check_shm_ring()?;
        let link = connect_or_refused(&connector, limit)
            .await
            .map_err(|source| Error::Connect {
                address: connector.address().to_string(),
                source,
            })??;
        self.start(link, &connector, token, self.config.handshake_timeout)
            .await
    }

    /// Authenticates on `link` within `limit`, and starts the connection.
    pub(super) async fn start(
        &self,
        link: Link,
        connector: &Connector,
        token: Option<&[u8]>,
        limit: Duration,
    ) -> Result<(Connection, Resumption)> {
        let (peer_pid, peer_uid) = (link.peer_pid, link.peer_uid);
        // Off Unix the socket type is uninhabited, and so `Copy`.
        #[allow(clippy::clone_on_copy)]
        let socket = link.unix_socket.clone();
        let (reader, writer, settled) =
            authenticate(link, connector, &self.id, &self.config, token, limit).await?;
        let (reader, writer) = ring_switch::switch(
            Side::Client,
            settled.ring,
            socket,
            reader,
            writer,
            self.config.ring_spin,
        )
        .await?;
        let connection = Connection::start(
            reader,
            writer,
            Settings {
                transport: connector.address().kind(),
                client_id: self.id.clone(),
                peer_pid,
                peer_uid,
                format: settled.format,
                max_frame: connector.max_frame(),
                config: self.config.clone(),
                peer_window: settled.peer_window,
                report: None,
                shm: settled.shm,
                ring: settled.ring.is_some(),
            },
            Arc::clone(&self.router),
        );
        let resumption = Resumption {
            id: self.id.clone(),
            token: settled.token,
        };
        Ok((connection, resumption))
    }
}

async fn authenticate(
    link: Link,
    connector: &Connector,
    id: &str,
    config: &Config,
    token: Option<&[u8]>,
    limit: Duration,
) -> Result<(FrameReader, FrameWriter, handshake::Settled)> {
    let descriptors = link.descriptors;
    let mut reader = FrameReader::new(link.reader, connector.max_frame());
    let mut writer = FrameWriter::new(link.writer);
    let handshake = handshake::client(
        &mut reader,
        &mut writer,
        connector,
        id,
        config.window(),
        token,
        handshake::Offer::new(descriptors.as_ref(), config.shared_memory),
    );
    let settled = tokio::time::timeout(limit, handshake).await.map_err(|_| {
        Error::Protocol(format!(
            "the server did not finish the handshake within {limit:?}"
        ))
    })??;
    Ok((reader, writer, settled))
}

/// Completes a handshake on `link` as a throwaway client and hangs up, so
/// a registry probe looks to the server like any short-lived client.
pub(crate) async fn probe_handshake(link: Link, connector: &Connector) {
    let config = Config {
        handshake_timeout: Duration::from_secs(2),
        // A probe hangs up at once: no pool to set up.
        shared_memory: None,
        ..Config::default()
    };
    let id = format!("probe-{}", hex(&random_bytes::<8>()));
    let limit = config.handshake_timeout;
    if let Err(e) = authenticate(link, connector, &id, &config, None, limit).await {
        tracing::debug!(error = %e, "registry probe: the handshake failed");
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn connect_link(connector: &Connector, limit: Duration) -> io::Result<Link> {
    match tokio::time::timeout(
        limit.max(Duration::from_millis(1)),
        connector::connect(connector),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, CutShort)),
    }
}

/// A link that authenticates its own connect step (AMQP) reports a
/// refusal as an I/O error carrying [`Error::AuthFailed`]: that error, as
/// on every other transport. Anything else comes back unchanged.
fn auth_failure(error: io::Error) -> std::result::Result<Error, io::Error> {
    let carries_auth_failure = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<Error>())
        .is_some_and(|inner| matches!(inner, Error::AuthFailed(_)));
    if !carries_auth_failure {
        return Err(error);
    }
    let kind = error.kind();
    match error.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(inner)) => Ok(*inner),
        Some(Err(other)) => Err(io::Error::new(kind, other)),
        None => Err(io::Error::from(kind)),
    }
}

/// Connects within `limit`; a refusal by an authenticating link is
/// [`Error::AuthFailed`] (`Ok(Err(..))`), any other failure an I/O error
/// for the caller to judge.
async fn connect_or_refused(
    connector: &Connector,
    limit: Duration,
) -> std::result::Result<Result<Link>, io::Error> {
    match connect_link(connector, limit).await {
        Ok(link) => Ok(Ok(link)),
        Err(error) => auth_failure(error).map(Err),
    }
}

/// True when `error` is [`connect_link`]'s own timeout with `deadline`
/// reached: the attempt was cut short, it did not fail.
fn cut_by_deadline(error: &io::Error, deadline: Instant) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<CutShort>().is_some())
        && Instant::now() >= deadline
}

/// [`connect_link`]'s limit ran out.
#[derive(Debug, thiserror::Error)]
#[error("connect timed out")]
struct CutShort;

/// Errors that mean "not up yet" or "busy right now", worth another try
/// before the deadline.
fn retryable(error: &io::Error) -> bool {
    // Every instance of the pipe is taken for the moment: ERROR_PIPE_BUSY,
    // which interprocess reports as TimedOut when told not to wait.
    const ERROR_PIPE_BUSY: i32 = 231;
    let busy_pipe = cfg!(windows)
        && (error.raw_os_error() == Some(ERROR_PIPE_BUSY)
            || error.kind() == io::ErrorKind::TimedOut);
    busy_pipe
        || matches!(
            error.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused | io::ErrorKind::WouldBlock
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_timeout_past_the_deadline_counts_as_cut_short() {
        let ours = io::Error::new(io::ErrorKind::TimedOut, CutShort);
        let past = Instant::now();
        let ahead = Instant::now() + Duration::from_secs(60);
        assert!(cut_by_deadline(&ours, past));
        assert!(!cut_by_deadline(&ours, ahead));
        let transports = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
        assert!(!cut_by_deadline(&transports, past));
        assert!(!cut_by_deadline(
            &io::Error::from(io::ErrorKind::TimedOut),
            past
        ));
    }
}
