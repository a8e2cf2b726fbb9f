//! Download commands: start (or join) a catalog model's download, cancel it, list the ones
//! in flight, and delete an installed model. Progress arrives as `DownloadProgress` events.

use std::sync::Arc;

use tauri::State;

use super::blocking;
use crate::error::CommandResult;
use crate::managers::downloads::{DownloadView, ModelDownloads};
use crate::managers::library::DeletedModel;

type Downloads<'a> = State<'a, Arc<ModelDownloads>>;

/// Starts downloading catalog model `model_id` (a second request joins the first).
#[tauri::command]
#[specta::specta]
pub fn download_model(downloads: Downloads<'_>, model_id: String) -> CommandResult<DownloadView> {
    downloads.start(&model_id)
}

/// Cancels `model_id`'s download and removes what it wrote; false when none was running.
#[tauri::command]
#[specta::specta]
pub fn cancel_download(downloads: Downloads<'_>, model_id: String) -> bool {
    downloads.cancel(&model_id)
}

/// The downloads in flight (the page's starting point; events follow).
#[tauri::command]
#[specta::specta]
pub fn list_downloads(downloads: Downloads<'_>) -> Vec<DownloadView> {
    downloads.active()
}

/// Deletes an installed model (`whisper-small`, `user:<id>`); refused while it is loaded,
/// in use or downloading.
#[tauri::command]
#[specta::specta]
pub async fn delete_model(
    downloads: Downloads<'_>,
    model_id: String,
) -> CommandResult<DeletedModel> {
    let downloads = downloads.inner().clone();
    blocking(move || downloads.delete(&model_id)).await
}
