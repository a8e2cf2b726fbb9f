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

/// The JSON value of header `name`, or `None` when it is absent. The front end sends it as
/// ASCII (non-ASCII escaped as `\uXXXX`, since fetch cannot carry UTF-8 in a header), and
/// raw UTF-8 is read too, so a name such as "café.png" arrives whole either way.
pub fn json_header<T: serde::de::DeserializeOwned>(
    request: &Request<'_>,
    name: &str,
) -> Option<CommandResult<T>> {
    let value = request.headers().get(name)?;
    Some(serde_json::from_slice(value.as_bytes()).map_err(|e| {
        CommandError::invalid_input(format!("the {name} header is not valid JSON: {e}"))
    }))
}

/// Runs `work` on the blocking pool so the UI never waits on inference or disk.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> CommandResult<T> + Send + 'static,
) -> CommandResult<T> {
    tauri::async_runtime::spawn_blocking(work)
        .await
        .map_err(|e| CommandError::internal(format!("the request stopped unexpectedly: {e}")))?
}
