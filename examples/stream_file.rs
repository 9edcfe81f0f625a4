//! A file sent as a stream of chunks: how a result too big for one frame
//! travels.
//!
//! The parent serves one route, `read_file`, that answers with the file in
//! 64 KiB chunks (`switchboard::Stream<Bytes>`); a child process it starts
//! asks for the file, writes the chunks to a copy as they arrive, and the
//! parent checks the copy. The chunks flow under the connection's credit,
//! so neither side ever holds more than a window of them in memory,
//! whatever the file's size.
//!
//! `cargo run --example stream_file -- [FILE]` (default: this program's own
//! executable, several megabytes).

use std::io::Write;
use std::path::PathBuf;

use switchboard::{Bytes, Client, CommandExt, Connector, HandlerError, Router, Server, Stream};
use tokio::io::AsyncReadExt;

const CHUNK: usize = 64 * 1024;

/// Streams a file's contents; a file that cannot be opened is an error
/// before the first chunk.
async fn read_file(path: PathBuf) -> Result<Stream<Bytes>, HandlerError> {
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|e| HandlerError::invalid_params(format!("{}: {e}", path.display())))?;
    let (sender, stream) = Stream::channel(4);
    tokio::spawn(async move {
        let mut file = file;
        loop {
            let mut chunk = vec![0; CHUNK];
            match file.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    if sender.send(Bytes::from(chunk)).await.is_err() {
                        break; // the caller dropped the stream
                    }
                }
                Err(e) => {
                    let _ = sender.fail(e).await;
                    break;
                }
            }
        }
    });
    Ok(stream)
}

async fn child(source: String, copy: PathBuf) -> switchboard::Result<()> {
    let client = Client::connect(&Connector::from_env()?).await?;
    let mut chunks = client
        .request_stream::<_, Bytes>("read_file", &source)
        .await?;
    let mut out = std::fs::File::create(&copy)?;
    let mut received = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        received += chunk.len();
        out.write_all(&chunk)?;
    }
    println!("child: received {received} bytes");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        child(args[2].clone(), PathBuf::from(&args[3])).await?;
        return Ok(());
    }
    let source = match args.get(1) {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?,
    };
    let server = Server::bind(
        &Connector::local(),
        Router::new().route("read_file", read_file),
    )
    .await?;
    let dir = tempfile::tempdir()?;
    let copy = dir.path().join("copy");
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--child")
        .arg(&source)
        .arg(&copy)
        .connector_env(server.connector())
        .status()
        .await?;
    server.shutdown().await;
    if !status.success() {
        return Err(format!("the child failed: {status}").into());
    }
    let (original, copied) = (std::fs::read(&source)?, std::fs::read(&copy)?);
    if original != copied {
        return Err("the copy differs from the original".into());
    }
    println!(
        "parent: {} bytes of {} arrived intact in {} chunks of at most {CHUNK} bytes",
        original.len(),
        source.display(),
        original.len().div_ceil(CHUNK)
    );
    Ok(())
}
