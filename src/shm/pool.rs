//! The payload pool this side sends large bodies from: a region mapped
//! once per connection (and by the peer), carved into slots on demand.
//!
//! A slot is taken for a body, filled, and named to the peer by its offset;
//! it stays *outstanding* until the peer releases that offset (its last
//! `Bytes` of the body dropped), then returns to the free ranges. The pool's
//! size is the budget of what the peer may hold of ours: a body that finds
//! no free range is not sent this way (the caller takes the socket or a
//! region of its own), so nothing ever waits here.
//!
//! A *loan* is a slot handed to the application to write a body into
//! directly; it is freed when both the application's last reference and the
//! peer's release are gone.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use super::SharedRegion;

/// Slots start on this boundary (a cache line).
const ALIGN: usize = 64;

/// The pool (see the module docs).
#[derive(Debug)]
pub(crate) struct Pool {
    region: Arc<SharedRegion>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Free ranges, offset -> length, never adjacent (merged when freed).
    free: BTreeMap<usize, usize>,
    /// Sent and not yet released: the offset named to the peer -> what
    /// it keeps in use.
    outstanding: HashMap<u64, Held>,
    /// Bytes in slots (outstanding or loaned).
    used: usize,
    /// Live loans by their slot's offset, to recognise a body written in one.
    loans: BTreeMap<usize, Weak<LoanSlot>>,
}

/// What an outstanding body keeps in use.
#[derive(Debug)]
enum Held {
    /// A slot the body was copied into.
    Copy { offset: usize, len: usize },
    /// A loan the body was written in: freed when the loan also is.
    Loan(#[allow(dead_code)] Arc<LoanSlot>),
}

/// A range of the pool lent to the application (see [`Pool::loan`]).
#[derive(Debug)]
pub(crate) struct LoanSlot {
    pool: Weak<Pool>,
    region: Arc<SharedRegion>,
    offset: usize,
    len: usize,
    /// Sent once without a copy already: a second send copies (the
    /// bytes around it are rewritten for each send).
    sent: AtomicBool,
}

impl Pool {
    /// A pool over `region` (this side's, made in the handshake).
    pub(crate) fn new(mut region: SharedRegion) -> Arc<Pool> {
        // Passed to the peer in the handshake: the mapping is all we need.
        region.close_descriptor();
        let len = region.len() / ALIGN * ALIGN;
        let mut state = State::default();
        if len > 0 {
            state.free.insert(0, len);
        }
        Arc::new(Pool {
            region: Arc::new(region),
            state: Mutex::new(state),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes in slots now (held by the peer or lent out).
    pub(crate) fn used(&self) -> usize {
        self.state().used
    }

    /// Copies `pieces` (in order, `len` bytes in all) into a free slot and
    /// records it as outstanding. Returns the offset to name to the peer,
    /// or `None` if no free range is large enough.
    pub(crate) fn send_copy(&self, pieces: &[&[u8]], len: usize) -> Option<u64> {
        let offset = self.take(len)?;
        let mut at = offset;
        for piece in pieces {
            // In bounds: `take` gave `len` bytes from `offset`, and the
            // pieces add up to `len`.
            if self.region.write(at, piece).is_err() {
                self.give_back(offset, len);
                return None;
            }
            at += piece.len();
        }
        debug_assert_eq!(at, offset + len);
        self.state().outstanding.insert(
            offset as u64,
            Held::Copy {
                offset,
                len: rounded(len),
            },
        );
        Some(offset as u64)
    }

    /// Lends a slot of `len` bytes (plus `head` and `tail` bytes of room
    /// around it) to the application; `None` if the pool has no room.
    pub(crate) fn loan(
        self: &Arc<Pool>,
        head: usize,
        len: usize,
        tail: usize,
    ) -> Option<Arc<LoanSlot>> {
        let total = head.checked_add(len)?.checked_add(tail)?;
        let offset = self.take(total)?;
        let loan = Arc::new(LoanSlot {
            pool: Arc::downgrade(self),
            region: Arc::clone(&self.region),
            offset,
            len: rounded(total),
            sent: AtomicBool::new(false),
        });
        self.state().loans.insert(offset, Arc::downgrade(&loan));
        Some(loan)
    }

    /// The live loan whose slot holds the pool offset `at`.
    pub(crate) fn loan_at(&self, at: usize) -> Option<Arc<LoanSlot>> {
        let state = self.state();
        let (_, loan) = state.loans.range(..=at).next_back()?;
        let loan = loan.upgrade()?;
        (at < loan.offset + loan.len).then_some(loan)
    }

    /// Sends the body `[start, start + len)` of `loan` (already written in
    /// place) without copying: records it outstanding, keeping the loan's
    /// slot alive until released. `None` if the loan was sent before or
    /// the range is not inside it.
    pub(crate) fn send_loan(&self, loan: &Arc<LoanSlot>, start: usize, len: usize) -> Option<u64> {
        let inside = start >= loan.offset && start.checked_add(len)? <= loan.offset + loan.len;
        if !inside || loan.sent.swap(true, Ordering::AcqRel) {
            return None;
        }
        // Bound, so anything replaced drops after the lock is released.
        let _replaced = self
            .state()
            .outstanding
            .insert(start as u64, Held::Loan(Arc::clone(loan)));
        Some(start as u64)
    }

    /// The peer is done with the body it was named at `offset`.
    pub(crate) fn release(&self, offset: u64) -> Result<(), String> {
        let held = self.state().outstanding.remove(&offset);
        match held {
            Some(Held::Copy { offset, len }) => {
                self.give_back(offset, len);
                Ok(())
            }
            // The loan frees itself once the application let go of it too.
            Some(Held::Loan(_)) => Ok(()),
            None => Err(format!(
                "the peer released shared memory at offset {offset}, which it did not hold"
            )),
        }
    }

    /// Writes `bytes` into the pool at `offset` (a loan's room around its
    /// body).
    pub(crate) fn write(&self, offset: usize, bytes: &[u8]) -> io::Result<()> {
        self.region.write(offset, bytes)
    }

    /// Where the pool's memory is, to tell whether a buffer lies in it.
    pub(crate) fn contains(&self, bytes: &[u8]) -> Option<usize> {
        let base = self.region.range(0, 0)?.as_ptr() as usize;
        let at = bytes.as_ptr() as usize;
        (at >= base && at + bytes.len() <= base + self.region.len()).then(|| at - base)
    }

    /// Takes a free range of at least `len` bytes (first fit).
    fn take(&self, len: usize) -> Option<usize> {
        let len = rounded(len.max(1));
        let mut state = self.state();
        let (&offset, &free) = state.free.iter().find(|(_, free)| **free >= len)?;
        state.free.remove(&offset);
        if free > len {
            state.free.insert(offset + len, free - len);
        }
        state.used += len;
        Some(offset)
    }

    /// Returns `[offset, offset + len)` to the free ranges, merging it with
    /// its neighbours.
    fn give_back(&self, offset: usize, len: usize) {
        let len = rounded(len.max(1));
        let mut state = self.state();
        state.used -= len;
        let (mut start, mut end) = (offset, offset + len);
        if let Some((&before, &before_len)) = state.free.range(..start).next_back()
            && before + before_len == start
        {
            state.free.remove(&before);
            start = before;
        }
        if let Some(after_len) = state.free.remove(&end) {
            end += after_len;
        }
        state.free.insert(start, end - start);
    }
}

impl LoanSlot {
    /// The slot's offset in the pool.
    pub(crate) fn offset(&self) -> usize {
        self.offset
    }

    /// The slot's first byte.
    pub(crate) fn as_ptr(&self) -> *mut u8 {
        // The range was taken from the pool, so it is inside the region.
        self.region
            .range(self.offset, self.len)
            .map_or(std::ptr::null_mut(), |ptr| ptr.as_ptr())
    }
}

impl Drop for LoanSlot {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.state().loans.remove(&self.offset);
            pool.give_back(self.offset, self.len);
        }
    }
}

fn rounded(len: usize) -> usize {
    len.div_ceil(ALIGN) * ALIGN
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(len: usize) -> Arc<Pool> {
        Pool::new(SharedRegion::create("sb-test-pool", len).unwrap())
    }

    #[test]
    fn slots_are_reused_once_released_and_ranges_merge() {
        let pool = pool(4096);
        let a = pool.send_copy(&[&[1; 1000]], 1000).unwrap();
        let b = pool.send_copy(&[&[2; 100], &[3; 100]], 200).unwrap();
        let c = pool.send_copy(&[&[4; 2000]], 2000).unwrap();
        assert_eq!(pool.send_copy(&[&[5; 1000]], 1000), None, "full");
        let mut out = [0u8; 4];
        pool.region.read(b as usize + 98, &mut out).unwrap();
        assert_eq!(out, [2, 2, 3, 3], "pieces laid out in order");
        pool.release(a).unwrap();
        pool.release(c).unwrap();
        assert!(pool.release(c).is_err(), "released twice");
        assert!(pool.release(12345).is_err(), "never sent");
        pool.release(b).unwrap();
        assert_eq!(pool.used(), 0);
        // Everything merged back into one range: the whole pool fits.
        assert_eq!(pool.send_copy(&[&[6; 4096]], 4096), Some(0));
    }

    #[test]
    fn a_loan_is_freed_when_both_the_application_and_the_peer_let_go() {
        let pool = pool(4096);
        let loan = pool.loan(64, 1000, 64).unwrap();
        let used = pool.used();
        assert!(used >= 1128);
        let start = loan.offset() + 64;
        let offset = pool.send_loan(&loan, start, 1000).unwrap();
        assert_eq!(
            pool.send_loan(&loan, start, 1000),
            None,
            "sent once in place"
        );
        drop(loan);
        assert_eq!(pool.used(), used, "the peer still holds it");
        pool.release(offset).unwrap();
        assert_eq!(pool.used(), 0);
    }

    #[test]
    fn a_dropped_pool_leaves_loans_usable() {
        let pool = pool(4096);
        let loan = pool.loan(0, 10, 0).unwrap();
        drop(pool);
        assert!(!loan.as_ptr().is_null());
        drop(loan);
    }
}
