//! Training commands: the training set (list, add from files, from raw bytes, or from a
//! mask made on the Segment page; remove; thumbnails as raw PNG bytes), and training jobs
//! (start, cancel, status). Progress arrives as `TrainingProgress` events.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use tauri::ipc::{Request, Response};
use tauri::State;

use super::blocking;
use crate::error::{CommandError, CommandResult};
use crate::managers::segmentation::SegmentationManager;
use crate::managers::training::{TrainingManager, TrainingRequest, TrainingView};
use crate::training_set::TrainingExample;

type Training<'a> = State<'a, Arc<TrainingManager>>;

/// The header of `add_training_example` naming the pair: `{"name": "...", "image_bytes": n}`.
pub const EXAMPLE_HEADER: &str = "x-dormouse-example";

/// Every example in the training set.
#[tauri::command]
#[specta::specta]
pub fn list_training_examples(training: Training<'_>) -> Vec<TrainingExample> {
    training.examples()
}

/// Adds an image file and its mask file (non-zero pixels are the object) to the training set.
#[tauri::command]
#[specta::specta]
pub async fn add_training_files(
    training: Training<'_>,
    image_path: String,
    mask_path: String,
) -> CommandResult<TrainingExample> {
    let training = training.inner().clone();
    blocking(move || {
        training
            .training_set()
            .add_files(&PathBuf::from(image_path), &PathBuf::from(mask_path))
    })
    .await
}

#[derive(Deserialize)]
struct ExampleHeader {
    name: String,
    image_bytes: usize,
}

/// Adds a pair sent as one raw body: the image's bytes, then the mask's; the
/// [`EXAMPLE_HEADER`] header says where the image ends.
#[tauri::command]
pub async fn add_training_example(
    training: Training<'_>,
    request: Request<'_>,
) -> CommandResult<TrainingExample> {
    let body = super::raw_body(&request, "the example")?;
    let header: ExampleHeader =
        super::json_header(&request, EXAMPLE_HEADER).unwrap_or_else(|| {
            Err(CommandError::invalid_input(format!(
                "the {EXAMPLE_HEADER} header is missing"
            )))
        })?;
    if header.image_bytes > body.len() {
        return Err(CommandError::invalid_input(
            "the example's image is longer than the body",
        ));
    }
    let training = training.inner().clone();
    blocking(move || {
        let (image, mask) = body.split_at(header.image_bytes);
        training.training_set().add_bytes(&header.name, image, mask)
    })
    .await
}

/// Adds the opened image and a mask made for it on the Segment page.
#[tauri::command]
#[specta::specta]
pub async fn add_segment_to_training_set(
    training: Training<'_>,
    segmentation: State<'_, Arc<SegmentationManager>>,
    image_id: u32,
    mask_id: u32,
) -> CommandResult<TrainingExample> {
    let (training, segmentation) = (training.inner().clone(), segmentation.inner().clone());
    blocking(move || training.add_pair(segmentation.training_pair(image_id, mask_id)?)).await
}

/// Removes an example from the training set.
#[tauri::command]
#[specta::specta]
pub fn remove_training_example(training: Training<'_>, example_id: String) -> CommandResult<()> {
    training.training_set().remove(&example_id)
}

/// A thumbnail of an example with its mask tinted, as raw PNG bytes.
#[tauri::command]
pub async fn training_thumbnail(
    training: Training<'_>,
    example_id: String,
) -> CommandResult<Response> {
    let training = training.inner().clone();
    blocking(move || {
        training
            .training_set()
            .thumbnail(&example_id)
            .map(Response::new)
    })
    .await
}

/// Starts training a custom segmentation model; returns at once (progress by events).
#[tauri::command]
#[specta::specta]
pub async fn start_training(
    training: Training<'_>,
    request: TrainingRequest,
) -> CommandResult<TrainingView> {
    let training = training.inner().clone();
    blocking(move || training.start(&request)).await
}

/// Cancels the running training (nothing is written); says whether one was running.
#[tauri::command]
#[specta::specta]
pub fn cancel_training(training: Training<'_>) -> bool {
    training.cancel()
}

/// The running or last training job, with its whole loss / IoU history.
#[tauri::command]
#[specta::specta]
pub fn training_status(training: Training<'_>) -> Option<TrainingView> {
    training.status()
}
