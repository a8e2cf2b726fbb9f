//! What the outside world sees: the [`ManagerStatus`] snapshot, [`ManagerEvent`]s pushed to
//! subscribers, [`UnloadReport`]s and the [`ManagerStats`] counters.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::config::ManagerConfig;
use crate::key::ModelKey;
use crate::state::{ModelState, Transition, TransitionReason};

/// One model's status at the moment the snapshot was taken.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelStatus {
    /// The slot.
    pub key: ModelKey,
    /// Its state.
    pub state: ModelState,
    /// Id of the model loaded, loading or wanted next.
    pub model_id: Arc<str>,
    /// Its weights file, when there is one.
    pub model_path: Option<Arc<Path>>,
    /// Bytes resident as measured by the engine once loaded; `None` when nothing is loaded.
    pub resident_bytes: Option<u64>,
    /// Bytes the budget counts for the next load (the measured figure once known, else the
    /// loader's estimate).
    pub expected_bytes: Option<u64>,
    /// When the current model finished loading.
    pub loaded_at: Option<SystemTime>,
    /// When it was last used (a lease taken or returned).
    pub last_used: Option<SystemTime>,
    /// When it will be unloaded if nobody touches it; `None`: not scheduled (in use, pinned,
    /// always loaded, or not loaded).
    pub expires_at: Option<SystemTime>,
    /// Fraction done of the load in flight.
    pub load_progress: Option<f32>,
    /// The last load error, kept until a load succeeds.
    pub last_error: Option<String>,
    /// Leases held right now.
    pub leases: usize,
    /// Whether it is pinned.
    pub pinned: bool,
    /// Loads that finished successfully in this slot.
    pub load_count: u64,
    /// How long the last successful load took.
    pub last_load_duration: Option<Duration>,
    /// Generation of the current (or last) load.
    pub generation: u64,
    /// The last transition, with its reason.
    pub last_transition: Option<Transition>,
    /// The last unload of this slot.
    pub last_unload: Option<UnloadedModel>,
}

/// A snapshot of the whole manager; taking one never loads anything.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ManagerStatus {
    /// Every registered model, in registration order.
    pub models: Vec<ModelStatus>,
    /// Sum of `resident_bytes` over loaded models.
    pub total_resident_bytes: u64,
    /// The configuration in force.
    pub config: ManagerConfig,
    /// The system's memory pressure as last reported.
    pub pressure: crate::pressure::PressureLevel,
    /// Where the machine's power comes from, as last reported.
    pub power: crate::power::PowerSource,
    /// When the snapshot was taken.
    pub taken_at: SystemTime,
}

impl ManagerStatus {
    /// The status of one model.
    pub fn model(&self, key: &ModelKey) -> Option<&ModelStatus> {
        self.models.iter().find(|m| &m.key == key)
    }
}

/// A model that was unloaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnloadedModel {
    /// The slot.
    pub key: ModelKey,
    /// The model that was in it.
    pub model_id: Arc<str>,
    /// What the engine reported it held.
    pub resident_bytes: u64,
    /// Process RSS given back, measured before and after dropping it (process-wide, so
    /// concurrent allocations blur it); `None` where RSS cannot be read.
    pub bytes_freed: Option<u64>,
    /// Why it was unloaded.
    pub reason: TransitionReason,
    /// When.
    pub at: SystemTime,
}

/// What an unload request did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct UnloadReport {
    /// Models unloaded by this call.
    pub unloaded: Vec<UnloadedModel>,
    /// Leased models: they unload when their last lease ends.
    pub deferred: Vec<ModelKey>,
    /// Loads in flight that were cancelled.
    pub cancelled_loads: Vec<ModelKey>,
}

impl UnloadReport {
    /// Whether the call found nothing to unload ("No models were loaded").
    pub fn is_empty(&self) -> bool {
        self.unloaded.is_empty() && self.deferred.is_empty() && self.cancelled_loads.is_empty()
    }
}

/// Pushed to subscribers on every change.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ManagerEvent {
    /// A model's status changed (state, leases, deadline, error...).
    Model(ModelStatus),
    /// One step of a model's state machine, published the moment it is taken (several may
    /// come before the next [`ManagerEvent::Model`] snapshot).
    Transition {
        /// The slot.
        key: ModelKey,
        /// Load generation the slot is on.
        generation: u64,
        /// From, to and why.
        transition: Transition,
    },
    /// A load in flight reported progress.
    LoadProgress {
        /// The slot.
        key: ModelKey,
        /// The load's generation.
        generation: u64,
        /// Fraction done, 0.0–1.0.
        progress: f32,
    },
    /// The configuration changed.
    Config(ManagerConfig),
}

/// Counters since the manager started, for tests, benchmarks and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ManagerStats {
    /// Loads started.
    pub loads_started: u64,
    /// Loads whose model was kept.
    pub loads_completed: u64,
    /// Loads that failed (error or panic).
    pub loads_failed: u64,
    /// Loads whose result arrived after they were cancelled or superseded and was dropped.
    pub loads_discarded: u64,
    /// Models unloaded.
    pub unloads: u64,
    /// Times the idle checker woke up.
    pub checker_wakeups: u64,
    /// Transitions refused by the state table (a bug if ever non-zero).
    pub invalid_transitions: u64,
    /// Load threads still running (including discarded ones that have not returned yet).
    pub loads_in_flight: u64,
    /// Memory-pressure levels reported (changes only).
    pub pressure_reports: u64,
    /// Models unloaded, or marked to unload, for memory pressure.
    pub pressure_unloads: u64,
}
