//! Giving memory back to the OS and measuring it: process RSS from `/proc/self/statm` and
//! `malloc_trim(0)` on glibc Linux (no-ops elsewhere).

/// Resident set size of this process in bytes, when the platform exposes it.
pub fn process_rss_bytes() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(page).ok().map(|p| resident_pages * p)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Asks the allocator to return freed memory to the OS (glibc keeps it otherwise).
pub fn release_to_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Drops `value`, gives freed memory back to the OS and returns the RSS it saved, measured
/// before and after (process-wide: other threads' allocations in between blur the figure).
pub fn drop_and_measure<T>(value: T) -> Option<u64> {
    let before = process_rss_bytes();
    drop(value);
    release_to_os();
    let after = process_rss_bytes();
    Some(before?.saturating_sub(after?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(process_rss_bytes().expect("statm") > 0);
        }
    }

    #[test]
    fn dropping_a_touched_buffer_gives_its_memory_back() {
        if !cfg!(all(target_os = "linux", target_env = "gnu")) {
            return;
        }
        // 64 MiB, every page touched so it is resident.
        let buffer = vec![1u8; 64 << 20];
        assert_eq!(
            buffer
                .iter()
                .step_by(4096)
                .map(|&b| u64::from(b))
                .sum::<u64>(),
            16384
        );
        let freed = drop_and_measure(buffer).expect("measured");
        assert!(freed >= 48 << 20, "freed only {freed} bytes");
    }
}
