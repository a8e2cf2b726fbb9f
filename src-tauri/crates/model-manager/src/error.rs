//! [`ManagerError`]: every way a manager call can fail, each with a message a user can act on.

use thiserror::Error;

use crate::key::ModelKey;
use crate::loader::LoadError;

/// Errors from [`crate::ModelManager`] calls.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum ManagerError {
    /// The key is not a valid model key.
    #[error("invalid model key {0:?}: use 1-128 ASCII letters, digits, '_', '-', '.' or ':'")]
    InvalidKey(String),
    /// No slot is registered under this key.
    #[error("no model is registered as {0}")]
    UnknownModel(ModelKey),
    /// A slot is already registered under this key.
    #[error("a model is already registered as {0}")]
    AlreadyRegistered(ModelKey),
    /// The load this request waited on failed.
    #[error("loading {key} failed: {source}")]
    Load {
        /// The slot.
        key: ModelKey,
        /// What the loader said.
        #[source]
        source: LoadError,
    },
    /// The load this request waited on was cancelled (unloaded, cancelled or shut down).
    #[error("loading {0} was cancelled before it finished")]
    LoadCancelled(ModelKey),
    /// Not enough room in the memory budget, even after evicting every idle model.
    #[error(
        "{key} needs {needed} bytes but the memory budget is {budget} bytes and {in_use} bytes are held by models that are in use, loading or pinned{}",
        blocked_by_list(blocked_by)
    )]
    MemoryBudgetExceeded {
        /// The slot that could not be loaded.
        key: ModelKey,
        /// Its expected size.
        needed: u64,
        /// The configured budget.
        budget: u64,
        /// Bytes that could not be evicted.
        in_use: u64,
        /// The models holding them.
        blocked_by: Vec<ModelKey>,
    },
    /// The model is in memory or in use, so it cannot be changed or deleted now.
    #[error("{key} is {} and in use by {leases} request(s); unload it first", state_word(*state))]
    InUse {
        /// The slot.
        key: ModelKey,
        /// Its state.
        state: crate::ModelState,
        /// Leases held.
        leases: usize,
    },
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    InvalidConfig(String),
    /// The manager is shutting down and takes no new work.
    #[error("the model manager is shutting down")]
    ShuttingDown,
    /// A broken internal invariant (a bug); the manager stays usable.
    #[error("internal error in the model manager: {0}")]
    Internal(String),
    /// The OS refused to start a thread.
    #[error("could not start a thread: {0}")]
    Thread(String),
}

fn state_word(state: crate::ModelState) -> &'static str {
    match state {
        crate::ModelState::Idle => "unloaded",
        crate::ModelState::Loading => "loading",
        crate::ModelState::Loaded => "loaded",
        crate::ModelState::Unloading => "unloading",
        crate::ModelState::Failed => "failed",
    }
}

fn blocked_by_list(keys: &[ModelKey]) -> String {
    if keys.is_empty() {
        String::new()
    } else {
        let names: Vec<&str> = keys.iter().map(ModelKey::as_str).collect();
        format!(" ({})", names.join(", "))
    }
}
