//! Speech-to-text with the ONNX family of transcribe-rs (Parakeet, Moonshine, SenseVoice,
//! GigaAM) on the dynamically loaded ONNX Runtime. A model is a folder of `.onnx` files plus a
//! vocabulary; [`inspect_folder`] tells the family from the files and names whatever is
//! missing or broken before ONNX Runtime sees anything. Quantised (`*.int8.onnx`) files are
//! preferred where a folder has both.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use transcribe_rs::onnx::gigaam::GigaAMModel;
use transcribe_rs::onnx::moonshine::{MoonshineModel, MoonshineVariant};
use transcribe_rs::onnx::parakeet::ParakeetModel;
use transcribe_rs::onnx::sense_voice::SenseVoiceModel;
use transcribe_rs::onnx::Quantization;
use transcribe_rs::SpeechModel;

use model_manager::LoadedModel;

use super::{trim_silence, Segment, TranscribeOptions, Transcriber, Transcript};
use crate::error::EngineError;
use crate::file_loader::load_measured;
use crate::onnx_runtime::ensure_runtime;
use crate::vad::SileroVad;

/// Which model of the ONNX family a folder holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnnxFamily {
    /// NVIDIA Parakeet TDT (preprocessor, encoder, decoder + joint).
    Parakeet,
    /// Useful Sensors' Moonshine (encoder and a merged KV-cache decoder).
    Moonshine(MoonshineVariant),
    /// Alibaba's SenseVoice (one CTC model with its settings in the ONNX metadata).
    SenseVoice,
    /// Sber's GigaAM (one CTC model).
    GigaAm,
}

impl OnnxFamily {
    /// The family's name, as the user reads it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Parakeet => "Parakeet",
            Self::Moonshine(_) => "Moonshine",
            Self::SenseVoice => "SenseVoice",
            Self::GigaAm => "GigaAM",
        }
    }

    /// The languages it transcribes (it detects which by itself; a language setting outside
    /// this list is refused rather than silently ignored).
    pub fn languages(self) -> &'static [&'static str] {
        match self {
            // Parakeet TDT 0.6B v3: 25 European languages (v2 is English-only).
            Self::Parakeet => &[
                "bg", "cs", "da", "de", "el", "en", "es", "et", "fi", "fr", "hr", "hu", "it", "lt",
                "lv", "mt", "nl", "pl", "pt", "ro", "ru", "sk", "sl", "sv", "uk",
            ],
            Self::Moonshine(variant) => match variant {
                MoonshineVariant::TinyAr => &["ar"],
                MoonshineVariant::TinyZh => &["zh"],
                MoonshineVariant::TinyJa => &["ja"],
                MoonshineVariant::TinyKo => &["ko"],
                MoonshineVariant::TinyUk => &["uk"],
                MoonshineVariant::TinyVi => &["vi"],
                MoonshineVariant::BaseEs => &["es"],
                MoonshineVariant::Tiny | MoonshineVariant::Base => &["en"],
            },
            Self::SenseVoice => &["zh", "en", "ja", "ko", "yue"],
            Self::GigaAm => &["ru"],
        }
    }
}

/// What [`inspect_folder`] found: the family and the files it will load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxSpeechInfo {
    /// The model family.
    pub family: OnnxFamily,
    /// The files that will be loaded (graphs and vocabulary).
    pub files: Vec<PathBuf>,
}

/// The first byte of every ONNX file: protobuf field 1 (`ir_version`), a varint.
const ONNX_FIRST_BYTE: u8 = 0x08;

/// Tells the family of the model in `dir` from its files and checks that every file the
/// family needs is there and plausible (an ONNX graph, a non-empty vocabulary).
pub fn inspect_folder(dir: &Path) -> Result<OnnxSpeechInfo, EngineError> {
    let invalid = |reason: String| EngineError::InvalidWeights {
        path: dir.to_path_buf(),
        expected: "ONNX speech model folder".into(),
        reason,
    };
    if !dir.is_dir() {
        return Err(match std::fs::metadata(dir) {
            Err(e) => EngineError::io(dir, e),
            Ok(_) => invalid("it is a file, not a model folder".into()),
        });
    }
    // `name.int8.onnx` if present, else `name.onnx` (as transcribe-rs resolves them).
    let graph = |name: &str| -> Option<PathBuf> {
        [format!("{name}.int8.onnx"), format!("{name}.onnx")]
            .into_iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file())
    };
    let (family, needed): (OnnxFamily, Vec<(&str, Option<PathBuf>)>) =
        if graph("encoder-model").is_some() || graph("decoder_joint-model").is_some() {
            (
                OnnxFamily::Parakeet,
                vec![
                    ("encoder-model.onnx", graph("encoder-model")),
                    ("decoder_joint-model.onnx", graph("decoder_joint-model")),
                    ("nemo128.onnx", graph("nemo128")),
                    ("vocab.txt", file(dir, "vocab.txt")),
                ],
            )
        } else if graph("encoder_model").is_some() || graph("decoder_model_merged").is_some() {
            (
                OnnxFamily::Moonshine(moonshine_variant(dir)),
                vec![
                    ("encoder_model.onnx", graph("encoder_model")),
                    ("decoder_model_merged.onnx", graph("decoder_model_merged")),
                    ("tokenizer.json", file(dir, "tokenizer.json")),
                ],
            )
        } else if graph("model").is_some() && file(dir, "tokens.txt").is_some() {
            (
                OnnxFamily::SenseVoice,
                vec![
                    ("model.onnx", graph("model")),
                    ("tokens.txt", file(dir, "tokens.txt")),
                ],
            )
        } else if graph("model").is_some() {
            (
                OnnxFamily::GigaAm,
                vec![
                    ("model.onnx", graph("model")),
                    ("vocab.txt", file(dir, "vocab.txt")),
                ],
            )
        } else {
            return Err(invalid(
                "it holds no model this app knows: Parakeet needs encoder-model.onnx, \
                 decoder_joint-model.onnx, nemo128.onnx and vocab.txt; Moonshine \
                 encoder_model.onnx, decoder_model_merged.onnx and tokenizer.json; SenseVoice \
                 model.onnx and tokens.txt; GigaAM model.onnx and vocab.txt"
                    .into(),
            ));
        };
    let missing: Vec<&str> = needed
        .iter()
        .filter(|(_, found)| found.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(invalid(format!(
            "this {} model lacks {}",
            family.name(),
            missing.join(", ")
        )));
    }
    let files: Vec<PathBuf> = needed.into_iter().filter_map(|(_, f)| f).collect();
    for path in &files {
        let contents_ok = check_file(path)?;
        if let Err(reason) = contents_ok {
            return Err(EngineError::InvalidWeights {
                path: path.clone(),
                expected: format!("{} model file", family.name()),
                reason,
            });
        }
    }
    if family == OnnxFamily::Parakeet {
        let vocab = std::fs::read_to_string(dir.join("vocab.txt"))
            .map_err(|e| EngineError::io(dir.join("vocab.txt"), e))?;
        if !vocab
            .lines()
            .any(|l| l.split_whitespace().next() == Some("<blk>"))
        {
            return Err(EngineError::InvalidWeights {
                path: dir.join("vocab.txt"),
                expected: "Parakeet vocabulary".into(),
                reason: "it has no <blk> (blank) token".into(),
            });
        }
    }
    Ok(OnnxSpeechInfo { family, files })
}

fn file(dir: &Path, name: &str) -> Option<PathBuf> {
    Some(dir.join(name)).filter(|p| p.is_file())
}

/// Whether a model file looks usable: `Ok(Err(reason))` when it plainly is not.
fn check_file(path: &Path) -> Result<Result<(), String>, EngineError> {
    use std::io::Read;
    let mut head = [0u8; 1];
    let mut f = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let read = f.read(&mut head).map_err(|e| EngineError::io(path, e))?;
    if read == 0 {
        return Ok(Err("the file is empty".into()));
    }
    let is_graph = path.extension().is_some_and(|e| e == "onnx");
    if is_graph && head[0] != ONNX_FIRST_BYTE {
        return Ok(Err("it is not an ONNX graph".into()));
    }
    Ok(Ok(()))
}

/// Moonshine's files do not say which variant they are; the folder's name does
/// (`moonshine-base`, `moonshine-tiny-ja`, ...). Defaults to Base.
fn moonshine_variant(dir: &Path) -> MoonshineVariant {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if name.contains("tiny") {
        for (suffix, variant) in [
            ("-ar", MoonshineVariant::TinyAr),
            ("-zh", MoonshineVariant::TinyZh),
            ("-ja", MoonshineVariant::TinyJa),
            ("-ko", MoonshineVariant::TinyKo),
            ("-uk", MoonshineVariant::TinyUk),
            ("-vi", MoonshineVariant::TinyVi),
        ] {
            if name.contains(suffix) {
                return variant;
            }
        }
        MoonshineVariant::Tiny
    } else if name.contains("-es") {
        MoonshineVariant::BaseEs
    } else {
        MoonshineVariant::Base
    }
}

/// A loaded ONNX speech model. Its sessions are used by one call at a time.
pub struct OnnxSpeechModel {
    model: Mutex<Box<dyn SpeechModel>>,
    info: OnnxSpeechInfo,
    resident: u64,
}

impl std::fmt::Debug for OnnxSpeechModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxSpeechModel")
            .field("info", &self.info)
            .field("resident", &self.resident)
            .finish_non_exhaustive()
    }
}

impl LoadedModel for OnnxSpeechModel {
    fn resident_bytes(&self) -> u64 {
        self.resident
    }
}

impl OnnxSpeechModel {
    /// Validates the folder, checks ONNX Runtime, and loads the model on the CPU.
    pub fn load(dir: &Path) -> Result<Self, EngineError> {
        let info = inspect_folder(dir)?;
        ensure_runtime()?;
        let family = info.family;
        let failed = |e: transcribe_rs::TranscribeError| EngineError::InvalidWeights {
            path: dir.to_path_buf(),
            expected: format!("{} model", family.name()),
            reason: e.to_string(),
        };
        let q = Quantization::Int8; // falls back to the FP32 file where there is no int8 one
        let (model, resident) = load_measured(dir, || {
            let model: Box<dyn SpeechModel> = match family {
                OnnxFamily::Parakeet => Box::new(ParakeetModel::load(dir, &q).map_err(failed)?),
                OnnxFamily::Moonshine(variant) => {
                    Box::new(MoonshineModel::load(dir, variant, &q).map_err(failed)?)
                }
                OnnxFamily::SenseVoice => Box::new(SenseVoiceModel::load(dir, &q).map_err(failed)?),
                OnnxFamily::GigaAm => Box::new(GigaAMModel::load(dir, &q).map_err(failed)?),
            };
            Ok(model)
        })?;
        Ok(Self {
            model: Mutex::new(model),
            info,
            resident,
        })
    }

    /// What the folder holds.
    pub fn info(&self) -> &OnnxSpeechInfo {
        &self.info
    }
}

impl Transcriber for OnnxSpeechModel {
    fn transcribe(
        &self,
        samples: &[f32],
        options: &TranscribeOptions,
        vad: Option<&SileroVad>,
    ) -> Result<Transcript, EngineError> {
        let family = self.info.family;
        if options.translate {
            return Err(EngineError::InvalidRequest(format!(
                "{} models transcribe only; they cannot translate",
                family.name()
            )));
        }
        if let Some(language) = &options.language {
            if !family.languages().contains(&language.as_str()) {
                return Err(EngineError::InvalidRequest(format!(
                    "{} transcribes {}; it cannot transcribe {language:?}",
                    family.name(),
                    family.languages().join(", ")
                )));
            }
        }
        let Some((speech, map)) = trim_silence(samples, options, vad)? else {
            return Ok(Transcript::default());
        };
        let speech_seconds = speech.len() as f32 / crate::audio::TARGET_RATE as f32;
        let hint = transcribe_rs::TranscribeOptions {
            language: options.language.clone(),
            ..Default::default()
        };
        let result = self
            .model
            .lock()
            .transcribe(&speech, &hint)
            .map_err(|e| EngineError::Inference(e.to_string()))?;
        let segments = result
            .segments
            .unwrap_or_default()
            .into_iter()
            .map(|s| Segment {
                start: map.original_seconds(s.start),
                end: map.original_seconds(s.end),
                text: s.text.trim().to_owned(),
            })
            .filter(|s| !s.text.is_empty())
            .collect();
        Ok(Transcript {
            text: result.text.trim().to_owned(),
            segments,
            speech_seconds,
        })
    }

    fn describe(&self) -> String {
        self.info.family.name().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp");
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).expect("write");
        }
        dir
    }

    const GRAPH: &[u8] = b"\x08\x08fake graph";

    #[test]
    fn the_family_is_told_from_the_files() {
        let parakeet = folder(&[
            ("encoder-model.int8.onnx", GRAPH),
            ("decoder_joint-model.int8.onnx", GRAPH),
            ("nemo128.onnx", GRAPH),
            ("vocab.txt", b"a 0\n<blk> 1\n"),
        ]);
        let info = inspect_folder(parakeet.path()).expect("parakeet");
        assert_eq!(info.family, OnnxFamily::Parakeet);
        assert!(info.files[0].ends_with("encoder-model.int8.onnx"));
        let sense = folder(&[("model.onnx", GRAPH), ("tokens.txt", b"a 0\n")]);
        assert_eq!(
            inspect_folder(sense.path()).expect("sense").family,
            OnnxFamily::SenseVoice
        );
        let giga = folder(&[("model.int8.onnx", GRAPH), ("vocab.txt", b"a 0\n")]);
        assert_eq!(
            inspect_folder(giga.path()).expect("giga").family,
            OnnxFamily::GigaAm
        );
        let moon = folder(&[
            ("encoder_model.onnx", GRAPH),
            ("decoder_model_merged.onnx", GRAPH),
            ("tokenizer.json", b"{}"),
        ]);
        assert!(matches!(
            inspect_folder(moon.path()).expect("moonshine").family,
            OnnxFamily::Moonshine(_)
        ));
    }

    #[test]
    fn missing_and_broken_files_are_named() {
        let partial = folder(&[("encoder-model.onnx", GRAPH), ("vocab.txt", b"<blk> 0\n")]);
        let message = inspect_folder(partial.path())
            .expect_err("partial")
            .to_string();
        assert!(
            message.contains("Parakeet")
                && message.contains("decoder_joint-model.onnx, nemo128.onnx"),
            "{message}"
        );
        let empty = folder(&[]);
        let message = inspect_folder(empty.path()).expect_err("empty").to_string();
        assert!(message.contains("holds no model"), "{message}");
        let not_onnx = folder(&[("model.onnx", b"<html>"), ("vocab.txt", b"a 0\n")]);
        let message = inspect_folder(not_onnx.path())
            .expect_err("html")
            .to_string();
        assert!(
            message.contains("model.onnx") && message.contains("not an ONNX graph"),
            "{message}"
        );
        let blank_vocab = folder(&[("model.onnx", GRAPH), ("vocab.txt", b"")]);
        let message = inspect_folder(blank_vocab.path())
            .expect_err("empty vocab")
            .to_string();
        assert!(
            message.contains("vocab.txt") && message.contains("empty"),
            "{message}"
        );
        let no_blank = folder(&[
            ("encoder-model.onnx", GRAPH),
            ("decoder_joint-model.onnx", GRAPH),
            ("nemo128.onnx", GRAPH),
            ("vocab.txt", b"a 0\n"),
        ]);
        let message = inspect_folder(no_blank.path())
            .expect_err("no blank")
            .to_string();
        assert!(message.contains("<blk>"), "{message}");
        let file = folder(&[("model.onnx", GRAPH)]);
        let message = inspect_folder(&file.path().join("model.onnx"))
            .expect_err("a file")
            .to_string();
        assert!(message.contains("not a model folder"), "{message}");
        let message = inspect_folder(&file.path().join("nowhere"))
            .expect_err("absent")
            .to_string();
        assert!(message.contains("cannot read"), "{message}");
    }

    #[test]
    fn moonshine_variants_come_from_the_folder_name() {
        assert_eq!(
            moonshine_variant(Path::new("/m/moonshine-base")),
            MoonshineVariant::Base
        );
        assert_eq!(
            moonshine_variant(Path::new("/m/moonshine-tiny")),
            MoonshineVariant::Tiny
        );
        assert_eq!(
            moonshine_variant(Path::new("/m/moonshine-tiny-ja")),
            MoonshineVariant::TinyJa
        );
        assert_eq!(
            moonshine_variant(Path::new("/m/moonshine-base-es")),
            MoonshineVariant::BaseEs
        );
    }
}
