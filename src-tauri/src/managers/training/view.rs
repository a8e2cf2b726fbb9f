//! What a training job is asked ([`TrainingRequest`]) and how it stands
//! ([`TrainingView`], pushed as [`crate::events::TrainingProgress`]).

use serde::{Deserialize, Serialize};
use specta::Type;

use crate::error::CommandError;
use crate::managers::library::ModelInfo;
use crate::user_models::TrainingRecord;

/// What to train.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct TrainingRequest {
    /// The new model's name (default "Custom model").
    pub display_name: Option<String>,
    /// Examples to use (default: the whole training set).
    pub example_ids: Option<Vec<String>>,
    /// Optimiser steps (default: measured, see `docs/benchmarks.md`).
    pub steps: Option<u32>,
    /// AdamW learning rate (default: measured).
    pub learning_rate: Option<f64>,
}

/// Where a training job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum TrainingPhase {
    /// Loading the base model and embedding the images.
    Preparing,
    /// Optimiser steps running.
    Training,
    /// Writing the new model.
    Saving,
    /// Saved and active.
    Done,
    /// Stopped with an error; nothing was changed.
    Failed,
    /// Cancelled; nothing was changed.
    Cancelled,
}

/// One point of the loss / IoU chart.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct TrainingPoint {
    /// Step (1-based).
    pub step: u32,
    /// The step's loss.
    pub loss: f32,
    /// Validation IoU, on the steps where it was measured.
    pub validation_iou: Option<f32>,
}

/// How a finished job went.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct TrainingOutcome {
    /// The new model (active now).
    pub model: ModelInfo,
    /// What was recorded with it.
    pub record: TrainingRecord,
}

/// A training job's status (pushed as [`crate::events::TrainingProgress`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct TrainingView {
    /// The job.
    pub job_id: u32,
    /// Where it is.
    pub phase: TrainingPhase,
    /// The new model's name.
    pub display_name: String,
    /// Pairs in the run.
    pub pairs: u32,
    /// Images embedded so far (preparing).
    pub embedded: u32,
    /// Steps done.
    pub step: u32,
    /// Steps in the run.
    pub steps: u32,
    /// The last step's point.
    pub last: Option<TrainingPoint>,
    /// Whether the validation IoU is on held-out pairs (else on the training pairs).
    pub validation_held_out: bool,
    /// Time since the job started, ms.
    pub elapsed_ms: u64,
    /// Estimated time left, ms (from the steps so far).
    pub eta_ms: Option<u64>,
    /// Every point so far (in `training_status`; events carry only `last`).
    pub history: Vec<TrainingPoint>,
    /// The result, when done.
    pub outcome: Option<TrainingOutcome>,
    /// Why it failed.
    pub error: Option<CommandError>,
}
