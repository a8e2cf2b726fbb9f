//! Windows's memory-pressure signal: the kernel's low-memory resource notification
//! (`CreateMemoryResourceNotification`). The watcher waits on it, so nothing runs while memory
//! is fine; Windows signals it when available physical memory is low, which Dormouse takes as
//! critical (Windows offers no earlier warning level). The kernel never says when it is over,
//! so while it lasts the watcher asks every 2 s (`QueryMemoryResourceNotification`).

use std::time::Duration;

use model_manager::PressureLevel;
use windows_sys::Win32::Foundation::{HANDLE, WAIT_OBJECT_0};
use windows_sys::Win32::System::Memory::{
    CreateMemoryResourceNotification, LowMemoryResourceNotification,
    QueryMemoryResourceNotification,
};
use windows_sys::Win32::System::Threading::{WaitForSingleObject, INFINITE};

use super::Source;

/// While memory is low, how often the watcher asks whether it still is.
const RELIEF_CHECK: Duration = Duration::from_secs(2);

/// A handle the watcher owns for the life of the process (never closed: the thread runs
/// until the process ends).
struct Notification(HANDLE);

// SAFETY: a kernel handle may be used from any thread.
unsafe impl Send for Notification {}

/// Starts the watcher thread on the low-memory notification.
pub fn watch(report: impl Fn(PressureLevel) + Send + 'static) -> std::io::Result<Source> {
    // SAFETY: no pointers; a null handle is the documented failure.
    let handle = unsafe { CreateMemoryResourceNotification(LowMemoryResourceNotification) };
    if handle.is_null() {
        return Err(std::io::Error::last_os_error());
    }
    let low = Notification(handle);
    std::thread::Builder::new()
        .name("dormouse-memory-pressure".into())
        .spawn(move || watch_low_memory(&low, &report))?;
    tracing::info!("watching the system's memory pressure (low-memory notification)");
    Ok(Source::LowMemoryNotification)
}

fn watch_low_memory(low: &Notification, report: &dyn Fn(PressureLevel)) {
    let mut level = PressureLevel::Normal;
    loop {
        let timeout = if level == PressureLevel::Normal {
            INFINITE
        } else {
            RELIEF_CHECK.as_millis() as u32
        };
        // SAFETY: `low.0` is a live handle owned by this thread.
        let waited = unsafe { WaitForSingleObject(low.0, timeout) };
        let next = if waited == WAIT_OBJECT_0 {
            // Signalled: memory is low. (Waiting again while it lasts returns at once, so the
            // loop asks at the relief interval instead: see the timeout above.)
            let mut still_low = 0;
            // SAFETY: a live handle and a valid out-pointer.
            let asked = unsafe { QueryMemoryResourceNotification(low.0, &mut still_low) };
            if asked == 0 || still_low != 0 {
                PressureLevel::Critical
            } else {
                PressureLevel::Normal
            }
        } else {
            PressureLevel::Normal
        };
        if next != level {
            level = next;
            report(level);
        }
        if level != PressureLevel::Normal {
            std::thread::sleep(RELIEF_CHECK);
        }
    }
}
