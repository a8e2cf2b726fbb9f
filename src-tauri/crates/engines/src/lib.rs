//! # engines — Dormouse's real inference behind the lifecycle core
//!
//! Each engine implements [`model_manager::ModelLoader`] so the manager can load, share, time
//! out and free it like any other model:
//!
//! - [`segmentation`]: Segment Anything (MobileSAM / ViT-T and ViT-B) on candle, with point and
//!   box prompts and a per-image embedding cache.
//! - [`audio`]: decoding WAV, FLAC, MP3 and OGG/Vorbis (or raw f32 PCM) to 16 kHz mono.

pub mod audio;
pub mod error;
pub mod segmentation;

pub use error::EngineError;
