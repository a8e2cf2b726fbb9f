//! [`ModelManager`]: the public face of the lifecycle core. It owns the slots (through the
//! state in [`inner`]), hands out [`Lease`]s, starts loads, unloads on demand, runs the idle
//! checker and shuts everything down.

mod checker;
mod hot;
mod inner;
mod lease;
mod pressure;
mod system;
mod work;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use self::hot::{Activity, Hot};
use self::inner::{Eviction, Inner, SlotEntry, SlotPhase};
pub use self::lease::Lease;
use self::work::{guarded, Shared};
use crate::clock::{Clock, SystemClock};
use crate::config::ManagerConfig;
use crate::error::ManagerError;
use crate::key::{ModelKey, ModelSpec};
use crate::loader::ModelLoader;
use crate::state::{ModelState, TransitionReason};
use crate::status::{ManagerEvent, ManagerStats, ManagerStatus, UnloadReport, UnloadedModel};

/// How long [`Drop`] of a manager waits for leases and loads before giving up on them.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Configures and starts a [`ModelManager`].
pub struct ModelManagerBuilder {
    config: ManagerConfig,
    clock: Arc<dyn Clock>,
    slots: Vec<(ModelKey, Arc<dyn ModelLoader>, ModelSpec)>,
    idle_checker: bool,
}

impl ModelManagerBuilder {
    /// The user's configuration (validated by [`ModelManagerBuilder::build`]).
    pub fn config(mut self, config: ManagerConfig) -> Self {
        self.config = config;
        self
    }

    /// The clock deadlines are measured with (tests inject a [`crate::ManualClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// A slot for `key`, loaded by `loader` with `spec`.
    pub fn register(
        mut self,
        key: ModelKey,
        loader: Arc<dyn ModelLoader>,
        spec: ModelSpec,
    ) -> Self {
        self.slots.push((key, loader, spec));
        self
    }

    /// Whether to run the idle-checker thread (default on). Without it, deadlines are only
    /// acted on by [`ModelManager::run_idle_check`], which makes manual-clock tests exact.
    pub fn idle_checker(mut self, enabled: bool) -> Self {
        self.idle_checker = enabled;
        self
    }

    /// Validates the configuration, registers the slots, starts the idle checker and the
    /// preloads of `config.preload`.
    pub fn build(self) -> Result<ModelManager, ManagerError> {
        self.config.validate()?;
        let activity = Arc::new(Activity::new(self.clock.now()));
        let shared = Arc::new(Shared {
            state: Mutex::new(Inner::new(self.config, activity.clone())),
            directory: RwLock::new(HashMap::new()),
            activity,
            changed: Condvar::new(),
            checker_wake: Condvar::new(),
            clock: self.clock,
        });
        let manager = ModelManager {
            shared,
            checker: Mutex::new(None),
            snapshots: AtomicU64::new(0),
        };
        for (key, loader, spec) in self.slots {
            manager.register(key, loader, spec)?;
        }
        if self.idle_checker {
            let shared = manager.shared.clone();
            let handle = std::thread::Builder::new()
                .name("dormouse-idle-checker".into())
                .spawn(move || checker::run(shared))
                .map_err(|e| ManagerError::Thread(e.to_string()))?;
            *manager.checker.lock() = Some(handle);
        }
        manager.preload();
        Ok(manager)
    }
}

/// The lifecycle manager: lazy loads, single flight, leases, idle unloading, memory budget.
///
/// Share it as `Arc<ModelManager>`; every method takes `&self` and is thread-safe. Dropping it
/// shuts it down ([`ModelManager::shutdown`] with [`DEFAULT_SHUTDOWN_GRACE`]).
pub struct ModelManager {
    shared: Arc<Shared>,
    checker: Mutex<Option<JoinHandle<()>>>,
    /// How many [`ModelManager::status`] snapshots were taken (a diagnostic: callers on a
    /// request's path should ask narrower questions such as [`ModelManager::is_loaded`]).
    snapshots: AtomicU64,
}

impl ModelManager {
    /// A builder with the default configuration and the system clock.
    pub fn builder() -> ModelManagerBuilder {
        ModelManagerBuilder {
            config: ManagerConfig::default(),
            clock: Arc::new(SystemClock),
            slots: Vec::new(),
            idle_checker: true,
        }
    }

    /// Adds a slot at run time (e.g. `user:<id>` for an imported model).
    pub fn register(
        &self,
        key: ModelKey,
        loader: Arc<dyn ModelLoader>,
        spec: ModelSpec,
    ) -> Result<(), ManagerError> {
        let estimate = estimate(&*loader, &spec);
        let mut inner = self.shared.state.lock();
        let mut directory = self.shared.directory.write();
        if directory.contains_key(&key) {
            return Err(ManagerError::AlreadyRegistered(key));
        }
        let idx = inner.slots.len();
        let hot = Arc::new(Hot::default());
        let slot = SlotEntry::new(key.clone(), loader, spec, estimate, hot.clone());
        inner.slots.push(slot);
        directory.insert(key, (idx, hot));
        drop(directory);
        inner.refresh_hot_flags();
        let (now, wall) = self.now();
        inner.publish_model(idx, now, wall);
        Ok(())
    }

    /// A lease on `key`'s model, loading it first if needed (lazily, on first use).
    ///
    /// Concurrent requests for a model that is loading wait for that one load and all get it,
    /// or all get its error. Requests for other models are not held up. A model being
    /// unloaded, or loaded with a spec that has since been superseded, is waited out and
    /// loaded again.
    pub fn acquire(&self, key: &ModelKey) -> Result<Lease, ManagerError> {
        let (idx, hot) = self.shared.lookup(key)?;
        match self.try_acquire_loaded(idx, &hot, key) {
            Some(lease) => Ok(lease),
            None => self.acquire_slow(idx, hot, key),
        }
    }

    /// The hot path: a lease on a loaded model through its lane, without the manager's lock
    /// (taken only to publish the "in use" edge when someone subscribes).
    fn try_acquire_loaded(&self, idx: usize, hot: &Arc<Hot>, key: &ModelKey) -> Option<Lease> {
        let now = self.shared.clock.now();
        let (lease, before) = {
            let lane = hot.lane.read();
            let lane = lane.as_ref()?;
            let before = hot.take(&self.shared.activity, self.shared.activity.encode(now));
            let lease = Lease {
                shared: self.shared.clone(),
                hot: hot.clone(),
                idx,
                key: key.clone(),
                model_id: lane.model_id.clone(),
                generation: lane.generation,
                model: std::mem::ManuallyDrop::new(lane.model.clone()),
            };
            (lease, before)
        }; // lane released here: never hold it while taking the manager's lock
        if before == 0 && self.shared.activity.subscribed.load(SeqCst) {
            let mut inner = self.shared.state.lock();
            inner.publish_model(idx, now, self.shared.clock.wall_now());
        }
        Some(lease)
    }

    /// Loads, waits for a load, or waits out an unload, under the manager's lock.
    fn acquire_slow(
        &self,
        idx: usize,
        hot: Arc<Hot>,
        key: &ModelKey,
    ) -> Result<Lease, ManagerError> {
        let mut inner = self.shared.state.lock();
        let mut waited_on: Option<u64> = None;
        loop {
            if inner.shutting_down {
                return Err(ManagerError::ShuttingDown);
            }
            let slot = &inner.slots[idx];
            match &slot.phase {
                SlotPhase::Loaded { model, spec, .. } if !slot.is_stale() => {
                    let lease = Lease {
                        shared: self.shared.clone(),
                        hot,
                        idx,
                        key: key.clone(),
                        model_id: spec.id.clone(),
                        generation: slot.generation,
                        model: std::mem::ManuallyDrop::new(model.clone()),
                    };
                    let (now, wall) = self.now();
                    inner.take_lease(idx, now, wall);
                    return Ok(lease);
                }
                SlotPhase::Loading { .. } => waited_on = Some(slot.generation),
                SlotPhase::Loaded { .. } | SlotPhase::Unloading { .. } => {}
                SlotPhase::Idle | SlotPhase::Failed => {
                    if let Some(error) = waited_on.and_then(|g| slot.failure_of(g)) {
                        return Err(error);
                    }
                    let job = inner.begin_load(
                        idx,
                        TransitionReason::FirstUse,
                        self.shared.clock.now(),
                    )?;
                    waited_on = Some(job.generation);
                    let (now, wall) = self.now();
                    inner.publish_model(idx, now, wall);
                    drop(inner);
                    self.shared.spawn_load(job)?;
                    inner = self.shared.state.lock();
                    continue;
                }
            }
            self.shared.changed.wait(&mut inner);
        }
    }

    /// Starts loading `key` in the background without waiting, because the user showed intent
    /// (started recording, opened an image). Does nothing if it is loaded or loading already.
    pub fn warm(&self, key: &ModelKey) -> Result<(), ManagerError> {
        self.warm_for(key, TransitionReason::Warm)
    }

    fn warm_for(&self, key: &ModelKey, reason: TransitionReason) -> Result<(), ManagerError> {
        let (idx, _) = self.shared.lookup(key)?;
        let mut inner = self.shared.state.lock();
        if inner.shutting_down {
            return Err(ManagerError::ShuttingDown);
        }
        if !matches!(inner.slots[idx].phase, SlotPhase::Idle | SlotPhase::Failed) {
            return Ok(());
        }
        let job = inner.begin_load(idx, reason, self.shared.clock.now())?;
        let (now, wall) = self.now();
        inner.publish_model(idx, now, wall);
        drop(inner);
        self.shared.spawn_load(job)
    }

    /// Starts loading every model of the configured preload list; returns those started.
    /// Unknown keys are logged and skipped.
    pub fn preload(&self) -> Vec<ModelKey> {
        let keys = self.shared.state.lock().config.preload.clone();
        keys.into_iter()
            .filter(|key| match self.warm_for(key, TransitionReason::Preload) {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(%key, %error, "preload skipped");
                    false
                }
            })
            .collect()
    }

    /// Sets the spec `key` loads from now on ("set model size"). A load in flight for the old
    /// spec is cancelled and restarted with the new one; an unused loaded model is unloaded;
    /// a leased one is unloaded when its last lease ends, and new requests wait for that.
    pub fn set_spec(&self, key: &ModelKey, spec: ModelSpec) -> Result<(), ManagerError> {
        let (idx, _) = self.shared.lookup(key)?;
        let loader = self.shared.state.lock().slots[idx].loader.clone();
        let estimate = estimate(&*loader, &spec);
        let mut inner = self.shared.state.lock();
        if inner.slots[idx].spec == spec {
            return Ok(());
        }
        let slot = &mut inner.slots[idx];
        slot.spec = spec;
        slot.estimate = estimate;
        let reason = TransitionReason::Superseded;
        let mut job = None;
        let mut eviction = None;
        match inner.slots[idx].phase {
            SlotPhase::Loading { .. } => {
                inner.cancel_load(idx, reason);
                if !inner.shutting_down {
                    match inner.begin_load(idx, reason, self.shared.clock.now()) {
                        Ok(j) => job = Some(j),
                        Err(error) => tracing::warn!(%key, %error, "superseding load not started"),
                    }
                }
            }
            SlotPhase::Loaded { .. } => {
                // New requests must wait for the new spec; current leases keep the old model.
                inner.close_lane(idx);
                eviction = inner.request_unload(idx, reason);
            }
            SlotPhase::Failed => {
                inner.transition(idx, SlotPhase::Idle, reason);
                inner.slots[idx].last_error = None;
            }
            SlotPhase::Idle | SlotPhase::Unloading { .. } => {}
        }
        let (now, wall) = self.now();
        inner.publish_model(idx, now, wall);
        self.shared.changed.notify_all();
        drop(inner);
        if let Some(eviction) = eviction {
            self.shared.finish_unload(eviction);
        }
        match job {
            Some(job) => self.shared.spawn_load(job),
            None => Ok(()),
        }
    }

    /// Cancels `key`'s load in flight; requests waiting on it get
    /// [`ManagerError::LoadCancelled`]. Returns whether a load was cancelled.
    pub fn cancel_load(&self, key: &ModelKey) -> Result<bool, ManagerError> {
        let (idx, _) = self.shared.lookup(key)?;
        let mut inner = self.shared.state.lock();
        let cancelled = inner.cancel_load(idx, TransitionReason::Cancelled);
        if cancelled {
            let (now, wall) = self.now();
            inner.publish_model(idx, now, wall);
            self.shared.changed.notify_all();
        }
        Ok(cancelled)
    }

    /// Runs `work` while `key` is guaranteed to stay unloaded, e.g. to delete its model's
    /// files. Refused with [`ManagerError::InUse`] while the model is loading, loaded,
    /// unloading or leased. Loads only start under the manager's lock, which `work` runs
    /// under, so none can start before it returns: keep it short (a file removal), and never
    /// call the manager from it.
    pub fn while_unloaded<T>(
        &self,
        key: &ModelKey,
        work: impl FnOnce() -> T,
    ) -> Result<T, ManagerError> {
        let (idx, hot) = self.shared.lookup(key)?;
        let inner = self.shared.state.lock();
        let state = inner.slots[idx].phase.state();
        let leases = hot.leases();
        if !matches!(state, ModelState::Idle | ModelState::Failed) || leases > 0 {
            return Err(ManagerError::InUse {
                key: key.clone(),
                state,
                leases,
            });
        }
        let result = work();
        drop(inner);
        Ok(result)
    }

    /// Unloads `key` now (or, if it is leased, as soon as its last lease ends); cancels its
    /// load if one is in flight.
    pub fn unload(&self, key: &ModelKey) -> Result<UnloadReport, ManagerError> {
        let (idx, _) = self.shared.lookup(key)?;
        Ok(self.unload_where(TransitionReason::Manual, |i| i == idx))
    }

    /// Unloads every model (leased ones when their last lease ends) and cancels every load;
    /// the report says which ("Models unloaded: …" / "No models were loaded").
    pub fn unload_all(&self) -> UnloadReport {
        self.unload_where(TransitionReason::Manual, |_| true)
    }

    fn unload_where(
        &self,
        reason: TransitionReason,
        selected: impl Fn(usize) -> bool,
    ) -> UnloadReport {
        let mut report = UnloadReport::default();
        let mut evictions = Vec::new();
        let mut inner = self.shared.state.lock();
        let (now, wall) = self.now();
        for idx in (0..inner.slots.len()).filter(|&i| selected(i)) {
            match inner.slots[idx].phase {
                SlotPhase::Loading { .. } => {
                    if inner.cancel_load(idx, reason) {
                        report.cancelled_loads.push(inner.slots[idx].key.clone());
                    }
                }
                SlotPhase::Loaded { .. } => match inner.request_unload(idx, reason) {
                    Some(eviction) => evictions.push(eviction),
                    None => report.deferred.push(inner.slots[idx].key.clone()),
                },
                SlotPhase::Idle | SlotPhase::Unloading { .. } | SlotPhase::Failed => {}
            }
            inner.publish_model(idx, now, wall);
        }
        self.shared.changed.notify_all();
        drop(inner);
        report.unloaded = self.finish_all(evictions);
        report
    }

    /// Unloads, now, every model whose idle deadline has passed, and takes the step memory
    /// pressure calls for if one is due. The idle checker does this by itself; call it to
    /// drive a manager built without one (or with a manual clock).
    pub fn run_idle_check(&self) -> Vec<UnloadedModel> {
        let expired = {
            let mut inner = self.shared.state.lock();
            let now = self.shared.clock.now();
            self.shared.begin_due_unloads(&mut inner, now)
        };
        self.finish_all(expired)
    }

    /// Tells the core how short of memory the system is (from the platform's signal: PSI,
    /// `MemAvailable`, a dispatch source, a Windows notification). Report every change; a
    /// repeated level changes nothing. The core answers by its
    /// [`crate::config::PressurePolicy`] (see [`crate::PressureLevel`]): after the level
    /// has lasted the sustain window, one step per window, at most one pressure unload per
    /// model per cooldown; the unloads say `MemoryPressure`.
    pub fn report_memory_pressure(&self, level: crate::pressure::PressureLevel) {
        let mut inner = self.shared.state.lock();
        let now = self.shared.clock.now();
        if inner.report_pressure(level, now) {
            tracing::info!(?level, "memory pressure reported");
            self.shared.checker_wake.notify_one();
        }
    }

    /// Frees evicted models, then waits until no unload (also one started elsewhere) is
    /// still in progress, so callers see settled state.
    fn finish_all(&self, evictions: Vec<Eviction>) -> Vec<UnloadedModel> {
        let unloaded = evictions
            .into_iter()
            .map(|e| self.shared.finish_unload(e))
            .collect();
        let mut inner = self.shared.state.lock();
        while inner
            .slots
            .iter()
            .any(|s| matches!(s.phase, SlotPhase::Unloading { .. }))
        {
            self.shared.changed.wait(&mut inner);
        }
        unloaded
    }

    /// Replaces the configuration. Deadlines are recomputed at once (switching to
    /// `immediate` unloads idle models now); a lower budget evicts idle models to fit.
    pub fn update_config(&self, config: ManagerConfig) -> Result<(), ManagerError> {
        config.validate()?;
        let mut inner = self.shared.state.lock();
        tracing::info!(?config, "configuration changed");
        inner.config = config.clone();
        inner.refresh_hot_flags();
        let evictions = inner.enforce_budget();
        inner.publish(ManagerEvent::Config(config));
        let (now, wall) = self.now();
        inner.publish_all(now, wall);
        self.shared.checker_wake.notify_one();
        drop(inner);
        self.finish_all(evictions);
        Ok(())
    }

    /// The configuration in force.
    pub fn config(&self) -> ManagerConfig {
        self.shared.state.lock().config.clone()
    }

    /// A snapshot of every model and the configuration. Never loads anything.
    pub fn status(&self) -> ManagerStatus {
        self.snapshots.fetch_add(1, Relaxed);
        let inner = self.shared.state.lock();
        let (now, wall) = self.now();
        let models: Vec<_> = (0..inner.slots.len())
            .map(|i| inner.model_status(i, now, wall))
            .collect();
        ManagerStatus {
            total_resident_bytes: models.iter().filter_map(|m| m.resident_bytes).sum(),
            models,
            config: inner.config.clone(),
            pressure: inner.pressure.level(),
            power: inner.power,
            taken_at: wall,
        }
    }

    /// How many status snapshots have been taken since the start (see [`Self::status`]).
    pub fn snapshots_taken(&self) -> u64 {
        self.snapshots.load(Relaxed)
    }

    /// Whether `key`'s model is loaded now (one lock, no snapshot). `false` for an unknown key.
    pub fn is_loaded(&self, key: &ModelKey) -> bool {
        let Ok((idx, _)) = self.shared.lookup(key) else {
            return false;
        };
        matches!(
            self.shared.state.lock().slots[idx].phase,
            SlotPhase::Loaded { .. }
        )
    }

    /// Every status change from now on, as typed events. The receiver may be dropped at any time.
    pub fn subscribe(&self) -> Receiver<ManagerEvent> {
        let (tx, rx) = channel();
        self.shared.state.lock().subscribers.push(tx);
        self.shared.activity.subscribed.store(true, SeqCst);
        rx
    }

    /// Counters since start.
    pub fn stats(&self) -> ManagerStats {
        self.shared.state.lock().stats
    }

    /// Stops taking work, cancels loads in flight, waits up to `grace` for leases to end,
    /// unloads everything, joins the idle checker and waits (within `grace`) for load threads
    /// to return. Models still leased after `grace` are reported as deferred: they unload when
    /// their last lease ends. Calling it again returns an empty report.
    pub fn shutdown(&self, grace: Duration) -> UnloadReport {
        let give_up_at = Instant::now() + grace;
        let mut report = UnloadReport::default();
        let mut inner = self.shared.state.lock();
        if inner.shutting_down {
            return report;
        }
        tracing::info!("model manager shutting down");
        inner.shutting_down = true;
        self.shared.activity.shutting_down.store(true, SeqCst);
        for idx in 0..inner.slots.len() {
            inner.close_lane(idx);
            if inner.cancel_load(idx, TransitionReason::Shutdown) {
                report.cancelled_loads.push(inner.slots[idx].key.clone());
            }
        }
        self.shared.changed.notify_all();
        self.shared.checker_wake.notify_all();
        while self.shared.activity.total_leases.load(SeqCst) > 0 {
            if self
                .shared
                .changed
                .wait_until(&mut inner, give_up_at)
                .timed_out()
            {
                break;
            }
        }
        let mut evictions = Vec::new();
        for idx in 0..inner.slots.len() {
            if matches!(inner.slots[idx].phase, SlotPhase::Loaded { .. }) {
                match inner.request_unload(idx, TransitionReason::Shutdown) {
                    Some(eviction) => evictions.push(eviction),
                    None => report.deferred.push(inner.slots[idx].key.clone()),
                }
            }
        }
        drop(inner);
        report.unloaded = self.finish_all(evictions);
        if let Some(handle) = self.checker.lock().take() {
            if handle.join().is_err() {
                tracing::error!("idle checker thread panicked");
            }
        }
        let mut inner = self.shared.state.lock();
        while inner.stats.loads_in_flight > 0 {
            if self
                .shared
                .changed
                .wait_until(&mut inner, give_up_at)
                .timed_out()
            {
                tracing::warn!(
                    loads = inner.stats.loads_in_flight,
                    "load threads still running at shutdown"
                );
                break;
            }
        }
        report
    }

    fn now(&self) -> (Instant, std::time::SystemTime) {
        (self.shared.clock.now(), self.shared.clock.wall_now())
    }
}

impl Drop for ModelManager {
    fn drop(&mut self) {
        self.shutdown(DEFAULT_SHUTDOWN_GRACE);
    }
}

/// A loader's estimate, with a panicking estimator treated as "unknown".
fn estimate(loader: &dyn ModelLoader, spec: &ModelSpec) -> Option<u64> {
    guarded(|| loader.estimate_bytes(spec)).unwrap_or_else(|panic| {
        tracing::warn!(%panic, "estimate_bytes panicked; size unknown");
        None
    })
}
