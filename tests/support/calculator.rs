//! Shared by the typed-service tests (`service.rs`, `service_wire.rs`,
//! `service_processes.rs`): the `Calculator` service they call, and a
//! server-side implementation whose notifications and dropped calls the
//! test hears about.

use serde::{Deserialize, Serialize};
use switchboard::{Context, Stream};
use tokio::sync::mpsc;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum DivError {
    DivideByZero,
}

#[switchboard::service]
pub trait Calculator {
    async fn add(&self, a: i64, b: i64) -> i64;
    async fn div(&self, a: i64, b: i64) -> Result<i64, DivError>;
    #[notification]
    async fn log(&self, line: String);
    async fn whoami(&self, ctx: Context) -> String;
    /// Never answers; tells the test when its call is dropped.
    async fn hang(&self) -> ();
    /// 1, 2, ... `to`.
    async fn count(&self, to: u32) -> switchboard::Stream<u32>;
    /// 0, 1, 2, ... until the caller drops the stream, which the test hears
    /// about.
    async fn endless(&self) -> Stream<u64>;
}

pub struct Calc {
    pub logs: mpsc::UnboundedSender<String>,
    pub dropped: mpsc::UnboundedSender<()>,
}

/// Reports when the future holding it is dropped.
pub struct OnDrop(mpsc::UnboundedSender<()>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, DivError> {
        a.checked_div(b).ok_or(DivError::DivideByZero)
    }

    async fn log(&self, line: String) {
        let _ = self.logs.send(line);
    }

    async fn whoami(&self, ctx: Context) -> String {
        ctx.client_id().to_owned()
    }

    async fn hang(&self) {
        let _guard = OnDrop(self.dropped.clone());
        std::future::pending::<()>().await;
    }

    async fn count(&self, to: u32) -> Stream<u32> {
        Stream::iter(1..=to)
    }

    async fn endless(&self) -> Stream<u64> {
        let (sender, stream) = Stream::channel(4);
        let stopped = OnDrop(self.dropped.clone());
        tokio::spawn(async move {
            let _stopped = stopped;
            for n in 0.. {
                if sender.send(n).await.is_err() {
                    break;
                }
            }
        });
        stream
    }
}

pub struct Fixture {
    pub logs: mpsc::UnboundedReceiver<String>,
    pub dropped: mpsc::UnboundedReceiver<()>,
}

pub fn calc() -> (Calc, Fixture) {
    let (logs_tx, logs) = mpsc::unbounded_channel();
    let (dropped_tx, dropped) = mpsc::unbounded_channel();
    let calc = Calc {
        logs: logs_tx,
        dropped: dropped_tx,
    };
    (calc, Fixture { logs, dropped })
}
