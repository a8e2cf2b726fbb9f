//! [`ModelInfo`]: the static and on-disk facts about one model (a catalog entry or a user
//! model), as the Models page shows them; answering never loads anything.

use std::path::Path;

use model_manager::ManagerStatus;
use serde::{Deserialize, Serialize};
use specta::Type;

use super::ModelLibrary;
use crate::catalog::{self, Engine, Slot, Task};
use crate::user_models::{TrainingRecord, UserModelMeta};

/// Static and on-disk facts about a model; answering never loads anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct ModelInfo {
    /// `whisper-base`, `sam-tiny`, ... or `user:<id>`.
    pub id: String,
    /// The slot it loads into.
    pub slot: Slot,
    /// Its name for people.
    pub display_name: String,
    /// How it runs.
    pub engine: Engine,
    /// Whether the user imported or trained it.
    pub is_user_model: bool,
    /// Its weights file.
    pub path: String,
    /// Whether that file is there.
    pub installed: bool,
    /// Size of the file.
    pub file_bytes: Option<u64>,
    /// Memory once loaded: measured in this session if it has been loaded, else the catalog's figure.
    pub memory_bytes: Option<u64>,
    /// Whether that memory figure was measured here.
    pub memory_measured: bool,
    /// Languages it handles.
    pub languages: String,
    /// Licence of the weights.
    pub licence: String,
    /// What it is good for.
    pub good_for: String,
    /// Whether it is the model its task uses now.
    pub active: bool,
    /// Where it can be downloaded from (`None`: installed by the setup script, or a user model).
    pub download: Option<DownloadOffer>,
    /// Bytes of an interrupted download kept for resuming (the next download continues there).
    pub partial_bytes: Option<u64>,
    /// How it was trained, for a custom model trained in Dormouse.
    pub training: Option<TrainingRecord>,
}

/// A catalog model's download, as the models page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct DownloadOffer {
    /// The URL.
    pub url: String,
    /// Exact size, where the publisher lists it.
    pub bytes: Option<u64>,
    /// Who publishes it.
    pub publisher: String,
    /// Unpacked from an archive into a folder.
    pub archive: bool,
}

impl ModelLibrary {
    /// The memory `model_id` took when loaded in `slot` this session (while loaded, or at its
    /// last unload), from one status snapshot shared by every model described.
    fn measured(status: &ManagerStatus, slot: Slot, model_id: &str) -> Option<u64> {
        let m = status.model(&slot.key())?;
        (&*m.model_id == model_id)
            .then(|| {
                m.resident_bytes
                    .or(m.last_unload.as_ref().map(|u| u.resident_bytes))
            })
            .flatten()
    }

    pub(super) fn base_info(&self, e: &catalog::CatalogEntry, status: &ManagerStatus) -> ModelInfo {
        let path = self.paths.model_file(e.file_name);
        let file_bytes = disk_bytes(&path);
        let measured = Self::measured(status, e.slot, e.id);
        ModelInfo {
            id: e.id.into(),
            slot: e.slot,
            display_name: e.display_name.into(),
            engine: e.engine,
            is_user_model: false,
            path: path.display().to_string(),
            installed: file_bytes.is_some(),
            file_bytes,
            memory_bytes: measured.or(Some(u64::from(e.approx_memory_mib) << 20)),
            memory_measured: measured.is_some(),
            languages: e.languages.into(),
            licence: e.licence.into(),
            good_for: e.good_for.into(),
            active: *self.current_spec(e.slot).id == *e.id,
            partial_bytes: e
                .download
                .and_then(|_| std::fs::metadata(downloads::partial_path(&path)).ok())
                .map(|m| m.len())
                .filter(|&n| n > 0),
            download: e.download.map(|d| DownloadOffer {
                url: d.url.into(),
                bytes: d.bytes,
                publisher: d.publisher.into(),
                archive: d.archive,
            }),
            training: None,
        }
    }

    pub(super) fn user_info(&self, meta: &UserModelMeta, status: &ManagerStatus) -> ModelInfo {
        let slot = meta.task.slot();
        let model_id = meta.id.model_id();
        let measured = Self::measured(status, slot, &model_id);
        ModelInfo {
            slot,
            display_name: meta.display_name.clone(),
            engine: match meta.task {
                Task::Transcription => Engine::WhisperCpp,
                Task::Segmentation => Engine::Candle,
            },
            is_user_model: true,
            path: self
                .user_models
                .weights_path(&meta.id, meta.task)
                .display()
                .to_string(),
            installed: true,
            file_bytes: Some(meta.file_bytes),
            memory_bytes: measured.or(Some(meta.file_bytes)),
            memory_measured: measured.is_some(),
            languages: String::new(),
            licence: "yours".into(),
            good_for: match &meta.training {
                Some(t) => format!(
                    "Your own {} model, trained on {} example{}",
                    meta.task.label(),
                    t.pairs,
                    if t.pairs == 1 { "" } else { "s" }
                ),
                None => format!("Your own {} model", meta.task.label()),
            },
            training: meta.training.clone(),
            active: *self.current_spec(slot).id == *model_id,
            download: None,
            partial_bytes: None,
            id: model_id,
        }
    }
}

/// Bytes a model file or folder takes on disk; `None` when it is not there.
pub(super) fn disk_bytes(path: &Path) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return Some(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).ok()?.filter_map(Result::ok) {
        total += disk_bytes(&entry.path()).unwrap_or(0);
    }
    Some(total)
}
