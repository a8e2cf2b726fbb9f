//! The state behind the manager's one lock: slots, their phases, and every decision about them.
//!
//! Everything here runs with `Shared::state` held and never calls engine code, never drops a
//! model and never blocks. Decisions that need slow work (loading, freeing) change the phase
//! first and hand the work out as a [`LoadJob`] or [`Eviction`], done after the lock is released.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::hot::{Activity, Hot, Lane};
use crate::config::{ManagerConfig, Strategy, TimerScope};
use crate::error::ManagerError;
use crate::key::{ModelKey, ModelSpec};
use crate::loader::{CancelToken, LoadError, LoadedModel, ModelLoader};
use crate::state::{ModelState, Transition, TransitionReason};
use crate::status::{ManagerEvent, ManagerStats, ModelStatus, UnloadedModel};

/// How long a model loaded ahead of use (warm, preload) waits for its first lease under the
/// immediate strategy before it is unloaded anyway.
pub(crate) const IMMEDIATE_WARM_GRACE: Duration = Duration::from_secs(60);

/// What a slot holds right now; the payload of each [`ModelState`].
pub(crate) enum SlotPhase {
    Idle,
    Loading {
        spec: ModelSpec,
        cancel: CancelToken,
    },
    Loaded {
        spec: ModelSpec,
        model: Arc<dyn LoadedModel>,
        bytes: u64,
    },
    Unloading {
        spec: ModelSpec,
        bytes: u64,
    },
    Failed,
}

impl SlotPhase {
    pub(crate) fn state(&self) -> ModelState {
        match self {
            SlotPhase::Idle => ModelState::Idle,
            SlotPhase::Loading { .. } => ModelState::Loading,
            SlotPhase::Loaded { .. } => ModelState::Loaded,
            SlotPhase::Unloading { .. } => ModelState::Unloading,
            SlotPhase::Failed => ModelState::Failed,
        }
    }
}

/// How a load of one generation ended; read by the requests that waited on it.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    Loaded,
    Failed(LoadError),
    Cancelled,
    Superseded,
}

/// One model key's slot.
pub(crate) struct SlotEntry {
    pub key: ModelKey,
    pub loader: Arc<dyn ModelLoader>,
    /// The spec the next load uses.
    pub spec: ModelSpec,
    /// The loader's estimate for `spec`.
    pub estimate: Option<u64>,
    /// Bytes measured the last time a spec was loaded here.
    pub measured: Option<(ModelSpec, u64)>,
    pub phase: SlotPhase,
    pub generation: u64,
    /// Leases, last use and the lane: what the hot path touches without the lock.
    pub hot: Arc<Hot>,
    /// Unload as soon as the last lease ends (manual unload or superseded while leased).
    pub pending_unload: Option<TransitionReason>,
    /// When the model was last unloaded (or marked to unload) for memory pressure.
    pub pressure_unloaded_at: Option<Instant>,
    pub loaded_at: Option<Instant>,
    /// When the load in flight started (its timeout counts from here).
    pub load_started: Option<Instant>,
    pub progress: Option<f32>,
    pub last_error: Option<LoadError>,
    pub last_outcome: Option<(u64, Outcome)>,
    pub load_count: u64,
    pub last_load_duration: Option<Duration>,
    pub last_transition: Option<Transition>,
    pub last_unload: Option<UnloadedModel>,
}

impl SlotEntry {
    pub(crate) fn new(
        key: ModelKey,
        loader: Arc<dyn ModelLoader>,
        spec: ModelSpec,
        estimate: Option<u64>,
        hot: Arc<Hot>,
    ) -> Self {
        Self {
            key,
            loader,
            spec,
            estimate,
            measured: None,
            phase: SlotPhase::Idle,
            generation: 0,
            hot,
            pending_unload: None,
            pressure_unloaded_at: None,
            loaded_at: None,
            load_started: None,
            progress: None,
            last_error: None,
            last_outcome: None,
            load_count: 0,
            last_load_duration: None,
            last_transition: None,
            last_unload: None,
        }
    }

    /// Bytes the budget counts for loading `spec`: measured once known, else the estimate.
    pub(crate) fn expected_bytes(&self) -> Option<u64> {
        match &self.measured {
            Some((spec, bytes)) if *spec == self.spec => Some(*bytes),
            _ => self.estimate,
        }
    }

    /// Bytes this slot holds or is about to hold.
    pub(crate) fn held_bytes(&self) -> u64 {
        match &self.phase {
            SlotPhase::Loaded { bytes, .. } | SlotPhase::Unloading { bytes, .. } => *bytes,
            SlotPhase::Loading { .. } => self.expected_bytes().unwrap_or(0),
            SlotPhase::Idle | SlotPhase::Failed => 0,
        }
    }

    /// Loaded with a spec other than the one now wanted: new requests wait for it to go.
    pub(crate) fn is_stale(&self) -> bool {
        matches!(&self.phase, SlotPhase::Loaded { spec, .. } if *spec != self.spec)
    }

    /// The error a request that waited on `generation` gets, if that load did not produce a model.
    pub(crate) fn failure_of(&self, generation: u64) -> Option<ManagerError> {
        match &self.last_outcome {
            Some((g, Outcome::Failed(e))) if *g == generation => Some(ManagerError::Load {
                key: self.key.clone(),
                source: e.clone(),
            }),
            Some((g, Outcome::Cancelled)) if *g == generation => {
                Some(ManagerError::LoadCancelled(self.key.clone()))
            }
            _ => None,
        }
    }
}

/// A load decided under the lock, to be run on its own thread.
pub(crate) struct LoadJob {
    pub idx: usize,
    pub key: ModelKey,
    pub generation: u64,
    pub spec: ModelSpec,
    pub loader: Arc<dyn ModelLoader>,
    pub cancel: CancelToken,
    /// Models to free before loading, to make room within the budget.
    pub evictions: Vec<Eviction>,
}

/// A model taken out of its slot (now `Unloading`), to be dropped outside the lock.
pub(crate) struct Eviction {
    pub idx: usize,
    pub generation: u64,
    pub key: ModelKey,
    pub model_id: Arc<str>,
    pub model: Arc<dyn LoadedModel>,
    pub bytes: u64,
    pub reason: TransitionReason,
}

/// All mutable manager state, guarded by `Shared::state`.
pub(crate) struct Inner {
    pub slots: Vec<SlotEntry>,
    pub config: ManagerConfig,
    /// Lease counts and last activity across all models, shared with the hot path.
    pub activity: Arc<Activity>,
    pub next_generation: u64,
    pub subscribers: Vec<Sender<ManagerEvent>>,
    pub stats: ManagerStats,
    pub shutting_down: bool,
    /// Loads given up on (cancelled, superseded, timed out) whose engine call has not
    /// returned yet: (generation, slot, expected bytes). Their memory still counts against
    /// the budget until the thread ends and drops what it made.
    pub abandoned: Vec<(u64, usize, u64)>,
    /// The system's memory-pressure signal and the episode it belongs to.
    pub pressure: super::pressure::PressureState,
    /// Where the machine's power comes from, as last reported.
    pub power: crate::power::PowerSource,
}

impl Inner {
    pub(crate) fn new(config: ManagerConfig, activity: Arc<Activity>) -> Self {
        Self {
            slots: Vec::new(),
            config,
            activity,
            next_generation: 1,
            subscribers: Vec::new(),
            stats: ManagerStats::default(),
            shutting_down: false,
            abandoned: Vec::new(),
            pressure: Default::default(),
            power: Default::default(),
        }
    }

    /// How long `key`'s model may sit unused now (the power source counts).
    pub(crate) fn idle_timeout(&self, key: &crate::key::ModelKey) -> Option<Duration> {
        self.config
            .idle_timeout_for(key, self.power == crate::power::PowerSource::Battery)
    }

    /// The one place phases change: validates against [`ModelState::can_become`], logs the
    /// transition with its reason and returns the phase it replaced. An invalid transition is
    /// refused (and counted); the slot is left as it was.
    pub(crate) fn transition(
        &mut self,
        idx: usize,
        next: SlotPhase,
        reason: TransitionReason,
    ) -> Option<SlotPhase> {
        let slot = &mut self.slots[idx];
        let (from, to) = (slot.phase.state(), next.state());
        if !from.can_become(to) {
            self.stats.invalid_transitions += 1;
            tracing::error!(key = %slot.key, ?from, ?to, ?reason, "invalid transition refused");
            return None;
        }
        tracing::info!(key = %slot.key, generation = slot.generation, ?from, ?to, ?reason, "model transition");
        let transition = Transition { from, to, reason };
        slot.last_transition = Some(transition);
        let previous = std::mem::replace(&mut slot.phase, next);
        if !self.subscribers.is_empty() {
            let (key, generation) = (slot.key.clone(), slot.generation);
            self.publish(ManagerEvent::Transition {
                key,
                generation,
                transition,
            });
        }
        Some(previous)
    }

    /// Starts a load of `idx`'s spec (after evicting idle models if the budget needs room).
    pub(crate) fn begin_load(
        &mut self,
        idx: usize,
        reason: TransitionReason,
        now: Instant,
    ) -> Result<LoadJob, ManagerError> {
        if !matches!(self.slots[idx].phase, SlotPhase::Idle | SlotPhase::Failed) {
            return Err(ManagerError::Internal(format!(
                "{} cannot start a load while {:?}",
                self.slots[idx].key,
                self.slots[idx].phase.state()
            )));
        }
        let evictions = self.make_room_for(idx)?;
        let generation = self.next_generation;
        self.next_generation += 1;
        let cancel = CancelToken::new();
        let spec = self.slots[idx].spec.clone();
        let next = SlotPhase::Loading {
            spec: spec.clone(),
            cancel: cancel.clone(),
        };
        // Bump the generation first so the transition is logged with the new one.
        let previous_generation = std::mem::replace(&mut self.slots[idx].generation, generation);
        if self.transition(idx, next, reason).is_none() {
            self.slots[idx].generation = previous_generation;
            return Err(ManagerError::Internal(
                "load refused by the state table".into(),
            ));
        }
        self.slots[idx].progress = Some(0.0);
        self.slots[idx].load_started = Some(now);
        self.set_pending_unload(idx, None);
        let slot = &self.slots[idx];
        self.stats.loads_started += 1;
        self.stats.loads_in_flight += 1;
        Ok(LoadJob {
            idx,
            key: slot.key.clone(),
            generation,
            spec,
            loader: slot.loader.clone(),
            cancel,
            evictions,
        })
    }

    /// Cancels `idx`'s load in flight, if any; its result will be dropped when it arrives.
    pub(crate) fn cancel_load(&mut self, idx: usize, reason: TransitionReason) -> bool {
        if !matches!(self.slots[idx].phase, SlotPhase::Loading { .. }) {
            return false;
        }
        if let Some(SlotPhase::Loading { cancel, .. }) =
            self.transition(idx, SlotPhase::Idle, reason)
        {
            cancel.cancel();
            self.abandon(idx);
            let slot = &mut self.slots[idx];
            let outcome = if reason == TransitionReason::Superseded {
                Outcome::Superseded
            } else {
                Outcome::Cancelled
            };
            slot.last_outcome = Some((slot.generation, outcome));
            slot.progress = None;
            return true;
        }
        false
    }

    /// Takes an unleased loaded model out of its slot (`Loaded -> Unloading`). Closes the
    /// lane first and checks the lease count under its write lock, so no lease slips in.
    pub(crate) fn begin_unload(
        &mut self,
        idx: usize,
        reason: TransitionReason,
    ) -> Option<Eviction> {
        let slot = &self.slots[idx];
        let SlotPhase::Loaded { spec, bytes, .. } = &slot.phase else {
            return None;
        };
        {
            let mut lane = slot.hot.lane.write();
            if slot.hot.leases() > 0 {
                return None;
            }
            *lane = None;
        }
        let next = SlotPhase::Unloading {
            spec: spec.clone(),
            bytes: *bytes,
        };
        let Some(SlotPhase::Loaded { spec, model, bytes }) = self.transition(idx, next, reason)
        else {
            return None;
        };
        self.set_pending_unload(idx, None);
        let slot = &self.slots[idx];
        Some(Eviction {
            idx,
            generation: slot.generation,
            key: slot.key.clone(),
            model_id: spec.id,
            model,
            bytes,
            reason,
        })
    }

    /// Asks for `idx` to unload for `reason`: at once if it is not leased (returns the
    /// eviction), else when its last lease ends. The flag is raised before the lease count is
    /// checked, so a concurrent last release either is seen here or sees the flag.
    pub(crate) fn request_unload(
        &mut self,
        idx: usize,
        reason: TransitionReason,
    ) -> Option<Eviction> {
        self.set_pending_unload(idx, Some(reason));
        let eviction = self.begin_unload(idx, reason);
        if eviction.is_none() && !matches!(self.slots[idx].phase, SlotPhase::Loaded { .. }) {
            self.set_pending_unload(idx, None);
        }
        eviction
    }

    pub(crate) fn set_pending_unload(&mut self, idx: usize, reason: Option<TransitionReason>) {
        self.slots[idx].pending_unload = reason;
        self.refresh_release_flag(idx);
    }

    /// Re-derives every hot-path flag from the config (after it changed or a slot was added).
    pub(crate) fn refresh_hot_flags(&self) {
        for idx in 0..self.slots.len() {
            self.refresh_release_flag(idx);
        }
        let shortest = self
            .slots
            .iter()
            .filter(|s| !self.config.is_pinned(&s.key))
            .filter_map(|s| match self.config.strategy_for(&s.key) {
                Strategy::Immediate => None, // its releases take the lock anyway
                _ => self.idle_timeout(&s.key),
            })
            .min()
            .map_or(u64::MAX, |t| {
                u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
            });
        self.activity.min_idle_timeout.store(shortest, SeqCst);
    }

    /// The unload the end of `idx`'s last lease triggers, if any: one that waited for the
    /// lease, else the immediate strategy's (unless pinned).
    fn unload_on_release(&self, idx: usize) -> Option<TransitionReason> {
        let slot = &self.slots[idx];
        let immediate = self.config.strategy_for(&slot.key) == Strategy::Immediate
            && !self.config.is_pinned(&slot.key);
        slot.pending_unload
            .or(immediate.then_some(TransitionReason::Immediate))
    }

    /// Keeps the hot path's "the last release must unload" flag true to the config and state.
    pub(crate) fn refresh_release_flag(&self, idx: usize) {
        let flag = self.unload_on_release(idx).is_some();
        self.slots[idx].hot.unload_on_release.store(flag, SeqCst);
    }

    /// Lets new leases take `idx`'s model without the lock (it just loaded).
    pub(crate) fn open_lane(&self, idx: usize) {
        let slot = &self.slots[idx];
        if let SlotPhase::Loaded { model, spec, .. } = &slot.phase {
            if !self.shutting_down && !slot.is_stale() {
                *slot.hot.lane.write() = Some(Lane {
                    model: model.clone(),
                    model_id: spec.id.clone(),
                    generation: slot.generation,
                });
            }
        }
    }

    /// New leases of `idx` must go through the lock (superseded, shutting down).
    pub(crate) fn close_lane(&self, idx: usize) {
        *self.slots[idx].hot.lane.write() = None;
    }

    /// Whether `idx` may be evicted to make room: loaded, unleased, unpinned.
    fn evictable(&self, idx: usize) -> bool {
        let slot = &self.slots[idx];
        matches!(slot.phase, SlotPhase::Loaded { .. })
            && slot.hot.leases() == 0
            && !self.config.is_pinned(&slot.key)
    }

    /// Starts evicting `candidates` (indices), least recently used first, until `in_use`
    /// (plus `needed`) fits `budget`.
    fn evict_lru(
        &mut self,
        mut candidates: Vec<usize>,
        mut in_use: u64,
        needed: u64,
        budget: u64,
    ) -> Vec<Eviction> {
        candidates.sort_by_key(|&i| (self.slots[i].hot.last_used_raw(), i));
        let mut evictions = Vec::new();
        for i in candidates {
            if in_use.saturating_add(needed) <= budget {
                break;
            }
            let bytes = self.slots[i].held_bytes();
            if let Some(eviction) = self.begin_unload(i, TransitionReason::EvictedForMemory) {
                in_use -= bytes;
                evictions.push(eviction);
            }
        }
        evictions
    }

    /// Picks idle models to evict (least recently used first) so `idx`'s load fits the budget,
    /// and starts unloading them. Evicts nothing and fails if even evicting all would not do.
    /// Counts `idx`'s load in flight (its current generation) as abandoned but still running.
    fn abandon(&mut self, idx: usize) {
        let slot = &self.slots[idx];
        let bytes = slot.expected_bytes().unwrap_or(0);
        self.abandoned.push((slot.generation, idx, bytes));
    }

    /// The load of `generation` has returned and dropped what it made.
    pub(crate) fn abandoned_load_ended(&mut self, generation: u64) {
        self.abandoned.retain(|&(g, _, _)| g != generation);
    }

    fn abandoned_bytes(&self) -> u64 {
        self.abandoned.iter().map(|&(_, _, bytes)| bytes).sum()
    }

    fn make_room_for(&mut self, idx: usize) -> Result<Vec<Eviction>, ManagerError> {
        let Some(budget) = self.config.memory_budget_bytes else {
            return Ok(Vec::new());
        };
        let needed = self.slots[idx].expected_bytes().unwrap_or(0);
        let holding = (0..self.slots.len()).filter(|&i| i != idx && self.slots[i].held_bytes() > 0);
        let (candidates, blocked): (Vec<usize>, Vec<usize>) =
            holding.partition(|&i| self.evictable(i));
        let bytes_of = |list: &[usize]| {
            list.iter()
                .map(|&i| self.slots[i].held_bytes())
                .sum::<u64>()
        };
        // Abandoned loads still running hold memory nobody can evict yet.
        let unavoidable = bytes_of(&blocked) + self.abandoned_bytes();
        let mut blocked = blocked;
        for &(_, i, _) in &self.abandoned {
            if !blocked.contains(&i) {
                blocked.push(i);
            }
        }
        let in_use = unavoidable + bytes_of(&candidates);
        if in_use.saturating_add(needed) <= budget {
            return Ok(Vec::new());
        }
        if unavoidable.saturating_add(needed) > budget {
            return Err(ManagerError::MemoryBudgetExceeded {
                key: self.slots[idx].key.clone(),
                needed,
                budget,
                in_use: unavoidable,
                blocked_by: blocked.iter().map(|&i| self.slots[i].key.clone()).collect(),
            });
        }
        Ok(self.evict_lru(candidates, in_use, needed, budget))
    }

    /// Evicts idle models, least recently used first, until the loaded ones fit the budget
    /// (after the user lowered it). Leased and pinned models stay.
    pub(crate) fn enforce_budget(&mut self) -> Vec<Eviction> {
        let Some(budget) = self.config.memory_budget_bytes else {
            return Vec::new();
        };
        let in_use: u64 =
            self.slots.iter().map(SlotEntry::held_bytes).sum::<u64>() + self.abandoned_bytes();
        let candidates = (0..self.slots.len())
            .filter(|&i| self.evictable(i))
            .collect();
        self.evict_lru(candidates, in_use, 0, budget)
    }

    /// When `idx` will unload if nobody touches it.
    pub(crate) fn deadline(&self, idx: usize) -> Option<Instant> {
        let slot = &self.slots[idx];
        if !matches!(slot.phase, SlotPhase::Loaded { .. })
            || slot.hot.leases() > 0
            || self.config.is_pinned(&slot.key)
        {
            return None;
        }
        let strategy = self.config.strategy_for(&slot.key);
        let timeout = self.idle_timeout(&slot.key)?;
        let last_used = self.activity.decode(slot.hot.last_used_raw());
        if strategy == Strategy::Immediate {
            return if slot.hot.used() {
                last_used
            } else {
                slot.loaded_at.map(|t| t + IMMEDIATE_WARM_GRACE)
            };
        }
        let since = match self.config.timer_scope {
            TimerScope::PerModel => last_used?,
            TimerScope::Global if self.activity.total_leases.load(SeqCst) > 0 => return None,
            TimerScope::Global => self.activity.last_activity()?,
        };
        Some(since + timeout)
    }

    /// The earliest deadline of any model, or of the answer to memory pressure.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        (0..self.slots.len())
            .filter_map(|i| {
                self.deadline(i)
                    .into_iter()
                    .chain(self.load_deadline(i))
                    .min()
            })
            .chain(self.pressure_deadline())
            .min()
    }

    /// When `idx`'s load in flight runs out of time, if one is in flight.
    pub(crate) fn load_deadline(&self, idx: usize) -> Option<Instant> {
        let slot = &self.slots[idx];
        match slot.phase {
            SlotPhase::Loading { .. } => slot.load_started.map(|t| t + self.config.load_timeout),
            _ => None,
        }
    }

    /// Fails every load that has run past the load timeout: the slot ends `Failed` with an
    /// error saying so, the load's cancel token is set, and the result, whenever the engine
    /// returns it, is dropped (its generation is no longer wanted). Returns the slots failed.
    pub(crate) fn fail_overdue_loads(&mut self, now: Instant) -> Vec<usize> {
        let overdue: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.load_deadline(i).is_some_and(|d| d <= now))
            .collect();
        let timeout = self.config.load_timeout;
        overdue
            .into_iter()
            .filter(|&idx| {
                let Some(SlotPhase::Loading { cancel, .. }) =
                    self.transition(idx, SlotPhase::Failed, TransitionReason::LoadFailed)
                else {
                    return false;
                };
                cancel.cancel();
                self.abandon(idx);
                let error = LoadError::failed(format!(
                    "loading took longer than the load timeout ({:.0} s) and was stopped",
                    timeout.as_secs_f64()
                ));
                tracing::warn!(key = %self.slots[idx].key, %error, "load timed out");
                let slot = &mut self.slots[idx];
                slot.last_error = Some(error.clone());
                slot.last_outcome = Some((slot.generation, Outcome::Failed(error)));
                slot.progress = None;
                slot.load_started = None;
                self.stats.loads_failed += 1;
                true
            })
            .collect()
    }

    /// Starts unloading every model whose deadline has passed.
    pub(crate) fn begin_expired_unloads(&mut self, now: Instant) -> Vec<Eviction> {
        let expired: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.deadline(i).is_some_and(|d| d <= now))
            .collect();
        expired
            .into_iter()
            .filter_map(|i| {
                let reason = if self.config.strategy_for(&self.slots[i].key) == Strategy::Immediate
                {
                    TransitionReason::Immediate
                } else {
                    TransitionReason::IdleTimeout
                };
                self.begin_unload(i, reason)
            })
            .collect()
    }

    /// Records a lease taken under the lock (the hot path's slow twin).
    pub(crate) fn take_lease(&mut self, idx: usize, now: Instant, wall: SystemTime) {
        let raw = self.activity.encode(now);
        if self.slots[idx].hot.take(&self.activity, raw) == 0 {
            self.publish_model(idx, now, wall);
        }
    }

    /// Acts on the end of a slot's last lease, when the hot path says it needs the lock:
    /// returns the unload it triggers, if any (immediate strategy, or an unload that waited
    /// for the lease); otherwise publishes the restarted idle clock.
    pub(crate) fn end_lease(
        &mut self,
        idx: usize,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Eviction> {
        if self.slots[idx].hot.leases() > 0 {
            return None; // taken again meanwhile
        }
        if let Some(reason) = self.unload_on_release(idx) {
            return self.begin_unload(idx, reason);
        }
        // The idle clock starts now; in global scope it restarts for every model.
        if self.config.timer_scope == TimerScope::Global
            && self.activity.total_leases.load(SeqCst) == 0
        {
            self.publish_all(now, wall);
        } else {
            self.publish_model(idx, now, wall);
        }
        None
    }

    /// Whether a deadline earlier than the idle checker's next wake-up now exists.
    pub(crate) fn checker_needs_wake(&self) -> bool {
        let wake_at = self.activity.checker_wake_at.load(SeqCst);
        self.next_deadline()
            .is_some_and(|d| wake_at == u64::MAX || self.activity.encode(d) < wake_at)
    }

    pub(crate) fn model_status(&self, idx: usize, now: Instant, wall: SystemTime) -> ModelStatus {
        let slot = &self.slots[idx];
        let at = |t: Instant| -> SystemTime {
            if t <= now {
                wall - (now - t)
            } else {
                wall + (t - now)
            }
        };
        let (spec, resident) = match &slot.phase {
            SlotPhase::Loading { spec, .. } | SlotPhase::Unloading { spec, .. } => (spec, None),
            SlotPhase::Loaded { spec, bytes, .. } => (spec, Some(*bytes)),
            SlotPhase::Idle | SlotPhase::Failed => (&slot.spec, None),
        };
        let loaded = matches!(slot.phase, SlotPhase::Loaded { .. });
        ModelStatus {
            key: slot.key.clone(),
            state: slot.phase.state(),
            model_id: spec.id.clone(),
            model_path: spec.path.clone(),
            resident_bytes: resident,
            expected_bytes: slot.expected_bytes(),
            loaded_at: slot.loaded_at.filter(|_| loaded).map(at),
            last_used: self.activity.decode(slot.hot.last_used_raw()).map(at),
            expires_at: self.deadline(idx).map(at),
            load_progress: slot.progress,
            last_error: slot.last_error.as_ref().map(ToString::to_string),
            leases: slot.hot.leases(),
            pinned: self.config.is_pinned(&slot.key),
            load_count: slot.load_count,
            last_load_duration: slot.last_load_duration,
            generation: slot.generation,
            last_transition: slot.last_transition,
            last_unload: slot.last_unload.clone(),
        }
    }

    pub(crate) fn publish(&mut self, event: ManagerEvent) {
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
        if self.subscribers.is_empty() {
            self.activity.subscribed.store(false, SeqCst);
        }
    }

    pub(crate) fn publish_model(&mut self, idx: usize, now: Instant, wall: SystemTime) {
        if !self.subscribers.is_empty() {
            let status = self.model_status(idx, now, wall);
            self.publish(ManagerEvent::Model(status));
        }
    }

    pub(crate) fn publish_all(&mut self, now: Instant, wall: SystemTime) {
        for idx in 0..self.slots.len() {
            self.publish_model(idx, now, wall);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::{LoadContext, LoadedModel};

    struct NoLoader;
    impl ModelLoader for NoLoader {
        fn load(&self, _: &ModelSpec, _: &LoadContext) -> Result<Box<dyn LoadedModel>, LoadError> {
            Err(LoadError::failed("unused"))
        }
    }

    struct Tiny;
    impl LoadedModel for Tiny {
        fn resident_bytes(&self) -> u64 {
            1
        }
    }

    fn inner_with_one_slot() -> Inner {
        let activity = Arc::new(Activity::new(Instant::now()));
        let mut inner = Inner::new(ManagerConfig::default(), activity);
        let key = ModelKey::new("stt").expect("valid");
        inner.slots.push(SlotEntry::new(
            key,
            Arc::new(NoLoader),
            ModelSpec::new("base"),
            None,
            Arc::new(Hot::default()),
        ));
        inner
    }

    #[test]
    fn the_manager_refuses_transitions_the_table_forbids_and_counts_them() {
        let mut inner = inner_with_one_slot();
        let skip_loading = SlotPhase::Loaded {
            spec: ModelSpec::new("base"),
            model: Arc::new(Tiny),
            bytes: 1,
        };
        assert!(inner
            .transition(0, skip_loading, TransitionReason::FirstUse)
            .is_none());
        assert_eq!(
            inner.slots[0].phase.state(),
            ModelState::Idle,
            "left as it was"
        );
        assert_eq!(inner.stats.invalid_transitions, 1);
        assert!(inner.slots[0].last_transition.is_none(), "nothing recorded");

        let unload_idle = SlotPhase::Unloading {
            spec: ModelSpec::new("base"),
            bytes: 1,
        };
        assert!(inner
            .transition(0, unload_idle, TransitionReason::Manual)
            .is_none());
        assert_eq!(inner.stats.invalid_transitions, 2);
    }

    #[test]
    fn the_manager_takes_every_valid_transition_and_records_its_reason() {
        let mut inner = inner_with_one_slot();
        let loading = SlotPhase::Loading {
            spec: ModelSpec::new("base"),
            cancel: CancelToken::new(),
        };
        assert!(inner
            .transition(0, loading, TransitionReason::Warm)
            .is_some());
        let loaded = SlotPhase::Loaded {
            spec: ModelSpec::new("base"),
            model: Arc::new(Tiny),
            bytes: 1,
        };
        assert!(inner
            .transition(0, loaded, TransitionReason::LoadFinished)
            .is_some());
        let last = inner.slots[0].last_transition.expect("recorded");
        assert_eq!(
            (last.from, last.to, last.reason),
            (
                ModelState::Loading,
                ModelState::Loaded,
                TransitionReason::LoadFinished
            )
        );
        assert_eq!(inner.stats.invalid_transitions, 0);
    }
}
