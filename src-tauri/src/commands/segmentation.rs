//! Segmentation commands: open an image (a file path, or raw bytes with `open_image`), which
//! also warms the model; `segment` it with a prompt; fetch the mask as raw PNG bytes
//! (`mask_png`, an ArrayBuffer in the page).

use std::sync::Arc;

use std::path::PathBuf;

use tauri::ipc::{Request, Response};
use tauri::State;

use super::blocking;
use crate::error::CommandResult;
use crate::managers::segmentation::{
    OpenedImage, SegmentRequest, SegmentResult, SegmentationManager,
};

/// Opens the image file at `path` (PNG or JPEG) and starts loading the model.
#[tauri::command]
#[specta::specta]
pub async fn open_image_file(
    manager: State<'_, Arc<SegmentationManager>>,
    path: String,
) -> CommandResult<OpenedImage> {
    let manager = manager.inner().clone();
    blocking(move || manager.open_file(&PathBuf::from(path))).await
}

/// Opens an image sent as the raw request body (PNG or JPEG) and starts loading the model.
#[tauri::command]
pub async fn open_image(
    manager: State<'_, Arc<SegmentationManager>>,
    request: Request<'_>,
) -> CommandResult<OpenedImage> {
    let bytes = super::raw_body(&request, "the image")?;
    let manager = manager.inner().clone();
    blocking(move || manager.open_bytes(&bytes)).await
}

/// Segments an opened image for the given points and box.
#[tauri::command]
#[specta::specta]
pub async fn segment(
    manager: State<'_, Arc<SegmentationManager>>,
    request: SegmentRequest,
) -> CommandResult<SegmentResult> {
    let manager = manager.inner().clone();
    blocking(move || manager.segment(&request)).await
}

/// The PNG of a recent mask, as raw bytes.
#[tauri::command]
pub fn mask_png(
    manager: State<'_, Arc<SegmentationManager>>,
    mask_id: u32,
) -> CommandResult<Response> {
    let png = manager.mask_png(mask_id)?;
    Ok(Response::new(png.as_ref().clone()))
}
