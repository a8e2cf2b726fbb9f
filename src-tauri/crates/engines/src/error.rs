//! [`EngineError`]: what can go wrong in an engine, worded for the person who picked the file.

use std::path::PathBuf;

use thiserror::Error;

/// Errors from decoding inputs, validating weights and running inference.
#[derive(Debug, Error)]
pub enum EngineError {
    /// The file does not exist or cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The input holds no data at all.
    #[error("{0} is empty")]
    Empty(String),
    /// The input is not in a format we can decode, or is corrupt.
    #[error("{what} could not be decoded: {reason}")]
    Undecodable {
        /// What was being decoded.
        what: String,
        /// Why not.
        reason: String,
    },
    /// The input is larger than the engine accepts.
    #[error("{what} is too large: {actual}; the limit is {limit}")]
    TooLarge {
        /// What was too large.
        what: String,
        /// Its size, in words.
        actual: String,
        /// The limit, in words.
        limit: String,
    },
    /// A weights file is not a model this engine can load (format, size or architecture).
    #[error("{path} is not a usable {expected} weights file: {reason}")]
    InvalidWeights {
        /// The file.
        path: PathBuf,
        /// The kind of model expected.
        expected: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A prompt or option is out of range.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A training set cannot be used (too few pairs, sizes that differ, empty masks...).
    #[error("{0}")]
    InvalidDataset(String),
    /// The caller asked to stop (training cancelled); nothing was produced.
    #[error("cancelled")]
    Cancelled,
    /// Inference itself failed.
    #[error("inference failed: {0}")]
    Inference(String),
}

impl EngineError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        Self::Inference(e.to_string())
    }
}
