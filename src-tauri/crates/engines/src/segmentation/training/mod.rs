//! Fine-tuning a Segment Anything mask decoder on the user's image + mask pairs. The image
//! encoder stays frozen: each image is embedded once, then every step samples prompts from
//! the masks (a click inside, a jittered box, clicks inside and outside), runs the
//! differentiable copy of the mask decoder (`decoder.rs`), and takes an AdamW step on a
//! class-balanced cross-entropy + dice loss (plus the IoU head's squared error). IoU is
//! measured before and after on fixed prompts (the mask's box and a click at its centre) at
//! the decoder's 256×256 resolution, and on a held-out pair when there are enough. The result is saved as a complete SAM weights file
//! (the base's encoder, the tuned decoder) that [`super::SamLoader`] loads like any other.
//!
//! This module is the training loop; preparing the pairs, embeddings and prompts is `data`,
//! measuring IoU is `evaluate`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};

mod data;
mod evaluate;

pub use self::data::{check_dataset, TrainingPair};
use self::data::{embed, sample_prompt, Output, Sample};
#[cfg(feature = "test-support")]
pub use self::data::{synthetic_pairs, write_synthetic_pairs};
use self::evaluate::{eval_iou, ious};
use super::decoder::{MaskDecoder, Pass};

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
    let decoder = MaskDecoder::new(vb.pp("mask_decoder"))?;
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

/// The masks and IoU predictions the prompt is scored on: `(k, 256, 256)` and `(k,)`, with
/// gradients when `pass` is [`Pass::Train`].
fn decode(
    model: &SamModel,
    decoder: &MaskDecoder,
    sample: &Sample,
    prompt: &super::Prompt,
    output: Output,
    pass: Pass,
) -> Result<(Tensor, Tensor), EngineError> {
    let (sparse, dense, image_pe) = model
        .net
        .prompt_inputs(&super::frame_prompt(prompt, sample.scale))?;
    let (masks, iou) = decoder.forward(&sample.embeddings, &image_pe, &sparse, &dense, pass)?;
    let (masks, iou) = (masks.i(0)?, iou.i(0)?);
    Ok(match output {
        Output::Single => (masks.narrow(0, 0, 1)?, iou.narrow(0, 0, 1)?),
        Output::Multi => (masks.narrow(0, 1, 3)?, iou.narrow(0, 1, 3)?),
    })
}

/// Cross-entropy + dice loss of the best of the prompt's masks, plus the IoU head's error.
fn prompt_loss(
    model: &SamModel,
    decoder: &MaskDecoder,
    sample: &Sample,
    prompt: &super::Prompt,
    output: Output,
) -> Result<Tensor, EngineError> {
    let (masks, predicted_iou) = decode(model, decoder, sample, prompt, output, Pass::Train)?;
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
