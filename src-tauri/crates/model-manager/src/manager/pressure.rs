//! Answering the system's memory pressure inside the state machine: the episode and its
//! hysteresis, what is unloaded at each level, and the per-model cooldown that keeps a
//! flapping signal from becoming an eviction storm.
//!
//! An *episode* starts with the first report above normal. Nothing is unloaded before the
//! pressure has lasted one sustain window; then one step is taken per window, at the first
//! look at or after the window's end that finds the signal above normal, at the highest level
//! reported since the last step (so a signal that flaps faster than the window still counts
//! as pressure, and still acts at most once per window, while a blip that is over when the
//! window ends acts never, whatever wakes the checker then). The episode ends when the
//! system has reported normal for a whole window; unloads still waiting on a lease are then
//! called off. A model unloaded for pressure is not unloaded for pressure again before the
//! cooldown has passed, whatever the signal does.
//!
//! - **Warn**: the loaded, unleased, unpinned model that frees the most for the least
//!   recent use (resident bytes × seconds idle) goes; one per step.
//! - **Critical**: every loaded model goes, pinned ones too (the one exception to a pin,
//!   documented for the user); a leased one goes when its last lease ends.

use std::time::{Instant, SystemTime};

use super::inner::{Eviction, Inner, SlotPhase};
use crate::pressure::PressureLevel;
use crate::state::TransitionReason;

/// The signal as last reported, and the episode it belongs to.
#[derive(Debug, Default)]
pub(crate) struct PressureState {
    /// The level last reported.
    level: PressureLevel,
    /// When `level` was reported.
    reported_at: Option<Instant>,
    /// When the episode began (the first report above normal); `None` outside one.
    episode: Option<Instant>,
    /// The highest level reported since the last step.
    peak: PressureLevel,
    /// The earliest time of the next step.
    next_step: Option<Instant>,
}

impl PressureState {
    /// The level last reported.
    pub(crate) fn level(&self) -> PressureLevel {
        self.level
    }
}

impl Inner {
    /// Takes a report of the system's memory pressure; returns whether it changed anything
    /// (the idle checker then needs to look again).
    pub(crate) fn report_pressure(&mut self, level: PressureLevel, now: Instant) -> bool {
        let sustain = self.config.pressure.sustain;
        let p = &mut self.pressure;
        if level == p.level && p.reported_at.is_some() {
            return false;
        }
        p.level = level;
        p.reported_at = Some(now);
        if level > PressureLevel::Normal {
            if p.episode.is_none() {
                p.episode = Some(now);
                p.next_step = Some(now + sustain);
                p.peak = PressureLevel::Normal;
            }
            p.peak = p.peak.max(level);
        }
        self.stats.pressure_reports += 1;
        true
    }

    /// Whether `idx` may be unloaded for pressure at `level` now: loaded, not already waiting
    /// to unload for pressure, past its cooldown, and (on warn) unleased and unpinned.
    fn pressure_candidate(&self, idx: usize, level: PressureLevel, now: Instant) -> bool {
        let slot = &self.slots[idx];
        let cooled = slot
            .pressure_unloaded_at
            .is_none_or(|at| at + self.config.pressure.cooldown <= now);
        let open = matches!(slot.phase, SlotPhase::Loaded { .. })
            && slot.pending_unload != Some(TransitionReason::MemoryPressure)
            && cooled;
        match level {
            PressureLevel::Normal => false,
            PressureLevel::Warn => {
                open && slot.hot.leases() == 0 && !self.config.is_pinned(&slot.key)
            }
            PressureLevel::Critical => open,
        }
    }

    /// When the idle checker must next look at the pressure: the end of the sustain window
    /// for an episode that may end, or the next step when something could be unloaded then.
    /// `None` when there is nothing to do, however long the pressure lasts.
    pub(crate) fn pressure_deadline(&self) -> Option<Instant> {
        if !self.config.pressure.enabled {
            return None;
        }
        let p = &self.pressure;
        p.episode?;
        if p.level == PressureLevel::Normal {
            return p.reported_at.map(|at| at + self.config.pressure.sustain);
        }
        let step = p.next_step?;
        let level = p.peak.max(p.level);
        // A model in its cooldown can be unloaded once it has passed.
        let cooldown = self.config.pressure.cooldown;
        (0..self.slots.len())
            .filter_map(|i| {
                let slot = &self.slots[i];
                let ready = slot
                    .pressure_unloaded_at
                    .map_or(step, |at| (at + cooldown).max(step));
                self.pressure_candidate(i, level, ready).then_some(ready)
            })
            .min()
    }

    /// Takes the step the pressure calls for at `now`, if one is due: starts the unloads and
    /// returns them (leased models on critical are marked to unload when released). Also
    /// ends an episode once normal has lasted a sustain window.
    pub(crate) fn begin_pressure_unloads(
        &mut self,
        now: Instant,
        wall: SystemTime,
    ) -> Vec<Eviction> {
        let policy = self.config.pressure;
        if !policy.enabled || self.pressure.episode.is_none() {
            return Vec::new();
        }
        let p = &self.pressure;
        if p.level == PressureLevel::Normal
            && p.reported_at.is_some_and(|at| at + policy.sustain <= now)
        {
            self.end_pressure_episode();
            return Vec::new();
        }
        if p.level == PressureLevel::Normal || p.next_step.is_some_and(|step| now < step) {
            return Vec::new();
        }
        let level = p.peak.max(p.level);
        let candidates: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.pressure_candidate(i, level, now))
            .collect();
        let chosen = match level {
            PressureLevel::Normal => Vec::new(),
            PressureLevel::Warn => self.most_freeing(&candidates, now).into_iter().collect(),
            PressureLevel::Critical => candidates,
        };
        if chosen.is_empty() {
            return Vec::new();
        }
        let mut evictions = Vec::new();
        for idx in chosen {
            self.slots[idx].pressure_unloaded_at = Some(now);
            self.stats.pressure_unloads += 1;
            tracing::info!(key = %self.slots[idx].key, ?level, "unloading for memory pressure");
            match self.request_unload(idx, TransitionReason::MemoryPressure) {
                Some(eviction) => evictions.push(eviction),
                None => self.publish_model(idx, now, wall),
            }
        }
        let p = &mut self.pressure;
        p.next_step = Some(now + policy.sustain);
        p.peak = p.level;
        evictions
    }

    /// The candidate that frees the most for the least recent use: resident bytes × seconds
    /// since its last use (at least one second, so a just-used large model still ranks).
    fn most_freeing(&self, candidates: &[usize], now: Instant) -> Option<usize> {
        candidates.iter().copied().max_by(|&a, &b| {
            let score = |i: usize| {
                let slot = &self.slots[i];
                let idle = self
                    .activity
                    .decode(slot.hot.last_used_raw())
                    .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64());
                slot.held_bytes() as f64 * idle.max(1.0)
            };
            // Ties go to the lower index, so the choice is deterministic.
            score(a).total_cmp(&score(b)).then(b.cmp(&a))
        })
    }

    /// Ends the episode: unloads still waiting on a lease for pressure are called off.
    fn end_pressure_episode(&mut self) {
        tracing::info!("memory pressure over");
        self.pressure = PressureState {
            level: PressureLevel::Normal,
            reported_at: self.pressure.reported_at,
            ..PressureState::default()
        };
        for idx in 0..self.slots.len() {
            if self.slots[idx].pending_unload == Some(TransitionReason::MemoryPressure) {
                self.set_pending_unload(idx, None);
            }
        }
    }
}
