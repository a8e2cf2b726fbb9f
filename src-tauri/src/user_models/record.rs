//! What Dormouse records beside a user model's weights (`<id>.json`): [`UserModelMeta`], and
//! for a model it trained, the [`TrainingRecord`].

use serde::{Deserialize, Serialize};
use specta::Type;

use super::UserModelId;
use crate::catalog::Task;

/// What Dormouse records about an imported model (`<id>.json` beside its weights).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct UserModelMeta {
    /// Its id.
    pub id: UserModelId,
    /// The task it serves.
    pub task: Task,
    /// Shown to the user.
    pub display_name: String,
    /// The file the user imported it from.
    pub source_file: String,
    /// When it was imported (ms since the Unix epoch).
    pub imported_at_ms: u64,
    /// Size of the weights file.
    pub file_bytes: u64,
    /// How it was trained, for a model trained in Dormouse (`None`: imported).
    #[serde(default)]
    pub training: Option<TrainingRecord>,
}

/// What Dormouse records about a model it trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct TrainingRecord {
    /// The model it was fine-tuned from (`sam-tiny`, `user:<id>`...).
    pub base_model: String,
    /// Image + mask pairs used (training and validation).
    pub pairs: u32,
    /// Pairs held out for validation.
    pub validation_pairs: u32,
    /// Optimiser steps.
    pub steps: u32,
    /// Learning rate.
    pub learning_rate: f64,
    /// Mean IoU on the examples before training.
    pub iou_before: f32,
    /// Mean IoU on the examples after training.
    pub iou_after: f32,
    /// IoU on the held-out pair before and after, when one was held out.
    pub validation_iou: Option<[f32; 2]>,
    /// How long training took, ms.
    pub duration_ms: u64,
}
