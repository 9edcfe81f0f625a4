//! Moving the calling thread off its CPU, for a ring waiter that finds
//! itself sharing one with its peer (see [`super::idle`]).
//!
//! The thread's affinity is narrowed to every CPU it may use but this one,
//! which makes the kernel migrate it at once, and then set back as it
//! was, so the user's own affinity (and the kernel's later choices) stand.
//! A thread bound to one CPU, or a CPU the affinity mask cannot name, is
//! left where it is.

use std::io;
use std::mem::size_of;

/// The CPU the calling thread runs on now.
pub(crate) fn current_cpu() -> Option<u32> {
    // SAFETY: plain call, no arguments.
    u32::try_from(unsafe { libc::sched_getcpu() }).ok()
}

/// Moves the calling thread to another CPU it may run on. `Ok(false)`: it
/// may run on no other.
pub(crate) fn leave_this_cpu() -> io::Result<bool> {
    // SAFETY: a zeroed cpu_set_t is an empty set, a valid value.
    let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: writes at most `size_of::<cpu_set_t>()` bytes into `allowed`.
    if unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut allowed) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let Some(cpu) = current_cpu() else {
        return Err(io::Error::last_os_error());
    };
    let cpu = cpu as usize;
    if cpu >= libc::CPU_SETSIZE as usize {
        return Ok(false);
    }
    // SAFETY: `cpu` is below `CPU_SETSIZE`, inside the set's bit array.
    if !unsafe { libc::CPU_ISSET(cpu, &allowed) } || unsafe { libc::CPU_COUNT(&allowed) } < 2 {
        return Ok(false);
    }
    let mut elsewhere = allowed;
    // SAFETY: as above.
    unsafe { libc::CPU_CLR(cpu, &mut elsewhere) };
    set_affinity(&elsewhere)?;
    set_affinity(&allowed)?;
    Ok(true)
}

fn set_affinity(set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: reads `size_of::<cpu_set_t>()` bytes from a live set.
    if unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_off_the_cpu_and_keeps_the_affinity_it_had() {
        fn affinity() -> libc::cpu_set_t {
            // SAFETY: a zeroed set is valid; the call writes within it.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            assert_eq!(
                unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) },
                0
            );
            set
        }
        std::thread::spawn(|| {
            let before = affinity();
            // SAFETY: plain calls.
            let from = unsafe { libc::sched_getcpu() };
            let moved = leave_this_cpu().unwrap();
            let to = unsafe { libc::sched_getcpu() };
            let after = affinity();
            // SAFETY: two valid sets.
            assert!(
                unsafe { libc::CPU_EQUAL(&before, &after) },
                "the affinity is as it was"
            );
            // SAFETY: a valid set.
            if unsafe { libc::CPU_COUNT(&before) } >= 2 {
                assert!(moved);
                assert_ne!(from, to, "on another CPU now");
            } else {
                assert!(!moved, "nowhere else to go");
            }
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_thread_bound_to_one_cpu_stays() {
        std::thread::spawn(|| {
            // SAFETY: as above.
            let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).unwrap();
            let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(cpu, &mut one) };
            set_affinity(&one).unwrap();
            assert!(!leave_this_cpu().unwrap());
            assert_eq!(unsafe { libc::sched_getcpu() }, cpu as i32);
        })
        .join()
        .unwrap();
    }
}
