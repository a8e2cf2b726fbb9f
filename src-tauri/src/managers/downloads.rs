//! [`ModelDownloads`] gets catalog models onto the disk: it turns a catalog entry (or the
//! mirror/test override named by `DORMOUSE_CATALOG_OVERRIDES`) into a download for the
//! `downloads` crate and publishes every status as a [`DownloadView`]. Deleting a model that
//! is downloading is refused here (cancel the download instead); the rest of deleting is the
//! library's, and the refusal while a model is loaded or leased the lifecycle core's. Proxies and timeouts follow the environment
//! (`HTTPS_PROXY`…, `DORMOUSE_DOWNLOAD_TIMEOUT`…).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use downloads::{
    Artifact, DownloadError, DownloadManager, DownloadStatus, Options, Phase, SystemSpace, Unpack,
};
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::catalog::{self, CatalogEntry};
use crate::error::{CommandError, CommandResult};
use crate::managers::library::{DeletedModel, ModelLibrary};
use crate::managers::settings::{NoticeKind, SettingsManager};

/// What kind of failure, for the UI to word and style.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum DownloadErrorKind {
    /// The server answered with an HTTP error.
    Http,
    /// The connection kept failing.
    Network,
    /// The file was corrupt (SHA-256 mismatch) and was deleted.
    ChecksumMismatch,
    /// The server's file has the wrong size.
    WrongSize,
    /// Not enough disk space.
    InsufficientSpace,
    /// Anything else (disk, archive, destination).
    Other,
}

/// A download's failure as the UI shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct DownloadFailure {
    /// What kind.
    pub kind: DownloadErrorKind,
    /// What to show.
    pub message: String,
    /// The whole story (full digests, URLs), for a tooltip and the logs.
    pub detail: String,
}

/// One download's status (pushed as [`crate::events::DownloadProgress`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct DownloadView {
    /// The catalog id.
    pub model_id: String,
    /// Where it is.
    pub phase: Phase,
    /// Bytes on disk.
    pub bytes: u64,
    /// Full size, once known.
    pub total_bytes: Option<u64>,
    /// Recent speed.
    pub bytes_per_sec: f64,
    /// Seconds left at that speed.
    pub eta_secs: Option<f64>,
    /// Attempt running (1-based).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Bytes kept from an earlier attempt when this one resumed.
    pub resumed_from: Option<u64>,
    /// While retrying: milliseconds until the next attempt.
    pub retry_in_ms: Option<u64>,
    /// Why the last attempt failed (retrying) or the download failed.
    pub error: Option<DownloadFailure>,
}

impl From<&DownloadStatus> for DownloadView {
    fn from(s: &DownloadStatus) -> Self {
        Self {
            model_id: s.id.clone(),
            phase: s.phase,
            bytes: s.bytes,
            total_bytes: s.total,
            bytes_per_sec: s.bytes_per_sec,
            eta_secs: s.eta_secs,
            attempt: s.attempt,
            max_attempts: s.max_attempts,
            resumed_from: s.resumed_from,
            retry_in_ms: s.retry_in_ms,
            error: s.error.as_ref().map(failure),
        }
    }
}

fn failure(error: &DownloadError) -> DownloadFailure {
    let kind = match error {
        DownloadError::Http { .. } => DownloadErrorKind::Http,
        DownloadError::Network { .. } => DownloadErrorKind::Network,
        DownloadError::ChecksumMismatch { .. } => DownloadErrorKind::ChecksumMismatch,
        DownloadError::WrongSize { .. } => DownloadErrorKind::WrongSize,
        DownloadError::InsufficientSpace { .. } => DownloadErrorKind::InsufficientSpace,
        _ => DownloadErrorKind::Other,
    };
    let message = match error {
        DownloadError::ChecksumMismatch { expected, actual } => format!(
            "the file arrived corrupt and was deleted: its SHA-256 ({}…) is not the publisher's ({}…)",
            actual.get(..12).unwrap_or(actual),
            expected.get(..12).unwrap_or(expected)
        ),
        other => other.to_string(),
    };
    DownloadFailure {
        kind,
        message,
        detail: error.to_string(),
    }
}

/// A replacement download source for a catalog model (a mirror, or a test server).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceOverride {
    url: String,
    sha256: String,
    #[serde(default)]
    bytes: Option<u64>,
}

/// Owner of downloads and deletions; see the module docs.
pub struct ModelDownloads {
    downloads: DownloadManager,
    library: Arc<ModelLibrary>,
    overrides: HashMap<String, SourceOverride>,
}

impl ModelDownloads {
    /// Reads the download settings from the environment and publishes every status to `sink`.
    pub fn new(
        library: Arc<ModelLibrary>,
        settings: &SettingsManager,
        lookup: impl Fn(&str) -> Option<String>,
        sink: impl Fn(DownloadView) + Send + Sync + 'static,
    ) -> Self {
        let (options, env_error) = Options::from_env(&lookup);
        if let Some(message) = env_error {
            settings.add_notice(NoticeKind::EnvIgnored, message);
        }
        let overrides = match lookup("DORMOUSE_CATALOG_OVERRIDES").filter(|v| !v.trim().is_empty())
        {
            Some(path) => match read_overrides(Path::new(&path)) {
                Ok(map) => {
                    tracing::info!(path, models = map.len(), "download sources overridden");
                    map
                }
                Err(message) => {
                    tracing::warn!(path, message, "download overrides ignored");
                    settings.add_notice(NoticeKind::EnvIgnored, message);
                    HashMap::new()
                }
            },
            None => HashMap::new(),
        };
        let downloads = DownloadManager::new(
            options,
            Arc::new(SystemSpace),
            Arc::new(move |status: &DownloadStatus| sink(DownloadView::from(status))),
        );
        Self {
            downloads,
            library,
            overrides,
        }
    }

    /// Starts downloading catalog model `model_id` (or joins its download in flight); the
    /// progress arrives as events. Refused when it is installed already or has no source.
    pub fn start(&self, model_id: &str) -> CommandResult<DownloadView> {
        let entry = catalog::known(model_id)?;
        let artifact = self.artifact(entry).ok_or_else(|| {
            CommandError::invalid_input(format!(
                "{} has no download; the README's setup command installs it",
                entry.display_name
            ))
        })?;
        let dest = self.library.paths().models_dir.join(entry.file_name);
        if dest.exists() && self.downloads.status(model_id).is_none() {
            return Err(CommandError::invalid_input(format!(
                "{} is already installed at {}",
                entry.display_name,
                dest.display()
            )));
        }
        let handle = self
            .downloads
            .start(model_id, artifact, dest)
            .map_err(|error| CommandError::DownloadFailed {
                model_id: model_id.into(),
                message: format!("{} could not be downloaded: {error}", entry.display_name),
            })?;
        tracing::info!(model_id, joined = handle.joined, "download requested");
        Ok(DownloadView::from(&handle.status()))
    }

    /// Cancels `model_id`'s download; false when none is running.
    pub fn cancel(&self, model_id: &str) -> bool {
        self.downloads.cancel(model_id)
    }

    /// Every download in flight.
    pub fn active(&self) -> Vec<DownloadView> {
        self.downloads
            .active()
            .iter()
            .map(DownloadView::from)
            .collect()
    }

    /// Deletes an installed model (see [`ModelLibrary::delete_model`]).
    pub fn delete(&self, model_id: &str) -> CommandResult<DeletedModel> {
        if self.downloads.status(model_id).is_some() {
            return Err(CommandError::InUse {
                message: format!("{model_id} is downloading; cancel the download instead"),
            });
        }
        self.library.delete_model(model_id)
    }

    /// Stops every download, keeping what arrived so the next request resumes it.
    pub fn shutdown(&self) {
        self.downloads.shutdown();
    }

    fn artifact(&self, entry: &CatalogEntry) -> Option<Artifact> {
        let source = entry.download?;
        let unpack = if source.archive {
            Unpack::TarGz
        } else {
            Unpack::File
        };
        Some(match self.overrides.get(entry.id) {
            Some(o) => Artifact {
                url: o.url.clone(),
                sha256: o.sha256.to_ascii_lowercase(),
                bytes: o.bytes,
                unpack,
            },
            None => Artifact {
                url: source.url.into(),
                sha256: source.sha256.into(),
                bytes: source.bytes,
                unpack,
            },
        })
    }
}

fn read_overrides(path: &Path) -> Result<HashMap<String, SourceOverride>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "DORMOUSE_CATALOG_OVERRIDES: cannot read {}: {e}",
            path.display()
        )
    })?;
    let map: HashMap<String, SourceOverride> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "DORMOUSE_CATALOG_OVERRIDES: {} is not valid: {e}",
            path.display()
        )
    })?;
    if let Some(unknown) = map.keys().find(|id| catalog::entry(id).is_none()) {
        return Err(format!(
            "DORMOUSE_CATALOG_OVERRIDES: {unknown:?} in {} is not a catalog model",
            path.display()
        ));
    }
    Ok(map)
}
