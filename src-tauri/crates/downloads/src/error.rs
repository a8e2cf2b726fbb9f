//! [`DownloadError`]: every way a download can fail, worded for the person who asked for it.
//! Errors are `Clone` because every caller waiting on one download gets the same outcome.

use thiserror::Error;

/// Why a download did not finish.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum DownloadError {
    /// The server answered with an HTTP error.
    #[error("the server answered {status} for {url}")]
    Http {
        /// HTTP status code.
        status: u16,
        /// What was asked for.
        url: String,
    },
    /// The connection failed, dropped or stalled, and the retries ran out.
    #[error("the connection failed {attempts} time(s); last: {reason}")]
    Network {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// The file's SHA-256 is not the published one (it was deleted).
    #[error("the downloaded file is corrupt: its SHA-256 is {actual}, the publisher's is {expected}; it was deleted")]
    ChecksumMismatch {
        /// The published digest.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// The server offers or sent a different number of bytes than the publisher states.
    #[error("the server's file is {actual} bytes but {expected} were expected; nothing was kept")]
    WrongSize {
        /// Bytes expected.
        expected: u64,
        /// Bytes offered or received.
        actual: u64,
    },
    /// Not enough free disk space for the download.
    #[error("not enough disk space in {dir}: {needed} bytes are needed, {available} are free")]
    InsufficientSpace {
        /// Where it would go.
        dir: String,
        /// Bytes needed (what is left to fetch, plus the unpacked copy for archives).
        needed: u64,
        /// Bytes free.
        available: u64,
    },
    /// The destination already holds a file; it is never overwritten.
    #[error("{path} already exists; delete it first to download it again")]
    AlreadyExists {
        /// The destination.
        path: String,
    },
    /// The user cancelled it; what it wrote was removed.
    #[error("the download was cancelled")]
    Cancelled,
    /// An archive could not be unpacked (it was deleted).
    #[error("the archive could not be unpacked: {0}")]
    Archive(String),
    /// The URL or destination is unusable.
    #[error("{0}")]
    Invalid(String),
    /// Reading or writing the disk failed.
    #[error("{path}: {reason}")]
    Io {
        /// The file or folder.
        path: String,
        /// What the OS said.
        reason: String,
    },
}

impl DownloadError {
    pub(crate) fn io(path: &std::path::Path, error: &std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            reason: error.to_string(),
        }
    }
}
