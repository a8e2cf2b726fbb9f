//! The hot path: per-model state that leases touch without the manager's lock.
//!
//! A loaded model sits behind its slot's *lane*. Taking a lease read-locks the lane (readers
//! never block each other) and bumps atomic counters; returning one only decrements them,
//! unless the release must act (unload now, wake the checker, publish an event, shutdown), in
//! which case it takes the manager's lock. Unloading write-locks the lane and checks the lease
//! count there, so no lease can slip in between the check and the unload.
//!
//! Every flag a releaser reads is written before the writer checks the lease count, and every
//! releaser decrements before it reads the flags (all `SeqCst`): either the writer sees the
//! lease gone, or the releaser sees the flag and takes the slow path. No release is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;

use crate::loader::LoadedModel;

/// The model new leases may take without the lock; `None` while the slot is not `Loaded`,
/// its model is superseded, or the manager is shutting down.
pub(crate) struct Lane {
    pub model: Arc<dyn LoadedModel>,
    /// The id of the spec `model` was loaded from.
    pub model_id: Arc<str>,
    pub generation: u64,
}

/// One slot's lock-free state.
#[derive(Default)]
pub(crate) struct Hot {
    pub lane: RwLock<Option<Lane>>,
    leases: AtomicUsize,
    /// Encoded instant of the last lease taken or returned (see [`Activity::encode`]).
    last_used: AtomicU64,
    /// A lease was taken since the model loaded.
    used: AtomicBool,
    /// The last release must unload (pending unload, or the immediate strategy).
    pub unload_on_release: AtomicBool,
}

impl Hot {
    pub(crate) fn leases(&self) -> usize {
        self.leases.load(SeqCst)
    }
    pub(crate) fn used(&self) -> bool {
        self.used.load(SeqCst)
    }
    pub(crate) fn mark_loaded(&self, at: u64) {
        self.used.store(false, SeqCst);
        self.last_used.store(at, SeqCst);
    }
    pub(crate) fn last_used_raw(&self) -> u64 {
        self.last_used.load(SeqCst)
    }

    /// Records a new lease; returns the lease count before it.
    pub(crate) fn take(&self, activity: &Activity, now: u64) -> usize {
        let before = self.leases.fetch_add(1, SeqCst);
        activity.total_leases.fetch_add(1, SeqCst);
        self.touch(activity, now);
        if !self.used.load(SeqCst) {
            self.used.store(true, SeqCst);
        }
        before
    }

    /// Records the end of a lease; returns the lease count before it.
    pub(crate) fn give_back(&self, activity: &Activity, now: u64) -> usize {
        self.touch(activity, now);
        activity.total_leases.fetch_sub(1, SeqCst);
        self.leases.fetch_sub(1, SeqCst)
    }

    fn touch(&self, activity: &Activity, now: u64) {
        self.last_used.fetch_max(now, SeqCst);
        activity.last_activity.fetch_max(now, SeqCst);
    }
}

/// Manager-wide lock-free state shared by the hot path.
pub(crate) struct Activity {
    base: Instant,
    pub total_leases: AtomicUsize,
    /// Encoded instant of the last activity on any model (global timer scope).
    pub last_activity: AtomicU64,
    /// When the idle checker will next wake by itself (encoded); `u64::MAX` while it sleeps
    /// with no deadline or is looking. A release that may create an earlier deadline wakes it.
    pub checker_wake_at: AtomicU64,
    /// Shortest idle timeout any unpinned, timed (auto/custom) model has, in nanoseconds;
    /// `u64::MAX` if none. Bounds how soon a released lease can create a deadline.
    pub min_idle_timeout: AtomicU64,
    /// Someone listens for events: lease edges are published under the lock.
    pub subscribed: AtomicBool,
    pub shutting_down: AtomicBool,
}

impl Activity {
    pub(crate) fn new(base: Instant) -> Self {
        Self {
            base,
            total_leases: AtomicUsize::new(0),
            last_activity: AtomicU64::new(0),
            checker_wake_at: AtomicU64::new(u64::MAX),
            min_idle_timeout: AtomicU64::new(u64::MAX),
            subscribed: AtomicBool::new(false),
            shutting_down: AtomicBool::new(false),
        }
    }

    /// An instant as nanoseconds since the manager started, plus one (0 means "never").
    pub(crate) fn encode(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.base).as_nanos();
        u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1
    }

    pub(crate) fn decode(&self, raw: u64) -> Option<Instant> {
        raw.checked_sub(1)
            .map(|nanos| self.base + Duration::from_nanos(nanos))
    }

    pub(crate) fn last_activity(&self) -> Option<Instant> {
        self.decode(self.last_activity.load(SeqCst))
    }

    /// Whether a lease return at `now` (encoded) that emptied a slot must take the manager's
    /// lock: to unload, to publish, for shutdown, or because the deadline it creates may be
    /// earlier than the idle checker's next wake-up.
    pub(crate) fn release_needs_lock(&self, hot: &Hot, now: u64) -> bool {
        hot.unload_on_release.load(SeqCst)
            || self.subscribed.load(SeqCst)
            || self.shutting_down.load(SeqCst)
            || now.saturating_add(self.min_idle_timeout.load(SeqCst))
                < self.checker_wake_at.load(SeqCst)
    }
}
