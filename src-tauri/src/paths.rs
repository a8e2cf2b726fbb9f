//! [`AppPaths`]: where Dormouse keeps its settings, models and logs, and where its package
//! put the files it ships. The models folder is `<app data>/models` unless
//! `DORMOUSE_MODELS_DIR` names another. Every folder comes from Tauri's path resolver.

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
    /// The package's resources (ONNX Runtime in `onnxruntime/`, `silero_vad.onnx`), read
    /// only; `None` when the app runs from a build folder rather than an installed package.
    pub bundled_dir: Option<PathBuf>,
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

    /// The folders to find ONNX Runtime in, most preferred first: the copy the package
    /// ships, then the models folder's.
    pub fn onnxruntime_dirs(&self) -> Vec<PathBuf> {
        let bundled = self.bundled_dir.iter().map(|d| d.join("onnxruntime"));
        bundled.chain([self.onnxruntime_dir()]).collect()
    }

    /// A catalog model's file: the user's copy in the models folder, else the copy the
    /// package ships (Silero VAD), else where the user's copy would go.
    pub fn model_file(&self, file_name: &str) -> PathBuf {
        let own = self.models_dir.join(file_name);
        if own.exists() {
            return own;
        }
        self.bundled_file(file_name).unwrap_or(own)
    }

    /// `file_name` among the package's resources, when the package ships it.
    pub fn bundled_file(&self, file_name: &str) -> Option<PathBuf> {
        self.bundled_dir
            .as_ref()
            .map(|d| d.join(file_name))
            .filter(|p| p.is_file())
    }

    /// Resolves the folders from the platform's app folders and the environment
    /// (`DORMOUSE_MODELS_DIR` overrides the models folder).
    pub fn resolve(
        config_dir: PathBuf,
        data_dir: PathBuf,
        log_dir: PathBuf,
        bundled_dir: Option<PathBuf>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let models_dir = lookup("DORMOUSE_MODELS_DIR")
            .filter(|v| !v.trim().is_empty())
            .map_or_else(|| data_dir.join("models"), PathBuf::from);
        Self {
            config_dir,
            models_dir,
            log_dir,
            bundled_dir,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_dir_follows_the_environment() {
        let resolve = |env: Option<&str>| {
            AppPaths::resolve("/c".into(), "/d".into(), "/l".into(), None, |v| {
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

    #[test]
    fn a_model_the_package_ships_is_found_there_unless_the_user_has_a_copy() {
        let root = std::env::temp_dir().join(format!("dormouse-paths-{}", std::process::id()));
        let bundled = root.join("resources");
        std::fs::create_dir_all(&bundled).expect("mkdir");
        std::fs::write(bundled.join("silero_vad.onnx"), b"vad").expect("write");
        let paths = AppPaths::resolve(
            root.join("c"),
            root.join("d"),
            root.join("l"),
            Some(bundled.clone()),
            |_| None,
        );
        assert_eq!(
            paths.model_file("silero_vad.onnx"),
            bundled.join("silero_vad.onnx")
        );
        assert_eq!(
            paths.model_file("ggml-base.bin"),
            root.join("d/models/ggml-base.bin")
        );
        assert_eq!(
            paths.onnxruntime_dirs(),
            [
                bundled.join("onnxruntime"),
                root.join("d/models/onnxruntime")
            ]
        );
        std::fs::create_dir_all(&paths.models_dir).expect("mkdir");
        std::fs::write(paths.models_dir.join("silero_vad.onnx"), b"mine").expect("write");
        assert_eq!(
            paths.model_file("silero_vad.onnx"),
            paths.models_dir.join("silero_vad.onnx")
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
