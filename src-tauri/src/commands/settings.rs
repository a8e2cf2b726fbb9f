//! Settings commands: read them, change the memory strategy, change UI preferences.

use std::sync::Arc;

use tauri::State;

use super::blocking;
use crate::error::CommandResult;
use crate::managers::models::{ModelsManager, SettingsPatch, SettingsView};
use crate::managers::settings::MemorySettings;

/// The settings, the environment overrides in force and startup notices.
#[tauri::command]
#[specta::specta]
pub fn get_settings(models: State<'_, Arc<ModelsManager>>) -> SettingsView {
    models.settings_view()
}

/// Applies and saves a new memory strategy (validated first; nothing changes on error).
#[tauri::command]
#[specta::specta]
pub async fn update_model_config(
    models: State<'_, Arc<ModelsManager>>,
    memory: MemorySettings,
) -> CommandResult<SettingsView> {
    let models = models.inner().clone();
    blocking(move || models.update_memory(memory)).await
}

/// Changes the UI preferences (preload on startup, show memory usage).
#[tauri::command]
#[specta::specta]
pub async fn update_settings(
    models: State<'_, Arc<ModelsManager>>,
    patch: SettingsPatch,
) -> CommandResult<SettingsView> {
    let models = models.inner().clone();
    blocking(move || models.update_settings(patch)).await
}
