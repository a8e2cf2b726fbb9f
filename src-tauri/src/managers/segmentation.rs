//! [`SegmentationManager`] owns segmentation requests: read the image first (bad input never
//! loads a model), take a lease on the Segment Anything model, answer the prompt, and keep
//! the last masks so the front end can fetch them as raw PNG bytes.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use engines::segmentation::{self, Point, Prompt, SamModel};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::catalog::Slot;
use crate::error::{CommandError, CommandResult};
use crate::managers::models::{ModelsManager, RequestTimings};

/// Masks kept for fetching.
const KEPT_MASKS: usize = 8;

/// A click on the image, in image pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct PromptPoint {
    /// Column.
    pub x: f32,
    /// Row.
    pub y: f32,
    /// Part of the object (`true`) or background (`false`).
    pub foreground: bool,
}

/// What to segment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct SegmentRequest {
    /// The image file (PNG or JPEG) the user opened.
    pub image_path: String,
    /// Foreground and background clicks.
    pub points: Vec<PromptPoint>,
    /// Optional box `[x0, y0, x1, y1]` in image pixels.
    pub bbox: Option<[f32; 4]>,
}

/// The best mask for the prompt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct SegmentResult {
    /// Fetch the mask's PNG with `mask_png(mask_id)`.
    pub mask_id: u32,
    /// Mask (and image) width.
    pub width: u32,
    /// Mask (and image) height.
    pub height: u32,
    /// The model's predicted IoU.
    pub score: f32,
    /// Pixels inside the mask.
    pub area: u32,
    /// Whether the image embedding came from the cache (only the decoder ran).
    pub embedding_cached: bool,
    /// The model used.
    pub model_id: String,
    /// Time spent reading the image, µs.
    pub decode_us: u64,
    /// Waiting for the model and running it.
    pub timings: RequestTimings,
}

/// Owner of segmentation requests and of the recent masks.
pub struct SegmentationManager {
    models: Arc<ModelsManager>,
    masks: Mutex<VecDeque<(u32, Arc<Vec<u8>>)>>,
    next_id: Mutex<u32>,
}

impl SegmentationManager {
    /// A manager using `models`.
    pub fn new(models: Arc<ModelsManager>) -> Self {
        Self {
            models,
            masks: Mutex::new(VecDeque::new()),
            next_id: Mutex::new(1),
        }
    }

    /// Segments the image at `request.image_path`.
    pub fn segment(&self, request: &SegmentRequest) -> CommandResult<SegmentResult> {
        if request.points.is_empty() && request.bbox.is_none() {
            return Err(CommandError::invalid_input(
                "click the object (or draw a box around it) to say what to segment",
            ));
        }
        let path = Path::new(&request.image_path);
        if !path.is_file() {
            return Err(CommandError::FileNotFound {
                path: request.image_path.clone(),
                message: format!("{} does not exist or is not a file", path.display()),
            });
        }
        let started = Instant::now();
        let image = segmentation::load_image(path)?;
        let decode_us = crate::views::micros(started.elapsed());
        let prompt = Prompt {
            points: request
                .points
                .iter()
                .map(|p| Point {
                    x: p.x,
                    y: p.y,
                    foreground: p.foreground,
                })
                .collect(),
            bbox: request.bbox,
        };
        let used = self.models.use_model(Slot::Segmentation)?;
        let sam = used
            .lease
            .downcast::<SamModel>()
            .ok_or_else(|| CommandError::internal("the segmentation slot holds no SAM model"))?;
        let result = sam.segment(&image, &prompt);
        let model_id = self
            .models
            .status()
            .models
            .into_iter()
            .find(|m| m.slot == Slot::Segmentation)
            .map(|m| m.model_id)
            .unwrap_or_default();
        let timings = self.models.finish_use(used);
        let mask = result?;
        let png = mask.to_png()?;
        let mask_id = {
            let mut next = self.next_id.lock();
            let id = *next;
            *next = next.wrapping_add(1).max(1);
            id
        };
        {
            let mut masks = self.masks.lock();
            masks.push_back((mask_id, Arc::new(png)));
            while masks.len() > KEPT_MASKS {
                masks.pop_front();
            }
        }
        Ok(SegmentResult {
            mask_id,
            width: mask.width,
            height: mask.height,
            score: mask.score,
            area: u32::try_from(mask.area()).unwrap_or(u32::MAX),
            embedding_cached: mask.embedding_cached,
            model_id,
            decode_us,
            timings,
        })
    }

    /// The PNG of a recent mask.
    pub fn mask_png(&self, mask_id: u32) -> CommandResult<Arc<Vec<u8>>> {
        self.masks
            .lock()
            .iter()
            .find(|(id, _)| *id == mask_id)
            .map(|(_, png)| png.clone())
            .ok_or_else(|| {
                CommandError::invalid_input(format!(
                    "mask {mask_id} is no longer available (only the last {KEPT_MASKS} are kept); segment again"
                ))
            })
    }
}
