//! [`AppPaths`]: where Dormouse keeps its settings, models and logs. The models folder is
//! `<app data>/models` unless `DORMOUSE_MODELS_DIR` names another.

use std::path::PathBuf;

/// The folders the app uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppPaths {
    /// Holds `settings.json`.
    pub config_dir: PathBuf,
    /// Holds the base models, `user/` and `onnxruntime/`.
    pub models_dir: PathBuf,
    /// Holds the rotating log files.
    pub log_dir: PathBuf,
}

impl AppPaths {
    /// The settings file.
    pub fn settings_file(&self) -> PathBuf {
        self.config_dir.join("settings.json")
    }

    /// The user's training examples (image + mask pairs kept for training custom models).
    pub fn training_set_dir(&self) -> PathBuf {
        self.models_dir.join("training-set")
    }

    /// Where the ONNX Runtime library is installed for the app.
    pub fn onnxruntime_dir(&self) -> PathBuf {
        self.models_dir.join("onnxruntime")
    }

    /// Resolves the folders from the platform's app folders and the environment
    /// (`DORMOUSE_MODELS_DIR` overrides the models folder).
    pub fn resolve(
        config_dir: PathBuf,
        data_dir: PathBuf,
        log_dir: PathBuf,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let models_dir = lookup("DORMOUSE_MODELS_DIR")
            .filter(|v| !v.trim().is_empty())
            .map_or_else(|| data_dir.join("models"), PathBuf::from);
        Self {
            config_dir,
            models_dir,
            log_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_dir_follows_the_environment() {
        let resolve = |env: Option<&str>| {
            AppPaths::resolve("/c".into(), "/d".into(), "/l".into(), |v| {
                (v == "DORMOUSE_MODELS_DIR")
                    .then(|| env.map(String::from))
                    .flatten()
            })
        };
        assert_eq!(resolve(None).models_dir, PathBuf::from("/d/models"));
        assert_eq!(resolve(Some("/m")).models_dir, PathBuf::from("/m"));
        assert_eq!(resolve(Some(" ")).models_dir, PathBuf::from("/d/models"));
        assert_eq!(
            resolve(None).settings_file(),
            PathBuf::from("/c/settings.json")
        );
    }
}
