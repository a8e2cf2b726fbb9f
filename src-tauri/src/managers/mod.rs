//! The owners of behaviour, one per concern: [`models::ModelsManager`] (which model fills
//! each slot, memory policy, user models), [`settings::SettingsStore`] (persistence),
//! [`transcription::TranscriptionManager`] and [`segmentation::SegmentationManager`]
//! (requests), [`downloads::DownloadsManager`] (getting catalog models onto the disk, and
//! deleting them), [`training::TrainingManager`] (the training set and custom-model
//! training). Commands are thin wrappers over these.

pub mod downloads;
pub mod models;
pub mod segmentation;
pub mod settings;
pub mod training;
pub mod transcription;
