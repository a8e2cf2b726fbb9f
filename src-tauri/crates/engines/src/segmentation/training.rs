//! Fine-tuning a Segment Anything mask decoder on the user's image + mask pairs. The image
//! encoder stays frozen: each image is embedded once, then every step samples prompts from
//! the masks (a click inside, a jittered box, clicks inside and outside), runs the
//! differentiable copy of the mask decoder (`decoder.rs`), and takes an AdamW step on a
//! class-balanced cross-entropy + dice loss (plus the IoU head's squared error). IoU is
//! measured before and after on fixed prompts (the mask's box and a click at its centre) at
//! the decoder's 256×256 resolution, and on a held-out pair when there are enough. The result is saved as a complete SAM weights file
//! (the base's encoder, the tuned decoder) that [`super::SamLoader`] loads like any other.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use image::RgbImage;

use super::decoder::TrainableDecoder;
use super::network::{IMAGE_SIZE, LOW_RES};
use super::{weights, Rng, SamModel};
use crate::error::EngineError;

/// Fewest pairs a training set may have.
pub const MIN_PAIRS: usize = 2;
/// Most pairs a training set may have.
pub const MAX_PAIRS: usize = 64;
/// From this many pairs on, one is held out for validation.
pub const VALIDATION_FROM: usize = 4;
/// Steps over which the learning rate ramps up to its full value.
const WARMUP_STEPS: usize = 5;
/// Most steps one training run may take.
pub const MAX_STEPS: usize = 5_000;

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
        let image = super::load_image(image_path)?;
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

    fn bbox(&self) -> [f32; 4] {
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

    fn inside(&self, x: f32, y: f32) -> bool {
        let (w, h) = self.image.dimensions();
        let (xi, yi) = (x as u32, y as u32);
        xi < w && yi < h && self.mask[(yi * w + xi) as usize] != 0
    }

    /// The mask pixel nearest the mask's centroid (inside even for rings and crescents).
    fn centre(&self) -> (f32, f32) {
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

/// How to train. The defaults were chosen by measurement (see `docs/benchmarks.md`).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainOptions {
    /// Optimiser steps.
    pub steps: usize,
    /// AdamW learning rate.
    pub learning_rate: f64,
    /// Prompts (each on one pair) per step.
    pub prompts_per_step: usize,
    /// Seed of the prompt sampler.
    pub seed: u64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 60,
            learning_rate: 1e-3,
            prompts_per_step: 2,
            seed: 1,
        }
    }
}

impl TrainOptions {
    /// Checks the options are in range.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.steps == 0 || self.steps > MAX_STEPS {
            return Err(EngineError::InvalidRequest(format!(
                "steps must be between 1 and {MAX_STEPS} (got {})",
                self.steps
            )));
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 0.1)
        {
            return Err(EngineError::InvalidRequest(format!(
                "the learning rate must be above 0 and at most 0.1 (got {})",
                self.learning_rate
            )));
        }
        if self.prompts_per_step == 0 || self.prompts_per_step > 32 {
            return Err(EngineError::InvalidRequest(format!(
                "prompts per step must be between 1 and 32 (got {})",
                self.prompts_per_step
            )));
        }
        Ok(())
    }
}

/// Where training stands, after each step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    /// Steps done (1-based).
    pub step: usize,
    /// Steps in the run.
    pub steps: usize,
    /// This step's loss.
    pub loss: f32,
    /// IoU on the held-out pair(s), measured every few steps (or on the training pairs when
    /// there are too few to hold one out; see [`StepReport::validation_held_out`]).
    pub validation_iou: Option<f32>,
    /// Whether `validation_iou` is on pairs the model did not train on.
    pub validation_held_out: bool,
    /// Time since training started (embedding the images included).
    pub elapsed: Duration,
}

/// What [`fine_tune`] reports as it goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// `done` of `total` images embedded (the frozen encoder runs once per image).
    Embedding {
        /// Images embedded so far.
        done: usize,
        /// Images in the set.
        total: usize,
    },
    /// A step finished.
    Step(StepReport),
}

/// A finished fine-tuning run: the new decoder weights and how it went.
pub struct FineTuned {
    decoder: HashMap<String, Tensor>,
    /// Mean IoU on all the examples before training.
    pub iou_before: f32,
    /// Mean IoU on all the examples after training.
    pub iou_after: f32,
    /// IoU on the held-out pair before and after (`None` with fewer than
    /// [`VALIDATION_FROM`] pairs).
    pub validation: Option<(f32, f32)>,
    /// Steps run.
    pub steps: usize,
    /// Pairs trained on.
    pub train_pairs: usize,
    /// Time the whole run took.
    pub elapsed: Duration,
    /// Time the optimiser steps took (without embedding the images).
    pub step_time: Duration,
}

impl std::fmt::Debug for FineTuned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FineTuned")
            .field("iou_before", &self.iou_before)
            .field("iou_after", &self.iou_after)
            .field("validation", &self.validation)
            .field("steps", &self.steps)
            .finish_non_exhaustive()
    }
}

impl FineTuned {
    /// Writes a complete weights file to `out`: `base`'s tensors with the decoder replaced.
    /// Returns its size. Where it goes, and making that atomic, is the caller's.
    pub fn write_weights(&self, base: &Path, out: &mut dyn Write) -> Result<u64, EngineError> {
        write_tuned_weights(base, &self.decoder, out)
    }
}

/// Writes `base`'s tensors with those named in `decoder` replaced to `out` (see
/// [`FineTuned::write_weights`], which is this with the weights a run produced).
pub fn write_tuned_weights(
    base: &Path,
    decoder: &HashMap<String, Tensor>,
    out: &mut dyn Write,
) -> Result<u64, EngineError> {
    let mut tensors: BTreeMap<String, Tensor> = candle_core::safetensors::load(base, &Device::Cpu)?
        .into_iter()
        .collect();
    for (name, tensor) in decoder {
        tensors.insert(name.clone(), tensor.clone());
    }
    weights::write_safetensors(&tensors, out)
}

/// One pair, embedded once, with its target at the decoder's resolution.
struct Sample {
    embeddings: Tensor,
    /// Encoder-frame pixels per image pixel, x and y.
    scale: (f32, f32),
    /// `(1, 256, 256)`: 1 inside the object.
    target: Tensor,
    /// `(1, 256, 256)`: 1 where the low-res grid covers the image (not the padding).
    valid: Tensor,
    valid_count: f32,
    /// Low-res pixels inside the object.
    target_pixels: f32,
}

/// Which decoder output a prompt is scored on.
#[derive(Clone, Copy, PartialEq)]
enum Output {
    /// Mask 0: points and boxes that say clearly what is meant.
    Single,
    /// Masks 1–3: one click, ambiguous (SAM scores the best of the three).
    Multi,
}

/// Fine-tunes `model`'s mask decoder (whose weights are read from `base_weights`, the file
/// `model` was loaded from) on `pairs`. `progress` is called before the first embedding,
/// after each one and after every step; returning `false` cancels, which ends the run with
/// [`EngineError::Cancelled`] and produces nothing.
pub fn fine_tune(
    model: &SamModel,
    base_weights: &Path,
    pairs: &[TrainingPair],
    options: &TrainOptions,
    progress: &mut dyn FnMut(Progress) -> bool,
) -> Result<FineTuned, EngineError> {
    check_dataset(pairs)?;
    options.validate()?;
    let started = Instant::now();
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let decoder = TrainableDecoder::new(vb.pp("mask_decoder"))?;
    load_decoder_weights(&varmap, base_weights)?;

    let mut samples = Vec::with_capacity(pairs.len());
    let total = pairs.len();
    if !progress(Progress::Embedding { done: 0, total }) {
        return Err(EngineError::Cancelled);
    }
    for pair in pairs {
        samples.push(embed(model, pair)?);
        if !progress(Progress::Embedding {
            done: samples.len(),
            total,
        }) {
            return Err(EngineError::Cancelled);
        }
    }
    let held_out = pairs.len() >= VALIDATION_FROM;
    let train: Vec<usize> = (0..pairs.len() - usize::from(held_out)).collect();
    let validation: Vec<usize> = if held_out {
        vec![pairs.len() - 1]
    } else {
        train.clone()
    };
    let all: Vec<usize> = (0..pairs.len()).collect();
    let evaluate = |ids: &[usize]| -> Result<f32, EngineError> {
        let mut total = 0.0;
        for &i in ids {
            total += eval_iou(model, &decoder, &pairs[i], &samples[i])?;
        }
        Ok(total / ids.len() as f32)
    };
    let iou_before = evaluate(&all)?;
    let validation_before = held_out.then(|| evaluate(&validation)).transpose()?;

    let vars = varmap.all_vars();
    let mut optimiser = AdamW::new(
        vars.clone(),
        ParamsAdamW {
            lr: options.learning_rate,
            weight_decay: 0.01,
            ..Default::default()
        },
    )?;
    let mut rng = Rng::seeded(options.seed);
    let report_every = (options.steps / 10).max(1);
    let steps_started = Instant::now();
    for step in 1..=options.steps {
        // A short linear warm-up: Adam's first steps move every weight by the full rate.
        let warm = (step as f64 / WARMUP_STEPS as f64).min(1.0);
        optimiser.set_learning_rate(options.learning_rate * warm);
        // One prompt's graph at a time: its gradients are summed into `grads` and the graph
        // is dropped before the next prompt runs, which keeps the peak memory to one prompt.
        let mut grads: Option<candle_core::backprop::GradStore> = None;
        let mut loss_sum = 0f32;
        let share = 1.0 / options.prompts_per_step as f64;
        for _ in 0..options.prompts_per_step {
            let i = train[rng.below(train.len())];
            let (prompt, output) = sample_prompt(&pairs[i], &mut rng);
            let loss = (prompt_loss(model, &decoder, &samples[i], &prompt, output)? * share)?;
            loss_sum += loss.to_scalar::<f32>()?;
            let mut these = loss.backward()?;
            grads = Some(match grads.take() {
                None => these,
                Some(mut sum) => {
                    for var in &vars {
                        if let Some(g) = these.remove(var.as_tensor()) {
                            let total = match sum.remove(var.as_tensor()) {
                                Some(before) => (before + g)?,
                                None => g,
                            };
                            sum.insert(var.as_tensor(), total);
                        }
                    }
                    sum
                }
            });
        }
        if let Some(grads) = grads {
            optimiser.step(&grads)?;
        }
        let validation_iou = if step % report_every == 0 || step == options.steps {
            Some(evaluate(&validation)?)
        } else {
            None
        };
        let report = StepReport {
            step,
            steps: options.steps,
            loss: loss_sum,
            validation_iou,
            validation_held_out: held_out,
            elapsed: started.elapsed(),
        };
        if !progress(Progress::Step(report)) {
            return Err(EngineError::Cancelled);
        }
    }
    let step_time = steps_started.elapsed();
    let iou_after = evaluate(&all)?;
    let validation_after = held_out.then(|| evaluate(&validation)).transpose()?;
    let decoder_tensors = varmap
        .data()
        .lock()
        .map_err(|_| EngineError::Inference("weights map poisoned".into()))?
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
        .collect();
    Ok(FineTuned {
        decoder: decoder_tensors,
        iou_before,
        iou_after,
        validation: validation_before.zip(validation_after),
        steps: options.steps,
        train_pairs: train.len(),
        elapsed: started.elapsed(),
        step_time,
    })
}

/// Sets every decoder variable from the base file (converted to f32).
fn load_decoder_weights(varmap: &VarMap, base: &Path) -> Result<(), EngineError> {
    // SAFETY: the base weights file is only read while the decoder's tensors are copied out.
    let file = unsafe { candle_core::safetensors::MmapedSafetensors::new(base) }.map_err(|e| {
        EngineError::InvalidWeights {
            path: base.to_path_buf(),
            expected: "Segment Anything (safetensors)".into(),
            reason: e.to_string(),
        }
    })?;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| EngineError::Inference("weights map poisoned".into()))?;
    for (name, var) in data.iter() {
        let tensor = file
            .load(name, &Device::Cpu)
            .map_err(|e| EngineError::InvalidWeights {
                path: base.to_path_buf(),
                expected: "Segment Anything (safetensors)".into(),
                reason: format!("mask decoder tensor {name}: {e}"),
            })?
            .to_dtype(DType::F32)?;
        var.set(&tensor)?;
    }
    Ok(())
}

fn embed(model: &SamModel, pair: &TrainingPair) -> Result<Sample, EngineError> {
    let (w, h) = pair.image.dimensions();
    super::check_dimensions(w, h, &pair.name)?;
    let (frame_w, frame_h) = super::frame_size(w, h);
    let (embeddings, _) = model.embeddings_for(&pair.image, frame_w, frame_h)?;
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
fn sample_prompt(pair: &TrainingPair, rng: &mut Rng) -> (super::Prompt, Output) {
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
    let point = |(x, y): (f32, f32), foreground| super::Point { x, y, foreground };
    let kind = rng.below(10);
    if kind < 4 {
        let p = point_where(true, rng).unwrap_or_else(|| pair.centre());
        return (
            super::Prompt {
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
                super::Prompt {
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
    (super::Prompt { points, bbox: None }, Output::Single)
}

/// The masks and IoU predictions the prompt is scored on: `(k, 256, 256)` and `(k,)`.
fn decode(
    model: &SamModel,
    decoder: &TrainableDecoder,
    sample: &Sample,
    prompt: &super::Prompt,
    output: Output,
) -> Result<(Tensor, Tensor), EngineError> {
    let (sparse, dense, image_pe) = model
        .net
        .prompt_inputs(&super::frame_prompt(prompt, sample.scale))?;
    let (masks, iou) = decoder.forward(&sample.embeddings, &image_pe, &sparse, &dense)?;
    let (masks, iou) = (masks.i(0)?, iou.i(0)?);
    Ok(match output {
        Output::Single => (masks.narrow(0, 0, 1)?, iou.narrow(0, 0, 1)?),
        Output::Multi => (masks.narrow(0, 1, 3)?, iou.narrow(0, 1, 3)?),
    })
}

/// IoU of each mask (logits > 0) with the target, inside the image.
fn ious(masks: &Tensor, sample: &Sample) -> Result<Vec<f32>, EngineError> {
    let predicted = masks.detach().gt(0f32)?.to_dtype(DType::F32)?;
    let inter = predicted
        .broadcast_mul(&sample.target)?
        .broadcast_mul(&sample.valid)?
        .sum((1, 2))?;
    let union = predicted
        .broadcast_maximum(&sample.target)?
        .broadcast_mul(&sample.valid)?
        .sum((1, 2))?;
    let (inter, union) = (inter.to_vec1::<f32>()?, union.to_vec1::<f32>()?);
    Ok(inter
        .iter()
        .zip(&union)
        .map(|(i, u)| if *u > 0.0 { i / u } else { 0.0 })
        .collect())
}

/// Cross-entropy + dice loss of the best of the prompt's masks, plus the IoU head's error.
fn prompt_loss(
    model: &SamModel,
    decoder: &TrainableDecoder,
    sample: &Sample,
    prompt: &super::Prompt,
    output: Output,
) -> Result<Tensor, EngineError> {
    let (masks, predicted_iou) = decode(model, decoder, sample, prompt, output)?;
    let actual = ious(&masks, sample)?;
    let k = actual.len();
    let (t, v) = (&sample.target, &sample.valid);
    let n = f64::from(sample.valid_count);
    let p = candle_nn::ops::sigmoid(&masks)?;
    // Binary cross-entropy from logits, stable form: max(x, 0) − x·t + ln(1 + e^−|x|).
    let ce = ((masks.relu()? - masks.broadcast_mul(t)?)?
        + (masks.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
    // Balanced: inside and outside the object count the same, so "all background" (the
    // easy answer for a small object) is no shortcut.
    let inside_px = f64::from(sample.target_pixels).max(1.0);
    let outside_px = (n - f64::from(sample.target_pixels)).max(1.0);
    let positive = t.broadcast_mul(v)?;
    let negative = ((1.0 - t)?.broadcast_mul(v))?;
    let bce = (((ce.broadcast_mul(&positive)?.sum((1, 2))? / inside_px)?
        + (ce.broadcast_mul(&negative)?.sum((1, 2))? / outside_px)?)?
        * 0.5)?;
    let pv = p.broadcast_mul(v)?;
    let inter = pv.broadcast_mul(t)?.sum((1, 2))?;
    let target_area = f64::from(sample.target_pixels);
    let total = (pv.sum((1, 2))? + target_area)?;
    let dice = (1.0 - ((inter * 2.0)? + 1.0)?.div(&(total + 1.0)?)?)?;
    let per_mask = (bce + dice)?; // (k,)
    let values = per_mask.to_vec1::<f32>()?;
    let best = values
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    let iou_target = Tensor::from_vec(actual, k, &Device::Cpu)?;
    let iou_error = (predicted_iou - iou_target)?.sqr()?.mean_all()?;
    Ok((per_mask.i(best)? + iou_error)?)
}

/// Mean IoU on `pair` for two fixed prompts: its box, and one click at its centre (the best
/// of the three masks by predicted IoU, as segmenting does).
fn eval_iou(
    model: &SamModel,
    decoder: &TrainableDecoder,
    pair: &TrainingPair,
    sample: &Sample,
) -> Result<f32, EngineError> {
    let boxed = super::Prompt {
        points: vec![],
        bbox: Some(pair.bbox()),
    };
    let (masks, _) = decode(model, decoder, sample, &boxed, Output::Single)?;
    let box_iou = ious(&masks, sample)?[0];
    let (x, y) = pair.centre();
    let click = super::Prompt {
        points: vec![super::Point {
            x,
            y,
            foreground: true,
        }],
        bbox: None,
    };
    let (masks, predicted) = decode(model, decoder, sample, &click, Output::Multi)?;
    let predicted = predicted.to_vec1::<f32>()?;
    let best = predicted
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    let click_iou = ious(&masks, sample)?[best];
    Ok((box_iou + click_iou) / 2.0)
}

/// Synthetic examples for tests and demos: `count` images of a green disk (the object, of
/// varying size and place) and a blue square (a distractor) on a noisy grey gradient, each
/// with its exact mask.
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
/// (image, mask) paths.
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
