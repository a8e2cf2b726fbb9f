//! Segmentation commands: `segment` (an image file and a prompt) and the raw-body
//! `mask_png` (the mask as PNG bytes, an ArrayBuffer in the page).

use std::sync::Arc;

use tauri::ipc::Response;
use tauri::State;

use super::blocking;
use crate::error::CommandResult;
use crate::managers::segmentation::{SegmentRequest, SegmentResult, SegmentationManager};

/// Segments the image at `request.image_path` for the given points and box.
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
