//! Where the machine's power comes from (mains or battery), read from the platform and
//! reported to the lifecycle core as it changes
//! ([`model_manager::ModelManager::report_power_source`]); the shorter on-battery timeout is
//! the core's decision. Linux: the kernel's `power_supply` class in sysfs, re-read when the
//! kernel announces a `power_supply` change on its uevent socket (`linux.rs`): nothing
//! runs between changes. macOS: IOKit's power-source notification on the main run loop
//! (`macos.rs`). Windows: the AC/DC power-setting notification (`windows.rs`). Where none
//! starts, the on-battery timeout never applies, and Settings says so.

use model_manager::PowerSource;

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(windows)]
mod windows;

/// Where the power signal comes from, for the log and the settings view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `/sys/class/power_supply`, re-read on the kernel's uevents.
    SysfsUevents,
    /// Windows's AC/DC power-setting notification.
    AcDcNotification,
    /// IOKit's power-source notification (macOS).
    PowerSourceNotification,
}

/// Reads the power source now, reports it, and keeps reporting its changes; `None` where
/// this system offers no signal Dormouse can read.
pub fn watch(report: impl Fn(PowerSource) + Send + 'static) -> Option<Source> {
    #[cfg(target_os = "linux")]
    let started = linux::watch(std::path::Path::new(linux::POWER_SUPPLY), report)
        .map(|_| Source::SysfsUevents);
    #[cfg(windows)]
    let started = windows::watch(report).map(|()| Source::AcDcNotification);
    #[cfg(target_os = "macos")]
    let started = macos::watch(report).map(|()| Source::PowerSourceNotification);
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    let started: std::io::Result<Source> = {
        drop(report);
        Err(std::io::Error::other(
            "the power source is not read on this system yet",
        ))
    };
    match started {
        Ok(source) => Some(source),
        Err(error) => {
            tracing::warn!(%error, "no power-source signal: the on-battery timeout will not apply");
            None
        }
    }
}
