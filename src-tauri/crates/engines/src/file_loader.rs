//! The shape every engine's [`model_manager::ModelLoader`] shares: the spec names a model
//! file (or a model folder); load it, honour cancellation, report progress, box the result.

use std::path::Path;

use model_manager::memory::process_rss_bytes;
use model_manager::{LoadContext, LoadError, LoadedModel, ModelSpec};

use crate::error::EngineError;

/// The size of the spec's model file (or folder), as the budget's estimate before the first
/// load.
pub(crate) fn file_size(spec: &ModelSpec) -> Option<u64> {
    disk_bytes(spec.path.as_deref()?).ok()
}

/// The size of a file, or of the files in a folder (not recursing: model folders are flat).
pub(crate) fn disk_bytes(path: &Path) -> std::io::Result<u64> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let meta = entry?.metadata()?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Loads the spec's model file with `load`, for a [`model_manager::ModelLoader`].
pub(crate) fn load_file<M: LoadedModel>(
    spec: &ModelSpec,
    ctx: &LoadContext,
    load: impl FnOnce(&Path) -> Result<M, EngineError>,
) -> Result<Box<dyn LoadedModel>, LoadError> {
    let path = spec
        .path
        .as_deref()
        .ok_or_else(|| LoadError::failed(format!("{} has no model file", spec.id)))?;
    ctx.cancel.check()?;
    ctx.progress.report(0.05);
    let model = load(path).map_err(|e| match e {
        EngineError::Cancelled => LoadError::Cancelled,
        e => LoadError::failed(e),
    })?;
    ctx.cancel.check()?;
    ctx.progress.report(1.0);
    Ok(Box::new(model))
}

/// Runs `load` for the model file (or folder) at `path` and measures what it added to the process's
/// resident memory (weights and the runtime's buffers); never less than the file's size.
/// Process-wide: other threads' allocations meanwhile blur the figure.
pub(crate) fn load_measured<T>(
    path: &Path,
    load: impl FnOnce() -> Result<T, EngineError>,
) -> Result<(T, u64), EngineError> {
    let file_bytes = disk_bytes(path).map_err(|e| EngineError::io(path, e))?;
    let before = process_rss_bytes();
    let value = load()?;
    let grown = before
        .zip(process_rss_bytes())
        .map_or(0, |(b, a)| a.saturating_sub(b));
    Ok((value, grown.max(file_bytes)))
}
