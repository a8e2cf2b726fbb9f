//! # downloads — getting model files onto the user's machine, safely
//!
//! [`DownloadManager`] owns every download in flight. One worker thread per model id streams
//! the file into `<name>.partial` next to its destination, resumes with HTTP range requests
//! after a dropped or stalled connection (retries with exponential back-off), verifies the
//! SHA-256 before anything is moved into place (an atomic rename, or an archive unpacked into
//! a temporary folder that is then renamed), and checks the disk space before it starts.
//! A second request for a model already downloading joins that download (single flight);
//! [`DownloadManager::cancel`] stops one and removes what it wrote. Every change is published
//! as a [`DownloadStatus`] snapshot through the sink given at construction, byte progress at
//! most every [`Options::progress_interval`].
//!
//! A bad download never replaces a good file: a destination that already exists is refused
//! before any byte is fetched, and the rename happens only after the digest matched.
//! Proxies follow `HTTPS_PROXY` / `HTTP_PROXY` / `ALL_PROXY` / `NO_PROXY`; timeouts and retry
//! counts follow [`Options::from_env`].
//!
//! No Tauri here: the app forwards the snapshots as typed events.

mod archive;
mod disk;
mod error;
mod manager;
mod transfer;

pub use archive::unpack_tar_gz;
pub use disk::{FixedSpace, SpaceProbe, SystemSpace};
pub use error::DownloadError;
pub use manager::{
    Artifact, DownloadHandle, DownloadManager, DownloadStatus, Options, Phase, StatusSink, Unpack,
};

/// The file a download writes to before it is verified: `<dest>.partial` beside `dest`.
pub fn partial_path(dest: &std::path::Path) -> std::path::PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}
