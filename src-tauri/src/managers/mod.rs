//! The owners of behaviour, one per concern, started together by [`startup::start`]:
//! [`settings::SettingsManager`] (the settings, their file and the core's configuration),
//! [`library::ModelLibrary`] (the models on disk and what they are), [`slots::SlotManager`]
//! (which model fills each slot, leases, unloading, status),
//! [`transcription::TranscriptionManager`] and [`segmentation::SegmentationManager`]
//! (requests), [`downloads::ModelDownloads`] (getting catalog models onto the disk, and
//! deleting them), [`training::TrainingManager`] (the training set and custom-model
//! training). Commands are thin wrappers over these. A request goes page → command →
//! request manager → slot owner → core → engine, and nothing calls back up.

pub mod downloads;
pub mod library;
pub mod segmentation;
pub mod settings;
pub mod slots;
pub mod startup;
pub mod training;
pub mod transcription;
