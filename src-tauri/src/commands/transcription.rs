//! Speech-to-text commands: `transcribe` (a file the user picked) and the raw-body
//! `transcribe_audio` (a recording, sent as bytes with its settings in a header).

use std::path::PathBuf;
use std::sync::Arc;

use tauri::ipc::Request;
use tauri::State;

use super::blocking;
use crate::error::CommandResult;
use crate::managers::transcription::{TranscribeSettings, Transcription, TranscriptionManager};

/// The header carrying `transcribe_audio`'s settings as JSON.
pub const SETTINGS_HEADER: &str = "x-dormouse-transcribe";

/// Transcribes the audio file at `path`.
#[tauri::command]
#[specta::specta]
pub async fn transcribe(
    manager: State<'_, Arc<TranscriptionManager>>,
    path: String,
    settings: TranscribeSettings,
) -> CommandResult<Transcription> {
    let manager = manager.inner().clone();
    blocking(move || manager.transcribe_file(&PathBuf::from(path), &settings)).await
}

/// Transcribes a recording sent as the raw request body (WAV or any supported format),
/// with [`TranscribeSettings`] as JSON in the `x-dormouse-transcribe` header.
#[tauri::command]
pub async fn transcribe_audio(
    manager: State<'_, Arc<TranscriptionManager>>,
    request: Request<'_>,
) -> CommandResult<Transcription> {
    let bytes = super::raw_body(&request, "the recording")?;
    let settings = super::json_header(&request, SETTINGS_HEADER)
        .transpose()?
        .unwrap_or_default();
    let manager = manager.inner().clone();
    blocking(move || manager.transcribe_bytes(bytes, &settings)).await
}
