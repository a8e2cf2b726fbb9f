//! Process memory: how much of it is resident, and giving freed memory back to the OS.
//!
//! What "resident" means on each system (one figure, comparable before and after an unload):
//! - **Linux:** the resident set size (`VmRSS`, from `/proc/self/statm` through
//!   `memory-stats`), what `top` and `ps` show.
//! - **macOS:** the physical footprint (`ri_phys_footprint` from `proc_pid_rusage`), what
//!   Activity Monitor shows as "Memory": resident, private memory plus what the system
//!   compressed or swapped of it, without shared libraries' clean pages. The resident size
//!   macOS also reports counts shared pages and drops compressed ones, so an unload could
//!   seem to free memory that only moved to the compressor.
//! - **Windows:** the working set (`WorkingSetSize` from `GetProcessMemoryInfo`, through
//!   `memory-stats`), the pages of the process that are in RAM, closest to Linux's RSS.
//!   Private bytes (the commit charge) would also count pages paged out to disk.
//!
//! Giving memory back ([`release_to_os`]) after a model is dropped:
//! - **glibc:** `malloc_trim(0)` returns the free pages at the top of the heap and, since
//!   glibc 2.8, every whole free page inside it (`madvise(MADV_DONTNEED)`). It cannot move
//!   live allocations, so a page that still holds one small live object stays.
//!   Other C libraries (musl) unmap large blocks on free and have nothing to trim.
//! - **macOS:** `malloc_zone_pressure_relief(NULL, 0)` asks every malloc zone to return
//!   as many free pages as it can, as the system does under memory pressure. Like
//!   `malloc_trim`, it cannot move live allocations.
//! - **Windows:** `HeapCompact` on the process heap coalesces free blocks and decommits the
//!   large free ones. Blocks above the heap's threshold (about 512 KiB: model tensors) were
//!   never in the heap and were released by `HeapFree` already; compaction cannot release a
//!   segment that still holds a live block.
//!
//! glibc's defaults keep memory that a model freed ([`tune_allocator`] changes them): after
//! a large block is freed, glibc raises its mmap threshold to that size (up to 32 MiB) and
//! its trim threshold to twice that, so the next model's tensors come from a thread's arena,
//! whose free top (under 64 MiB) is never returned, not even by `malloc_trim`. Measured with
//! the engines' SAM bench (MobileSAM loaded through the manager, four images embedded,
//! unloaded): 56 MiB stayed above the baseline; with the thresholds fixed at 32 MiB and
//! 128 KiB, under 1 MiB did (docs/benchmarks.md).

/// This process's resident memory in bytes, as defined for each system in the module
/// docs; `None` where the system does not say.
pub fn process_rss_bytes() -> Option<u64> {
    #[cfg(target_os = "macos")]
    {
        macos::physical_footprint()
    }
    #[cfg(not(target_os = "macos"))]
    {
        memory_stats::memory_stats().and_then(|m| u64::try_from(m.physical_mem).ok())
    }
}

/// Fixes glibc's mmap threshold at 32 MiB (the largest its dynamic rule would reach, so large
/// tensors are still mapped and unmapped as before) and its trim threshold at 128 KiB (its
/// default), which turns off the dynamic rule that kept unloaded models' memory (module docs).
/// Call it once, early, before other threads start. Nothing to do elsewhere.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's tunables; called before other threads run.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}

/// Asks the allocator to return freed memory to the OS (see the module docs for what each
/// system's call can and cannot do).
pub fn release_to_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(target_os = "macos")]
    macos::pressure_relief();
    #[cfg(windows)]
    // SAFETY: GetProcessHeap has no preconditions; HeapCompact on the process heap with no
    // flags only rearranges the heap's own free blocks (the heap is serialised).
    unsafe {
        use windows_sys::Win32::System::Memory::{GetProcessHeap, HeapCompact};
        let heap = GetProcessHeap();
        if !heap.is_null() {
            HeapCompact(heap, 0);
        }
    }
}

#[cfg(target_os = "macos")]
mod macos {
    use std::ffi::c_void;

    extern "C" {
        // <malloc/malloc.h>; not in the libc crate. A null zone means every zone.
        fn malloc_zone_pressure_relief(zone: *mut c_void, goal: usize) -> usize;
    }

    pub fn pressure_relief() {
        // SAFETY: a null zone and a goal of 0 ("as much as possible") are documented inputs.
        unsafe {
            malloc_zone_pressure_relief(std::ptr::null_mut(), 0);
        }
    }

    pub fn physical_footprint() -> Option<u64> {
        let mut info = std::mem::MaybeUninit::<libc::rusage_info_v2>::zeroed();
        // SAFETY: RUSAGE_INFO_V2 fills a rusage_info_v2; the buffer is that struct.
        let rc = unsafe {
            libc::proc_pid_rusage(
                libc::getpid(),
                libc::RUSAGE_INFO_V2,
                info.as_mut_ptr().cast::<libc::rusage_info_t>(),
            )
        };
        // SAFETY: proc_pid_rusage returned 0, so it wrote the struct (zeroed before anyway).
        (rc == 0).then(|| unsafe { info.assume_init() }.ri_phys_footprint)
    }
}

/// Drops `value`, gives freed memory back to the OS and returns the memory it saved,
/// measured before and after (process-wide: other threads' allocations in between blur the
/// figure).
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

    /// The cross-platform figure is the kernel's own: on Linux it matches `VmRSS` in
    /// `/proc/self/status` (read right after, so within a little allocation noise).
    #[test]
    fn resident_memory_is_measured_and_matches_the_kernel_on_linux() {
        let measured = process_rss_bytes().expect("resident memory");
        assert!(measured > 0);
        if cfg!(target_os = "linux") {
            let status = std::fs::read_to_string("/proc/self/status").expect("status");
            let kib: u64 = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .expect("VmRSS");
            let kernel = kib * 1024;
            let gap = measured.abs_diff(kernel);
            assert!(
                gap < 8 << 20,
                "measured {measured} B, /proc says {kernel} B"
            );
        }
    }

    #[test]
    fn dropping_a_touched_buffer_gives_its_memory_back() {
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
