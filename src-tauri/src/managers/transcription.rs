//! [`TranscriptionManager`] owns speech-to-text requests: decode the audio first (bad input
//! never loads a model), take leases on the speech model (Whisper or ONNX) and the VAD
//! through the [`SlotManager`], transcribe, and report the text with measured timings.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use engines::audio::{self, DecodedAudio};
use engines::speech::{as_transcriber, TranscribeOptions};
use engines::vad::SileroVad;
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::catalog::Slot;
use crate::error::{CommandError, CommandResult};
use crate::managers::slots::{RequestTimings, SlotManager};

/// What the user asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(default)]
pub struct TranscribeSettings {
    /// Spoken language (`"en"`, `"de"`, ...); `null` detects it.
    pub language: Option<String>,
    /// Translate into English.
    pub translate: bool,
    /// Skip silence with the voice-activity detector (on unless `false`).
    pub skip_silence: Option<bool>,
}

/// A stretch of speech with its time in the original audio.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct TranscriptSegment {
    /// Start, seconds.
    pub start: f32,
    /// End, seconds.
    pub end: f32,
    /// What was said.
    pub text: String,
}

/// The result of a transcription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct Transcription {
    /// All the text.
    pub text: String,
    /// Timed segments.
    pub segments: Vec<TranscriptSegment>,
    /// Length of the audio, seconds.
    pub audio_seconds: f32,
    /// Seconds that reached the model after silence was skipped.
    pub speech_seconds: f32,
    /// The model that transcribed it.
    pub model_id: String,
    /// Whether silence was skipped with the VAD.
    pub skipped_silence: bool,
    /// Time spent decoding the audio, µs.
    pub decode_us: u64,
    /// Waiting for the model and running it.
    pub timings: RequestTimings,
    /// Things worth knowing (a truncated file, a VAD that could not run...).
    pub warnings: Vec<String>,
}

/// Owner of transcription requests.
pub struct TranscriptionManager {
    slots: Arc<SlotManager>,
}

impl TranscriptionManager {
    /// A manager using `slots`.
    pub fn new(slots: Arc<SlotManager>) -> Self {
        Self { slots }
    }

    /// Transcribes the audio file at `path` (WAV, FLAC, MP3, OGG/Vorbis).
    pub fn transcribe_file(
        &self,
        path: &Path,
        settings: &TranscribeSettings,
    ) -> CommandResult<Transcription> {
        crate::error::require_file(path)?;
        let started = Instant::now();
        let audio = audio::decode_file(path)?;
        self.run(audio, started, settings)
    }

    /// Transcribes audio held in memory (a recording, as a WAV or any supported format).
    pub fn transcribe_bytes(
        &self,
        bytes: Vec<u8>,
        settings: &TranscribeSettings,
    ) -> CommandResult<Transcription> {
        let started = Instant::now();
        let audio = audio::decode_bytes(bytes, "the recording")?;
        self.run(audio, started, settings)
    }

    fn run(
        &self,
        audio: DecodedAudio,
        started: Instant,
        settings: &TranscribeSettings,
    ) -> CommandResult<Transcription> {
        let decode_us = crate::views::micros(started.elapsed());
        if let Some(language) = &settings.language {
            let ok = (2..=3).contains(&language.len())
                && language.chars().all(|c| c.is_ascii_lowercase());
            if !ok {
                return Err(CommandError::invalid_input(format!(
                    "{language:?} is not a language code (use two letters such as \"en\" or \"de\")"
                )));
            }
        }
        let mut warnings = Vec::new();
        if audio.truncated {
            warnings.push("The audio file ended early; what was there was transcribed.".to_owned());
        }
        let audio_seconds = audio.duration().as_secs_f32();
        let used = self.slots.use_model(Slot::Transcription)?;
        let skip_silence = settings.skip_silence.unwrap_or(true);
        let vad_use = if skip_silence && !audio.samples.is_empty() {
            match self.slots.use_model(Slot::Vad) {
                Ok(vad) => Some(vad),
                Err(error) => {
                    warnings.push(format!("Silence was not skipped: {}", error.message()));
                    None
                }
            }
        } else {
            None
        };
        let model = as_transcriber(&used.lease).ok_or_else(|| {
            CommandError::internal("the transcription slot holds no speech model")
        })?;
        let vad = vad_use
            .as_ref()
            .and_then(|v| v.lease.downcast::<SileroVad>());
        let options = TranscribeOptions {
            language: settings.language.clone(),
            translate: settings.translate,
            ..TranscribeOptions::default()
        };
        let result = model.transcribe(&audio.samples, &options, vad);
        let skipped_silence = vad.is_some();
        if let Some(vad_use) = vad_use {
            vad_use.finish();
        }
        let model_id = used.model_id().to_owned();
        let timings = used.finish();
        let transcript = result?;
        Ok(Transcription {
            text: transcript.text,
            segments: transcript
                .segments
                .into_iter()
                .map(|s| TranscriptSegment {
                    start: s.start,
                    end: s.end,
                    text: s.text,
                })
                .collect(),
            audio_seconds,
            speech_seconds: transcript.speech_seconds,
            model_id,
            skipped_silence,
            decode_us,
            timings,
            warnings,
        })
    }
}
