//! The owners of behaviour, one per concern: [`models::ModelsManager`] (which model fills
//! each slot, memory policy, user models), [`settings::SettingsStore`] (persistence),
//! [`transcription::TranscriptionManager`] and [`segmentation::SegmentationManager`]
//! (requests). Commands are thin wrappers over these.

pub mod models;
pub mod segmentation;
pub mod settings;
pub mod transcription;
