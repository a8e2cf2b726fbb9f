//! [`SegmentationManager`] owns segmentation requests. Opening an image decodes it once (bad
//! input never loads a model), warms the Segment Anything model and computes the image's
//! embedding under a lease on a background thread, because the user is about to click: the
//! first click then costs a re-prompt; when it is done (or failed) the manager says so
//! ([`ImagePreparation`], pushed as [`crate::events::ImagePrepared`]). Opening another image
//! cancels that work. Prompts take a lease, run the model, and keep the last masks so the
//! front end can fetch them as raw PNG bytes.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

use engines::segmentation::{self, Point, Prompt, SamModel};
use engines::EngineError;
use image::RgbImage;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::catalog::Slot;
use crate::error::{CommandError, CommandResult};
use crate::managers::slots::{RequestTimings, SlotManager};

/// Masks kept for fetching.
const KEPT_MASKS: usize = 8;
/// Opened images kept decoded (each up to 300 MB at the 100-megapixel limit).
const KEPT_IMAGES: usize = 2;

/// An image decoded and ready to prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct OpenedImage {
    /// Pass it to `segment`.
    pub image_id: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Whether its embedding is being computed ahead of the first click
    /// ([`ImagePreparation`] follows); `false` when no model could be warmed.
    pub preparing: bool,
}

/// How computing an opened image's embedding ahead of its first click ended. An image
/// replaced by another before it finished gets none: its work stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct ImagePreparation {
    /// The image, as `open_image` returned it.
    pub image_id: u32,
    /// How it ended.
    pub outcome: PreparationOutcome,
}

/// The end of an embedding computed ahead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PreparationOutcome {
    /// The embedding is ready: a click now only decodes a mask.
    Ready {
        /// The time it took, ms (0 when it was cached already).
        ms: u64,
    },
    /// It could not be computed ahead; a click computes it (and reports any error).
    Failed {
        /// Why.
        message: String,
    },
}

/// Where the manager reports each [`ImagePreparation`] (the app emits it as an event).
type PreparationSink = Arc<dyn Fn(ImagePreparation) + Send + Sync>;

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
    /// An image from `open_image` / `open_image_file`.
    pub image_id: u32,
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
    /// Time the whole request took, µs.
    pub total_us: u64,
    /// Waiting for the model and running it.
    pub timings: RequestTimings,
}

/// Owner of segmentation requests and of the recent masks.
pub struct SegmentationManager {
    slots: Arc<SlotManager>,
    images: Mutex<VecDeque<(u32, Arc<RgbImage>)>>,
    masks: Mutex<VecDeque<(u32, Arc<Vec<u8>>)>>,
    next_id: Mutex<u32>,
    /// The image whose embedding is being prepared; the work for any other stops.
    preparing: Arc<AtomicU32>,
    on_prepared: PreparationSink,
}

/// Keeps the newest `limit` entries of a small id-keyed cache.
fn remember<T>(cache: &Mutex<VecDeque<(u32, T)>>, id: u32, value: T, limit: usize) {
    let mut cache = cache.lock();
    cache.push_back((id, value));
    while cache.len() > limit {
        cache.pop_front();
    }
}

impl SegmentationManager {
    /// A manager using `slots`, reporting each embedding computed ahead to `on_prepared`.
    pub fn new(
        slots: Arc<SlotManager>,
        on_prepared: impl Fn(ImagePreparation) + Send + Sync + 'static,
    ) -> Self {
        Self {
            slots,
            images: Mutex::new(VecDeque::new()),
            masks: Mutex::new(VecDeque::new()),
            next_id: Mutex::new(1),
            preparing: Arc::new(AtomicU32::new(0)),
            on_prepared: Arc::new(on_prepared),
        }
    }

    fn next_id(&self) -> u32 {
        let mut next = self.next_id.lock();
        let id = *next;
        *next = next.wrapping_add(1).max(1);
        id
    }

    /// Decodes the image file at `path` and warms the model.
    pub fn open_file(&self, path: &Path) -> CommandResult<OpenedImage> {
        crate::error::require_file(path)?;
        let image = segmentation::load_image(path)?;
        self.opened(image)
    }

    /// Decodes an image sent as bytes (PNG or JPEG) and warms the model.
    pub fn open_bytes(&self, bytes: &[u8]) -> CommandResult<OpenedImage> {
        let image = segmentation::decode_image(bytes, "the image")?;
        self.opened(image)
    }

    fn opened(&self, image: RgbImage) -> CommandResult<OpenedImage> {
        let (width, height) = image.dimensions();
        let image_id = self.next_id();
        let image = Arc::new(image);
        remember(&self.images, image_id, image.clone(), KEPT_IMAGES);
        // The user is about to click: start loading now (a missing model is reported then),
        // and embed the image as soon as the model is there.
        let preparing = match self.slots.warm(crate::catalog::Task::Segmentation) {
            Ok(()) => self.prepare(image_id, image),
            Err(error) => {
                tracing::debug!(%error, "segmentation model not warmed");
                false
            }
        };
        Ok(OpenedImage {
            image_id,
            width,
            height,
            preparing,
        })
    }

    /// Computes `image`'s embedding on a thread of its own, under a lease (the model stays
    /// loaded meanwhile), unless another image is opened first: then it stops between two of
    /// the encoder's stages. Its time is not a request's: the badge's timings stay the user's.
    /// Returns whether the work started; how it ends goes to `on_prepared` (nothing when it
    /// was superseded).
    fn prepare(&self, image_id: u32, image: Arc<RgbImage>) -> bool {
        self.preparing.store(image_id, Ordering::Release);
        let preparing = self.preparing.clone();
        let slots = self.slots.clone();
        let on_prepared = self.on_prepared.clone();
        let spawned = std::thread::Builder::new()
            .name("dormouse-embed".into())
            .spawn(move || {
                let superseded = || preparing.load(Ordering::Acquire) != image_id;
                let report = |outcome| on_prepared(ImagePreparation { image_id, outcome });
                let failed = |message: String| {
                    if !superseded() {
                        report(PreparationOutcome::Failed { message });
                    }
                };
                if superseded() {
                    return;
                }
                let used = match slots.use_model(Slot::Segmentation) {
                    Ok(used) => used,
                    Err(error) => {
                        tracing::debug!(%error, image_id, "no model to embed the image with");
                        return failed(error.to_string());
                    }
                };
                let Some(sam) = used.lease.downcast::<SamModel>() else {
                    return failed("the segmentation slot holds another kind of model".into());
                };
                let started = Instant::now();
                match sam.prepare(&image, &superseded) {
                    Ok(computed) => {
                        let ms = if computed {
                            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
                        } else {
                            0
                        };
                        tracing::info!(
                            image_id,
                            computed,
                            ms,
                            "image embedded ahead of the first prompt"
                        );
                        report(PreparationOutcome::Ready { ms });
                    }
                    Err(EngineError::Cancelled) => {
                        tracing::debug!(image_id, "embedding dropped: another image was opened")
                    }
                    Err(error) => {
                        tracing::warn!(%error, image_id, "embedding ahead failed");
                        failed(error.to_string());
                    }
                }
            });
        match spawned {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "could not start embedding the image ahead");
                false
            }
        }
    }

    /// Segments an opened image for the request's points and box.
    pub fn segment(&self, request: &SegmentRequest) -> CommandResult<SegmentResult> {
        if request.points.is_empty() && request.bbox.is_none() {
            return Err(CommandError::invalid_input(
                "click the object (or draw a box around it) to say what to segment",
            ));
        }
        let image = self
            .images
            .lock()
            .iter()
            .find(|(id, _)| *id == request.image_id)
            .map(|(_, image)| image.clone())
            .ok_or_else(|| {
                CommandError::invalid_input(format!(
                    "image {} is no longer open (only the last {KEPT_IMAGES} are kept); open it again",
                    request.image_id
                ))
            })?;
        let started = Instant::now();
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
        let used = self.slots.use_model(Slot::Segmentation)?;
        let sam = used
            .lease
            .downcast::<SamModel>()
            .ok_or_else(|| CommandError::internal("the segmentation slot holds no SAM model"))?;
        let result = sam.segment(&image, &prompt);
        let model_id = used.model_id().to_owned();
        let timings = used.finish();
        let mask = result?;
        let png = mask.to_png()?;
        let mask_id = self.next_id();
        remember(&self.masks, mask_id, Arc::new(png), KEPT_MASKS);
        Ok(SegmentResult {
            mask_id,
            width: mask.width,
            height: mask.height,
            score: mask.score,
            area: u32::try_from(mask.area()).unwrap_or(u32::MAX),
            embedding_cached: mask.embedding_cached,
            model_id,
            total_us: crate::views::micros(started.elapsed()),
            timings,
        })
    }

    /// An opened image and a mask made for it, as a training pair (the Segment page's "Add to
    /// training set").
    pub fn training_pair(
        &self,
        image_id: u32,
        mask_id: u32,
    ) -> CommandResult<engines::segmentation::training::TrainingPair> {
        let image = self
            .images
            .lock()
            .iter()
            .find(|(id, _)| *id == image_id)
            .map(|(_, image)| image.clone())
            .ok_or_else(|| {
                CommandError::invalid_input(format!(
                    "image {image_id} is no longer open; open it again"
                ))
            })?;
        let png = self.mask_png(mask_id)?;
        let mask = image::load_from_memory(&png)
            .map_err(CommandError::internal)?
            .to_luma8();
        if mask.dimensions() != image.dimensions() {
            return Err(CommandError::invalid_input(format!(
                "mask {mask_id} was made for another image; segment this one again"
            )));
        }
        Ok(engines::segmentation::training::TrainingPair::new(
            format!("Segment page, image {image_id}"),
            image.as_ref().clone(),
            mask.into_raw(),
        )?)
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
