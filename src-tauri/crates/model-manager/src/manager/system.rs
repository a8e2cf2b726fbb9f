//! What the core does when the machine's power state changes: before it sleeps, after it
//! wakes, and when it moves between mains and battery. The app reports these from the
//! platform's signals (logind, IOKit, Windows power broadcasts); the decisions are here.
//!
//! Time asleep counts as idle: the [`crate::SystemClock`] keeps running while the machine
//! sleeps, so a model whose idle timeout ran out during the sleep unloads on waking (at once
//! when the app reports the wake, else within one check interval).

use super::ModelManager;
use crate::power::PowerSource;
use crate::state::TransitionReason;
use crate::status::{UnloadReport, UnloadedModel};

impl ModelManager {
    /// The system is about to sleep: unloads every loaded model that is not pinned (a leased
    /// one when its last lease ends) and cancels loads in flight, with the reason
    /// `SystemSleep`. Pinned models stay: a pin means "keep it loaded", across a sleep too.
    pub fn prepare_for_sleep(&self) -> UnloadReport {
        let pinned: Vec<bool> = {
            let inner = self.shared.state.lock();
            inner
                .slots
                .iter()
                .map(|s| inner.config.is_pinned(&s.key))
                .collect()
        };
        tracing::info!("system going to sleep: unloading models");
        self.unload_where(TransitionReason::SystemSleep, |i| {
            !pinned.get(i).copied().unwrap_or(true)
        })
    }

    /// The system woke from sleep: acts now on every idle deadline that passed while it
    /// slept, and returns the models unloaded for it. The idle checker's own wait does not
    /// run while the machine sleeps, so without this call they go within one check interval.
    pub fn resumed_from_sleep(&self) -> Vec<UnloadedModel> {
        tracing::info!("system woke from sleep");
        let unloaded = self.run_idle_check();
        self.shared.checker_wake.notify_one();
        unloaded
    }

    /// Tells the core where the machine's power comes from. On battery, idle timeouts are
    /// at most [`crate::ManagerConfig::battery_idle_timeout`] (when set); deadlines move at
    /// once, and a model already idle for longer unloads now (reason `IdleTimeout`).
    pub fn report_power_source(&self, source: PowerSource) {
        let mut inner = self.shared.state.lock();
        if inner.power == source {
            return;
        }
        tracing::info!(?source, "power source changed");
        inner.power = source;
        inner.refresh_hot_flags();
        let (now, wall) = self.now();
        for idx in 0..inner.slots.len() {
            inner.publish_model(idx, now, wall);
        }
        self.shared.checker_wake.notify_one();
    }
}
