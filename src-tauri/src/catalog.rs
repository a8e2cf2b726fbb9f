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
    /// Its file in the models folder.
    pub file_name: &'static str,
    /// Approximate memory once loaded, from the engines' benchmarks (MiB).
    pub approx_memory_mib: u32,
    /// Languages it handles (empty: not a language model).
    pub languages: &'static str,
    /// Licence of the weights.
    pub licence: &'static str,
    /// What it is good for, in one line.
    pub good_for: &'static str,
}

/// Every base model.
pub const CATALOG: &[CatalogEntry] = &[
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
    },
];

/// The catalog entry with this id.
pub fn entry(id: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.id == id)
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
    fn ids_and_files_are_unique() {
        for (i, a) in CATALOG.iter().enumerate() {
            for b in &CATALOG[i + 1..] {
                assert_ne!(a.id, b.id);
                assert_ne!(a.file_name, b.file_name);
            }
        }
    }
}
