//! The system's memory-pressure signal: read from the platform's own source, on a thread of
//! its own that sleeps until the system says something, and reported to the lifecycle core
//! as it changes ([`model_manager::ModelManager::report_memory_pressure`]); what to unload is
//! the core's decision. Linux: a PSI trigger on `/proc/pressure/memory` (`linux.rs`),
//! falling back to `MemAvailable` where PSI is missing; macOS: a dispatch memory-pressure
//! source (`macos.rs`); Windows: the low-memory resource notification (`windows.rs`).

use model_manager::PressureLevel;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(windows)]
mod windows;

/// Where the levels come from, for the log and the settings view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The kernel's pressure-stall information (a trigger: no polling while normal).
    Psi,
    /// `MemAvailable` from `/proc/meminfo`, read every few seconds (PSI is missing).
    MemAvailable,
    /// macOS's dispatch memory-pressure source.
    DispatchSource,
    /// Windows's low-memory resource notification.
    LowMemoryNotification,
}

/// Starts watching the system's memory pressure; `report` hears every change of level.
/// `None` where this system offers no signal Dormouse can read (then the memory budget and
/// the idle timeouts still apply).
pub fn watch(report: impl Fn(PressureLevel) + Send + 'static) -> Option<Source> {
    #[cfg(target_os = "linux")]
    let started = linux::watch(report);
    #[cfg(target_os = "macos")]
    let started = macos::watch(report);
    #[cfg(windows)]
    let started = windows::watch(report);
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    let started: std::io::Result<Source> = {
        let _ = report;
        Err(std::io::Error::other(
            "no memory-pressure source on this system",
        ))
    };
    match started {
        Ok(source) => Some(source),
        Err(error) => {
            tracing::warn!(%error, "no memory-pressure signal");
            None
        }
    }
}
