//! [`CommandError`]: every way a command can fail, as a typed enum the front end can show
//! (each variant carries a readable `message`), and the conversions from the layers below.

use engines::EngineError;
use model_manager::ManagerError;
use serde::Serialize;
use specta::Type;

/// A command's failure, sent to the front end as `{ kind, message, ... }`.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize, Type, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CommandError {
    /// A file the user named does not exist or cannot be read.
    #[error("{message}")]
    FileNotFound {
        /// The path as given.
        path: String,
        /// What to show.
        message: String,
    },
    /// The audio, image, prompt or option is unusable (empty, corrupt, out of range).
    #[error("{message}")]
    InvalidInput {
        /// What to show.
        message: String,
    },
    /// A weights file is not a model Dormouse can use (format, size, architecture).
    #[error("{message}")]
    InvalidModel {
        /// What to show.
        message: String,
    },
    /// The model the task needs is not in the models folder.
    #[error("{message}")]
    ModelNotInstalled {
        /// Catalog id of the missing model.
        model_id: String,
        /// Where it is expected.
        expected_path: String,
        /// What to show.
        message: String,
    },
    /// No model, task or user model of that id exists.
    #[error("{message}")]
    UnknownModel {
        /// The id as given.
        id: String,
        /// What to show.
        message: String,
    },
    /// A training set cannot be used (too few pairs, sizes that differ, an empty mask...);
    /// nothing was trained.
    #[error("{message}")]
    InvalidDataset {
        /// What to show.
        message: String,
    },
    /// A setting is out of range; nothing was changed.
    #[error("{message}")]
    InvalidSetting {
        /// What to show.
        message: String,
    },
    /// Loading the model failed (the error is also kept in its status).
    #[error("{message}")]
    LoadFailed {
        /// The slot.
        key: String,
        /// What to show.
        message: String,
    },
    /// The model's load was cancelled (unloaded or replaced while loading).
    #[error("{message}")]
    Cancelled {
        /// What to show.
        message: String,
    },
    /// The memory budget leaves no room for the model.
    #[error("{message}")]
    MemoryBudgetExceeded {
        /// What to show.
        message: String,
    },
    /// The model is in use and cannot be changed or deleted now.
    #[error("{message}")]
    InUse {
        /// What to show.
        message: String,
    },
    /// A download could not start or failed.
    #[error("{message}")]
    DownloadFailed {
        /// The model.
        model_id: String,
        /// What to show.
        message: String,
    },
    /// The app is quitting.
    #[error("{message}")]
    ShuttingDown {
        /// What to show.
        message: String,
    },
    /// Inference or the file system failed unexpectedly.
    #[error("{message}")]
    Internal {
        /// What to show.
        message: String,
    },
}

/// [`CommandError::FileNotFound`] unless `path` is a file the user can hand to a command.
pub fn require_file(path: &std::path::Path) -> CommandResult<()> {
    if path.is_file() {
        return Ok(());
    }
    Err(CommandError::FileNotFound {
        path: path.display().to_string(),
        message: format!("{} does not exist or is not a file", path.display()),
    })
}

impl CommandError {
    /// An [`CommandError::InvalidInput`].
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
        }
    }

    /// An [`CommandError::InvalidSetting`].
    pub fn invalid_setting(message: impl Into<String>) -> Self {
        Self::InvalidSetting {
            message: message.into(),
        }
    }

    /// An [`CommandError::Internal`].
    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::Internal {
            message: message.to_string(),
        }
    }

    /// An [`CommandError::UnknownModel`].
    pub fn unknown_model(id: impl Into<String>, message: impl Into<String>) -> Self {
        Self::UnknownModel {
            id: id.into(),
            message: message.into(),
        }
    }

    /// The text shown to the user.
    pub fn message(&self) -> &str {
        match self {
            Self::FileNotFound { message, .. }
            | Self::InvalidInput { message }
            | Self::InvalidModel { message }
            | Self::ModelNotInstalled { message, .. }
            | Self::UnknownModel { message, .. }
            | Self::InvalidSetting { message }
            | Self::InvalidDataset { message }
            | Self::LoadFailed { message, .. }
            | Self::Cancelled { message }
            | Self::MemoryBudgetExceeded { message }
            | Self::InUse { message }
            | Self::DownloadFailed { message, .. }
            | Self::ShuttingDown { message }
            | Self::Internal { message } => message,
        }
    }
}

impl From<EngineError> for CommandError {
    fn from(error: EngineError) -> Self {
        let message = error.to_string();
        match error {
            EngineError::Io { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
                Self::FileNotFound {
                    path: path.display().to_string(),
                    message: format!("{} does not exist", path.display()),
                }
            }
            EngineError::Io { path, .. } => Self::FileNotFound {
                path: path.display().to_string(),
                message,
            },
            EngineError::Empty(_)
            | EngineError::Undecodable { .. }
            | EngineError::TooLarge { .. }
            | EngineError::InvalidRequest(_) => Self::InvalidInput { message },
            EngineError::InvalidWeights { .. } => Self::InvalidModel { message },
            EngineError::InvalidDataset(_) => Self::InvalidDataset { message },
            EngineError::Cancelled => Self::Cancelled {
                message: "cancelled; nothing was changed".into(),
            },
            EngineError::Inference(_) => Self::Internal { message },
        }
    }
}

impl From<ManagerError> for CommandError {
    fn from(error: ManagerError) -> Self {
        let message = error.to_string();
        match error {
            ManagerError::Load { key, .. } => Self::LoadFailed {
                key: key.to_string(),
                message,
            },
            ManagerError::LoadCancelled(_) => Self::Cancelled { message },
            ManagerError::MemoryBudgetExceeded { .. } => Self::MemoryBudgetExceeded { message },
            ManagerError::InvalidConfig(_) => Self::InvalidSetting { message },
            ManagerError::ShuttingDown => Self::ShuttingDown { message },
            ManagerError::InUse { .. } => Self::InUse { message },
            ManagerError::InvalidKey(id) => Self::unknown_model(id, message),
            ManagerError::UnknownModel(key) => Self::unknown_model(key.to_string(), message),
            _ => Self::Internal { message },
        }
    }
}

/// What commands return.
pub type CommandResult<T> = Result<T, CommandError>;
