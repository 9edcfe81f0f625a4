//! The peer's payload pool as this side sees it: bodies the peer named by
//! offset and length, lent to whoever decodes them as
//! [`bytes::Bytes`] over the mapping (no copy), and released back to the
//! peer when the last of those drops.
//!
//! Every offset and length is checked against the mapping before anything
//! is read, and an offset may be held only once at a time: a peer that
//! names memory outside its pool, or a slot it already lent us, is caught
//! here (the caller closes the connection).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::SharedRegion;

/// The peer's pool, mapped (see the module docs).
#[derive(Debug)]
pub(crate) struct Lender {
    region: SharedRegion,
    /// Offsets lent out here and not yet released.
    held: Mutex<HashSet<u64>>,
    releases: Releases,
}

/// Offsets to hand back to the peer, for the connection's sender to pick
/// up: the last `Bytes` of a body may drop on any thread, even one holding
/// the connection's write lock, so dropping only queues and wakes.
#[derive(Debug, Default)]
pub(crate) struct Releases {
    queue: Mutex<Vec<u64>>,
    wake: tokio::sync::Notify,
    closed: AtomicBool,
}

impl Releases {
    /// Waits until there is something to release, and takes it all.
    pub(crate) async fn next(&self) -> Vec<u64> {
        loop {
            let notified = self.wake.notified();
            let taken = std::mem::take(&mut *lock(&self.queue));
            if !taken.is_empty() {
                return taken;
            }
            notified.await;
        }
    }

    pub(super) fn push(&self, offset: u64) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        lock(&self.queue).push(offset);
        self.wake.notify_one();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Lender {
    /// Lends from `region`, the peer's pool as received in the handshake.
    pub(crate) fn new(mut region: SharedRegion) -> Arc<Lender> {
        region.close_descriptor();
        Arc::new(Lender {
            region,
            held: Mutex::default(),
            releases: Releases::default(),
        })
    }

    /// Where released offsets wait for the sender.
    pub(crate) fn releases(&self) -> &Releases {
        &self.releases
    }

    /// The connection ended: releases have nowhere to go any more.
    pub(crate) fn close(&self) {
        self.releases.closed.store(true, Ordering::Release);
    }

    /// The body the peer put at `offset`, `len` bytes long: by reference
    /// (released when the last reference drops), or copied out and
    /// released at once with `copy`.
    pub(crate) fn lend(
        self: &Arc<Lender>,
        offset: u64,
        len: u64,
        copy: bool,
    ) -> Result<::bytes::Bytes, String> {
        let (start, size) = match (usize::try_from(offset), usize::try_from(len)) {
            (Ok(start), Ok(size)) if self.region.range(start, size).is_some() => (start, size),
            _ => {
                return Err(format!(
                    "the peer named {len} bytes at offset {offset} of its shared memory, \
                     which is {} bytes",
                    self.region.len()
                ));
            }
        };
        if !lock(&self.held).insert(offset) {
            return Err(format!(
                "the peer named shared memory at offset {offset} while it is still lent to us"
            ));
        }
        let lent = Lent {
            lender: Arc::clone(self),
            offset,
            start,
            len: size,
        };
        if copy {
            // Dropping `lent` releases the slot at once.
            return Ok(::bytes::Bytes::copy_from_slice(lent.as_ref()));
        }
        Ok(::bytes::Bytes::from_owner(lent))
    }
}

/// One body lent out of the peer's pool.
struct Lent {
    lender: Arc<Lender>,
    offset: u64,
    start: usize,
    len: usize,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        match self.lender.region.range(self.start, self.len) {
            // SAFETY: the range is inside the mapping (checked when lent),
            // which lives as long as the lender this holds, and cannot
            // shrink (a sealed memfd, or a section, whose size is fixed), so
            // every byte stays readable. The peer can
            // still write these bytes while they are read here: that changes
            // what is read (SECURITY.md, "Shared memory"; the
            // `copy_received` setting avoids it), never where.
            Some(ptr) => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.len) },
            None => &[],
        }
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        lock(&self.lender.held).remove(&self.offset);
        self.lender.releases.push(self.offset);
    }
}

/// A body in a region of its own (too large for the pool), as bytes.
pub(crate) fn dedicated(mut region: SharedRegion, copy: bool) -> ::bytes::Bytes {
    region.close_descriptor();
    let whole = Whole(region);
    if copy {
        return ::bytes::Bytes::copy_from_slice(whole.as_ref());
    }
    ::bytes::Bytes::from_owner(whole)
}

struct Whole(SharedRegion);

impl AsRef<[u8]> for Whole {
    fn as_ref(&self) -> &[u8] {
        match self.0.range(0, self.0.len()) {
            // SAFETY: the whole mapping, alive as long as `self`; it cannot
            // shrink (sealed or a section, checked when it was opened).
            Some(ptr) => unsafe { std::slice::from_raw_parts(ptr.as_ptr(), self.0.len()) },
            None => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_is_lent_in_place_and_released_when_dropped() {
        let ours = SharedRegion::create("sb-test-lent", 8192).unwrap();
        ours.write(100, b"payload").unwrap();
        let theirs = ours.reopen();
        let lender = Lender::new(theirs);
        let body = lender.lend(100, 7, false).unwrap();
        assert_eq!(&body[..], b"payload");
        assert!(lender.lend(100, 7, false).is_err(), "lent twice");
        let part = body.slice(3..);
        drop(body);
        assert!(lock(&lender.releases.queue).is_empty(), "a part is alive");
        drop(part);
        assert_eq!(lender.releases().next().await, vec![100]);
        let copied = lender.lend(100, 7, true).unwrap();
        assert_eq!(
            lender.releases().next().await,
            vec![100],
            "copied: released"
        );
        assert_eq!(&copied[..], b"payload");
    }

    #[test]
    fn offsets_outside_the_pool_are_refused() {
        let ours = SharedRegion::create("sb-test-lent", 4096).unwrap();
        let lender = Lender::new(ours);
        for (offset, len) in [(4096, 1), (0, 4097), (u64::MAX, 2), (4000, u64::MAX)] {
            assert!(lender.lend(offset, len, false).is_err(), "{offset} {len}");
        }
        assert!(lender.lend(4095, 1, false).is_ok());
    }
}
