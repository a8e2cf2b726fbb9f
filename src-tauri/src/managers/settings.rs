//! [`SettingsStore`] owns the persisted [`Settings`]: loading them (a missing file gives the
//! defaults; a corrupt, unknown-version or out-of-range one is moved aside with a warning),
//! validating every change, and writing atomically (temp file, fsync, rename). Also the
//! `MODEL_INACTIVITY_TIMEOUT` / `MODEL_CHECK_INTERVAL` overrides ([`EnvOverrides`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use model_manager::{ManagerConfig, ModelOverride, Strategy, TimerScope};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::catalog::{self, Slot, Task};
use crate::error::{CommandError, CommandResult};
use crate::user_models::UserModelId;

/// The settings file's format version; a newer one is moved aside rather than misread.
pub const SCHEMA_VERSION: u32 = 1;
/// Shortest custom idle timeout offered (seconds).
pub const MIN_CUSTOM_TIMEOUT_SECS: u32 = 1;
/// Longest custom idle timeout offered (seconds): a day.
pub const MAX_CUSTOM_TIMEOUT_SECS: u32 = 24 * 3600;
/// Smallest memory budget accepted (MiB).
pub const MIN_BUDGET_MIB: u32 = 64;
/// Largest memory budget accepted (MiB): 1 TiB.
pub const MAX_BUDGET_MIB: u32 = 1 << 20;

/// The memory strategy the user picked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum StrategyChoice {
    /// Unload after 5 minutes without use.
    #[default]
    Auto,
    /// Keep models loaded until the user unloads them.
    AlwaysLoaded,
    /// Unload as soon as a request finishes.
    Immediate,
    /// Unload after `custom_timeout_secs` without use.
    Custom,
}

/// Whose activity keeps models warm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum TimerScopeChoice {
    /// Any use keeps all models warm; they unload together.
    #[default]
    AllTogether,
    /// Each model has its own idle clock.
    EachOnItsOwn,
}

/// Everything the user chooses about memory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(default)]
pub struct MemorySettings {
    /// When unused models are unloaded.
    pub strategy: StrategyChoice,
    /// The idle timeout of the custom strategy, in seconds.
    pub custom_timeout_secs: u32,
    /// Global or per-model idle clocks.
    pub timer_scope: TimerScopeChoice,
    /// Slots kept loaded whatever the strategy.
    pub pinned: Vec<Slot>,
    /// Upper bound on all loaded models, in MiB; `null` for none.
    pub memory_budget_mib: Option<u32>,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            strategy: StrategyChoice::Auto,
            custom_timeout_secs: 300,
            timer_scope: TimerScopeChoice::AllTogether,
            pinned: Vec::new(),
            memory_budget_mib: None,
        }
    }
}

impl MemorySettings {
    /// Checks every value is in range; the message names the setting.
    pub fn validate(&self) -> CommandResult<()> {
        if !(MIN_CUSTOM_TIMEOUT_SECS..=MAX_CUSTOM_TIMEOUT_SECS).contains(&self.custom_timeout_secs)
        {
            return Err(CommandError::invalid_setting(format!(
                "the custom timeout must be between {MIN_CUSTOM_TIMEOUT_SECS} second and {} hours (got {} seconds)",
                MAX_CUSTOM_TIMEOUT_SECS / 3600,
                self.custom_timeout_secs
            )));
        }
        if let Some(mib) = self.memory_budget_mib {
            if !(MIN_BUDGET_MIB..=MAX_BUDGET_MIB).contains(&mib) {
                return Err(CommandError::invalid_setting(format!(
                    "the memory budget must be between {MIN_BUDGET_MIB} MiB and 1 TiB (got {mib} MiB); leave it empty for no budget"
                )));
            }
        }
        Ok(())
    }

    /// The core's strategy for these settings.
    pub fn strategy(&self) -> Strategy {
        match self.strategy {
            StrategyChoice::Auto => Strategy::Auto,
            StrategyChoice::AlwaysLoaded => Strategy::AlwaysLoaded,
            StrategyChoice::Immediate => Strategy::Immediate,
            StrategyChoice::Custom => {
                Strategy::Custom(Duration::from_secs(u64::from(self.custom_timeout_secs)))
            }
        }
    }
}

/// The base model chosen for each task (e.g. the segmentation model size).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(default)]
pub struct ModelChoices {
    /// Catalog id of the speech-to-text model.
    pub transcription: String,
    /// Catalog id of the segmentation model.
    pub segmentation: String,
}

impl Default for ModelChoices {
    fn default() -> Self {
        Self {
            transcription: Task::Transcription.default_model().into(),
            segmentation: Task::Segmentation.default_model().into(),
        }
    }
}

impl ModelChoices {
    /// The choice for `task`.
    pub fn get(&self, task: Task) -> &str {
        match task {
            Task::Transcription => &self.transcription,
            Task::Segmentation => &self.segmentation,
        }
    }

    /// Sets the choice for `task`.
    pub fn set(&mut self, task: Task, id: &str) {
        match task {
            Task::Transcription => self.transcription = id.into(),
            Task::Segmentation => self.segmentation = id.into(),
        }
    }
}

/// The user model active for each task, if any (it wins over the base model).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(default)]
pub struct ActiveUserModels {
    /// For transcription.
    pub transcription: Option<UserModelId>,
    /// For segmentation.
    pub segmentation: Option<UserModelId>,
}

impl ActiveUserModels {
    /// The active user model of `task`.
    pub fn get(&self, task: Task) -> Option<&UserModelId> {
        match task {
            Task::Transcription => self.transcription.as_ref(),
            Task::Segmentation => self.segmentation.as_ref(),
        }
    }

    /// Sets (or clears) the active user model of `task`.
    pub fn set(&mut self, task: Task, id: Option<UserModelId>) {
        match task {
            Task::Transcription => self.transcription = id,
            Task::Segmentation => self.segmentation = id,
        }
    }
}

/// Everything Dormouse remembers between runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(default)]
pub struct Settings {
    /// Format version of the file.
    pub schema_version: u32,
    /// The memory strategy.
    pub memory: MemorySettings,
    /// Load the models used in the last session when the app starts.
    pub preload_on_startup: bool,
    /// Show each model's memory in the status badge.
    pub show_memory_usage: bool,
    /// The base model per task.
    pub models: ModelChoices,
    /// The user model per task, if one is active.
    pub active_user_models: ActiveUserModels,
    /// Slots used in the last session, most recent first (what preload loads).
    pub recently_used: Vec<Slot>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            memory: MemorySettings::default(),
            preload_on_startup: false,
            show_memory_usage: true,
            models: ModelChoices::default(),
            active_user_models: ActiveUserModels::default(),
            recently_used: Vec::new(),
        }
    }
}

impl Settings {
    /// Checks the whole file's values.
    pub fn validate(&self) -> CommandResult<()> {
        self.memory.validate()?;
        for task in Task::ALL {
            let id = self.models.get(task);
            match catalog::entry(id) {
                Some(entry) if entry.slot == task.slot() => {}
                _ => {
                    return Err(CommandError::invalid_setting(format!(
                        "{id:?} is not a {} model",
                        task.label()
                    )))
                }
            }
        }
        Ok(())
    }
}

/// Values taken from the environment at startup, shown in the UI as overriding the settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Type)]
pub struct EnvOverrides {
    /// `MODEL_INACTIVITY_TIMEOUT` in seconds (0: unload immediately), while it is in force
    /// (it stops being in force when the user picks a strategy in this session).
    pub inactivity_timeout_secs: Option<f64>,
    /// `MODEL_CHECK_INTERVAL` in seconds.
    pub check_interval_secs: Option<f64>,
    /// `MODEL_LOAD_TIMEOUT` in seconds: the longest a load may take before it fails.
    pub load_timeout_secs: Option<f64>,
    /// A malformed variable that was ignored, with why.
    pub error: Option<String>,
}

impl EnvOverrides {
    /// Reads the three variables through `lookup`; malformed values are reported, not applied.
    pub fn read(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let mut probe = ManagerConfig::default();
        match probe.apply_env_overrides(&lookup) {
            Ok(()) => Self {
                inactivity_timeout_secs: lookup("MODEL_INACTIVITY_TIMEOUT").map(|_| {
                    probe
                        .strategy
                        .idle_timeout()
                        .map_or(0.0, |d| d.as_secs_f64())
                }),
                check_interval_secs: lookup("MODEL_CHECK_INTERVAL")
                    .map(|_| probe.check_interval.as_secs_f64()),
                load_timeout_secs: lookup("MODEL_LOAD_TIMEOUT")
                    .map(|_| probe.load_timeout.as_secs_f64()),
                error: None,
            },
            Err(error) => Self {
                error: Some(format!("{error}; the stored settings are used instead")),
                ..Self::default()
            },
        }
    }

    /// The core's configuration: the settings, then these overrides on top.
    pub fn apply(&self, settings: &Settings) -> ManagerConfig {
        let memory = &settings.memory;
        let mut config = ManagerConfig {
            strategy: memory.strategy(),
            timer_scope: match memory.timer_scope {
                TimerScopeChoice::AllTogether => TimerScope::Global,
                TimerScopeChoice::EachOnItsOwn => TimerScope::PerModel,
            },
            memory_budget_bytes: memory.memory_budget_mib.map(|m| u64::from(m) << 20),
            ..ManagerConfig::default()
        };
        for slot in &memory.pinned {
            config.overrides.insert(
                slot.key(),
                ModelOverride {
                    pinned: true,
                    strategy: None,
                },
            );
        }
        if settings.preload_on_startup {
            let mut preload: Vec<Slot> = Vec::new();
            for slot in &settings.recently_used {
                let with_helper: &[Slot] = match slot {
                    Slot::Transcription => &[Slot::Transcription, Slot::Vad],
                    other => std::slice::from_ref(other),
                };
                for s in with_helper {
                    if !preload.contains(s) {
                        preload.push(*s);
                    }
                }
            }
            config.preload = preload.into_iter().map(Slot::key).collect();
        }
        if let Some(secs) = self.inactivity_timeout_secs {
            config.strategy = if secs == 0.0 {
                Strategy::Immediate
            } else {
                Strategy::Custom(Duration::from_secs_f64(secs))
            };
        }
        if let Some(secs) = self.check_interval_secs {
            config.check_interval = Duration::from_secs_f64(secs);
        }
        if let Some(secs) = self.load_timeout_secs {
            config.load_timeout = Duration::from_secs_f64(secs);
        }
        config
    }
}

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

    #[test]
    fn env_overrides_win_over_stored_strategy() {
        let settings = Settings::default();
        let env = EnvOverrides::read(|v| match v {
            "MODEL_INACTIVITY_TIMEOUT" => Some("3".into()),
            "MODEL_CHECK_INTERVAL" => Some("0.5".into()),
            _ => None,
        });
        assert_eq!(env.inactivity_timeout_secs, Some(3.0));
        let config = env.apply(&settings);
        assert_eq!(config.strategy, Strategy::Custom(Duration::from_secs(3)));
        assert_eq!(config.check_interval, Duration::from_millis(500));
        let bad = EnvOverrides::read(|v| (v == "MODEL_CHECK_INTERVAL").then(|| "soon".into()));
        assert!(bad
            .error
            .as_deref()
            .expect("reported")
            .contains("MODEL_CHECK_INTERVAL"));
        assert_eq!(
            bad.apply(&settings),
            EnvOverrides::default().apply(&settings)
        );
    }

    #[test]
    fn preload_follows_recent_use_and_brings_the_vad_along() {
        let settings = Settings {
            preload_on_startup: true,
            recently_used: vec![Slot::Transcription],
            ..Settings::default()
        };
        let config = EnvOverrides::default().apply(&settings);
        assert_eq!(
            config.preload,
            vec![Slot::Transcription.key(), Slot::Vad.key()]
        );
        let off = Settings {
            preload_on_startup: false,
            ..settings
        };
        assert!(EnvOverrides::default().apply(&off).preload.is_empty());
    }
}
