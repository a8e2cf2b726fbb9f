//! The state behind the manager's one lock: slots, their phases, and every decision about them.
//!
//! Everything here runs with `Shared::state` held and never calls engine code, never drops a
//! model and never blocks. Decisions that need slow work (loading, freeing) change the phase
//! first and hand the work out as a [`LoadJob`] or [`Eviction`], done after the lock is released.

use std::collections::HashMap;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

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
pub(crate) enum Phase {
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

impl Phase {
    pub(crate) fn state(&self) -> ModelState {
        match self {
            Phase::Idle => ModelState::Idle,
            Phase::Loading { .. } => ModelState::Loading,
            Phase::Loaded { .. } => ModelState::Loaded,
            Phase::Unloading { .. } => ModelState::Unloading,
            Phase::Failed => ModelState::Failed,
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
pub(crate) struct Slot {
    pub key: ModelKey,
    pub loader: Arc<dyn ModelLoader>,
    /// The spec the next load uses.
    pub spec: ModelSpec,
    /// The loader's estimate for `spec`.
    pub estimate: Option<u64>,
    /// Bytes measured the last time a spec was loaded here.
    pub measured: Option<(ModelSpec, u64)>,
    pub phase: Phase,
    pub generation: u64,
    pub leases: usize,
    /// Unload as soon as the last lease ends (manual unload or superseded while leased).
    pub pending_unload: Option<TransitionReason>,
    pub used_since_load: bool,
    pub last_used: Option<Instant>,
    pub loaded_at: Option<Instant>,
    pub progress: Option<f32>,
    pub last_error: Option<LoadError>,
    pub last_outcome: Option<(u64, Outcome)>,
    pub load_count: u64,
    pub last_load_duration: Option<Duration>,
    pub last_transition: Option<Transition>,
    pub last_unload: Option<UnloadedModel>,
}

impl Slot {
    pub(crate) fn new(
        key: ModelKey,
        loader: Arc<dyn ModelLoader>,
        spec: ModelSpec,
        estimate: Option<u64>,
    ) -> Self {
        Self {
            key,
            loader,
            spec,
            estimate,
            measured: None,
            phase: Phase::Idle,
            generation: 0,
            leases: 0,
            pending_unload: None,
            used_since_load: false,
            last_used: None,
            loaded_at: None,
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
    fn held_bytes(&self) -> u64 {
        match &self.phase {
            Phase::Loaded { bytes, .. } | Phase::Unloading { bytes, .. } => *bytes,
            Phase::Loading { .. } => self.expected_bytes().unwrap_or(0),
            Phase::Idle | Phase::Failed => 0,
        }
    }

    /// Loaded with a spec other than the one now wanted: new requests wait for it to go.
    pub(crate) fn is_stale(&self) -> bool {
        matches!(&self.phase, Phase::Loaded { spec, .. } if *spec != self.spec)
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
    pub slots: Vec<Slot>,
    pub index: HashMap<ModelKey, usize>,
    pub config: ManagerConfig,
    /// Last activity on any model (global timer scope).
    pub last_activity: Option<Instant>,
    pub total_leases: usize,
    pub next_generation: u64,
    pub subscribers: Vec<Sender<ManagerEvent>>,
    pub stats: ManagerStats,
    pub shutting_down: bool,
    /// When the idle checker will next wake by itself; `None` while it sleeps without a deadline.
    pub checker_wake_at: Option<Instant>,
}

impl Inner {
    pub(crate) fn new(config: ManagerConfig) -> Self {
        Self {
            slots: Vec::new(),
            index: HashMap::new(),
            config,
            last_activity: None,
            total_leases: 0,
            next_generation: 1,
            subscribers: Vec::new(),
            stats: ManagerStats::default(),
            shutting_down: false,
            checker_wake_at: None,
        }
    }

    pub(crate) fn index_of(&self, key: &ModelKey) -> Result<usize, ManagerError> {
        self.index
            .get(key)
            .copied()
            .ok_or_else(|| ManagerError::UnknownModel(key.clone()))
    }

    /// The one place phases change: validates against [`ModelState::can_become`], logs the
    /// transition with its reason and returns the phase it replaced. An invalid transition is
    /// refused (and counted); the slot is left as it was.
    pub(crate) fn transition(
        &mut self,
        idx: usize,
        next: Phase,
        reason: TransitionReason,
    ) -> Option<Phase> {
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
    ) -> Result<LoadJob, ManagerError> {
        if !matches!(self.slots[idx].phase, Phase::Idle | Phase::Failed) {
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
        let next = Phase::Loading {
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
        let slot = &mut self.slots[idx];
        slot.progress = Some(0.0);
        slot.pending_unload = None;
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
        if !matches!(self.slots[idx].phase, Phase::Loading { .. }) {
            return false;
        }
        if let Some(Phase::Loading { cancel, .. }) = self.transition(idx, Phase::Idle, reason) {
            cancel.cancel();
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

    /// Takes an unleased loaded model out of its slot (`Loaded -> Unloading`).
    pub(crate) fn begin_unload(
        &mut self,
        idx: usize,
        reason: TransitionReason,
    ) -> Option<Eviction> {
        let slot = &self.slots[idx];
        let Phase::Loaded { spec, bytes, .. } = &slot.phase else {
            return None;
        };
        if slot.leases > 0 {
            return None;
        }
        let next = Phase::Unloading {
            spec: spec.clone(),
            bytes: *bytes,
        };
        let Some(Phase::Loaded { spec, model, bytes }) = self.transition(idx, next, reason) else {
            return None;
        };
        let slot = &mut self.slots[idx];
        slot.pending_unload = None;
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

    /// Picks idle models to evict (least recently used first) so `idx`'s load fits the budget,
    /// and starts unloading them. Evicts nothing and fails if even evicting all would not do.
    fn make_room_for(&mut self, idx: usize) -> Result<Vec<Eviction>, ManagerError> {
        let Some(budget) = self.config.memory_budget_bytes else {
            return Ok(Vec::new());
        };
        let needed = self.slots[idx].expected_bytes().unwrap_or(0);
        let mut in_use = 0u64;
        let mut candidates = Vec::new();
        let mut blocked_by = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if i == idx || slot.held_bytes() == 0 {
                continue;
            }
            let evictable = matches!(slot.phase, Phase::Loaded { .. })
                && slot.leases == 0
                && !self.config.is_pinned(&slot.key);
            if evictable {
                candidates.push((slot.last_used, i, slot.held_bytes()));
            } else {
                blocked_by.push(slot.key.clone());
            }
            in_use += slot.held_bytes();
        }
        if in_use.saturating_add(needed) <= budget {
            return Ok(Vec::new());
        }
        let unavoidable: u64 = in_use - candidates.iter().map(|c| c.2).sum::<u64>();
        if unavoidable.saturating_add(needed) > budget {
            return Err(ManagerError::MemoryBudgetExceeded {
                key: self.slots[idx].key.clone(),
                needed,
                budget,
                in_use: unavoidable,
                blocked_by,
            });
        }
        candidates.sort_by_key(|&(last_used, i, _)| (last_used, i));
        let mut evictions = Vec::new();
        for (_, i, bytes) in candidates {
            if in_use.saturating_add(needed) <= budget {
                break;
            }
            if let Some(eviction) = self.begin_unload(i, TransitionReason::EvictedForMemory) {
                in_use -= bytes;
                evictions.push(eviction);
            }
        }
        Ok(evictions)
    }

    /// Evicts idle models, least recently used first, until the loaded ones fit the budget
    /// (after the user lowered it). Leased and pinned models stay.
    pub(crate) fn enforce_budget(&mut self) -> Vec<Eviction> {
        let Some(budget) = self.config.memory_budget_bytes else {
            return Vec::new();
        };
        let mut in_use: u64 = self.slots.iter().map(Slot::held_bytes).sum();
        let mut candidates: Vec<(Option<Instant>, usize, u64)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                matches!(s.phase, Phase::Loaded { .. })
                    && s.leases == 0
                    && !self.config.is_pinned(&s.key)
            })
            .map(|(i, s)| (s.last_used, i, s.held_bytes()))
            .collect();
        candidates.sort_by_key(|&(last_used, i, _)| (last_used, i));
        let mut evictions = Vec::new();
        for (_, i, bytes) in candidates {
            if in_use <= budget {
                break;
            }
            if let Some(eviction) = self.begin_unload(i, TransitionReason::EvictedForMemory) {
                in_use -= bytes;
                evictions.push(eviction);
            }
        }
        evictions
    }

    /// When `idx` will unload if nobody touches it.
    pub(crate) fn deadline(&self, idx: usize) -> Option<Instant> {
        let slot = &self.slots[idx];
        if !matches!(slot.phase, Phase::Loaded { .. })
            || slot.leases > 0
            || self.config.is_pinned(&slot.key)
        {
            return None;
        }
        let strategy = self.config.strategy_for(&slot.key);
        let timeout = strategy.idle_timeout()?;
        if strategy == Strategy::Immediate {
            return if slot.used_since_load {
                slot.last_used
            } else {
                slot.loaded_at.map(|t| t + IMMEDIATE_WARM_GRACE)
            };
        }
        let since = match self.config.timer_scope {
            TimerScope::PerModel => slot.last_used?,
            TimerScope::Global if self.total_leases > 0 => return None,
            TimerScope::Global => self.last_activity?,
        };
        Some(since + timeout)
    }

    /// The earliest deadline of any model.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        (0..self.slots.len()).filter_map(|i| self.deadline(i)).min()
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

    /// Records a new lease on a loaded slot.
    pub(crate) fn take_lease(&mut self, idx: usize, now: Instant, wall: SystemTime) {
        let slot = &mut self.slots[idx];
        slot.leases += 1;
        slot.last_used = Some(now);
        slot.used_since_load = true;
        self.total_leases += 1;
        self.last_activity = Some(now);
        if self.slots[idx].leases == 1 {
            self.publish_model(idx, now, wall);
        }
    }

    /// Records the end of a lease of `generation`; returns the unload it triggers, if any
    /// (immediate strategy, or an unload that waited for the lease).
    pub(crate) fn end_lease(
        &mut self,
        idx: usize,
        generation: u64,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Eviction> {
        let slot = &mut self.slots[idx];
        if slot.generation != generation || slot.leases == 0 {
            tracing::error!(key = %slot.key, generation, "lease returned to a slot that does not hold it");
            return None;
        }
        slot.leases -= 1;
        slot.last_used = Some(now);
        self.total_leases -= 1;
        self.last_activity = Some(now);
        if self.slots[idx].leases > 0 {
            return None;
        }
        let key = &self.slots[idx].key;
        let immediate =
            self.config.strategy_for(key) == Strategy::Immediate && !self.config.is_pinned(key);
        let reason = match self.slots[idx].pending_unload {
            Some(reason) => Some(reason),
            None if immediate => Some(TransitionReason::Immediate),
            None => None,
        };
        if let Some(reason) = reason {
            return self.begin_unload(idx, reason);
        }
        // The idle clock starts now; in global scope it restarts for every model.
        if self.config.timer_scope == TimerScope::Global && self.total_leases == 0 {
            self.publish_all(now, wall);
        } else {
            self.publish_model(idx, now, wall);
        }
        None
    }

    /// Whether a deadline earlier than the idle checker's next wake-up now exists.
    pub(crate) fn checker_needs_wake(&self) -> bool {
        match (self.next_deadline(), self.checker_wake_at) {
            (Some(deadline), Some(wake_at)) => deadline < wake_at,
            (Some(_), None) => true,
            (None, _) => false,
        }
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
            Phase::Loading { spec, .. } | Phase::Unloading { spec, .. } => (spec, None),
            Phase::Loaded { spec, bytes, .. } => (spec, Some(*bytes)),
            Phase::Idle | Phase::Failed => (&slot.spec, None),
        };
        let loaded = matches!(slot.phase, Phase::Loaded { .. });
        ModelStatus {
            key: slot.key.clone(),
            state: slot.phase.state(),
            model_id: spec.id.clone(),
            model_path: spec.path.clone(),
            resident_bytes: resident,
            expected_bytes: slot.expected_bytes(),
            loaded_at: slot.loaded_at.filter(|_| loaded).map(at),
            last_used: slot.last_used.map(at),
            expires_at: self.deadline(idx).map(at),
            load_progress: slot.progress,
            last_error: slot.last_error.as_ref().map(ToString::to_string),
            leases: slot.leases,
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
