//! # engines — Dormouse's real inference behind the lifecycle core
//!
//! Each engine implements [`model_manager::ModelLoader`] so the manager can load, share, time
//! out and free it like any other model:
//!
//! - [`segmentation`]: Segment Anything (MobileSAM / ViT-T and ViT-B) on candle, with point and
//!   box prompts and a per-image embedding cache.
//! - [`onnx_runtime`]: finding ONNX Runtime ≥ 1.24 and checking it before `ort` loads it.
//! - [`speech`]: the transcriber every speech engine implements, optional VAD trimming and
//!   the loader for any speech model; Whisper GGML through whisper.cpp (`speech::whisper`)
//!   and the ONNX family, Parakeet, Moonshine, SenseVoice, GigaAM ([`speech::onnx`]).
//! - [`vad`]: Silero VAD (ONNX) to trim silence before transcription.
//! - [`audio`]: decoding WAV, FLAC, MP3 and OGG/Vorbis (or raw f32 PCM) to 16 kHz mono.

pub mod audio;
pub mod error;
mod file_loader;
pub mod onnx_runtime;
pub mod segmentation;
pub mod speech;
pub mod vad;

pub use error::EngineError;
