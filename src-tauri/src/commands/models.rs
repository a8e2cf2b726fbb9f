//! Model commands: status and catalog facts (never load), choosing, warming, importing,
//! switching user models, and unloading.

use std::path::PathBuf;
use std::sync::Arc;

use tauri::State;

use super::blocking;
use crate::catalog::{Slot, Task};
use crate::error::CommandResult;
use crate::managers::library::{ModelInfo, ModelLibrary};
use crate::managers::slots::SlotManager;
use crate::views::{ModelStatusView, StatusView, UnloadSummary};

type Slots<'a> = State<'a, Arc<SlotManager>>;
type Library<'a> = State<'a, Arc<ModelLibrary>>;

/// Every model's status. Never loads anything, never counts as activity.
#[tauri::command]
#[specta::specta]
pub fn get_model_status(slots: Slots<'_>) -> StatusView {
    slots.status()
}

/// Catalog facts about a model (`whisper-base`, `user:<id>`...). Never loads anything.
#[tauri::command]
#[specta::specta]
pub fn get_model_info(library: Library<'_>, model_id: String) -> CommandResult<ModelInfo> {
    library.info(&model_id)
}

/// Every base and user model, with what is installed and active.
#[tauri::command]
#[specta::specta]
pub fn list_models(library: Library<'_>) -> Vec<ModelInfo> {
    library.list()
}

/// Chooses `task`'s base model (e.g. the segmentation size) and starts loading it.
#[tauri::command]
#[specta::specta]
pub async fn set_model(
    slots: Slots<'_>,
    task: Task,
    model_id: String,
) -> CommandResult<ModelStatusView> {
    let slots = slots.inner().clone();
    blocking(move || slots.set_model(task, &model_id)).await
}

/// Starts loading `task`'s model now because the user showed intent (recording, an image).
#[tauri::command]
#[specta::specta]
pub fn warm_model(slots: Slots<'_>, task: Task) -> CommandResult<()> {
    slots.warm(task)
}

/// Loads user model `id` and makes it its task's active model (persisted).
#[tauri::command]
#[specta::specta]
pub async fn load_user_model(slots: Slots<'_>, id: String) -> CommandResult<ModelStatusView> {
    let slots = slots.inner().clone();
    blocking(move || slots.load_user_model(&id)).await
}

/// Makes `task` use its base model again.
#[tauri::command]
#[specta::specta]
pub async fn reset_to_base_model(slots: Slots<'_>, task: Task) -> CommandResult<ModelStatusView> {
    let slots = slots.inner().clone();
    blocking(move || slots.reset_to_base_model(task)).await
}

/// Validates a weights file and copies it into the models folder.
#[tauri::command]
#[specta::specta]
pub async fn import_model(
    library: Library<'_>,
    path: String,
    display_name: Option<String>,
) -> CommandResult<ModelInfo> {
    let library = library.inner().clone();
    blocking(move || library.import_model(&PathBuf::from(path), display_name.as_deref())).await
}

/// Unloads one model, or all of them when `slot` is null; says what was freed.
#[tauri::command]
#[specta::specta]
pub async fn manually_unload_model(
    slots: Slots<'_>,
    slot: Option<Slot>,
) -> CommandResult<UnloadSummary> {
    let slots = slots.inner().clone();
    blocking(move || slots.unload(slot)).await
}
