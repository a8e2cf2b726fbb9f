//! The slow work the state machine hands out, done without the lock: running a load on its
//! own thread and freeing an unloaded model's memory. Each re-takes the lock only to record
//! the result, and only if the slot still expects it (same generation, same phase).

use std::any::Any;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

use super::hot::{Activity, Hot};
use super::inner::{Eviction, Inner, LoadJob, Outcome, SlotPhase};
use crate::clock::Clock;
use crate::error::ManagerError;
use crate::key::ModelKey;
use crate::loader::{LoadContext, LoadError, LoadedModel, ProgressReporter};
use crate::memory;
use crate::state::TransitionReason;
use crate::status::{ManagerEvent, UnloadedModel};

/// What the manager, its leases, load threads and idle checker share.
///
/// Lock order: `state` (the manager's lock; both condition variables wait on it), then
/// `directory` (written only to register a slot) or a slot's lane (written only to open or
/// close it). The hot path takes a read lock on `directory`, releases it, then a read lock on
/// one lane, and never holds either while taking `state`. No lock is held while engine code
/// runs (loads, `resident_bytes`, drops of models); `state` guards bookkeeping and
/// non-blocking event sends only.
pub(crate) struct Shared {
    pub state: Mutex<Inner>,
    /// Key to slot index and hot state, readable without `state`.
    pub directory: RwLock<HashMap<ModelKey, (usize, Arc<Hot>)>>,
    pub activity: Arc<Activity>,
    /// Notified when any slot changes phase or a lease ends during shutdown; requests wait on it.
    pub changed: Condvar,
    /// Wakes the idle checker early (new earlier deadline, config change, shutdown).
    pub checker_wake: Condvar,
    pub clock: Arc<dyn Clock>,
}

impl Shared {
    /// The slot registered as `key`.
    pub(crate) fn lookup(&self, key: &ModelKey) -> Result<(usize, Arc<Hot>), ManagerError> {
        self.directory
            .read()
            .get(key)
            .cloned()
            .ok_or_else(|| ManagerError::UnknownModel(key.clone()))
    }

    /// Frees what was evicted to make room, then spawns the thread for a load decided under the
    /// lock. If the OS refuses the thread, the slot ends `Failed` with that error.
    pub(crate) fn spawn_load(self: &Arc<Self>, mut job: LoadJob) -> Result<(), ManagerError> {
        for eviction in std::mem::take(&mut job.evictions) {
            self.finish_unload(eviction);
        }
        let (idx, generation) = (job.idx, job.generation);
        let shared = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("load-{}", job.key))
            .spawn(move || shared.run_load(job));
        if let Err(e) = spawned {
            let mut inner = self.state.lock();
            inner.stats.loads_in_flight -= 1;
            let failure = Err(LoadError::failed(format!(
                "could not start a load thread: {e}"
            )));
            self.record_load_result(&mut inner, idx, generation, failure, None);
            return Err(ManagerError::Thread(e.to_string()));
        }
        // The load's timeout is a new deadline for the checker.
        let inner = self.state.lock();
        if inner.checker_needs_wake() {
            self.checker_wake.notify_one();
        }
        Ok(())
    }

    /// Body of a load thread: load, then record the result, or drop it at once if the load is
    /// no longer wanted (cancelled, superseded, unloaded, shutting down).
    fn run_load(self: Arc<Self>, job: LoadJob) {
        let progress = {
            let weak = Arc::downgrade(&self);
            let (idx, generation) = (job.idx, job.generation);
            ProgressReporter::new(move |fraction| {
                if let Some(shared) = weak.upgrade() {
                    shared.report_progress(idx, generation, fraction);
                }
            })
        };
        let ctx = LoadContext {
            cancel: job.cancel.clone(),
            progress,
        };
        let started = self.clock.now();
        let result = guarded(|| job.loader.load(&job.spec, &ctx))
            .map_err(LoadError::Panicked)
            .and_then(|r| r)
            .and_then(|boxed| {
                let model: Arc<dyn LoadedModel> = Arc::from(boxed);
                let bytes = guarded(|| model.resident_bytes()).map_err(LoadError::Panicked)?;
                Ok((model, bytes))
            });
        let elapsed = self.clock.now().saturating_duration_since(started);

        let mut inner = self.state.lock();
        let slot = &inner.slots[job.idx];
        let wanted = slot.generation == job.generation
            && matches!(slot.phase, SlotPhase::Loading { .. })
            && !job.cancel.is_cancelled();
        if !wanted {
            drop(inner);
            tracing::info!(key = %job.key, generation = job.generation,
                "load finished after it was cancelled or superseded; result dropped");
            // Free it before counting the load as finished: shutdown waits on that count.
            let late = result.ok().map(|(model, _)| model);
            let discarded = late.is_some();
            if let Some(model) = late {
                let _ = guarded(|| memory::drop_and_measure(model));
            }
            let mut inner = self.state.lock();
            inner.stats.loads_in_flight -= 1;
            inner.stats.loads_discarded += u64::from(discarded);
            inner.abandoned_load_ended(job.generation);
            self.changed.notify_all();
            return;
        }
        inner.stats.loads_in_flight -= 1;
        self.record_load_result(&mut inner, job.idx, job.generation, result, Some(elapsed));
    }

    /// Moves a slot whose load (of `generation`) just ended to `Loaded` or `Failed`.
    fn record_load_result(
        &self,
        inner: &mut Inner,
        idx: usize,
        generation: u64,
        result: Result<(Arc<dyn LoadedModel>, u64), LoadError>,
        elapsed: Option<std::time::Duration>,
    ) {
        let now = self.clock.now();
        let wall = self.clock.wall_now();
        let spec = inner.slots[idx].spec.clone();
        match result {
            Ok((model, bytes)) => {
                let next = SlotPhase::Loaded {
                    spec: spec.clone(),
                    model,
                    bytes,
                };
                if inner
                    .transition(idx, next, TransitionReason::LoadFinished)
                    .is_some()
                {
                    let raw_now = inner.activity.encode(now);
                    inner.activity.last_activity.fetch_max(raw_now, SeqCst);
                    let slot = &mut inner.slots[idx];
                    slot.measured = Some((spec, bytes));
                    slot.load_count += 1;
                    slot.last_load_duration = elapsed;
                    slot.loaded_at = Some(now);
                    slot.hot.mark_loaded(raw_now);
                    slot.last_error = None;
                    slot.last_outcome = Some((generation, Outcome::Loaded));
                    inner.stats.loads_completed += 1;
                    inner.refresh_release_flag(idx);
                    inner.open_lane(idx);
                }
            }
            Err(error) => {
                if inner
                    .transition(idx, SlotPhase::Failed, TransitionReason::LoadFailed)
                    .is_some()
                {
                    tracing::warn!(key = %inner.slots[idx].key, %error, "load failed");
                    let slot = &mut inner.slots[idx];
                    slot.last_error = Some(error.clone());
                    slot.last_outcome = Some((generation, Outcome::Failed(error)));
                    inner.stats.loads_failed += 1;
                }
            }
        }
        inner.slots[idx].progress = None;
        inner.publish_model(idx, now, wall);
        self.changed.notify_all();
        if inner.checker_needs_wake() {
            self.checker_wake.notify_one();
        }
    }

    /// Fails the loads past the load timeout (see `Inner::fail_overdue_loads`), tells their
    /// subscribers and wakes the requests waiting on them.
    pub(crate) fn fail_overdue_loads(&self, inner: &mut Inner, now: std::time::Instant) {
        let overdue = inner.fail_overdue_loads(now);
        if overdue.is_empty() {
            return;
        }
        let wall = self.clock.wall_now();
        for idx in overdue {
            inner.publish_model(idx, now, wall);
        }
        self.changed.notify_all();
    }

    /// Everything due at `now` that the idle checker acts on: fails the loads past their
    /// timeout and starts the idle unloads and the memory-pressure step that are due; returns
    /// the unloads to finish outside the lock. The checker thread and
    /// `ModelManager::run_idle_check` both go through here.
    pub(crate) fn begin_due_unloads(
        &self,
        inner: &mut Inner,
        now: std::time::Instant,
    ) -> Vec<Eviction> {
        self.fail_overdue_loads(inner, now);
        let mut due = inner.begin_expired_unloads(now);
        due.extend(inner.begin_pressure_unloads(now, self.clock.wall_now()));
        due
    }

    fn report_progress(&self, idx: usize, generation: u64, progress: f32) {
        let mut inner = self.state.lock();
        let slot = &mut inner.slots[idx];
        if slot.generation != generation || !matches!(slot.phase, SlotPhase::Loading { .. }) {
            return;
        }
        slot.progress = Some(progress);
        let key = slot.key.clone();
        inner.publish(ManagerEvent::LoadProgress {
            key,
            generation,
            progress,
        });
    }

    /// Drops an unloaded model, gives its memory back to the OS, and records `Unloading -> Idle`.
    pub(crate) fn finish_unload(&self, eviction: Eviction) -> UnloadedModel {
        let Eviction {
            idx,
            generation,
            key,
            model_id,
            model,
            bytes,
            reason,
        } = eviction;
        let bytes_freed = guarded(|| memory::drop_and_measure(model)).unwrap_or_else(|panic| {
            tracing::error!(%key, %panic, "model panicked while being dropped");
            None
        });
        let mut inner = self.state.lock();
        let (now, wall) = (self.clock.now(), self.clock.wall_now());
        let unloaded = UnloadedModel {
            key,
            model_id,
            resident_bytes: bytes,
            bytes_freed,
            reason,
            at: wall,
        };
        let slot = &inner.slots[idx];
        if slot.generation == generation && matches!(slot.phase, SlotPhase::Unloading { .. }) {
            inner.transition(idx, SlotPhase::Idle, reason);
            let slot = &mut inner.slots[idx];
            slot.last_unload = Some(unloaded.clone());
            slot.loaded_at = None;
            inner.stats.unloads += 1;
            tracing::info!(key = %unloaded.key, model = %unloaded.model_id, resident_bytes = bytes,
                bytes_freed = ?bytes_freed, ?reason, "model unloaded");
            inner.publish_model(idx, now, wall);
        }
        self.changed.notify_all();
        unloaded
    }
}

/// Runs engine code, turning a panic into its message.
pub(crate) fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| panic_message(panic.as_ref()))
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_owned()
    }
}
