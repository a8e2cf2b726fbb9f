//! Model commands: status and catalog facts (never load), choosing, warming, importing,
//! switching user models, and unloading.

use std::path::PathBuf;
use std::sync::Arc;

use tauri::State;

use super::blocking;
use crate::catalog::{Slot, Task};
use crate::error::CommandResult;
use crate::managers::models::{ModelInfo, ModelsManager};
use crate::views::{ModelStatusView, StatusView, UnloadSummary};

type Models<'a> = State<'a, Arc<ModelsManager>>;

/// Every model's status. Never loads anything, never counts as activity.
#[tauri::command]
#[specta::specta]
pub fn get_model_status(models: Models<'_>) -> StatusView {
    models.status()
}

/// Catalog facts about a model (`whisper-base`, `user:<id>`...). Never loads anything.
#[tauri::command]
#[specta::specta]
pub fn get_model_info(models: Models<'_>, model_id: String) -> CommandResult<ModelInfo> {
    models.info(&model_id)
}

/// Every base and user model, with what is installed and active.
#[tauri::command]
#[specta::specta]
pub fn list_models(models: Models<'_>) -> Vec<ModelInfo> {
    models.list()
}

/// Chooses `task`'s base model (e.g. the segmentation size) and starts loading it.
#[tauri::command]
#[specta::specta]
pub async fn set_model(
    models: Models<'_>,
    task: Task,
    model_id: String,
) -> CommandResult<ModelStatusView> {
    let models = models.inner().clone();
    blocking(move || models.set_model(task, &model_id)).await
}

/// Starts loading `task`'s model now because the user showed intent (recording, an image).
#[tauri::command]
#[specta::specta]
pub fn warm_model(models: Models<'_>, task: Task) -> CommandResult<()> {
    models.warm(task)
}

/// Loads user model `id` and makes it its task's active model (persisted).
#[tauri::command]
#[specta::specta]
pub async fn load_user_model(models: Models<'_>, id: String) -> CommandResult<ModelStatusView> {
    let models = models.inner().clone();
    blocking(move || models.load_user_model(&id)).await
}

/// Makes `task` use its base model again.
#[tauri::command]
#[specta::specta]
pub async fn reset_to_base_model(models: Models<'_>, task: Task) -> CommandResult<ModelStatusView> {
    let models = models.inner().clone();
    blocking(move || models.reset_to_base_model(task)).await
}

/// Validates a weights file and copies it into the models folder.
#[tauri::command]
#[specta::specta]
pub async fn import_model(
    models: Models<'_>,
    path: String,
    display_name: Option<String>,
) -> CommandResult<ModelInfo> {
    let models = models.inner().clone();
    blocking(move || models.import_model(&PathBuf::from(path), display_name.as_deref())).await
}

/// Unloads one model, or all of them when `slot` is null; says what was freed.
#[tauri::command]
#[specta::specta]
pub async fn manually_unload_model(
    models: Models<'_>,
    slot: Option<Slot>,
) -> CommandResult<UnloadSummary> {
    let models = models.inner().clone();
    blocking(move || models.unload(slot)).await
}
