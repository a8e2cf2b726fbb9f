//! The system's sleep and wake, heard from the platform and passed on as two calls: one just
//! before the machine sleeps (the app unloads models there, if the user keeps that setting)
//! and one after it wakes (deadlines that ran out asleep act at once). Linux: logind's
//! `PrepareForSleep` signal on the system D-Bus, with a delay inhibitor so the unload
//! finishes before the suspend (`linux.rs`); macOS: NSWorkspace's will-sleep and did-wake
//! notifications (`macos.rs`); Windows: the suspend/resume notification (`windows.rs`).
//! Where none starts, the idle clock still counts time asleep (see
//! `model_manager::SystemClock`) and models whose timeout ran out unload within one check
//! interval of waking.

use std::sync::Arc;

use crate::managers::settings::SettingsManager;
use crate::managers::slots::SlotManager;

#[cfg(target_os = "linux")]
pub mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(windows)]
mod windows;

/// What the watcher calls.
pub struct SleepHooks {
    /// The machine is about to sleep; returns when the app is ready for it.
    pub before_sleep: Box<dyn Fn() + Send + Sync>,
    /// The machine has woken.
    pub after_wake: Box<dyn Fn() + Send + Sync>,
}

/// Where the sleep signal comes from, for the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// systemd-logind's `PrepareForSleep` on the system bus.
    Logind,
    /// Windows's suspend/resume notification.
    SuspendResumeNotification,
    /// NSWorkspace's will-sleep and did-wake notifications (macOS).
    WorkspaceNotifications,
}

/// Starts listening for sleep and wake; `None` where this system offers no signal Dormouse
/// can read (the idle clock still counts time asleep).
pub fn watch(hooks: SleepHooks) -> Option<Source> {
    #[cfg(target_os = "linux")]
    let started = linux::watch_system_bus(hooks).map(|_| Source::Logind);
    #[cfg(windows)]
    let started = windows::watch(hooks).map(|()| Source::SuspendResumeNotification);
    #[cfg(target_os = "macos")]
    let started = macos::watch(hooks).map(|()| Source::WorkspaceNotifications);
    #[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
    let started: Result<Source, String> = {
        drop(hooks);
        Err("no sleep signal is read on this system yet".to_string())
    };
    match started {
        Ok(source) => Some(source),
        Err(error) => {
            tracing::warn!(%error, "no sleep signal: models stay loaded through a sleep");
            None
        }
    }
}

/// The app's answer: before sleep, unload every unpinned model if the user keeps "unload
/// before sleep" on (read at that moment, so a change applies to the next sleep); after
/// waking, let the deadlines that ran out asleep act.
pub fn app_hooks(slots: Arc<SlotManager>, settings: Arc<SettingsManager>) -> SleepHooks {
    let before = slots.clone();
    SleepHooks {
        before_sleep: Box::new(move || {
            if settings.read(|s| s.memory.unload_before_sleep) {
                let summary = before.prepare_for_sleep();
                tracing::info!(
                    unloaded = summary.unloaded.len(),
                    freed = summary.total_freed_bytes,
                    deferred = summary.deferred.len(),
                    "unloaded before sleep"
                );
            } else {
                tracing::info!("going to sleep with models loaded (the user's setting)");
            }
        }),
        after_wake: Box::new(move || slots.resumed_from_sleep()),
    }
}
