//! Voice activity detection with Silero VAD v4 (ONNX, through ONNX Runtime): finds the speech
//! in 16 kHz audio so silence can be trimmed before transcription.

use std::ops::Range;
use std::path::Path;

use model_manager::{LoadContext, LoadError, LoadedModel, ModelLoader, ModelSpec};
use ort::session::Session;
use ort::value::Tensor;
use parking_lot::Mutex;

use crate::audio::TARGET_RATE;
use crate::error::EngineError;
use crate::file_loader::{file_size, load_file, load_measured};
use crate::onnx_runtime::ensure_runtime;

/// Samples per window at 16 kHz (one of the sizes Silero v4 was trained on).
pub const WINDOW: usize = 512;

/// How speech is told from silence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VadOptions {
    /// Speech probability above which a window is speech.
    pub threshold: f32,
    /// Shorter bursts are dropped (clicks, breaths).
    pub min_speech_ms: u32,
    /// Shorter pauses do not split speech.
    pub min_silence_ms: u32,
    /// Kept on each side of every speech segment.
    pub pad_ms: u32,
}

impl Default for VadOptions {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_speech_ms: 250,
            min_silence_ms: 300,
            pad_ms: 200,
        }
    }
}

/// A loaded Silero VAD model.
pub struct SileroVad {
    session: Mutex<Session>,
    bytes: u64,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad")
            .field("bytes", &self.bytes)
            .finish_non_exhaustive()
    }
}

impl LoadedModel for SileroVad {
    fn resident_bytes(&self) -> u64 {
        self.bytes
    }
}

impl SileroVad {
    /// Loads the model (checking ONNX Runtime first).
    pub fn load(path: &Path) -> Result<Self, EngineError> {
        ensure_runtime()?;
        let invalid = |reason: String| EngineError::InvalidWeights {
            path: path.to_path_buf(),
            expected: "Silero VAD (ONNX)".into(),
            reason,
        };
        let (session, bytes) = load_measured(path, || {
            Session::builder()
                .and_then(|b| b.with_intra_threads(1)?.commit_from_file(path))
                .map_err(|e| invalid(e.to_string()))
        })?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for needed in ["input", "sr", "h", "c"] {
            if !names.contains(&needed) {
                return Err(invalid(format!(
                    "it has no '{needed}' input (inputs: {names:?}); Silero VAD v4 is expected"
                )));
            }
        }
        Ok(Self {
            session: Mutex::new(session),
            bytes,
        })
    }

    /// Speech probability of every [`WINDOW`] of `samples` (16 kHz mono).
    pub fn probabilities(&self, samples: &[f32]) -> Result<Vec<f32>, EngineError> {
        let failed = |e: ort::Error| EngineError::Inference(format!("VAD: {e}"));
        let mut session = self.session.lock();
        let mut h = vec![0.0f32; 2 * 64];
        let mut c = vec![0.0f32; 2 * 64];
        let mut probabilities = Vec::with_capacity(samples.len() / WINDOW + 1);
        for window in samples.chunks(WINDOW) {
            let mut frame = window.to_vec();
            frame.resize(WINDOW, 0.0);
            let outputs = session
                .run(ort::inputs![
                    "input" => Tensor::from_array((vec![1i64, WINDOW as i64], frame)).map_err(failed)?,
                    "sr" => Tensor::from_array((Vec::<i64>::new(), vec![i64::from(TARGET_RATE)])).map_err(failed)?,
                    "h" => Tensor::from_array((vec![2i64, 1, 64], h.clone())).map_err(failed)?,
                    "c" => Tensor::from_array((vec![2i64, 1, 64], c.clone())).map_err(failed)?,
                ])
                .map_err(failed)?;
            let (_, p) = outputs["output"]
                .try_extract_tensor::<f32>()
                .map_err(failed)?;
            probabilities.push(p.first().copied().unwrap_or(0.0));
            h = outputs["hn"]
                .try_extract_tensor::<f32>()
                .map_err(failed)?
                .1
                .to_vec();
            c = outputs["cn"]
                .try_extract_tensor::<f32>()
                .map_err(failed)?
                .1
                .to_vec();
        }
        Ok(probabilities)
    }

    /// Sample ranges holding speech, padded and merged as `options` say.
    pub fn speech_segments(
        &self,
        samples: &[f32],
        options: &VadOptions,
    ) -> Result<Vec<Range<usize>>, EngineError> {
        let probabilities = self.probabilities(samples)?;
        Ok(segments_from(&probabilities, samples.len(), options))
    }

    /// The speech in `samples` with the silence between segments cut out; empty if there is
    /// no speech at all.
    pub fn trim(&self, samples: &[f32], options: &VadOptions) -> Result<Vec<f32>, EngineError> {
        let segments = self.speech_segments(samples, options)?;
        Ok(segments
            .into_iter()
            .flat_map(|r| samples[r].iter().copied())
            .collect())
    }
}

fn ms_to_samples(ms: u32) -> usize {
    (ms as usize * TARGET_RATE as usize) / 1000
}

/// Turns per-window probabilities into padded, merged sample ranges.
pub(crate) fn segments_from(
    probabilities: &[f32],
    len: usize,
    options: &VadOptions,
) -> Vec<Range<usize>> {
    let mut raw: Vec<Range<usize>> = Vec::new();
    let mut start: Option<usize> = None;
    for (i, &p) in probabilities.iter().enumerate() {
        match (p >= options.threshold, start) {
            (true, None) => start = Some(i * WINDOW),
            (false, Some(s)) => {
                raw.push(s..i * WINDOW);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        raw.push(s..len);
    }
    // Bridge short pauses, then drop short bursts, then pad.
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in raw {
        match merged.last_mut() {
            Some(last) if r.start - last.end < ms_to_samples(options.min_silence_ms) => {
                last.end = r.end
            }
            _ => merged.push(r),
        }
    }
    let pad = ms_to_samples(options.pad_ms);
    let mut out: Vec<Range<usize>> = Vec::new();
    for r in merged
        .into_iter()
        .filter(|r| r.len() >= ms_to_samples(options.min_speech_ms))
    {
        let padded = r.start.saturating_sub(pad)..(r.end + pad).min(len);
        match out.last_mut() {
            Some(last) if padded.start <= last.end => last.end = padded.end,
            _ => out.push(padded),
        }
    }
    out
}

/// Loads Silero VAD for the model manager (the spec's path is the `.onnx` file).
#[derive(Debug, Default)]
pub struct VadLoader;

impl ModelLoader for VadLoader {
    fn estimate_bytes(&self, spec: &ModelSpec) -> Option<u64> {
        file_size(spec)
    }

    fn load(&self, spec: &ModelSpec, ctx: &LoadContext) -> Result<Box<dyn LoadedModel>, LoadError> {
        load_file(spec, ctx, SileroVad::load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_merged_filtered_and_padded() {
        let options = VadOptions {
            threshold: 0.5,
            min_speech_ms: 64,
            min_silence_ms: 100,
            pad_ms: 32,
        };
        // windows: 0-3 silence, 4-9 speech, 10 silence (32 ms, bridged), 11-14 speech,
        // 15-30 silence, 31 a lone 32 ms burst (dropped), 32-40 silence.
        let mut p = vec![0.1f32; 41];
        for i in (4..10).chain(11..15) {
            p[i] = 0.9;
        }
        p[31] = 0.9;
        let len = 41 * WINDOW;
        let segments = segments_from(&p, len, &options);
        let pad = ms_to_samples(32);
        assert_eq!(segments, vec![4 * WINDOW - pad..15 * WINDOW + pad]);
        assert!(segments_from(&[0.0; 10], 10 * WINDOW, &options).is_empty());
        // Speech up to the very end stays inside the audio.
        let tail = segments_from(&[0.0, 0.9, 0.9, 0.9, 0.9], 5 * WINDOW - 100, &options);
        assert_eq!(tail.last().map(|r| r.end), Some(5 * WINDOW - 100));
    }
}
