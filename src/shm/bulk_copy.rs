//! The copy of a large payload into shared memory.
//!
//! A payload bigger than the caches, copied with `memcpy`, costs three trips
//! to memory per line: reading the source, reading the destination line
//! before overwriting it (the store has to own the line), and writing it
//! back. Non-temporal stores skip the second trip and the cache. On this
//! project's machines (AMD EPYC, 32 MiB L3) a 16 MiB copy into a pool slot
//! goes 1.5 to 1.8 × faster this way, and stays faster even when the peer
//! then reads all of it; below about 8 MiB the plain copy wins, because the
//! destination and the peer's read are then served from the shared L3.
//! BENCHMARKS.md ("Large payloads bypass the cache") has the figures.
//!
//! x86_64 only (AVX2 when the CPU has it, SSE2 otherwise, which every
//! x86_64 has); other architectures always take the plain copy.

/// From this many bytes up, a copy into shared memory bypasses the cache.
pub(crate) const BYPASS_CACHE_FROM: usize = 8 << 20;

/// Copies `src` to `dst`.
///
/// # Safety
///
/// `dst` is valid for `src.len()` bytes of writes and does not overlap
/// `src`.
pub(crate) unsafe fn copy(dst: *mut u8, src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if src.len() >= BYPASS_CACHE_FROM {
        // SAFETY: the caller's promise, passed on.
        unsafe { x86::copy_bypassing_cache(dst, src) };
        return;
    }
    // SAFETY: the caller's promise.
    unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128, _mm256_loadu_si256,
        _mm256_stream_si256,
    };

    /// One iteration's worth: two cache lines.
    const CHUNK: usize = 128;

    /// # Safety
    ///
    /// As [`super::copy`].
    pub(super) unsafe fn copy_bypassing_cache(dst: *mut u8, src: &[u8]) {
        // Streaming stores need an aligned destination: the bytes up to the
        // first 64-byte boundary go the ordinary way.
        let head = dst.align_offset(64).min(src.len());
        // SAFETY: `head <= src.len()`, inside both buffers (caller's promise).
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, head) };
        let body = (src.len() - head) / CHUNK * CHUNK;
        // SAFETY: `dst + head` is 64-aligned and `head + body <= src.len()`.
        unsafe {
            if std::arch::is_x86_feature_detected!("avx2") {
                stream_avx2(dst.add(head), src.as_ptr().add(head), body);
            } else {
                stream_sse2(dst.add(head), src.as_ptr().add(head), body);
            }
        }
        // Streaming stores are weakly ordered: without the fence, the store
        // or syscall that tells the peer the payload is there could become
        // visible before the payload does.
        // SAFETY: SSE is part of x86_64.
        unsafe { _mm_sfence() };
        let done = head + body;
        // SAFETY: the rest, `src.len() - done` bytes, inside both buffers.
        unsafe {
            std::ptr::copy_nonoverlapping(src.as_ptr().add(done), dst.add(done), src.len() - done)
        };
    }

    /// # Safety
    ///
    /// `dst` is 32-aligned, both valid for `len` bytes (a multiple of
    /// [`CHUNK`]), not overlapping; the CPU has AVX2.
    #[target_feature(enable = "avx2")]
    unsafe fn stream_avx2(dst: *mut u8, src: *const u8, len: usize) {
        let mut at = 0;
        while at < len {
            // SAFETY: `at + CHUNK <= len`; loads are unaligned, stores
            // aligned (`dst` is and `at` is a multiple of 32).
            unsafe {
                let s = src.add(at).cast::<__m256i>();
                let d = dst.add(at).cast::<__m256i>();
                let (a, b) = (_mm256_loadu_si256(s), _mm256_loadu_si256(s.add(1)));
                let (c, e) = (_mm256_loadu_si256(s.add(2)), _mm256_loadu_si256(s.add(3)));
                _mm256_stream_si256(d, a);
                _mm256_stream_si256(d.add(1), b);
                _mm256_stream_si256(d.add(2), c);
                _mm256_stream_si256(d.add(3), e);
            }
            at += CHUNK;
        }
    }

    /// # Safety
    ///
    /// As [`stream_avx2`], with `dst` 16-aligned and no AVX2 needed.
    unsafe fn stream_sse2(dst: *mut u8, src: *const u8, len: usize) {
        let mut at = 0;
        while at < len {
            // SAFETY: as in `stream_avx2`, with 16-byte lanes.
            unsafe {
                let s = src.add(at).cast::<__m128i>();
                let d = dst.add(at).cast::<__m128i>();
                for lane in 0..CHUNK / 16 {
                    _mm_stream_si128(d.add(lane), _mm_loadu_si128(s.add(lane)));
                }
            }
            at += CHUNK;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every split of head, body and tail lands each byte where it belongs,
    /// whatever the destination's alignment.
    #[test]
    fn copies_every_byte_at_any_alignment() {
        let len = BYPASS_CACHE_FROM + 1000;
        let src: Vec<u8> = (0..len + 64).map(|i| (i * 7 % 251) as u8).collect();
        let mut dst = vec![0u8; len + 128];
        for (from, to) in [(0, 0), (1, 0), (0, 5), (3, 63), (17, 64)] {
            dst.fill(0);
            let piece = &src[from..from + len - 77];
            // SAFETY: `dst` has room for `piece` at `to`, and is its own buffer.
            unsafe { copy(dst.as_mut_ptr().add(to), piece) };
            assert!(dst[..to].iter().all(|&b| b == 0), "nothing before");
            assert_eq!(&dst[to..to + piece.len()], piece, "from {from} to {to}");
            assert!(
                dst[to + piece.len()..].iter().all(|&b| b == 0),
                "nothing after"
            );
        }
    }

    #[test]
    fn small_copies_take_the_plain_path() {
        let src = [9u8; 100];
        let mut dst = [0u8; 100];
        // SAFETY: same length, separate arrays.
        unsafe { copy(dst.as_mut_ptr(), &src) };
        assert_eq!(dst, src);
    }
}
