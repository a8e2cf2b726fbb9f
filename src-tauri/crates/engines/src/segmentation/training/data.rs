//! Preparing what a fine-tune trains on: validated image + mask pairs ([`TrainingPair`],
//! [`check_dataset`]), each image embedded once by the frozen encoder, and the prompts
//! sampled from the masks at every step.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::RgbImage;

use super::super::network::{IMAGE_SIZE, LOW_RES};
use super::super::{Rng, SamModel};
use super::{MAX_PAIRS, MIN_PAIRS};
use crate::error::EngineError;

/// One example: an image and the mask of the object in it.
#[derive(Clone, Debug)]
pub struct TrainingPair {
    /// Shown in errors (usually the image's file name).
    pub name: String,
    /// The image.
    pub image: RgbImage,
    /// One byte per pixel, row-major, image-sized: non-zero inside the object.
    pub mask: Vec<u8>,
}

impl TrainingPair {
    /// Checks the mask fits the image and is neither empty nor the whole image.
    pub fn new(name: String, image: RgbImage, mask: Vec<u8>) -> Result<Self, EngineError> {
        let (w, h) = image.dimensions();
        let pixels = w as usize * h as usize;
        if mask.len() != pixels {
            return Err(EngineError::InvalidDataset(format!(
                "{name}: the mask has {} pixels but the image is {w}×{h} ({pixels} pixels)",
                mask.len()
            )));
        }
        let inside = mask.iter().filter(|&&m| m != 0).count();
        if inside == 0 {
            return Err(EngineError::InvalidDataset(format!(
                "{name}: the mask is empty (no non-zero pixel), so it shows no object"
            )));
        }
        if inside == pixels {
            return Err(EngineError::InvalidDataset(format!(
                "{name}: the mask covers the whole image, so it tells nothing apart"
            )));
        }
        Ok(Self { name, image, mask })
    }

    /// Reads an image file and a mask file (PNG or JPEG; non-zero pixels are the object).
    pub fn load(image_path: &Path, mask_path: &Path) -> Result<Self, EngineError> {
        let name = image_path.file_name().map_or_else(
            || image_path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let image = crate::segmentation::load_image(image_path)?;
        let mask_bytes = std::fs::read(mask_path).map_err(|e| EngineError::io(mask_path, e))?;
        let mask_name = mask_path.display().to_string();
        if mask_bytes.is_empty() {
            return Err(EngineError::Empty(mask_name));
        }
        let mask = image::load_from_memory(&mask_bytes).map_err(|e| EngineError::Undecodable {
            what: mask_name.clone(),
            reason: e.to_string(),
        })?;
        if mask.width() != image.width() || mask.height() != image.height() {
            return Err(EngineError::InvalidDataset(format!(
                "{name}: the mask {mask_name} is {}×{} but the image is {}×{}",
                mask.width(),
                mask.height(),
                image.width(),
                image.height()
            )));
        }
        Self::new(name, image, mask.to_luma8().into_raw())
    }

    pub(super) fn bbox(&self) -> [f32; 4] {
        let w = self.image.width() as usize;
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        for (i, _) in self.mask.iter().enumerate().filter(|(_, &m)| m != 0) {
            let (x, y) = (i % w, i / w);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
        [x0 as f32, y0 as f32, (x1 + 1) as f32, (y1 + 1) as f32]
    }

    pub(super) fn inside(&self, x: f32, y: f32) -> bool {
        let (w, h) = self.image.dimensions();
        let (xi, yi) = (x as u32, y as u32);
        xi < w && yi < h && self.mask[(yi * w + xi) as usize] != 0
    }

    /// The mask pixel nearest the mask's centroid (inside even for rings and crescents).
    pub(super) fn centre(&self) -> (f32, f32) {
        let w = self.image.width() as usize;
        let (mut sx, mut sy, mut n) = (0f64, 0f64, 0f64);
        for (i, _) in self.mask.iter().enumerate().filter(|(_, &m)| m != 0) {
            sx += (i % w) as f64;
            sy += (i / w) as f64;
            n += 1.0;
        }
        let (cx, cy) = (sx / n, sy / n);
        let best = self
            .mask
            .iter()
            .enumerate()
            .filter(|(_, &m)| m != 0)
            .map(|(i, _)| ((i % w) as f64, (i / w) as f64))
            .min_by(|a, b| {
                let da = (a.0 - cx).powi(2) + (a.1 - cy).powi(2);
                let db = (b.0 - cx).powi(2) + (b.1 - cy).powi(2);
                da.total_cmp(&db)
            })
            .unwrap_or((cx, cy));
        (best.0 as f32, best.1 as f32)
    }
}

/// Checks a training set before any work: enough pairs, not too many.
pub fn check_dataset(pairs: &[TrainingPair]) -> Result<(), EngineError> {
    if pairs.len() < MIN_PAIRS {
        return Err(EngineError::InvalidDataset(format!(
            "{} example{} given; training needs at least {MIN_PAIRS} image + mask pairs",
            pairs.len(),
            if pairs.len() == 1 { "" } else { "s" }
        )));
    }
    if pairs.len() > MAX_PAIRS {
        return Err(EngineError::InvalidDataset(format!(
            "{} examples given; at most {MAX_PAIRS}",
            pairs.len()
        )));
    }
    Ok(())
}

/// One pair, embedded once, with its target at the decoder's resolution.
pub(super) struct Sample {
    pub(super) embeddings: Tensor,
    /// Encoder-frame pixels per image pixel, x and y.
    pub(super) scale: (f32, f32),
    /// `(1, 256, 256)`: 1 inside the object.
    pub(super) target: Tensor,
    /// `(1, 256, 256)`: 1 where the low-res grid covers the image (not the padding).
    pub(super) valid: Tensor,
    pub(super) valid_count: f32,
    /// Low-res pixels inside the object.
    pub(super) target_pixels: f32,
}

/// Which decoder output a prompt is scored on.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Output {
    /// Mask 0: points and boxes that say clearly what is meant.
    Single,
    /// Masks 1–3: one click, ambiguous (SAM scores the best of the three).
    Multi,
}

pub(super) fn embed(model: &SamModel, pair: &TrainingPair) -> Result<Sample, EngineError> {
    let (w, h) = pair.image.dimensions();
    crate::segmentation::check_dimensions(w, h, &pair.name)?;
    let (frame_w, frame_h) = crate::segmentation::frame_size(w, h);
    let (embeddings, _) = model.embeddings_for(&pair.image, frame_w, frame_h, &|| false)?;
    let scale = (frame_w as f32 / w as f32, frame_h as f32 / h as f32);
    let step = (IMAGE_SIZE / LOW_RES) as f32;
    let mut target = vec![0f32; LOW_RES * LOW_RES];
    let mut valid = vec![0f32; LOW_RES * LOW_RES];
    let mut valid_count = 0.0;
    let mut target_pixels = 0.0;
    for i in 0..LOW_RES {
        let fy = (i as f32 + 0.5) * step;
        if fy >= frame_h as f32 {
            break;
        }
        for j in 0..LOW_RES {
            let fx = (j as f32 + 0.5) * step;
            if fx >= frame_w as f32 {
                break;
            }
            valid[i * LOW_RES + j] = 1.0;
            valid_count += 1.0;
            if pair.inside(fx / scale.0, fy / scale.1) {
                target[i * LOW_RES + j] = 1.0;
                target_pixels += 1.0;
            }
        }
    }
    Ok(Sample {
        embeddings,
        scale,
        target: Tensor::from_vec(target, (1, LOW_RES, LOW_RES), &Device::Cpu)?,
        valid: Tensor::from_vec(valid, (1, LOW_RES, LOW_RES), &Device::Cpu)?,
        valid_count,
        target_pixels,
    })
}

/// A training prompt on `pair`, in image pixels: one click inside (scored on the best of
/// the three ambiguous masks), a box jittered by up to 10 % of its size, or two clicks inside
/// and one outside.
pub(super) fn sample_prompt(
    pair: &TrainingPair,
    rng: &mut Rng,
) -> (crate::segmentation::Prompt, Output) {
    let [x0, y0, x1, y1] = pair.bbox();
    let (w, h) = pair.image.dimensions();
    let point_where = |want_inside: bool, rng: &mut Rng| -> Option<(f32, f32)> {
        for _ in 0..200 {
            let (x, y) = if want_inside {
                (x0 + rng.unit() * (x1 - x0), y0 + rng.unit() * (y1 - y0))
            } else {
                (rng.unit() * w as f32, rng.unit() * h as f32)
            };
            if pair.inside(x, y) == want_inside {
                return Some((x, y));
            }
        }
        None
    };
    let point = |(x, y): (f32, f32), foreground| crate::segmentation::Point { x, y, foreground };
    let kind = rng.below(10);
    if kind < 4 {
        let p = point_where(true, rng).unwrap_or_else(|| pair.centre());
        return (
            crate::segmentation::Prompt {
                points: vec![point(p, true)],
                bbox: None,
            },
            Output::Multi,
        );
    }
    if kind < 7 {
        let (bw, bh) = (x1 - x0, y1 - y0);
        let mut jitter = |v: f32, size: f32| v + (rng.unit() - 0.5) * 0.2 * size;
        let bbox = [
            jitter(x0, bw).clamp(0.0, w as f32 - 1.0),
            jitter(y0, bh).clamp(0.0, h as f32 - 1.0),
            jitter(x1, bw).clamp(1.0, w as f32),
            jitter(y1, bh).clamp(1.0, h as f32),
        ];
        if bbox[2] - bbox[0] >= 1.0 && bbox[3] - bbox[1] >= 1.0 {
            return (
                crate::segmentation::Prompt {
                    points: vec![],
                    bbox: Some(bbox),
                },
                Output::Single,
            );
        }
    }
    let mut points = Vec::new();
    for _ in 0..2 {
        let p = point_where(true, rng).unwrap_or_else(|| pair.centre());
        points.push(point(p, true));
    }
    if let Some(p) = point_where(false, rng) {
        points.push(point(p, false));
    }
    (
        crate::segmentation::Prompt { points, bbox: None },
        Output::Single,
    )
}

/// Synthetic examples for tests and demos: `count` images of a green disk (the object, of
/// varying size and place) and a blue square (a distractor) on a noisy grey gradient, each
/// with its exact mask. Test support (the `test-support` feature), not part of the engine's
/// API.
#[cfg(feature = "test-support")]
pub fn synthetic_pairs(count: usize, seed: u64) -> Vec<TrainingPair> {
    let mut rng = Rng::seeded(seed);
    (0..count)
        .filter_map(|n| {
            let (w, h) = (256u32, 192u32);
            let r = 22.0 + rng.unit() * 26.0;
            let cx = r + rng.unit() * (w as f32 - 2.0 * r);
            let cy = r + rng.unit() * (h as f32 - 2.0 * r);
            let side = 30.0 + rng.unit() * 20.0;
            let (sx, sy) = (
                rng.unit() * (w as f32 - side),
                rng.unit() * (h as f32 - side),
            );
            let mut mask = vec![0u8; (w * h) as usize];
            let image = RgbImage::from_fn(w, h, |x, y| {
                let (xf, yf) = (x as f32, y as f32);
                let noise = (rng.next() >> 59) as u8; // 0..31
                let in_disk = (xf - cx).powi(2) + (yf - cy).powi(2) <= r * r;
                let in_square = xf >= sx && xf < sx + side && yf >= sy && yf < sy + side;
                if in_disk {
                    mask[(y * w + x) as usize] = 255;
                    image::Rgb([40 + noise, 170 + noise, 60 + noise])
                } else if in_square {
                    image::Rgb([50 + noise, 70 + noise, 190 + noise])
                } else {
                    let g = 90 + (x * 60 / w) as u8 + noise;
                    image::Rgb([g, g, g])
                }
            });
            // Never refused: a disk of radius ≥ 22 lies inside the 256×192 image.
            TrainingPair::new(format!("synthetic-{n}.png"), image, mask).ok()
        })
        .collect()
}

/// Writes [`synthetic_pairs`] as `<n>.png` + `<n>.mask.png` files in `dir`; returns the
/// (image, mask) paths. Test support, like [`synthetic_pairs`].
#[cfg(feature = "test-support")]
pub fn write_synthetic_pairs(
    dir: &Path,
    count: usize,
    seed: u64,
) -> Result<Vec<(std::path::PathBuf, std::path::PathBuf)>, EngineError> {
    std::fs::create_dir_all(dir).map_err(|e| EngineError::io(dir, e))?;
    let mut paths = Vec::new();
    for (n, pair) in synthetic_pairs(count, seed).into_iter().enumerate() {
        let image_path = dir.join(format!("shape-{n}.png"));
        let mask_path = dir.join(format!("shape-{n}.mask.png"));
        let (w, h) = pair.image.dimensions();
        let save = |result: image::ImageResult<()>, path: &Path| {
            result.map_err(|e| {
                EngineError::Inference(format!("cannot write {}: {e}", path.display()))
            })
        };
        save(pair.image.save(&image_path), &image_path)?;
        let mask = image::GrayImage::from_raw(w, h, pair.mask)
            .ok_or_else(|| EngineError::Inference("mask size".into()))?;
        save(mask.save(&mask_path), &mask_path)?;
        paths.push((image_path, mask_path));
    }
    Ok(paths)
}
