//! Measuring a fine-tune: the IoU of the decoder's masks against a pair's mask, on fixed
//! prompts (the mask's box and a click at its centre) at the decoder's 256×256 resolution.

use candle_core::{DType, Tensor};

use super::data::{Output, Sample, TrainingPair};
use super::decode;
use crate::error::EngineError;
use crate::segmentation::decoder::{MaskDecoder, Pass};
use crate::segmentation::SamModel;

/// IoU of each mask (logits > 0) with the target, inside the image.
pub(super) fn ious(masks: &Tensor, sample: &Sample) -> Result<Vec<f32>, EngineError> {
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

/// Mean IoU on `pair` for two fixed prompts: its box, and one click at its centre (the best
/// of the three masks by predicted IoU, as segmenting does).
pub(super) fn eval_iou(
    model: &SamModel,
    decoder: &MaskDecoder,
    pair: &TrainingPair,
    sample: &Sample,
) -> Result<f32, EngineError> {
    let boxed = crate::segmentation::Prompt {
        points: vec![],
        bbox: Some(pair.bbox()),
    };
    let (masks, _) = decode(model, decoder, sample, &boxed, Output::Single, Pass::Infer)?;
    let box_iou = ious(&masks, sample)?[0];
    let (x, y) = pair.centre();
    let click = crate::segmentation::Prompt {
        points: vec![crate::segmentation::Point {
            x,
            y,
            foreground: true,
        }],
        bbox: None,
    };
    let (masks, predicted) = decode(model, decoder, sample, &click, Output::Multi, Pass::Infer)?;
    let predicted = predicted.to_vec1::<f32>()?;
    let best = predicted
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i);
    let click_iou = ious(&masks, sample)?[best];
    Ok((box_iou + click_iou) / 2.0)
}
