//! The static catalog of base models: which model fills which task, the file it lives in,
//! and the facts shown before anything is loaded. Also the [`Task`] and [`Slot`] vocabulary.

use model_manager::ModelKey;
use serde::{Deserialize, Serialize};
use specta::Type;

/// What the user does with a model.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Type,
)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Speech-to-text.
    Transcription,
    /// Image segmentation.
    Segmentation,
}

impl Task {
    /// Every task.
    pub const ALL: [Task; 2] = [Task::Transcription, Task::Segmentation];

    /// The slot the task's model lives in.
    pub fn slot(self) -> Slot {
        match self {
            Task::Transcription => Slot::Transcription,
            Task::Segmentation => Slot::Segmentation,
        }
    }

    /// Its name in messages.
    pub fn label(self) -> &'static str {
        match self {
            Task::Transcription => "transcription",
            Task::Segmentation => "segmentation",
        }
    }

    /// The base model used until the user picks another.
    pub fn default_model(self) -> &'static str {
        match self {
            Task::Transcription => "whisper-base",
            Task::Segmentation => "sam-tiny",
        }
    }
}

/// A model slot of the lifecycle core: one per task, plus the voice-activity detector that
/// trims silence before transcription.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Type,
)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// Speech-to-text (Whisper).
    Transcription,
    /// Image segmentation (Segment Anything).
    Segmentation,
    /// Silero voice-activity detection, used by transcription.
    Vad,
}

impl Slot {
    /// Every slot, in the order the status lists them.
    pub const ALL: [Slot; 3] = [Slot::Transcription, Slot::Segmentation, Slot::Vad];

    /// The slot's key in the lifecycle core.
    pub fn key(self) -> ModelKey {
        let name = match self {
            Slot::Transcription => "transcription",
            Slot::Segmentation => "segmentation",
            Slot::Vad => "vad",
        };
        // The names above are valid keys by construction.
        ModelKey::new(name).unwrap_or_else(|_| unreachable!("static key {name} is valid"))
    }

    /// The task the slot serves (`None` for the VAD, which serves transcription's).
    pub fn task(self) -> Option<Task> {
        match self {
            Slot::Transcription => Some(Task::Transcription),
            Slot::Segmentation => Some(Task::Segmentation),
            Slot::Vad => None,
        }
    }

    /// The slot of a core key.
    pub fn from_key(key: &ModelKey) -> Option<Slot> {
        Slot::ALL.into_iter().find(|s| s.key() == *key)
    }
}

/// The inference engine behind a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// whisper.cpp (GGML).
    WhisperCpp,
    /// Segment Anything on candle (safetensors).
    Candle,
    /// ONNX Runtime.
    OnnxRuntime,
}

/// Where a catalog model can be downloaded from, as its publisher states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DownloadSource {
    /// HTTPS URL of the file or archive.
    pub url: &'static str,
    /// Exact size in bytes, where the publisher lists it (else the server's
    /// `Content-Length` is used; the SHA-256 is checked either way).
    pub bytes: Option<u64>,
    /// SHA-256 of the file or archive.
    pub sha256: &'static str,
    /// A `.tar.gz` unpacked into the model's folder (else the file itself).
    pub archive: bool,
    /// Who publishes it.
    pub publisher: &'static str,
}

/// A base model Dormouse knows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CatalogEntry {
    /// Stable id, e.g. `whisper-base`.
    pub id: &'static str,
    /// The slot it loads into.
    pub slot: Slot,
    /// Shown to the user.
    pub display_name: &'static str,
    /// How it runs.
    pub engine: Engine,
    /// Its file (or, for an archive, its folder) in the models folder.
    pub file_name: &'static str,
    /// Memory once loaded (MiB): measured by the engines' benchmarks for Whisper base, both
    /// SAM sizes and Silero; for the others an estimate (file size plus the compute buffers
    /// measured for Whisper base), until the app measures it on the user's machine.
    pub approx_memory_mib: u32,
    /// Languages it handles (empty: not a language model).
    pub languages: &'static str,
    /// Licence of the weights.
    pub licence: &'static str,
    /// What it is good for, in one line.
    pub good_for: &'static str,
    /// Where to download it; `None` when the setup script installs it from a registry package.
    pub download: Option<DownloadSource>,
}

const WHISPER_CPP: &str = "ggerganov/whisper.cpp on Hugging Face";
const HANDY: &str = "Handy's model mirror (ONNX exports of the publisher's weights)";
const CANDLE_SAM: &str = "lmz/candle-sam on Hugging Face (candle's SAM weights)";

/// Every base model.
pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        id: "whisper-tiny",
        slot: Slot::Transcription,
        display_name: "Whisper tiny",
        engine: Engine::WhisperCpp,
        file_name: "ggml-tiny.bin",
        approx_memory_mib: 120,
        languages: "99 languages",
        licence: "MIT",
        good_for: "The fastest; quick notes on slow machines",
        download: Some(DownloadSource {
            url: "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-tiny.bin",
            bytes: Some(77_691_713),
            sha256: "be07e048e1e599ad46341c8d2a135645097a538221678b7acdd1b1919c6e1b21",
            archive: false,
            publisher: WHISPER_CPP,
        }),
    },
    CatalogEntry {
        id: "whisper-base",
        slot: Slot::Transcription,
        display_name: "Whisper base",
        engine: Engine::WhisperCpp,
        file_name: "ggml-base.bin",
        approx_memory_mib: 185,
        languages: "99 languages",
        licence: "MIT",
        good_for: "Fast, decent dictation on any CPU",
        download: Some(DownloadSource {
            url: "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-base.bin",
            bytes: Some(147_951_465),
            sha256: "60ed5bc3dd14eea856493d334349b405782ddcaf0028d4b5df4088345fba2efe",
            archive: false,
            publisher: WHISPER_CPP,
        }),
    },
    CatalogEntry {
        id: "whisper-base-q8_0",
        slot: Slot::Transcription,
        display_name: "Whisper base (quantized q8_0)",
        engine: Engine::WhisperCpp,
        file_name: "ggml-base-q8_0.bin",
        approx_memory_mib: 120,
        languages: "99 languages",
        licence: "MIT",
        // docs/benchmarks.md, "Whisper's levers": as fast as base or a little faster on this
        // project's CPU (1.01–1.07× in two runs of 2026-12-07) since its encoder takes the
        // packed products too, the same words on Beckett and both espeak sentences.
        good_for: "Base's words in half the download",
        download: Some(DownloadSource {
            url: "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-base-q8_0.bin",
            bytes: Some(81_768_585),
            sha256: "c577b9a86e7e048a0b7eada054f4dd79a56bbfa911fbdacf900ac5b567cbb7d9",
            archive: false,
            publisher: WHISPER_CPP,
        }),
    },
    CatalogEntry {
        id: "whisper-small",
        slot: Slot::Transcription,
        display_name: "Whisper small",
        engine: Engine::WhisperCpp,
        file_name: "ggml-small.bin",
        approx_memory_mib: 530,
        languages: "99 languages",
        licence: "MIT",
        good_for: "Noticeably more accurate, still usable on a laptop CPU",
        download: Some(DownloadSource {
            url: "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-small.bin",
            bytes: Some(487_601_967),
            sha256: "1be3a9b2063867b937e64e2ec7483364a79917e157fa98c5d94b5c1fffea987b",
            archive: false,
            publisher: WHISPER_CPP,
        }),
    },
    CatalogEntry {
        id: "whisper-large-v3-turbo",
        slot: Slot::Transcription,
        display_name: "Whisper large-v3 turbo",
        engine: Engine::WhisperCpp,
        file_name: "ggml-large-v3-turbo.bin",
        approx_memory_mib: 1_700,
        languages: "99 languages",
        licence: "MIT",
        good_for: "Near large-v3 accuracy at a fraction of its time; wants RAM",
        download: Some(DownloadSource {
            url: "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-large-v3-turbo.bin",
            bytes: Some(1_624_555_275),
            sha256: "1fc70f774d38eb169993ac391eea357ef47c88757ef72ee5943879b7e8e2bc69",
            archive: false,
            publisher: WHISPER_CPP,
        }),
    },
    CatalogEntry {
        id: "whisper-large-v3-turbo-q5_0",
        slot: Slot::Transcription,
        display_name: "Whisper large-v3 turbo (quantized q5_0)",
        engine: Engine::WhisperCpp,
        file_name: "ggml-large-v3-turbo-q5_0.bin",
        approx_memory_mib: 680,
        languages: "99 languages",
        licence: "MIT",
        good_for: "Turbo's accuracy in a third of the memory",
        download: Some(DownloadSource {
            url: "https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-large-v3-turbo-q5_0.bin",
            bytes: Some(574_041_195),
            sha256: "394221709cd5ad1f40c46e6031ca61bce88931e6e088c188294c6d5a55ffa7e2",
            archive: false,
            publisher: WHISPER_CPP,
        }),
    },
    CatalogEntry {
        id: "parakeet-tdt-0.6b-v3",
        slot: Slot::Transcription,
        display_name: "Parakeet TDT 0.6B v3 (int8)",
        engine: Engine::OnnxRuntime,
        file_name: "parakeet-tdt-0.6b-v3-int8",
        approx_memory_mib: 700,
        languages: "25 European languages",
        licence: "CC-BY-4.0",
        good_for: "Very fast and accurate European dictation",
        download: Some(DownloadSource {
            url: "https://blob.handy.computer/parakeet-v3-int8.tar.gz",
            bytes: Some(478_517_071),
            sha256: "43d37191602727524a7d8c6da0eef11c4ba24320f5b4730f1a2497befc2efa77",
            archive: true,
            publisher: HANDY,
        }),
    },
    CatalogEntry {
        id: "moonshine-base",
        slot: Slot::Transcription,
        display_name: "Moonshine base",
        engine: Engine::OnnxRuntime,
        file_name: "moonshine-base",
        approx_memory_mib: 250,
        languages: "English",
        licence: "MIT",
        good_for: "Very fast English on weak machines",
        download: Some(DownloadSource {
            url: "https://blob.handy.computer/moonshine-base.tar.gz",
            bytes: None,
            sha256: "04bf6ab012cfceebd4ac7cf88c1b31d027bbdd3cd704649b692e2e935236b7e8",
            archive: true,
            publisher: HANDY,
        }),
    },
    CatalogEntry {
        id: "sam-tiny",
        slot: Slot::Segmentation,
        display_name: "SAM tiny (MobileSAM)",
        engine: Engine::Candle,
        file_name: "mobile_sam.safetensors",
        approx_memory_mib: 47,
        languages: "",
        licence: "Apache-2.0",
        good_for: "Quick cut-outs, light on memory",
        download: Some(DownloadSource {
            url: "https://huggingface.co/lmz/candle-sam/resolve/main/mobile_sam-tiny-vitt.safetensors",
            bytes: None,
            sha256: "5ad43a841b57cc798e2837e251c15aa9f602868a1780d195459383d117784cf7",
            archive: false,
            publisher: CANDLE_SAM,
        }),
    },
    CatalogEntry {
        id: "sam-vit-b",
        slot: Slot::Segmentation,
        display_name: "SAM ViT-B",
        engine: Engine::Candle,
        file_name: "sam_vit_b.safetensors",
        approx_memory_mib: 362,
        languages: "",
        licence: "Apache-2.0",
        good_for: "More accurate masks on detailed objects",
        download: Some(DownloadSource {
            url: "https://huggingface.co/lmz/candle-sam/resolve/main/sam_vit_b_01ec64.safetensors",
            bytes: None,
            sha256: "65d59ca840f1ea3b60d6b1efe298b125948cbd0a4ea7b9f08eba2201f70cd865",
            archive: false,
            publisher: CANDLE_SAM,
        }),
    },
    CatalogEntry {
        id: "silero-vad",
        slot: Slot::Vad,
        display_name: "Silero VAD",
        engine: Engine::OnnxRuntime,
        file_name: "silero_vad.onnx",
        approx_memory_mib: 3,
        languages: "any",
        licence: "MIT",
        good_for: "Skips silence before transcription",
        download: None,
    },
];

/// The catalog entry with this id.
pub fn entry(id: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.id == id)
}

/// The catalog entry with this id, or the "not a model Dormouse knows" error commands return.
pub fn known(id: &str) -> crate::error::CommandResult<&'static CatalogEntry> {
    entry(id).ok_or_else(|| {
        crate::error::CommandError::unknown_model(
            id,
            format!("{id:?} is not a model Dormouse knows"),
        )
    })
}

/// The base models that can fill `slot`.
pub fn for_slot(slot: Slot) -> impl Iterator<Item = &'static CatalogEntry> {
    CATALOG.iter().filter(move |e| e.slot == slot)
}

/// The model a slot loads when nothing else is chosen.
pub fn default_for(slot: Slot) -> &'static CatalogEntry {
    let id = match slot {
        Slot::Transcription => Task::Transcription.default_model(),
        Slot::Segmentation => Task::Segmentation.default_model(),
        Slot::Vad => "silero-vad",
    };
    entry(id).unwrap_or(&CATALOG[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_has_a_default_of_its_own_slot() {
        for slot in Slot::ALL {
            assert_eq!(default_for(slot).slot, slot);
            assert_eq!(Slot::from_key(&slot.key()), Some(slot));
        }
        for task in Task::ALL {
            assert_eq!(
                entry(task.default_model()).map(|e| e.slot),
                Some(task.slot())
            );
        }
    }

    #[test]
    fn download_sources_are_well_formed() {
        for entry in CATALOG {
            let Some(source) = entry.download else {
                continue;
            };
            assert!(source.url.starts_with("https://"), "{}", entry.id);
            assert_eq!(source.sha256.len(), 64, "{}", entry.id);
            assert!(source
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            let is_file = [".bin", ".safetensors", ".onnx"]
                .iter()
                .any(|ext| entry.file_name.ends_with(ext));
            assert_eq!(
                source.archive, !is_file,
                "{}: archives unpack into a folder",
                entry.id
            );
        }
        assert!(
            CATALOG
                .iter()
                .filter(|e| e.slot == Slot::Transcription)
                .count()
                >= 7
        );
    }

    #[test]
    fn ids_and_files_are_unique() {
        for (i, a) in CATALOG.iter().enumerate() {
            for b in &CATALOG[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.file_name, b.file_name);
            }
        }
    }
}
