//! [`UserModelId`]: the id of a user model, a closed alphabet that can never name a path
//! outside the models folder.

use serde::{Deserialize, Serialize};
use specta::Type;

use crate::error::{CommandError, CommandResult};

/// Longest user model id.
const MAX_ID_LEN: usize = 64;

/// The id of a user model: 1–64 of `a-z 0-9 _ -`, starting with a letter or digit. Nothing
/// else is accepted, so an id never names a path outside the models folder.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Type)]
#[serde(try_from = "String", into = "String")]
#[specta(transparent)]
pub struct UserModelId(String);

impl UserModelId {
    /// Validates `raw`.
    pub fn new(raw: &str) -> CommandResult<Self> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_ID_LEN
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
            && !raw.starts_with(['-', '_']);
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(CommandError::unknown_model(
                raw,
                format!("{raw:?} is not a valid user model id (use 1-64 of a-z, 0-9, '-' and '_')"),
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The model id shown in the status (`user:<id>`).
    pub fn model_id(&self) -> String {
        format!("user:{}", self.0)
    }
}

impl TryFrom<String> for UserModelId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value).map_err(|e| e.message().to_owned())
    }
}

impl From<UserModelId> for String {
    fn from(id: UserModelId) -> Self {
        id.0
    }
}
