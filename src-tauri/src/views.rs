//! What the front end sees of the lifecycle core: typed mirrors of its snapshot, transitions
//! and unload reports (times as milliseconds since the Unix epoch, sizes as byte counts in
//! plain numbers), built from the core's types in one place.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model_manager::{
    ManagerStatus, ModelState, ModelStatus, TransitionReason, UnloadReport, UnloadedModel,
};
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::catalog::{self, Slot};

/// Where a model is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum ModelStateView {
    /// Not in memory.
    Unloaded,
    /// Loading now.
    Loading,
    /// In memory, ready.
    Loaded,
    /// Being freed.
    Unloading,
    /// The last load failed; the next use retries.
    Failed,
}

impl From<ModelState> for ModelStateView {
    fn from(state: ModelState) -> Self {
        match state {
            ModelState::Idle => Self::Unloaded,
            ModelState::Loading => Self::Loading,
            ModelState::Loaded => Self::Loaded,
            ModelState::Unloading => Self::Unloading,
            ModelState::Failed => Self::Failed,
        }
    }
}

/// Why a model changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum ReasonView {
    /// A request needed it.
    FirstUse,
    /// The user showed intent (recording, opened an image).
    Warm,
    /// Loaded at startup.
    Preload,
    /// Another model or size was chosen.
    Superseded,
    /// The load finished.
    LoadFinished,
    /// The load failed.
    LoadFailed,
    /// The load was cancelled.
    Cancelled,
    /// Unused for longer than the strategy allows.
    IdleTimeout,
    /// The user asked.
    Manual,
    /// Evicted to make room within the memory budget.
    EvictedForMemory,
    /// The system said it was low on memory.
    MemoryPressure,
    /// The computer was about to sleep.
    SystemSleep,
    /// Unloaded right after use (immediate strategy).
    Immediate,
    /// The app is quitting.
    Shutdown,
}

impl From<TransitionReason> for ReasonView {
    fn from(reason: TransitionReason) -> Self {
        use TransitionReason as R;
        match reason {
            R::FirstUse => Self::FirstUse,
            R::Warm => Self::Warm,
            R::Preload => Self::Preload,
            R::Superseded => Self::Superseded,
            R::LoadFinished => Self::LoadFinished,
            R::LoadFailed => Self::LoadFailed,
            R::Cancelled => Self::Cancelled,
            R::IdleTimeout => Self::IdleTimeout,
            R::Manual => Self::Manual,
            R::EvictedForMemory => Self::EvictedForMemory,
            R::MemoryPressure => Self::MemoryPressure,
            R::SystemSleep => Self::SystemSleep,
            R::Immediate => Self::Immediate,
            R::Shutdown => Self::Shutdown,
        }
    }
}

/// How long a request spent waiting for its model and running it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct RequestTimings {
    /// Time spent waiting for the model (a cold load, or nothing when it was warm), µs.
    pub wait_us: u64,
    /// Whether the model had to be loaded for this request.
    pub cold: bool,
    /// Time spent in inference, µs.
    pub inference_us: u64,
}

/// A model that was unloaded, and what that gave back.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct UnloadedView {
    /// Its slot.
    pub slot: Slot,
    /// The model that was loaded.
    pub model_id: String,
    /// Its name for people.
    pub display_name: String,
    /// What the engine held.
    pub resident_bytes: u64,
    /// Process memory given back (measured; `null` where it cannot be read).
    pub bytes_freed: Option<u64>,
    /// Why.
    pub reason: ReasonView,
    /// When (ms since the epoch).
    pub at_ms: u64,
}

/// One model's status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct ModelStatusView {
    /// Its slot.
    pub slot: Slot,
    /// The model loaded, loading or used next (`whisper-base`, `user:<id>`).
    pub model_id: String,
    /// Its name for people.
    pub display_name: String,
    /// Whether it is one of the user's own models.
    pub is_user_model: bool,
    /// Its weights file.
    pub model_path: Option<String>,
    /// Its state.
    pub state: ModelStateView,
    /// Bytes resident, measured by the engine; `null` when not loaded.
    pub resident_bytes: Option<u64>,
    /// Bytes the next load is expected to take.
    pub expected_bytes: Option<u64>,
    /// When it finished loading.
    pub loaded_at_ms: Option<u64>,
    /// When it was last used.
    pub last_used_ms: Option<u64>,
    /// When it unloads if untouched; `null` when not scheduled.
    pub expires_at_ms: Option<u64>,
    /// Fraction of the load in flight.
    pub load_progress: Option<f32>,
    /// The last load error.
    pub last_error: Option<String>,
    /// Requests using it now.
    pub leases: u32,
    /// Whether it is pinned.
    pub pinned: bool,
    /// How long its last load took (µs): the measured cold-start cost.
    pub last_load_us: Option<u64>,
    /// Completed loads in this session.
    pub load_count: u32,
    /// The last time it was unloaded.
    pub last_unload: Option<UnloadedView>,
    /// The last request's measured timings (the warm-request cost).
    pub last_request: Option<RequestTimings>,
}

/// Every model, the total and when the snapshot was taken.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct StatusView {
    /// Per model, in slot order.
    pub models: Vec<ModelStatusView>,
    /// Sum of the loaded models' resident bytes.
    pub total_resident_bytes: u64,
    /// The system's memory pressure as last reported.
    pub pressure: PressureView,
    /// The computer runs on its battery (the on-battery timeout applies, when set).
    pub on_battery: bool,
    /// When (ms since the epoch).
    pub taken_at_ms: u64,
}

/// How short of memory the system says it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum PressureView {
    /// Enough memory (or no signal on this system).
    #[default]
    Normal,
    /// Getting short: idle models are unloaded one at a time.
    Warn,
    /// Short now: every model without a request in flight is unloaded.
    Critical,
}

impl From<model_manager::PressureLevel> for PressureView {
    fn from(level: model_manager::PressureLevel) -> Self {
        match level {
            model_manager::PressureLevel::Normal => Self::Normal,
            model_manager::PressureLevel::Warn => Self::Warn,
            model_manager::PressureLevel::Critical => Self::Critical,
        }
    }
}

/// What an unload request did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct UnloadSummary {
    /// Models freed now.
    pub unloaded: Vec<UnloadedView>,
    /// Models in use: they unload when their request finishes.
    pub deferred: Vec<Slot>,
    /// Loads that were cancelled.
    pub cancelled_loads: Vec<Slot>,
    /// Sum of `bytes_freed` (or of resident bytes where not measured).
    pub total_freed_bytes: u64,
}

/// Milliseconds since the epoch.
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whole microseconds of a duration.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Display name of a model id (`user:` ids are named by the caller's lookup).
pub fn display_name(model_id: &str, user_name: impl Fn(&str) -> Option<String>) -> String {
    match model_id.strip_prefix("user:") {
        Some(id) => user_name(id).unwrap_or_else(|| format!("Custom model {id}")),
        None => catalog::entry(model_id)
            .map_or_else(|| model_id.to_owned(), |e| e.display_name.to_owned()),
    }
}

/// Builds views, naming user models through `user_name`.
pub struct Views<F: Fn(&str) -> Option<String>> {
    /// Looks up a user model's display name by id.
    pub user_name: F,
}

impl<F: Fn(&str) -> Option<String>> Views<F> {
    /// The view of one unloaded model.
    pub fn unloaded(&self, u: &UnloadedModel) -> Option<UnloadedView> {
        Some(UnloadedView {
            slot: Slot::from_key(&u.key)?,
            model_id: u.model_id.to_string(),
            display_name: display_name(&u.model_id, &self.user_name),
            resident_bytes: u.resident_bytes,
            bytes_freed: u.bytes_freed,
            reason: u.reason.into(),
            at_ms: epoch_ms(u.at),
        })
    }

    /// The view of one model's status (`None` for a slot the app does not know).
    pub fn model(&self, m: &ModelStatus) -> Option<ModelStatusView> {
        Some(ModelStatusView {
            slot: Slot::from_key(&m.key)?,
            model_id: m.model_id.to_string(),
            display_name: display_name(&m.model_id, &self.user_name),
            is_user_model: m.model_id.starts_with("user:"),
            model_path: m.model_path.as_ref().map(|p| p.display().to_string()),
            state: m.state.into(),
            resident_bytes: m.resident_bytes,
            expected_bytes: m.expected_bytes,
            loaded_at_ms: m.loaded_at.map(epoch_ms),
            last_used_ms: m.last_used.map(epoch_ms),
            expires_at_ms: m.expires_at.map(epoch_ms),
            load_progress: m.load_progress,
            last_error: m.last_error.clone(),
            leases: u32::try_from(m.leases).unwrap_or(u32::MAX),
            pinned: m.pinned,
            last_load_us: m.last_load_duration.map(micros),
            load_count: u32::try_from(m.load_count).unwrap_or(u32::MAX),
            last_unload: m.last_unload.as_ref().and_then(|u| self.unloaded(u)),
            last_request: None,
        })
    }

    /// The view of a whole snapshot.
    pub fn status(&self, s: &ManagerStatus) -> StatusView {
        StatusView {
            models: s.models.iter().filter_map(|m| self.model(m)).collect(),
            total_resident_bytes: s.total_resident_bytes,
            pressure: s.pressure.into(),
            on_battery: s.power == model_manager::PowerSource::Battery,
            taken_at_ms: epoch_ms(s.taken_at),
        }
    }

    /// The view of an unload report.
    pub fn unload_summary(&self, r: &UnloadReport) -> UnloadSummary {
        let unloaded: Vec<UnloadedView> =
            r.unloaded.iter().filter_map(|u| self.unloaded(u)).collect();
        UnloadSummary {
            total_freed_bytes: unloaded
                .iter()
                .map(|u| u.bytes_freed.unwrap_or(u.resident_bytes))
                .sum(),
            unloaded,
            deferred: r.deferred.iter().filter_map(Slot::from_key).collect(),
            cancelled_loads: r
                .cancelled_loads
                .iter()
                .filter_map(Slot::from_key)
                .collect(),
        }
    }
}
