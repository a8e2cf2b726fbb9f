//! [`ModelLibrary`] owns what is on disk and what it is: the catalog lookups, which file a
//! slot's model loads from, the user models (import, fine-tunes, the check an import makes),
//! the facts the Models page lists ([`ModelInfo`]) and deleting models. It never loads a
//! model; it asks the core only whether a model is in use before its files go.

mod delete;
mod info;

use std::path::Path;
use std::sync::Arc;

use engines::segmentation::weights as sam_weights;
use engines::speech;
use model_manager::{ModelManager, ModelSpec};

pub use self::delete::DeletedModel;
pub use self::info::{DownloadOffer, ModelInfo};
use crate::catalog::{self, Slot, Task};
use crate::error::{CommandError, CommandResult};
use crate::managers::settings::{Notice, NoticeKind, Settings, SettingsManager};
use crate::paths::AppPaths;
use crate::user_models::{TrainingRecord, UserModelId, UserModelMeta, UserModels};
use crate::views::Views;

/// Owner of the models on disk; see the module docs.
pub struct ModelLibrary {
    core: Arc<ModelManager>,
    settings: Arc<SettingsManager>,
    paths: AppPaths,
    user_models: UserModels,
}

impl ModelLibrary {
    /// The library of `paths`' models folder.
    pub fn new(core: Arc<ModelManager>, settings: Arc<SettingsManager>, paths: AppPaths) -> Self {
        let user_models = UserModels::new(&paths.models_dir);
        Self {
            core,
            settings,
            paths,
            user_models,
        }
    }

    /// The folders in use.
    pub fn paths(&self) -> &AppPaths {
        &self.paths
    }

    /// The spec `slot` loads under the settings in force: the active user model, else the
    /// chosen base model.
    pub fn current_spec(&self, slot: Slot) -> ModelSpec {
        self.settings
            .read(|s| spec_for(&self.paths, &self.user_models, s, slot))
    }

    /// Points the core's `slot` at the model the settings choose now.
    pub fn apply_spec(&self, slot: Slot) -> CommandResult<()> {
        Ok(self.core.set_spec(&slot.key(), self.current_spec(slot))?)
    }

    /// The "not installed" error for `slot`'s chosen model when its file is missing.
    pub fn ensure_present(&self, slot: Slot) -> CommandResult<()> {
        let spec = self.current_spec(slot);
        match spec.path.as_deref() {
            Some(path) if path.exists() => Ok(()),
            path => {
                let path = path.map(|p| p.display().to_string()).unwrap_or_default();
                let name = crate::views::display_name(&spec.id, |id| self.user_name(id));
                Err(CommandError::ModelNotInstalled {
                    model_id: spec.id.to_string(),
                    message: format!(
                        "{name} is not installed: its file {path} is missing. Download it (here or on the Models page), import a model file on the Models page, or run the README's setup command."
                    ),
                    expected_path: path,
                })
            }
        }
    }

    /// Checks catalog model `model_id` can serve `task`: known, installed, and (for speech) a
    /// usable file or folder. Nothing is changed.
    pub fn check_base_model(&self, task: Task, model_id: &str) -> CommandResult<()> {
        let entry = catalog::entry(model_id)
            .filter(|e| e.slot == task.slot())
            .ok_or_else(|| {
                CommandError::unknown_model(
                    model_id,
                    format!("{model_id:?} is not a {} model", task.label()),
                )
            })?;
        let path = self.paths.model_file(entry.file_name);
        if !path.exists() {
            return Err(CommandError::ModelNotInstalled {
                model_id: model_id.into(),
                expected_path: path.display().to_string(),
                message: format!(
                    "{} is not installed: {} is missing",
                    entry.display_name,
                    path.display()
                ),
            });
        }
        // A damaged file or an incomplete model folder is refused before it becomes active.
        if task == Task::Transcription {
            speech::inspect_any(&path)?;
        }
        Ok(())
    }

    /// User model `id`, checked as an import checks it: its record and the path of weights
    /// that pass. A wrong, corrupt or vanished file is an error.
    pub fn checked_user_model(&self, id: &str) -> CommandResult<(UserModelMeta, ModelSpec)> {
        let id = UserModelId::new(id)?;
        let meta = self.user_models.get(&id).ok_or_else(|| {
            CommandError::unknown_model(
                id.as_str(),
                format!(
                    "there is no user model {:?} in {}",
                    id.as_str(),
                    self.paths.models_dir.join("user").display()
                ),
            )
        })?;
        let path = self.user_models.weights_path(&id, meta.task);
        validate_weights(&path, meta.task)?;
        Ok((meta, ModelSpec::with_path(id.model_id(), path)))
    }

    /// Why `task`'s active user model cannot serve it, as the notice to show, or `None` when
    /// there is no active user model or it can. `loaded`: it passed the check when it loaded,
    /// so only its file's presence is looked at.
    pub fn active_user_model_problem(&self, task: Task, loaded: bool) -> Option<Notice> {
        let id = self
            .settings
            .read(|s| s.active_user_models.get(task).cloned())?;
        if loaded && self.user_models.weights_path(&id, task).is_file() {
            return None;
        }
        user_model_problem(&self.user_models, &id, task)
    }

    /// Catalog and on-disk facts about `id` (a catalog id or `user:<id>`). Never loads, never
    /// counts as activity.
    pub fn info(&self, id: &str) -> CommandResult<ModelInfo> {
        if let Some(user) = id.strip_prefix("user:") {
            let uid = UserModelId::new(user)?;
            let meta = self.user_models.get(&uid).ok_or_else(|| {
                CommandError::unknown_model(id, format!("there is no user model {user:?}"))
            })?;
            return Ok(self.user_info(&meta, &self.core.status()));
        }
        let entry = catalog::known(id)?;
        Ok(self.base_info(entry, &self.core.status()))
    }

    /// Every base model and user model, with which is active.
    pub fn list(&self) -> Vec<ModelInfo> {
        let status = self.core.status();
        let mut all: Vec<ModelInfo> = catalog::CATALOG
            .iter()
            .map(|e| self.base_info(e, &status))
            .collect();
        all.extend(
            self.user_models
                .list()
                .iter()
                .map(|m| self.user_info(m, &status)),
        );
        all
    }

    /// Validates a user's weights file (Whisper GGML or SAM safetensors), copies it into the
    /// models folder and describes it. It is not made active.
    pub fn import_model(
        &self,
        source: &Path,
        display_name: Option<&str>,
    ) -> CommandResult<ModelInfo> {
        crate::error::require_file(source)?;
        let task = detect_task(source)?;
        let name = display_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                source.file_stem().map_or_else(
                    || "Custom model".into(),
                    |s| s.to_string_lossy().into_owned(),
                )
            });
        let meta = self.user_models.import(source, task, &name)?;
        Ok(self.user_info(&meta, &self.core.status()))
    }

    /// Saves a fine-tuned Segment Anything model (see [`UserModels::add_fine_tune`]). It is
    /// not made active.
    pub fn add_fine_tune(
        &self,
        display_name: &str,
        record: TrainingRecord,
        write_weights: impl FnOnce(&mut dyn std::io::Write) -> Result<u64, engines::EngineError>,
    ) -> CommandResult<UserModelMeta> {
        self.user_models
            .add_fine_tune(display_name, record, write_weights)
    }

    /// The name of user model `id` (without `user:`), if there is one.
    pub fn user_name(&self, id: &str) -> Option<String> {
        let id = UserModelId::new(id).ok()?;
        self.user_models.get(&id).map(|m| m.display_name)
    }

    /// The core's snapshots turned into views, with user models named.
    pub fn views(&self) -> Views<impl Fn(&str) -> Option<String> + '_> {
        Views {
            user_name: move |id: &str| self.user_name(id),
        }
    }
}

/// The spec a slot loads under `settings`: the active user model, else the chosen base model.
pub fn spec_for(
    paths: &AppPaths,
    users: &UserModels,
    settings: &Settings,
    slot: Slot,
) -> ModelSpec {
    if let Some(task) = slot.task() {
        if let Some(id) = settings.active_user_models.get(task) {
            return ModelSpec::with_path(id.model_id(), users.weights_path(id, task));
        }
    }
    let entry = slot
        .task()
        .and_then(|t| catalog::entry(settings.models.get(t)))
        .unwrap_or_else(|| catalog::default_for(slot));
    ModelSpec::with_path(entry.id, paths.model_file(entry.file_name))
}

/// Why user model `id` cannot serve `task`, as the notice to show, or `None` when it can:
/// its files are there and its weights pass the check an import makes.
pub fn user_model_problem(users: &UserModels, id: &UserModelId, task: Task) -> Option<Notice> {
    let path = users.weights_path(id, task);
    let Some(meta) = users.get(id).filter(|m| m.task == task) else {
        return Some(Notice {
            kind: NoticeKind::UserModelMissing,
            message: format!(
                "Your custom {} model \"{}\" was not found in {}; Dormouse uses the base model again.",
                task.label(),
                id.as_str(),
                path.display()
            ),
        });
    };
    let error = validate_weights(&path, task).err()?;
    Some(Notice {
        kind: NoticeKind::UserModelUnusable,
        message: format!(
            "Your custom {} model \"{}\" cannot be used ({}); Dormouse uses the base model again. Its file is still in {}.",
            task.label(),
            meta.display_name,
            error.message(),
            path.display()
        ),
    })
}

/// Checks a weights file is a model for `task` before anything loads it.
fn validate_weights(path: &Path, task: Task) -> CommandResult<()> {
    match task {
        Task::Transcription => speech::inspect_whisper(path).map(drop)?,
        Task::Segmentation => sam_weights::inspect(path).map(drop)?,
    }
    Ok(())
}

/// Which task a user's weights file is for: a Whisper GGML file or SAM safetensors.
fn detect_task(path: &Path) -> CommandResult<Task> {
    let whisper = speech::inspect_whisper(path);
    if whisper.is_ok() {
        return Ok(Task::Transcription);
    }
    let sam = sam_weights::inspect(path);
    if sam.is_ok() {
        return Ok(Task::Segmentation);
    }
    let reason =
        |r: Result<_, engines::EngineError>| r.err().map(|e| e.to_string()).unwrap_or_default();
    Err(CommandError::InvalidModel {
        message: format!(
            "{} is neither a Whisper GGML model nor Segment Anything weights. As Whisper: {}. As SAM: {}.",
            path.display(),
            reason(whisper.map(drop)),
            reason(sam.map(drop))
        ),
    })
}
