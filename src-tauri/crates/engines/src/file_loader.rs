//! The shape every engine's [`model_manager::ModelLoader`] shares: the spec names a model
//! file; load it, honour cancellation, report progress, box the result.

use std::path::Path;

use model_manager::{LoadContext, LoadError, LoadedModel, ModelSpec};

use crate::error::EngineError;

/// The size of the spec's model file, as the budget's estimate before the first load.
pub(crate) fn file_size(spec: &ModelSpec) -> Option<u64> {
    std::fs::metadata(spec.path.as_deref()?)
        .ok()
        .map(|m| m.len())
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
    let model = load(path).map_err(LoadError::failed)?;
    ctx.cancel.check()?;
    ctx.progress.report(1.0);
    Ok(Box::new(model))
}
