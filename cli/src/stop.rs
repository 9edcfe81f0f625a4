//! When a server run from the command line stops: on a termination signal,
//! or when the parent closes the standard input pipe.

use std::time::Duration;

/// How long `echo-server` and `serve` let running handlers finish once
/// told to stop.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Completes when echo-server should stop: a termination signal, or the end
/// of standard input when standard input is a pipe (see `ECHO_SERVER_HELP`).
///
/// On Unix the signal handlers are installed when this is called, not when
/// the future is first polled, so a signal sent as soon as the connector is
/// printed is not lost.
pub(crate) fn stop_requested() -> impl Future<Output = ()> {
    let signals = signals();
    let stdin = stdin_is_pipe().then(stdin_closed);
    async move {
        match stdin {
            Some(stdin) => tokio::select! {
                () = signals => {}
                () = stdin => {}
            },
            None => signals.await,
        }
    }
}

#[cfg(unix)]
pub(crate) fn signals() -> impl Future<Output = ()> {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    // A signal that cannot be watched (never on Linux) simply never fires.
    async fn received(signal: std::io::Result<Signal>) {
        match signal {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    }
    let terminate = received(signal(SignalKind::terminate()));
    let interrupt = received(signal(SignalKind::interrupt()));
    let hangup = received(signal(SignalKind::hangup()));
    async move {
        tokio::select! {
            () = terminate => {}
            () = interrupt => {}
            () = hangup => {}
        }
    }
}

#[cfg(windows)]
pub(crate) async fn signals() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(not(any(unix, windows)))]
pub(crate) fn signals() -> impl Future<Output = ()> {
    std::future::pending()
}

/// True when standard input is a pipe (or a socket): then its end means the
/// parent closed it or died, and echo-server stops.
#[cfg(unix)]
fn stdin_is_pipe() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
        return false;
    };
    match std::fs::File::from(fd).metadata() {
        Ok(metadata) => {
            let kind = metadata.file_type();
            kind.is_fifo() || kind.is_socket()
        }
        Err(_) => false,
    }
}

/// True when standard input is a pipe: then its end means the parent closed
/// it or died, and echo-server stops.
#[cfg(windows)]
fn stdin_is_pipe() -> bool {
    use std::os::windows::io::AsRawHandle;
    use windows_sys::Win32::Storage::FileSystem::{FILE_TYPE_PIPE, GetFileType};
    let handle = std::io::stdin().as_raw_handle();
    if handle.is_null() {
        return false;
    }
    // SAFETY: GetFileType only inspects the handle; an invalid one yields
    // FILE_TYPE_UNKNOWN.
    unsafe { GetFileType(handle) == FILE_TYPE_PIPE }
}

#[cfg(not(any(unix, windows)))]
fn stdin_is_pipe() -> bool {
    false
}

/// Completes when standard input reaches end of file (the parent is gone
/// or closed the pipe). Reads on a plain thread: a read blocked on stdin
/// must not keep the runtime from shutting down.
fn stdin_closed() -> impl Future<Output = ()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin().lock();
        while matches!(std::io::Read::read(&mut stdin, &mut sink), Ok(n) if n > 0) {}
        let _ = tx.send(());
    });
    async move {
        let _ = rx.await;
    }
}
