//! Which ring capacities are accepted (PROTOCOL.md §10): checked by the
//! handshake above and by the ring when it maps a region, so it lives
//! here, below both, on every platform.

/// Smallest and largest capacity of one direction a server accepts.
const MIN_CAPACITY: u32 = 4096;
const MAX_CAPACITY: u32 = 16 * 1024 * 1024;

/// Checks a ring capacity: a power of two within the accepted bounds.
pub(crate) fn check_ring_capacity(capacity: u32) -> Result<(), String> {
    if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
        return Err(format!(
            "ring capacity {capacity} is not a power of two from {MIN_CAPACITY} to {MAX_CAPACITY}"
        ));
    }
    Ok(())
}
