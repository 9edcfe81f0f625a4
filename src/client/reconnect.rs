//! Automatic reconnect: the policy ([`Reconnect`]), the link's state as the
//! application sees it ([`LinkState`]), and the task that watches the
//! connection and opens a new one when it drops.
//!
//! The new connection proves the client's id with its resumption token, so
//! the server keeps knowing the client by the same id (a restarted server,
//! which never saw the token, simply accepts the id), and serves the
//! client's own router again. A client connected by name resolves the name
//! again on every attempt, so a server restarted with a fresh connector is
//! found.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::Resumption;
use super::dial::Dialer;
use crate::connector::random_bytes;
use crate::peer::{Connection, Peer};

/// When and how a [`Client`](crate::Client) reconnects after its
/// connection drops (opt-in, with
/// [`ClientBuilder::reconnect`](crate::ClientBuilder::reconnect)).
///
/// Attempts follow an exponential backoff: the n-th waits
/// `min(initial * 2^n, max)` with "equal jitter" (a random point between
/// half of that and all of it, so clients dropped together do not all
/// come back in the same instant). Each attempt gets
/// [`attempt_timeout`](Reconnect::attempt_timeout) to connect and
/// authenticate. Defaults: 50 ms initial, 5 s cap, 5 s per attempt, never
/// give up, requests made while down wait.
///
/// Requests in flight when the link drops fail with
/// [`Error::Disconnected`](crate::Error::Disconnected) whatever the policy:
/// the server may or may not have run them, and only the caller knows
/// whether sending again is safe.
///
/// ```
/// use std::time::Duration;
/// use switchboard::{Client, Connector, Reconnect, WhileDown};
///
/// let policy = Reconnect::default()
///     .initial_delay(Duration::from_millis(20))
///     .max_delay(Duration::from_secs(2))
///     .give_up_after(Duration::from_secs(60))
///     .while_down(WhileDown::FailFast);
/// let builder = Client::builder(&Connector::local()).reconnect(policy);
/// ```
#[derive(Clone, Debug)]
pub struct Reconnect {
    initial: Duration,
    max: Duration,
    attempt_timeout: Duration,
    give_up_after: Option<Duration>,
    while_down: WhileDown,
}

/// What a request, notification or stream made while the link is down
/// does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhileDown {
    /// Waits for the link to return, for at most the request's timeout
    /// (then [`Error::Timeout`](crate::Error::Timeout)); a notification
    /// waits at most [`Config::request_timeout`](crate::Config::request_timeout).
    #[default]
    Wait,
    /// Fails at once with [`Error::Disconnected`](crate::Error::Disconnected).
    FailFast,
}

impl Default for Reconnect {
    fn default() -> Reconnect {
        Reconnect {
            initial: Duration::from_millis(50),
            max: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(5),
            give_up_after: None,
            while_down: WhileDown::Wait,
        }
    }
}

impl Reconnect {
    /// The base wait before the first attempt (doubled for each further
    /// one). Default 50 ms.
    pub fn initial_delay(mut self, delay: Duration) -> Reconnect {
        self.initial = delay;
        self
    }

    /// The longest wait between attempts. Default 5 s.
    pub fn max_delay(mut self, delay: Duration) -> Reconnect {
        self.max = delay;
        self
    }

    /// How long one attempt may take to connect and authenticate.
    /// Default 5 s.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Reconnect {
        self.attempt_timeout = timeout;
        self
    }

    /// Stops trying once the link has been down this long; the client is
    /// then closed for good ([`LinkState::Closed`]). Default: never.
    pub fn give_up_after(mut self, limit: Duration) -> Reconnect {
        self.give_up_after = Some(limit);
        self
    }

    /// What requests made while the link is down do. Default:
    /// [`WhileDown::Wait`].
    pub fn while_down(mut self, policy: WhileDown) -> Reconnect {
        self.while_down = policy;
        self
    }

    pub(super) fn policy(&self) -> WhileDown {
        self.while_down
    }

    /// The wait before attempt `attempt` (from 0).
    fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX))
            .min(self.max);
        let half = base / 2;
        let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let random = u64::from_le_bytes(random_bytes::<8>());
        half + Duration::from_nanos(random.checked_rem(spread.max(1)).unwrap_or(0))
    }
}

/// The state of a client's link to its server, from
/// [`Client::link_state`](crate::Client::link_state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkState {
    /// Connected. `connection` counts the connections this client has
    /// had, from 0: it grows by one with every reconnect, so a watcher
    /// that missed the `Down` in between still sees that the link changed.
    Up {
        /// Which connection this is (0 for the first).
        connection: u64,
    },
    /// The connection dropped; reconnecting.
    Down {
        /// Attempts made so far.
        attempts: u32,
    },
    /// Closed for good: by this side, by the server when reconnect is
    /// off, or after [`Reconnect::give_up_after`].
    Closed,
}

/// What the client and its supervising task share.
pub(super) struct Shared {
    connection: Mutex<Arc<Connection>>,
    resumption: Mutex<Resumption>,
    pub(super) state: watch::Sender<LinkState>,
    pub(super) closing: watch::Sender<bool>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(super) fn new(connection: Connection, resumption: Resumption) -> Shared {
        Shared {
            connection: Mutex::new(Arc::new(connection)),
            resumption: Mutex::new(resumption),
            state: watch::Sender::new(LinkState::Up { connection: 0 }),
            closing: watch::Sender::new(false),
        }
    }

    pub(super) fn connection(&self) -> Arc<Connection> {
        Arc::clone(&lock(&self.connection))
    }

    pub(super) fn peer(&self) -> Peer {
        lock(&self.connection).peer().clone()
    }

    pub(super) fn resumption(&self) -> Resumption {
        lock(&self.resumption).clone()
    }

    fn install(&self, connection: Connection, resumption: Resumption) {
        *lock(&self.connection) = Arc::new(connection);
        *lock(&self.resumption) = resumption;
    }

    fn closing(&self) -> bool {
        *self.closing.borrow()
    }
}

/// Watches the connection; when it drops (and reconnect is on), opens new
/// ones until one holds, the client is closed, or the policy gives up.
pub(super) async fn supervise(shared: Arc<Shared>, dialer: Dialer, policy: Option<Reconnect>) {
    let mut closing = shared.closing.subscribe();
    let mut generation = 0;
    loop {
        let connection = shared.connection();
        tokio::select! {
            () = connection.closed() => {}
            _ = closing.wait_for(|closing| *closing) => {}
        }
        let Some(policy) = policy.as_ref().filter(|_| !shared.closing()) else {
            shared.state.send_replace(LinkState::Closed);
            return;
        };
        match connection.take_error() {
            Some(error) => tracing::warn!(%error, "the link dropped; reconnecting"),
            None => tracing::info!("the server closed the link; reconnecting"),
        }
        drop(connection);
        let down_since = Instant::now();
        let mut attempts = 0;
        shared.state.send_replace(LinkState::Down { attempts });
        loop {
            if policy
                .give_up_after
                .is_some_and(|limit| down_since.elapsed() >= limit)
            {
                tracing::warn!(?down_since, "giving up reconnecting");
                shared.state.send_replace(LinkState::Closed);
                return;
            }
            let token = shared.resumption().token;
            let attempt = async {
                tokio::time::sleep(policy.delay(attempts)).await;
                dialer.dial_once(Some(&token), policy.attempt_timeout).await
            };
            let result = tokio::select! {
                result = attempt => result,
                _ = closing.wait_for(|closing| *closing) => {
                    shared.state.send_replace(LinkState::Closed);
                    return;
                }
            };
            attempts += 1;
            match result {
                Ok((connection, resumption)) => {
                    if shared.closing() {
                        shared.state.send_replace(LinkState::Closed);
                        return;
                    }
                    shared.install(connection, resumption);
                    generation += 1;
                    tracing::info!(attempts, "reconnected");
                    shared.state.send_replace(LinkState::Up {
                        connection: generation,
                    });
                    break;
                }
                Err(error) => {
                    tracing::debug!(%error, attempts, "reconnect attempt failed");
                    shared.state.send_replace(LinkState::Down { attempts });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Reconnect;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let policy = Reconnect::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_secs(1));
        for attempt in 0..40 {
            let base = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(20))
                .min(Duration::from_secs(1));
            for _ in 0..20 {
                let delay = policy.delay(attempt);
                assert!(
                    delay >= base / 2 && delay <= base,
                    "attempt {attempt}: {delay:?}"
                );
            }
        }
        // Jitter: not every client waits the same.
        let delays: std::collections::HashSet<_> = (0..20).map(|_| policy.delay(3)).collect();
        assert!(delays.len() > 1);
        assert_eq!(
            Reconnect::default().initial_delay(Duration::ZERO).delay(5),
            Duration::ZERO
        );
    }
}
