//! [`SlotManager`] owns which model fills each slot and the requests' use of them: leases
//! ([`ModelUse`], which carries the model id, whether it was cold and its timings, so request
//! managers never call back), warming on intent, switching a slot's model, unloading,
//! shutdown and the status views. Every decision about a model's state is the core's; this
//! owner only asks.
//!
//! Lock order: the settings' locks are never held while calling the core, and `timings` is a
//! leaf lock.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model_manager::{Lease, ManagerEvent, ModelManager, DEFAULT_SHUTDOWN_GRACE};
use parking_lot::Mutex;

use crate::catalog::{Slot, Task};
use crate::error::{CommandError, CommandResult};
use crate::managers::library::ModelLibrary;
use crate::managers::settings::SettingsManager;
pub use crate::views::RequestTimings;
use crate::views::{micros, ModelStatusView, StatusView, UnloadSummary};

type Timings = Arc<Mutex<HashMap<Slot, RequestTimings>>>;

/// A lease on a slot's model, with what a request reports about it: the model's id, whether
/// it had to load, and how long the request waited. [`ModelUse::finish`] records the timings.
pub struct ModelUse {
    /// Keeps the model loaded until dropped.
    pub lease: Lease,
    slot: Slot,
    cold: bool,
    wait: Duration,
    granted: Instant,
    timings: Timings,
}

impl ModelUse {
    /// The id of the model held (`whisper-base`, `user:<id>`...).
    pub fn model_id(&self) -> &str {
        self.lease.model_id()
    }

    /// Records how the request went (shown as "last warm request" in the cost panel) and ends
    /// the lease.
    pub fn finish(self) -> RequestTimings {
        let timings = RequestTimings {
            wait_us: micros(self.wait),
            cold: self.cold,
            inference_us: micros(self.granted.elapsed()),
        };
        self.timings.lock().insert(self.slot, timings);
        timings
    }
}

/// Owner of the slots; see the module docs.
pub struct SlotManager {
    core: Arc<ModelManager>,
    settings: Arc<SettingsManager>,
    library: Arc<ModelLibrary>,
    timings: Timings,
}

impl SlotManager {
    /// The owner of `core`'s slots.
    pub fn new(
        core: Arc<ModelManager>,
        settings: Arc<SettingsManager>,
        library: Arc<ModelLibrary>,
    ) -> Self {
        Self {
            core,
            settings,
            library,
            timings: Arc::default(),
        }
    }

    /// The core's events, for forwarding.
    pub fn subscribe(&self) -> Receiver<ManagerEvent> {
        self.core.subscribe()
    }

    /// The lifecycle core (for tests and diagnostics).
    pub fn core(&self) -> &ModelManager {
        &self.core
    }

    /// A lease on `slot`'s model, loading it if needed; counts as activity and records the
    /// slot as recently used. A missing weights file is a clear error before any load.
    pub fn use_model(&self, slot: Slot) -> CommandResult<ModelUse> {
        self.ensure_installed(slot)?;
        let key = slot.key();
        let cold = !self.core.is_loaded(&key);
        let started = Instant::now();
        let lease = self.core.acquire(&key)?;
        let wait = started.elapsed();
        self.note_recent(slot);
        Ok(ModelUse {
            lease,
            slot,
            cold,
            wait,
            granted: Instant::now(),
            timings: self.timings.clone(),
        })
    }

    /// Starts loading `task`'s model(s) now because the user showed intent (started
    /// recording, opened an image). Returns at once.
    pub fn warm(&self, task: Task) -> CommandResult<()> {
        self.ensure_installed(task.slot())?;
        self.core.warm(&task.slot().key())?;
        if task == Task::Transcription && self.ensure_installed(Slot::Vad).is_ok() {
            self.core.warm(&Slot::Vad.key())?;
        }
        Ok(())
    }

    fn note_recent(&self, slot: Slot) {
        if slot == Slot::Vad
            || self
                .settings
                .read(|s| s.recently_used.first() == Some(&slot))
        {
            return;
        }
        let result = self.settings.update(|s| {
            s.recently_used.retain(|&x| x != slot);
            s.recently_used.insert(0, slot);
        });
        if let Err(error) = result {
            tracing::warn!(%error, "could not record recently used model");
        }
    }

    /// Errors with [`CommandError::ModelNotInstalled`] when the slot's weights file is missing.
    /// An active user model whose file vanished or fails its check (checked again before each
    /// load, not while it is loaded) hands its task back to the base model first, with a
    /// notice, as at start-up.
    pub fn ensure_installed(&self, slot: Slot) -> CommandResult<()> {
        if let Some(task) = slot.task() {
            let loaded = self.core.is_loaded(&slot.key());
            if let Some(notice) = self.library.active_user_model_problem(task, loaded) {
                self.settings.fall_back_to_base(task, notice);
                self.library.apply_spec(slot)?;
                self.settings.notify_changed();
            }
        }
        self.library.ensure_present(slot)
    }

    /// Chooses the base model of `task` (e.g. the segmentation size), makes it active (a
    /// user model stops being active) and starts loading it. Nothing changes on error.
    pub fn set_model(&self, task: Task, model_id: &str) -> CommandResult<ModelStatusView> {
        self.library.check_base_model(task, model_id)?;
        self.settings.update(|s| {
            s.models.set(task, model_id);
            s.active_user_models.set(task, None);
        })?;
        self.library.apply_spec(task.slot())?;
        self.core.warm(&task.slot().key())?;
        self.settings.notify_changed();
        self.model_view(task.slot())
    }

    /// Validates user model `id` and loads it into its task's slot, where it becomes the
    /// active model (persisted). A wrong, corrupt or vanished file is an error and the
    /// previous model stays active.
    pub fn load_user_model(&self, id: &str) -> CommandResult<ModelStatusView> {
        let (meta, spec) = self.library.checked_user_model(id)?;
        let slot = meta.task.slot();
        let key = slot.key();
        let previous = self.library.current_spec(slot);
        self.core.set_spec(&key, spec)?;
        match self.core.acquire(&key) {
            Ok(lease) => drop(lease),
            Err(error) => {
                self.core.set_spec(&key, previous)?;
                return Err(error.into());
            }
        }
        self.settings
            .update(|s| s.active_user_models.set(meta.task, Some(meta.id.clone())))?;
        self.note_recent(slot);
        self.settings.notify_changed();
        self.model_view(slot)
    }

    /// Makes `task` use its base model again (loaded lazily, on next use).
    pub fn reset_to_base_model(&self, task: Task) -> CommandResult<ModelStatusView> {
        self.settings
            .update(|s| s.active_user_models.set(task, None))?;
        self.library.apply_spec(task.slot())?;
        self.settings.notify_changed();
        self.model_view(task.slot())
    }

    /// Unloads `slot` (or every model): leased ones when their request ends.
    pub fn unload(&self, slot: Option<Slot>) -> CommandResult<UnloadSummary> {
        let report = match slot {
            Some(slot) => self.core.unload(&slot.key())?,
            None => self.core.unload_all(),
        };
        Ok(self.library.views().unload_summary(&report))
    }

    /// Stops the idle checker and unloads everything (on quit).
    pub fn shutdown(&self) -> UnloadSummary {
        let report = self.core.shutdown(DEFAULT_SHUTDOWN_GRACE);
        self.library.views().unload_summary(&report)
    }

    /// Passes the system's memory-pressure level to the core, which decides what to unload
    /// (see [`model_manager::ModelManager::report_memory_pressure`]).
    pub fn report_memory_pressure(&self, level: model_manager::PressureLevel) {
        self.core.report_memory_pressure(level);
    }

    /// The computer is about to sleep: unloads every model but the pinned ones (see
    /// [`model_manager::ModelManager::prepare_for_sleep`]).
    pub fn prepare_for_sleep(&self) -> UnloadSummary {
        let report = self.core.prepare_for_sleep();
        self.library.views().unload_summary(&report)
    }

    /// The computer woke: idle deadlines that ran out while it slept act now.
    pub fn resumed_from_sleep(&self) {
        self.core.resumed_from_sleep();
    }

    /// Passes the power source to the core (the on-battery timeout is its decision).
    pub fn report_power_source(&self, source: model_manager::PowerSource) {
        self.core.report_power_source(source);
    }

    /// The status snapshot as the UI sees it. Never loads anything.
    pub fn status(&self) -> StatusView {
        let mut view = self.library.views().status(&self.core.status());
        for model in &mut view.models {
            model.last_request = self.last_request(model.slot);
        }
        view
    }

    /// One model's view, from a core event (no snapshot taken).
    pub fn model_event_view(&self, status: &model_manager::ModelStatus) -> Option<ModelStatusView> {
        let mut view = self.library.views().model(status)?;
        view.last_request = self.last_request(view.slot);
        Some(view)
    }

    /// The last request's timings per slot (the measured warm-request cost).
    pub fn last_request(&self, slot: Slot) -> Option<RequestTimings> {
        self.timings.lock().get(&slot).copied()
    }

    fn model_view(&self, slot: Slot) -> CommandResult<ModelStatusView> {
        self.status()
            .models
            .into_iter()
            .find(|m| m.slot == slot)
            .ok_or_else(|| CommandError::internal(format!("{slot:?} has no status")))
    }
}
