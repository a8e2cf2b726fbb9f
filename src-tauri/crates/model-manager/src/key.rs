//! Model identity: the [`ModelKey`] naming a slot and the [`ModelSpec`] describing what to load into it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::ManagerError;

/// The name of a slot, e.g. `transcription`, `segmentation` or `user:<id>`.
///
/// A key is 1–128 characters of ASCII letters, digits and `_ - . :`. It is cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelKey(Arc<str>);

impl ModelKey {
    /// Builds a key, rejecting empty, over-long or oddly spelled names.
    pub fn new(name: impl AsRef<str>) -> Result<Self, ManagerError> {
        let name = name.as_ref();
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':');
        if name.is_empty() || name.len() > 128 || !name.chars().all(valid_char) {
            return Err(ManagerError::InvalidKey(name.to_owned()));
        }
        Ok(Self(Arc::from(name)))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ModelKey {
    type Error = ManagerError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ModelKey> for String {
    fn from(key: ModelKey) -> Self {
        key.0.to_string()
    }
}

impl fmt::Display for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ModelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModelKey({})", self.0)
    }
}

/// What to load into a slot: a model id (e.g. `whisper-base`) and optionally the file it lives in.
///
/// Two specs are the same model when they are equal; requesting a different spec for a slot
/// supersedes whatever the slot holds or is loading ("set model size").
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Identifier of the model, shown in the status badge.
    pub id: Arc<str>,
    /// File or folder holding the weights, when there is one.
    pub path: Option<Arc<Path>>,
}

impl ModelSpec {
    /// A spec with an id and no path.
    pub fn new(id: impl AsRef<str>) -> Self {
        Self {
            id: Arc::from(id.as_ref()),
            path: None,
        }
    }

    /// A spec with an id and the path of its weights.
    pub fn with_path(id: impl AsRef<str>, path: impl Into<PathBuf>) -> Self {
        Self {
            id: Arc::from(id.as_ref()),
            path: Some(Arc::from(path.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_accept_the_documented_alphabet() {
        for ok in ["transcription", "segmentation", "user:abc-12_3.v2"] {
            assert_eq!(ModelKey::new(ok).expect("valid key").as_str(), ok);
        }
    }

    #[test]
    fn keys_reject_empty_long_and_odd_names() {
        let long = "a".repeat(129);
        for bad in ["", "with space", "slash/y", "ünï", long.as_str()] {
            assert!(
                matches!(ModelKey::new(bad), Err(ManagerError::InvalidKey(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn keys_round_trip_through_serde_and_reject_bad_ones() {
        let key = ModelKey::new("user:1").expect("valid");
        let json = serde_json::to_string(&key).expect("serialise");
        assert_eq!(json, "\"user:1\"");
        assert_eq!(serde_json::from_str::<ModelKey>(&json).expect("parse"), key);
        assert!(serde_json::from_str::<ModelKey>("\"bad key\"").is_err());
    }
}
