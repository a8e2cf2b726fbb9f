//! [`Lease`]: the RAII guard that keeps a model loaded while it is used. The idle clock starts
//! when the last lease of a model is dropped, whatever path drops it (return, `?`, panic).

use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::Arc;

use super::hot::Hot;
use super::work::Shared;
use crate::key::ModelKey;
use crate::loader::{downcast, LoadedModel};

/// Shared use of a loaded model. While any lease of a model lives, it is never unloaded.
#[must_use = "the model may be unloaded as soon as the lease is dropped"]
pub struct Lease {
    pub(crate) shared: Arc<Shared>,
    pub(crate) hot: Arc<Hot>,
    pub(crate) idx: usize,
    pub(crate) key: ModelKey,
    /// The id of the spec the held model was loaded from (a later switch does not change it).
    pub(crate) model_id: Arc<str>,
    pub(crate) generation: u64,
    /// Dropped first in `Drop`, before the lease is returned, so that an unload the return
    /// triggers really frees the model.
    pub(crate) model: ManuallyDrop<Arc<dyn LoadedModel>>,
}

impl Lease {
    /// The slot this lease is on.
    pub fn key(&self) -> &ModelKey {
        &self.key
    }

    /// The id of the model held (`whisper-base`, `user:<id>`...), as it was when it loaded.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// The load generation of the model held.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The model.
    pub fn model(&self) -> &dyn LoadedModel {
        &**self.model
    }

    /// The model as its concrete engine type, or `None` if it is another type.
    pub fn downcast<T: LoadedModel>(&self) -> Option<&T> {
        downcast::<T>(self.model())
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("key", &self.key)
            .field("model_id", &self.model_id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // SAFETY: `model` is taken exactly once, here, and never used afterwards.
        drop(unsafe { ManuallyDrop::take(&mut self.model) });
        let shared = &self.shared;
        let now = shared.clock.now();
        let raw_now = shared.activity.encode(now);
        let before = self.hot.give_back(&shared.activity, raw_now);
        if before != 1 || !shared.activity.release_needs_lock(&self.hot, raw_now) {
            return; // the hot path: nothing else to do
        }
        let mut inner = shared.state.lock();
        let unload = inner.end_lease(self.idx, now, shared.clock.wall_now());
        if inner.shutting_down {
            shared.changed.notify_all();
        }
        if unload.is_none() && inner.checker_needs_wake() {
            shared.checker_wake.notify_one();
        }
        drop(inner);
        if let Some(eviction) = unload {
            shared.finish_unload(eviction);
        }
    }
}
