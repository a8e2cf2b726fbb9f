//! [`SettingsStore`]: the settings file and the settings in force. Loading (a missing file
//! gives the defaults; a corrupt, unknown-version or out-of-range one is moved aside with a
//! warning), validating every change, and writing atomically (temp file, fsync, rename).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use specta::Type;

use super::values::{Settings, SCHEMA_VERSION};
use crate::error::{CommandError, CommandResult};

/// A problem met while loading the settings, shown once in the UI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SettingsWarning {
    /// What happened and what was done.
    pub message: String,
    /// Where the unreadable file was moved, if it was.
    pub moved_to: Option<String>,
}

/// The settings file and the settings in force. One lock; never held across I/O of others.
pub struct SettingsStore {
    path: PathBuf,
    current: Mutex<Settings>,
    /// How many copies [`SettingsStore::get`] handed out (a diagnostic for request paths).
    copies: AtomicU64,
}

impl SettingsStore {
    /// Opens `path`: missing gives the defaults; unreadable, corrupt, a newer schema or
    /// out-of-range values move the file aside (`settings.json.corrupt-<unix seconds>`) and
    /// give the defaults with a warning. Never fails.
    pub fn open(path: PathBuf) -> (Self, Option<SettingsWarning>) {
        // Temp files of writes a crash interrupted (the file itself is always whole).
        if let Some(dir) = path.parent() {
            crate::debris::sweep(dir, |name| {
                name.starts_with(".settings") && name.ends_with(".tmp")
            });
        }
        let (settings, warning) = match fs::read(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Settings::default(), None),
            Err(e) => (
                Settings::default(),
                Some(SettingsWarning {
                    message: format!(
                        "Your settings could not be read ({e}); the defaults are used this time."
                    ),
                    moved_to: None,
                }),
            ),
            Ok(bytes) => match parse(&bytes) {
                Ok(settings) => (settings, None),
                Err(reason) => {
                    let moved = move_aside(&path);
                    tracing::warn!(path = %path.display(), %reason, moved_to = ?moved, "settings file unusable; defaults used");
                    (
                        Settings::default(),
                        Some(SettingsWarning {
                            message: format!(
                                "Your settings file was unusable ({reason}). Dormouse started with the default settings{}.",
                                moved.as_ref().map_or(String::new(), |p| format!(
                                    " and kept the old file as {}",
                                    p.display()
                                ))
                            ),
                            moved_to: moved.map(|p| p.display().to_string()),
                        }),
                    )
                }
            },
        };
        (
            Self {
                path,
                current: Mutex::new(settings),
                copies: AtomicU64::new(0),
            },
            warning,
        )
    }

    /// The settings in force.
    pub fn get(&self) -> Settings {
        self.copies.fetch_add(1, Ordering::Relaxed);
        self.current.lock().clone()
    }

    /// Answers `question` from the settings in force without copying them.
    pub fn read<T>(&self, question: impl FnOnce(&Settings) -> T) -> T {
        question(&self.current.lock())
    }

    /// How many copies of the settings [`Self::get`] has handed out since the start.
    pub fn copies_made(&self) -> u64 {
        self.copies.load(Ordering::Relaxed)
    }

    /// Applies `change` to a copy, validates it, writes it atomically, and only then makes it
    /// current. Returns the new settings; on any error nothing changes.
    pub fn update(&self, change: impl FnOnce(&mut Settings)) -> CommandResult<Settings> {
        let mut current = self.current.lock();
        let mut next = current.clone();
        change(&mut next);
        next.schema_version = SCHEMA_VERSION;
        next.validate()?;
        if next != *current {
            write_atomically(&self.path, &next).map_err(|e| {
                CommandError::internal(format!(
                    "could not save the settings to {}: {e}",
                    self.path.display()
                ))
            })?;
            *current = next.clone();
        }
        Ok(next)
    }

    /// [`Self::update`], and when the file cannot be written, the change is kept for this
    /// session anyway (a fallback the app must not refuse to start over). Returns the error
    /// saving met, if any.
    pub fn update_or_keep_unsaved(&self, change: impl Fn(&mut Settings)) -> Option<CommandError> {
        match self.update(&change) {
            Ok(_) => None,
            Err(error) => {
                let mut current = self.current.lock();
                change(&mut current);
                tracing::warn!(%error, "settings change kept for this session only");
                Some(error)
            }
        }
    }

    /// Where the settings live.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads a settings file's bytes: valid JSON, a schema this version reads, values in range.
/// The error says what is wrong, for the warning shown when the file is moved aside.
pub fn parse(bytes: &[u8]) -> Result<Settings, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let version = value
        .get("schema_version")
        .and_then(serde_json::Value::as_u64)
        .ok_or("it has no schema version")?;
    if version > u64::from(SCHEMA_VERSION) {
        return Err(format!(
            "it was written by a newer Dormouse (schema {version}, this one reads {SCHEMA_VERSION})"
        ));
    }
    let settings: Settings =
        serde_json::from_value(value).map_err(|e| format!("unexpected content: {e}"))?;
    settings.validate().map_err(|e| e.message().to_owned())?;
    Ok(settings)
}

fn move_aside(path: &Path) -> Option<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{secs}"));
    let aside = PathBuf::from(aside);
    fs::rename(path, &aside).ok().map(|()| aside)
}

/// Writes `settings` atomically (through the app's atomic-file helper): a crash leaves either the old
/// file or the new one, never half of one.
pub fn write_atomically(path: &Path, settings: &Settings) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let json = serde_json::to_vec_pretty(settings).map_err(std::io::Error::other)?;
    crate::atomic_file::write_bytes(path, &json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managers::settings::{MemorySettings, StrategyChoice};
    use model_manager::Strategy;

    #[test]
    fn a_change_that_cannot_be_saved_is_kept_for_the_session() {
        let dir = tempfile::tempdir().expect("temp");
        let folder = dir.path().join("config");
        let (store, _) = SettingsStore::open(folder.join("settings.json"));
        // The settings folder becomes a file: nothing can be written there any more.
        fs::write(&folder, b"in the way").expect("block");
        let error = store
            .update_or_keep_unsaved(|s| s.show_memory_usage = false)
            .expect("saving failed");
        assert!(error.message().contains("could not save"), "{error:?}");
        assert!(!store.get().show_memory_usage, "kept in memory");
        assert!(store.update(|s| s.show_memory_usage = true).is_err());
    }

    fn store_in(dir: &Path) -> (SettingsStore, Option<SettingsWarning>) {
        SettingsStore::open(dir.join("settings.json"))
    }

    #[test]
    fn missing_file_gives_defaults_without_warning() {
        let dir = tempfile::tempdir().expect("temp");
        let (store, warning) = store_in(dir.path());
        assert_eq!(store.get(), Settings::default());
        assert!(warning.is_none());
    }

    #[test]
    fn the_custom_timeout_starts_at_five_minutes_as_auto_does() {
        let fresh = Settings::default().memory;
        assert_eq!(fresh.custom_timeout_secs, 300);
        let custom = MemorySettings {
            strategy: StrategyChoice::Custom,
            ..fresh
        };
        assert_eq!(
            custom.strategy(),
            Strategy::Custom(Strategy::AUTO_TIMEOUT),
            "choosing Custom without touching the timeout behaves like Auto"
        );
    }

    #[test]
    fn updates_persist_and_reload() {
        let dir = tempfile::tempdir().expect("temp");
        let (store, _) = store_in(dir.path());
        store
            .update(|s| {
                s.memory.strategy = StrategyChoice::Custom;
                s.memory.custom_timeout_secs = 90;
                s.show_memory_usage = false;
            })
            .expect("valid");
        let (again, warning) = store_in(dir.path());
        assert!(warning.is_none());
        assert_eq!(again.get().memory.custom_timeout_secs, 90);
        assert!(!again.get().show_memory_usage);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    }

    #[test]
    fn invalid_updates_change_nothing() {
        let dir = tempfile::tempdir().expect("temp");
        let (store, _) = store_in(dir.path());
        let err = store
            .update(|s| s.memory.custom_timeout_secs = 0)
            .expect_err("zero timeout");
        assert!(
            matches!(err, CommandError::InvalidSetting { .. }),
            "{err:?}"
        );
        assert_eq!(store.get(), Settings::default());
        assert!(!dir.path().join("settings.json").exists());
    }

    #[test]
    fn corrupt_newer_or_out_of_range_files_are_moved_aside() {
        for content in [
            "{ not json",
            "{\"schema_version\": 99}",
            "{\"schema_version\": 1, \"memory\": {\"custom_timeout_secs\": 0}}",
            "[1,2,3]",
        ] {
            let dir = tempfile::tempdir().expect("temp");
            fs::write(dir.path().join("settings.json"), content).expect("write");
            let (store, warning) = store_in(dir.path());
            let warning = warning.expect("a warning");
            assert_eq!(store.get(), Settings::default(), "{content}");
            let moved = PathBuf::from(warning.moved_to.expect("moved"));
            assert_eq!(fs::read_to_string(moved).expect("kept"), content);
            assert!(!dir.path().join("settings.json").exists());
        }
    }
}
