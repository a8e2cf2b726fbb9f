//! Thin command wrappers, one screen each: parse, hand the work to a manager off the async
//! runtime ([`blocking`]), return typed results or [`crate::error::CommandError`]s.
//! Every command is typed through tauri-specta, except those that move raw bytes
//! ([`transcription::transcribe_audio`], [`segmentation::open_image`] and
//! [`training::add_training_example`] in; [`segmentation::mask_png`] and
//! [`training::training_thumbnail`] out), which tauri-specta cannot express as raw IPC
//! bodies; their names and types are exported with the bindings.

pub mod downloads;
pub mod models;
pub mod segmentation;
pub mod settings;
pub mod training;
pub mod transcription;

use tauri::ipc::{InvokeBody, Request};

use crate::error::{CommandError, CommandResult};

/// The raw bytes of a request body; a JSON body is refused with a message naming `what`.
pub fn raw_body(request: &Request<'_>, what: &str) -> CommandResult<Vec<u8>> {
    match request.body() {
        InvokeBody::Raw(bytes) => Ok(bytes.clone()),
        InvokeBody::Json(_) => Err(CommandError::invalid_input(format!(
            "{what} must be sent as raw bytes (an ArrayBuffer or Uint8Array)"
        ))),
    }
}

/// Runs `work` on the blocking pool so the UI never waits on inference or disk.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> CommandResult<T> + Send + 'static,
) -> CommandResult<T> {
    tauri::async_runtime::spawn_blocking(work)
        .await
        .map_err(|e| CommandError::internal(format!("the request stopped unexpectedly: {e}")))?
}
