//! Speech-to-text: the [`Transcriber`] every speech engine implements, what a request asks
//! ([`TranscribeOptions`]) and gets ([`Transcript`]), trimming silence with Silero VAD (the
//! segments' timestamps mapped back onto the original audio), and the [`SpeechLoader`] that
//! loads either a Whisper file (`whisper`, whisper.cpp) or an ONNX model folder ([`onnx`]).
//! Audio is 16 kHz mono (see [`crate::audio`]).

pub mod onnx;
mod packed_products;
mod whisper;

use std::ops::Range;
use std::path::Path;

use model_manager::{LoadContext, LoadError, LoadedModel, ModelLoader, ModelSpec};

pub use self::onnx::OnnxSpeechModel;
pub use self::whisper::{inspect_whisper, WhisperInfo, WhisperModel};

/// Test support for the benches' comparison: whisper.cpp's large products on the packed
/// kernels (`true`, the default on x86-64) or on ggml's own. Call only between transcriptions.
#[cfg(feature = "test-support")]
pub fn use_packed_products(packed: bool) {
    packed_products::install();
    packed_products::set(packed && packed_products::USED);
}
use crate::audio::TARGET_RATE;
use crate::error::EngineError;
use crate::file_loader::{file_size, load_file};
use crate::vad::{SileroVad, VadOptions};

/// Transcription settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TranscribeOptions {
    /// Spoken language (`"en"`, `"de"`, ...); `None` detects it.
    pub language: Option<String>,
    /// Translate into English instead of transcribing.
    pub translate: bool,
    /// Threads whisper.cpp may use (0: its default).
    pub threads: u32,
    /// How silence is trimmed when a VAD is given.
    pub vad: VadOptions,
    /// How Whisper decodes (ignored by the ONNX models).
    pub decoding: WhisperDecoding,
}

/// How Whisper searches for the words and how much audio its encoder reads. The defaults are
/// the fastest setting that kept every transcript of the benchmark and the tests word for word
/// (docs/benchmarks.md, "Whisper's levers").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WhisperDecoding {
    /// Beams of the beam search, 1..=8; 1 is greedy decoding.
    pub beam_size: u32,
    /// Run the encoder over the clip (rounded up, plus half a second) instead of a whole
    /// 30 s window when the clip is shorter. Whisper was trained on 30 s windows; the
    /// benchmark and the word-error-rate tests check what this costs in accuracy.
    pub fit_audio_context: bool,
}

impl Default for WhisperDecoding {
    fn default() -> Self {
        Self {
            beam_size: 3,
            fit_audio_context: false,
        }
    }
}

/// A stretch of recognised speech, in seconds from the start of the original audio.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Start, seconds.
    pub start: f32,
    /// End, seconds.
    pub end: f32,
    /// What was said.
    pub text: String,
}

/// The result of a transcription.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Transcript {
    /// All the text.
    pub text: String,
    /// Timed segments.
    pub segments: Vec<Segment>,
    /// Seconds of audio that reached the model (after VAD).
    pub speech_seconds: f32,
}

/// A loaded speech-to-text model of any engine.
pub trait Transcriber: LoadedModel {
    /// Transcribes 16 kHz mono `samples`, trimming silence first when `vad` is given.
    /// Empty or all-silent audio gives an empty transcript without running the model.
    fn transcribe(
        &self,
        samples: &[f32],
        options: &TranscribeOptions,
        vad: Option<&SileroVad>,
    ) -> Result<Transcript, EngineError>;

    /// The engine and model, in words (`Whisper (multilingual)`, `Parakeet`).
    fn describe(&self) -> String;
}

/// The speech in `samples` (all of it without a VAD) and where it came from; `None` when
/// there is nothing to transcribe (no audio, or only silence).
pub(crate) fn trim_silence(
    samples: &[f32],
    options: &TranscribeOptions,
    vad: Option<&SileroVad>,
) -> Result<Option<(Vec<f32>, TimeMap)>, EngineError> {
    let (speech, map) = match vad {
        Some(vad) => {
            let ranges = vad.speech_segments(samples, &options.vad)?;
            let speech: Vec<f32> = ranges
                .iter()
                .flat_map(|r| samples[r.clone()].iter().copied())
                .collect();
            (speech, TimeMap::new(ranges))
        }
        None => (samples.to_vec(), TimeMap::identity(samples.len())),
    };
    let silent = speech.iter().all(|s| s.abs() < 1e-4); // true when empty
    Ok((!silent).then_some((speech, map)))
}

/// Maps times in VAD-trimmed audio back to the original audio.
pub(crate) struct TimeMap {
    /// Kept ranges of the original, in order.
    kept: Vec<Range<usize>>,
}

impl TimeMap {
    fn new(kept: Vec<Range<usize>>) -> Self {
        Self { kept }
    }

    fn identity(len: usize) -> Self {
        Self::new(std::iter::once(0..len).collect())
    }

    pub(crate) fn original_seconds(&self, trimmed_seconds: f32) -> f32 {
        let mut remaining = (trimmed_seconds.max(0.0) * TARGET_RATE as f32) as usize;
        for range in &self.kept {
            if remaining <= range.len() {
                return (range.start + remaining) as f32 / TARGET_RATE as f32;
            }
            remaining -= range.len();
        }
        self.kept
            .last()
            .map_or(trimmed_seconds, |r| r.end as f32 / TARGET_RATE as f32)
    }
}

/// Loads any speech model for the model manager: a Whisper GGML file, or a folder holding
/// an ONNX model (Parakeet, Moonshine, SenseVoice, GigaAM). Either way the lease holds a
/// [`Transcriber`]: [`WhisperModel`] or [`OnnxSpeechModel`] (see [`as_transcriber`]).
#[derive(Debug, Default)]
pub struct SpeechLoader;

impl ModelLoader for SpeechLoader {
    fn estimate_bytes(&self, spec: &ModelSpec) -> Option<u64> {
        file_size(spec)
    }

    fn load(&self, spec: &ModelSpec, ctx: &LoadContext) -> Result<Box<dyn LoadedModel>, LoadError> {
        if spec.path.as_deref().is_some_and(Path::is_dir) {
            load_file(spec, ctx, OnnxSpeechModel::load)
        } else {
            load_file(spec, ctx, WhisperModel::load)
        }
    }
}

/// The [`Transcriber`] in a model the [`SpeechLoader`] loaded.
pub fn as_transcriber(lease: &model_manager::Lease) -> Option<&dyn Transcriber> {
    if let Some(whisper) = lease.downcast::<WhisperModel>() {
        return Some(whisper);
    }
    lease
        .downcast::<OnnxSpeechModel>()
        .map(|m| m as &dyn Transcriber)
}

/// Validates a speech model (a Whisper file or an ONNX model folder) without loading it;
/// returns what it is, in words.
pub fn inspect_any(path: &Path) -> Result<String, EngineError> {
    if path.is_dir() {
        onnx::inspect_folder(path).map(|i| i.family.name().to_owned())
    } else {
        inspect_whisper(path).map(|i| i.describe())
    }
}

/// Word error rate of `hypothesis` against `reference`, ignoring case and punctuation. Test
/// support (the `test-support` feature), not part of the engine's API.
#[cfg(feature = "test-support")]
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f32 {
    let words = |s: &str| -> Vec<String> {
        s.split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric() || *c == '\'')
                    .collect::<String>()
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (r, h) = (words(reference), words(hypothesis));
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    let mut previous: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut current = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let substitution = previous[j] + usize::from(rw != hw);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[h.len()] as f32 / r.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_error_rate_counts_edits_per_reference_word() {
        let reference = "Ever tried. Ever failed. No matter.";
        assert_eq!(
            word_error_rate(reference, "ever tried, ever failed; no matter!"),
            0.0
        );
        assert!(
            (word_error_rate(reference, "ever tried ever failed matter") - 1.0 / 6.0).abs() < 1e-6
        );
        assert!(
            (word_error_rate(reference, "never tried ever failed no matter") - 1.0 / 6.0).abs()
                < 1e-6
        );
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("", "words"), 1.0);
    }

    #[test]
    fn trimmed_times_map_back_onto_the_original_audio() {
        let rate = TARGET_RATE as usize;
        // Kept: 1 s–2 s and 5 s–7 s of the original.
        let map = TimeMap::new(vec![rate..2 * rate, 5 * rate..7 * rate]);
        assert_eq!(map.original_seconds(0.0), 1.0);
        assert_eq!(map.original_seconds(0.5), 1.5);
        assert_eq!(map.original_seconds(1.5), 5.5);
        assert_eq!(map.original_seconds(3.0), 7.0);
        assert_eq!(map.original_seconds(99.0), 7.0);
        assert_eq!(TimeMap::identity(3 * rate).original_seconds(2.0), 2.0);
    }
}
