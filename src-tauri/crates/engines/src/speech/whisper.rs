//! Whisper GGML models through whisper.cpp (whisper-rs): checking a file's header
//! ([`inspect_whisper`]) and the loaded [`WhisperModel`].

use std::io::Read;
use std::path::Path;

use model_manager::LoadedModel;
use parking_lot::Mutex;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

use super::{trim_silence, Segment, TranscribeOptions, Transcriber, Transcript, WhisperDecoding};
use crate::audio::TARGET_RATE;
use crate::error::EngineError;
use crate::file_loader::load_measured;
use crate::vad::SileroVad;

/// GGML's magic number ("ggml").
const GGML_MAGIC: u32 = 0x6767_6d6c;

/// What a validated Whisper GGML file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhisperInfo {
    /// Vocabulary size (51865/51866 multilingual, 51864 English-only).
    pub n_vocab: u32,
    /// Encoder layers (6 for base, 12 for small, ...).
    pub n_audio_layer: u32,
    /// Width of the model (512 for base).
    pub n_audio_state: u32,
    /// Mel bins (80, or 128 for large-v3).
    pub n_mels: u32,
    /// Whether it transcribes languages other than English.
    pub multilingual: bool,
}

impl WhisperInfo {
    /// The model, in words: `Whisper (multilingual)` or `Whisper (English-only)`.
    pub fn describe(&self) -> String {
        let kind = if self.multilingual {
            "multilingual"
        } else {
            "English-only"
        };
        format!("Whisper ({kind})")
    }
}

/// Reads and checks a GGML Whisper header, so a wrong file is a clear error before
/// whisper.cpp sees it.
pub fn inspect_whisper(path: &Path) -> Result<WhisperInfo, EngineError> {
    let invalid = |reason: String| EngineError::InvalidWeights {
        path: path.to_path_buf(),
        expected: "Whisper GGML".into(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
    let mut header = [0u8; 48];
    file.read_exact(&mut header)
        .map_err(|_| invalid(format!("the file is only {len} bytes")))?;
    let word = |i: usize| {
        u32::from_le_bytes([
            header[4 * i],
            header[4 * i + 1],
            header[4 * i + 2],
            header[4 * i + 3],
        ])
    };
    if word(0) != GGML_MAGIC {
        return Err(invalid("not a GGML file (bad magic number)".into()));
    }
    let (n_vocab, n_audio_ctx, n_audio_state, n_audio_head, n_audio_layer) =
        (word(1), word(2), word(3), word(4), word(5));
    let (n_text_ctx, n_text_state, n_mels, ftype) = (word(6), word(7), word(10), word(11));
    let plausible = (51_000..=52_000).contains(&n_vocab)
        && n_audio_ctx == 1500
        && n_text_ctx == 448
        && n_audio_state == n_text_state
        && n_audio_head > 0
        && n_audio_state % n_audio_head == 0
        && (1..=64).contains(&n_audio_layer)
        && (n_mels == 80 || n_mels == 128)
        // ftype: the weights' type, plus 1000 × the quantization version in quantized files
        // (2009 for whisper.cpp's q5_1 models).
        && ftype % 1000 < 64
        && ftype < 16_000;
    if !plausible {
        return Err(invalid(format!(
            "its header does not describe a Whisper model (vocab {n_vocab}, width {n_audio_state}, {n_audio_layer} layers, {n_mels} mels)"
        )));
    }
    // Every layer holds at least its attention weights: a file far smaller is truncated.
    // Checked: a crafted width must not wrap the product around to a small number.
    let min_bytes = u64::from(n_audio_layer)
        .checked_mul(4)
        .and_then(|b| b.checked_mul(u64::from(n_audio_state)))
        .and_then(|b| b.checked_mul(u64::from(n_audio_state)));
    if min_bytes.is_none_or(|min| len < min) {
        return Err(invalid(format!("it is only {len} bytes: truncated?")));
    }
    Ok(WhisperInfo {
        n_vocab,
        n_audio_layer,
        n_audio_state,
        n_mels,
        multilingual: n_vocab >= 51_865,
    })
}

/// Samples per encoder frame: one frame covers two 10 ms mel columns (20 ms at 16 kHz).
const SAMPLES_PER_AUDIO_FRAME: usize = 320;
/// Encoder frames in Whisper's 30 s window.
const FULL_AUDIO_CONTEXT: usize = 1500;

/// Encoder frames to run for `samples` of audio when the context is fitted to the clip: the
/// clip plus half a second, rounded up to a multiple of 64 frames (1.28 s), at most the full
/// 30 s window. Longer clips always get the full window (whisper.cpp slides it over them).
pub(crate) fn fitted_audio_context(samples: usize) -> usize {
    let frames = (samples + TARGET_RATE as usize / 2).div_ceil(SAMPLES_PER_AUDIO_FRAME);
    (frames.div_ceil(64) * 64).min(FULL_AUDIO_CONTEXT)
}

/// A loaded Whisper model. whisper.cpp's state is single-threaded: calls are serialised.
pub struct WhisperModel {
    /// whisper.cpp's working state; it holds the model's weights (whisper-rs keeps the
    /// context alive through it).
    state: Mutex<whisper_rs::WhisperState>,
    info: WhisperInfo,
    bytes: u64,
}

impl Drop for WhisperModel {
    /// The packed products' converted weights go with the model (the next load's first
    /// transcription makes them again).
    fn drop(&mut self) {
        super::packed_products::release_buffers();
    }
}

impl std::fmt::Debug for WhisperModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperModel")
            .field("info", &self.info)
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl LoadedModel for WhisperModel {
    fn resident_bytes(&self) -> u64 {
        self.bytes
    }
}

impl WhisperModel {
    /// Validates and loads a GGML file on the CPU, with flash attention, which Dormouse's
    /// whisper.cpp patch (`cmake/whisper_patch.cmake`) limits to the decoder on the CPU: the
    /// encoder's attention runs as matrix products (docs/benchmarks.md, "whisper.cpp's build").
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        Self::load_with_attention(path, true)
    }

    /// [`Self::load`], choosing whether whisper.cpp uses its flash-attention kernels (the
    /// benchmark compares both).
    pub fn load_with_attention(path: &Path, flash_attention: bool) -> Result<Self, EngineError> {
        let info = inspect_whisper(path)?;
        // whisper.cpp logs through tracing (target `whisper_rs::...`), not onto stderr.
        whisper_rs::install_logging_hooks();
        // Its large products on the packed kernels, before any graph is computed.
        super::packed_products::install();
        let mut params = WhisperContextParameters::default();
        params.use_gpu(false).flash_attn(flash_attention);
        let invalid = |reason: String| EngineError::InvalidWeights {
            path: path.to_path_buf(),
            expected: "Whisper GGML".into(),
            reason,
        };
        let (state, bytes) = load_measured(path, || {
            WhisperContext::new_with_params(path, params)
                .and_then(|context| context.create_state())
                .map_err(|e| invalid(e.to_string()))
        })?;
        Ok(Self {
            state: Mutex::new(state),
            info,
            bytes,
        })
    }

    /// What the file declared.
    pub fn info(&self) -> &WhisperInfo {
        &self.info
    }

    /// Transcribes 16 kHz mono `samples`, trimming silence first when `vad` is given.
    /// Empty or all-silent audio gives an empty transcript without running the model.
    pub fn transcribe(
        &self,
        samples: &[f32],
        options: &TranscribeOptions,
        vad: Option<&SileroVad>,
    ) -> Result<Transcript, EngineError> {
        if let Some(language) = &options.language {
            if !self.info.multilingual && language != "en" {
                return Err(EngineError::InvalidRequest(format!(
                    "this model is English-only; it cannot transcribe {language:?}"
                )));
            }
        }
        if options.translate && !self.info.multilingual {
            return Err(EngineError::InvalidRequest(
                "this English-only model cannot translate".into(),
            ));
        }
        let WhisperDecoding {
            beam_size,
            fit_audio_context,
        } = options.decoding;
        if !(1..=8).contains(&beam_size) {
            return Err(EngineError::InvalidRequest(format!(
                "beam size {beam_size} is outside 1..=8"
            )));
        }
        let Some((speech, map)) = trim_silence(samples, options, vad)? else {
            return Ok(Transcript::default());
        };
        let speech_seconds = speech.len() as f32 / TARGET_RATE as f32;
        // whisper.cpp wants at least one second.
        let mut input = speech;
        input.resize(
            input
                .len()
                .max(TARGET_RATE as usize + TARGET_RATE as usize / 10),
            0.0,
        );
        let strategy = if beam_size == 1 {
            SamplingStrategy::Greedy { best_of: 1 }
        } else {
            SamplingStrategy::BeamSearch {
                beam_size: beam_size as i32,
                patience: -1.0,
            }
        };
        let mut params = FullParams::new(strategy);
        params.set_language(options.language.as_deref());
        params.set_translate(options.translate);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_no_speech_thold(0.2);
        // Each request stands alone (push to talk): no prompt carried over from the last.
        params.set_no_context(true);
        if options.threads > 0 {
            params.set_n_threads(i32::try_from(options.threads).unwrap_or(i32::MAX));
        }
        if fit_audio_context {
            let frames = fitted_audio_context(input.len());
            if frames < FULL_AUDIO_CONTEXT {
                params.set_audio_ctx(frames as i32);
            }
        }
        let mut state = self.state.lock();
        state
            .full(params, &input)
            .map_err(|e| EngineError::Inference(e.to_string()))?;
        let mut segments = Vec::new();
        let mut text = String::new();
        for i in 0..state.full_n_segments() {
            let segment = state
                .get_segment(i)
                .ok_or_else(|| EngineError::Inference(format!("segment {i} out of bounds")))?;
            let words = segment
                .to_str_lossy()
                .map_err(|e| EngineError::Inference(e.to_string()))?;
            text.push_str(&words);
            // whisper.cpp's timestamps are in 10 ms units.
            segments.push(Segment {
                start: map.original_seconds(segment.start_timestamp() as f32 / 100.0),
                end: map.original_seconds(segment.end_timestamp() as f32 / 100.0),
                text: words.trim().to_owned(),
            });
        }
        Ok(Transcript {
            text: text.trim().to_owned(),
            segments,
            speech_seconds,
        })
    }
}

impl Transcriber for WhisperModel {
    fn transcribe(
        &self,
        samples: &[f32],
        options: &TranscribeOptions,
        vad: Option<&SileroVad>,
    ) -> Result<Transcript, EngineError> {
        WhisperModel::transcribe(self, samples, options, vad)
    }

    fn describe(&self) -> String {
        self.info.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_whose_size_overflows_does_not_pass_as_a_small_model() {
        // 48 bytes: a plausible header whose width (2^31) makes layers × 4 × width² wrap
        // around u64. It must be refused, never taken for a model that fits in 48 bytes.
        let words: [u32; 12] = [
            GGML_MAGIC,
            51_865,
            1500,
            1 << 31,
            1,
            32,
            448,
            1 << 31,
            1,
            1,
            80,
            1,
        ];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), bytes).expect("write");
        let err = inspect_whisper(file.path()).expect_err("refused");
        assert!(matches!(err, EngineError::InvalidWeights { .. }), "{err}");
    }

    #[test]
    fn files_that_are_not_whisper_models_are_rejected_from_the_header() {
        let dir = tempfile::tempdir().expect("temp");
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).expect("write");
            p
        };
        let tiny = write("tiny.bin", b"ggml");
        assert!(inspect_whisper(&tiny)
            .expect_err("short")
            .to_string()
            .contains("only 4 bytes"));
        let text = write("text.bin", &[b'x'; 100]);
        assert!(inspect_whisper(&text)
            .expect_err("magic")
            .to_string()
            .contains("bad magic"));
        let mut header = GGML_MAGIC.to_le_bytes().to_vec();
        for v in [51_865u32, 1500, 512, 8, 6, 448, 512, 8, 6, 80, 1] {
            header.extend(v.to_le_bytes());
        }
        let truncated = write("cut.bin", &header);
        assert!(inspect_whisper(&truncated)
            .expect_err("short")
            .to_string()
            .contains("truncated"));
        header[4..8].copy_from_slice(&7u32.to_le_bytes());
        let nonsense = write("odd.bin", &header);
        assert!(inspect_whisper(&nonsense)
            .expect_err("hparams")
            .to_string()
            .contains("does not describe a Whisper model"));
    }
}
