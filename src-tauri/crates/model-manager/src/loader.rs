//! The contract engines implement: [`ModelLoader`] turns a [`ModelSpec`] into a [`LoadedModel`],
//! honouring the [`LoadContext`]'s [`CancelToken`] and reporting progress.

use std::any::Any;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;

use crate::key::ModelSpec;

/// A model in memory. Dropping it must release everything it holds.
///
/// The manager hands it out shared (`&dyn LoadedModel`) to every lease holder at once, so a
/// model that needs mutation for inference keeps its own lock inside.
pub trait LoadedModel: Any + Send + Sync {
    /// Bytes this model keeps resident, as measured by the engine (weights, buffers, caches).
    fn resident_bytes(&self) -> u64;
}

/// Loads models for one or more slots. Implemented by the engines.
pub trait ModelLoader: Send + Sync + 'static {
    /// Bytes the model is expected to take once loaded, known before loading (e.g. from its file
    /// size). Used for the memory budget until the model has been loaded once and measured.
    /// Must be cheap: a `stat` or a read of the file's header, no more.
    fn estimate_bytes(&self, spec: &ModelSpec) -> Option<u64> {
        let _ = spec;
        None
    }

    /// Loads `spec`. Runs on its own thread, never under the manager's lock. Long loads should
    /// check [`LoadContext::cancel`] between steps and may report progress; a load that returns
    /// after it was cancelled or superseded is dropped at once.
    fn load(&self, spec: &ModelSpec, ctx: &LoadContext) -> Result<Box<dyn LoadedModel>, LoadError>;
}

/// Why a load did not produce a model. Cloned to every request waiting on that load.
#[derive(Clone, Debug, Error, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "message", rename_all = "snake_case")]
pub enum LoadError {
    /// The load saw its cancel token and stopped.
    #[error("load cancelled")]
    Cancelled,
    /// The loader failed; the message says why.
    #[error("{0}")]
    Failed(String),
    /// The loader panicked; the manager caught it.
    #[error("loader panicked: {0}")]
    Panicked(String),
}

impl LoadError {
    /// A failure with the given message.
    pub fn failed(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }
}

/// Set when a load is no longer wanted (cancelled, superseded, unloaded, shutting down).
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Marks the load as unwanted.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// Whether the load is unwanted.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
    /// `Err(LoadError::Cancelled)` once cancelled: `ctx.cancel.check()?` between load steps.
    pub fn check(&self) -> Result<(), LoadError> {
        if self.is_cancelled() {
            Err(LoadError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// Reports a load's progress (0.0–1.0) to the manager, which publishes it as an event.
#[derive(Clone)]
pub struct ProgressReporter(Arc<dyn Fn(f32) + Send + Sync>);

impl ProgressReporter {
    /// A reporter calling `sink` with each clamped fraction.
    pub fn new(sink: impl Fn(f32) + Send + Sync + 'static) -> Self {
        Self(Arc::new(sink))
    }
    /// A reporter that drops everything (for calling loaders outside the manager).
    pub fn discard() -> Self {
        Self::new(|_| {})
    }
    /// Reports `fraction` done; values are clamped to 0.0–1.0 and NaN is ignored.
    pub fn report(&self, fraction: f32) {
        if fraction.is_nan() {
            return;
        }
        (self.0)(fraction.clamp(0.0, 1.0));
    }
}

impl fmt::Debug for ProgressReporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ProgressReporter")
    }
}

/// What a loader gets besides the spec.
#[derive(Clone, Debug)]
pub struct LoadContext {
    /// Set when the load is no longer wanted.
    pub cancel: CancelToken,
    /// Where to report progress.
    pub progress: ProgressReporter,
}

impl LoadContext {
    /// A context that is never cancelled and discards progress, for using a loader directly.
    pub fn detached() -> Self {
        Self {
            cancel: CancelToken::new(),
            progress: ProgressReporter::discard(),
        }
    }
}

/// Borrow a loaded model as its concrete type.
pub(crate) fn downcast<T: LoadedModel>(model: &dyn LoadedModel) -> Option<&T> {
    let any: &dyn Any = model;
    any.downcast_ref::<T>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn cancel_token_is_shared_between_clones() {
        let token = CancelToken::new();
        let twin = token.clone();
        assert!(token.check().is_ok());
        twin.cancel();
        assert!(token.is_cancelled());
        assert_eq!(token.check(), Err(LoadError::Cancelled));
    }

    #[test]
    fn progress_is_clamped_and_nan_dropped() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let reporter = ProgressReporter::new(move |f| sink.lock().expect("lock").push(f));
        for f in [-1.0, 0.5, f32::NAN, 3.0] {
            reporter.report(f);
        }
        assert_eq!(*seen.lock().expect("lock"), vec![0.0, 0.5, 1.0]);
    }
}
