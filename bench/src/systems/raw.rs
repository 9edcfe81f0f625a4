//! The raw baselines' wire format, shared by `raw_blocking_uds` and
//! `raw_tokio_local`: a frame is a `u32` little-endian length and that many
//! bytes; the first byte says what it is. Nothing else: no ids, no
//! handshake, no serialization.
//!
//! - echo: `[KIND_ECHO] + 63 bytes` (64 in all), answered with the same frame;
//! - bulk: `[KIND_BULK] + payload`, answered with the payload length as a
//!   `u64` (8 bytes).
//!
//! Both sides buffer reads and writes and flush only when no further
//! request is already buffered, so a pipelined burst is answered with few
//! system calls: the best a hand-written loop would do.

use std::io::{self, BufReader, Read, Write};

use anyhow::Result;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const KIND_ECHO: u8 = 1;
pub const KIND_BULK: u8 = 2;
/// Read and write buffer size on both sides: holds a whole window of 64
/// pipelined echo frames; bulk payloads bypass it. (The same size as
/// switchboard's read buffer, so idle connections cost both alike.)
pub const BUFFER: usize = 8 * 1024;

/// The 64-byte echo request as a whole frame.
pub fn echo_frame() -> Vec<u8> {
    let mut body = super::SMALL_TEXT.as_bytes().to_vec();
    body[0] = KIND_ECHO;
    frame(&body)
}

/// A bulk request frame carrying `payload`.
pub fn bulk_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 5);
    out.extend_from_slice(&(payload.len() as u32 + 1).to_le_bytes());
    out.push(KIND_BULK);
    out.extend_from_slice(payload);
    out
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// The answer to a request body: the body itself (echo) or its payload
/// length (bulk).
pub fn answer(body: &[u8], out: &mut Vec<u8>) {
    out.clear();
    if body.first() == Some(&KIND_BULK) {
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&(body.len() as u64 - 1).to_le_bytes());
    } else {
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
    }
}

/// True when `buffered` holds at least one whole frame.
pub fn has_frame(buffered: &[u8]) -> bool {
    buffered.len() >= 4
        && buffered.len() - 4 >= u32::from_le_bytes(buffered[..4].try_into().unwrap()) as usize
}

/// Decodes a bulk answer.
pub fn bulk_answer(body: &[u8]) -> u64 {
    body.try_into().map(u64::from_le_bytes).unwrap_or(u64::MAX)
}

/// Reads one frame's body into `body`. `Ok(false)` at a clean end of stream.
pub fn read_frame<R: Read>(reader: &mut R, body: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0; 4];
    match reader.read_exact(&mut len) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        other => other?,
    }
    body.resize(u32::from_le_bytes(len) as usize, 0);
    reader.read_exact(body)?;
    Ok(true)
}

/// Async [`read_frame`].
pub async fn read_frame_async<R: AsyncRead + Unpin>(
    reader: &mut R,
    body: &mut Vec<u8>,
) -> io::Result<bool> {
    let mut len = [0; 4];
    match reader.read_exact(&mut len).await {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        other => other?,
    };
    body.resize(u32::from_le_bytes(len) as usize, 0);
    reader.read_exact(body).await?;
    Ok(true)
}

/// Serves one connection until the client closes it (blocking).
pub fn serve_blocking<S>(stream: S) -> io::Result<()>
where
    for<'a> &'a S: Read + Write,
{
    let mut reader = BufReader::with_capacity(BUFFER, &stream);
    let mut writer = io::BufWriter::with_capacity(BUFFER, &stream);
    let (mut body, mut out) = (Vec::new(), Vec::new());
    while read_frame(&mut reader, &mut body)? {
        answer(&body, &mut out);
        writer.write_all(&out)?;
        if reader.buffer().is_empty() {
            writer.flush()?;
        }
    }
    Ok(())
}

/// Serves one connection until the client closes it (async).
pub async fn serve_async<R, W>(reader: R, writer: W) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut reader = tokio::io::BufReader::with_capacity(BUFFER, reader);
    let mut writer = tokio::io::BufWriter::with_capacity(BUFFER, writer);
    let (mut body, mut out) = (Vec::new(), Vec::new());
    while read_frame_async(&mut reader, &mut body).await? {
        answer(&body, &mut out);
        writer.write_all(&out).await?;
        if reader.buffer().is_empty() {
            writer.flush().await?;
        }
    }
    Ok(())
}

/// Pipelined echo requests over a blocking stream: keeps `depth` in flight,
/// writing each refill of the window with one call.
pub fn pipelined_blocking<S>(stream: &S, count: usize, depth: usize) -> Result<()>
where
    for<'a> &'a S: Read + Write,
{
    let frame = echo_frame();
    let window = frame.repeat(depth);
    let mut reader = BufReader::with_capacity(BUFFER, stream);
    let mut writer = stream;
    let (mut sent, mut done, mut body) = (0, 0, Vec::new());
    while done < count {
        let refill = (depth - (sent - done)).min(count - sent);
        if refill > 0 {
            writer.write_all(&window[..refill * frame.len()])?;
            sent += refill;
        }
        loop {
            if !read_frame(&mut reader, &mut body)? {
                anyhow::bail!("the server closed the connection");
            }
            done += 1;
            if done == sent || !has_frame(reader.buffer()) {
                break;
            }
        }
    }
    check_tail(&body)
}

/// Async [`pipelined_blocking`].
pub async fn pipelined_async<R, W>(
    reader: R,
    mut writer: W,
    count: usize,
    depth: usize,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let frame = echo_frame();
    let window = frame.repeat(depth);
    let mut reader = tokio::io::BufReader::with_capacity(BUFFER, reader);
    let (mut sent, mut done, mut body) = (0, 0, Vec::new());
    while done < count {
        let refill = (depth - (sent - done)).min(count - sent);
        if refill > 0 {
            writer.write_all(&window[..refill * frame.len()]).await?;
            sent += refill;
        }
        loop {
            if !read_frame_async(&mut reader, &mut body).await? {
                anyhow::bail!("the server closed the connection");
            }
            done += 1;
            if done == sent || !has_frame(reader.buffer()) {
                break;
            }
        }
    }
    check_tail(&body)
}

/// Checks an echoed raw body: the request text after the kind byte.
pub fn check_tail(body: &[u8]) -> Result<()> {
    if body.len() != 64 || body[0] != KIND_ECHO || body[1..] != super::SMALL_TEXT.as_bytes()[1..] {
        anyhow::bail!("wrong echo answer ({} bytes)", body.len());
    }
    Ok(())
}
