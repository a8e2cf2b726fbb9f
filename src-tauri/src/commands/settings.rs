//! Settings commands: read them, change the memory strategy, change UI preferences.

use std::sync::Arc;

use tauri::State;

use super::blocking;
use crate::error::CommandResult;
use crate::managers::settings::{MemorySettings, SettingsManager, SettingsPatch, SettingsView};

type Settings<'a> = State<'a, Arc<SettingsManager>>;

/// The settings, the environment overrides in force and startup notices.
#[tauri::command]
#[specta::specta]
pub fn get_settings(settings: Settings<'_>) -> SettingsView {
    settings.view()
}

/// Applies and saves a new memory strategy (validated first; nothing changes on error).
#[tauri::command]
#[specta::specta]
pub async fn update_model_config(
    settings: Settings<'_>,
    memory: MemorySettings,
) -> CommandResult<SettingsView> {
    let settings = settings.inner().clone();
    blocking(move || settings.update_model_config(memory)).await
}

/// Changes the UI preferences (preload on startup, show memory usage).
#[tauri::command]
#[specta::specta]
pub async fn update_settings(
    settings: Settings<'_>,
    patch: SettingsPatch,
) -> CommandResult<SettingsView> {
    let settings = settings.inner().clone();
    blocking(move || settings.update_settings(patch)).await
}
