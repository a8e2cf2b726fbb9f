//! [`SettingsManager`] owns the user's settings: the store on disk, the environment overrides,
//! the quiet notices, the views the UI reads, and keeping the lifecycle core's configuration
//! equal to what is saved. Every change goes through one writer, so two changes at once can
//! never leave the core configured differently from `settings.json`.
//!
//! Lock order: `writer`, then the store's own lock (inside each store call), then the core's
//! (inside `update_config`); `env` and `notices` are leaf locks.

mod env;
mod store;
mod values;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use model_manager::ModelManager;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use specta::Type;

pub use self::env::EnvOverrides;
pub use self::store::{parse, write_atomically, SettingsStore, SettingsWarning};
pub use self::values::*;
use crate::catalog::Task;
use crate::error::CommandResult;

/// A message for the user that is shown once, quietly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The settings file was unusable and defaults were used.
    SettingsReset,
    /// The active user model's file was gone; the base model is used again.
    UserModelMissing,
    /// The active user model's file failed the check an import makes; the base model is
    /// used again.
    UserModelUnusable,
    /// An environment override was malformed and ignored.
    EnvIgnored,
}

/// A quiet notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Notice {
    /// What it is about.
    pub kind: NoticeKind,
    /// What to show.
    pub message: String,
}

/// The settings as the UI shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct SettingsView {
    /// The stored settings.
    pub settings: Settings,
    /// Environment variables overriding them in this session.
    pub env_overrides: EnvOverrides,
    /// Notices from startup (corrupt settings, vanished user model, bad environment).
    pub notices: Vec<Notice>,
    /// The settings file.
    pub settings_path: String,
    /// The models folder.
    pub models_dir: String,
    /// Which of the system's signals this app hears on this computer (the settings that
    /// depend on one say so when it is missing).
    pub signals: SystemSignals,
}

/// The system signals the app listens to, each `true` when its source started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SystemSignals {
    /// The system's memory-pressure signal.
    pub memory_pressure: bool,
    /// The system's "about to sleep" and "woke up" signals.
    pub sleep: bool,
    /// Whether the computer runs on mains or battery.
    pub power_source: bool,
}

/// The UI-only preferences `update_settings` changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SettingsPatch {
    /// Load the models used last time when the app starts.
    pub preload_on_startup: Option<bool>,
    /// Show memory figures in the badge.
    pub show_memory_usage: Option<bool>,
}

type SettingsHook = Box<dyn Fn(&SettingsView) + Send + Sync>;

/// Owner of the settings; see the module docs.
pub struct SettingsManager {
    core: Arc<ModelManager>,
    store: SettingsStore,
    env: Mutex<EnvOverrides>,
    notices: Mutex<Vec<Notice>>,
    /// Held through every change, from reading the current settings to the core and the file
    /// agreeing again.
    writer: Mutex<()>,
    models_dir: PathBuf,
    on_change: OnceLock<SettingsHook>,
    signals: Mutex<SystemSignals>,
}

impl SettingsManager {
    /// The owner of `store`, whose configuration (with `env` on top) `core` was built with.
    pub fn new(
        core: Arc<ModelManager>,
        store: SettingsStore,
        env: EnvOverrides,
        notices: Vec<Notice>,
        models_dir: PathBuf,
    ) -> Self {
        Self {
            core,
            store,
            env: Mutex::new(env),
            notices: Mutex::new(notices),
            writer: Mutex::new(()),
            models_dir,
            on_change: OnceLock::new(),
            signals: Mutex::new(SystemSignals::default()),
        }
    }

    /// Records which system signals started (once, at start-up).
    pub fn set_signals(&self, signals: SystemSignals) {
        *self.signals.lock() = signals;
    }

    /// Calls `hook` with the new view whenever the settings change.
    pub fn on_settings_changed(&self, hook: impl Fn(&SettingsView) + Send + Sync + 'static) {
        let _ = self.on_change.set(Box::new(hook));
    }

    /// A copy of the settings in force.
    pub fn get(&self) -> Settings {
        self.store.get()
    }

    /// Answers `question` from the settings in force without copying them (for request paths).
    pub fn read<T>(&self, question: impl FnOnce(&Settings) -> T) -> T {
        self.store.read(question)
    }

    /// The store (for tests and diagnostics).
    pub fn store(&self) -> &SettingsStore {
        &self.store
    }

    /// Applies `change` and saves it (the model choices, the active user models, the recently
    /// used list); the caller tells the UI with [`Self::notify_changed`] once the core follows.
    /// The memory settings go through [`Self::update_model_config`].
    pub fn update(&self, change: impl FnOnce(&mut Settings)) -> CommandResult<Settings> {
        let _writer = self.writer.lock();
        self.store.update(change)
    }

    /// Applies new memory settings at once and saves them; the user's choice replaces an
    /// environment override of the idle timeout for the rest of the session. The core and the
    /// file agree afterwards, whatever else changes at the same time.
    pub fn update_model_config(&self, memory: MemorySettings) -> CommandResult<SettingsView> {
        memory.validate()?;
        let writer = self.writer.lock();
        let mut env = self.env.lock().clone();
        env.inactivity_timeout_secs = None;
        let mut next = self.store.get();
        next.memory = memory.clone();
        self.core.update_config(env.apply(&next))?;
        if let Err(error) = self.store.update(|s| s.memory = memory) {
            // Keep the core and the file in agreement.
            let _ = self.core.update_config(self.config_in_force());
            return Err(error);
        }
        *self.env.lock() = env;
        drop(writer);
        self.notify_changed();
        Ok(self.view())
    }

    /// Changes the UI preferences.
    pub fn update_settings(&self, patch: SettingsPatch) -> CommandResult<SettingsView> {
        let writer = self.writer.lock();
        self.store.update(|s| {
            if let Some(v) = patch.preload_on_startup {
                s.preload_on_startup = v;
            }
            if let Some(v) = patch.show_memory_usage {
                s.show_memory_usage = v;
            }
        })?;
        // The preload list lives in the core's config: keep it current for the next start.
        let _ = self.core.update_config(self.config_in_force());
        drop(writer);
        self.notify_changed();
        Ok(self.view())
    }

    /// Makes `task` use its base model again because of `notice` (its user model is gone or
    /// unusable), as [`fall_back_to_base`] does, and keeps the notice for the UI; the caller
    /// tells the UI with [`Self::notify_changed`] once the core follows.
    pub fn fall_back_to_base(&self, task: Task, notice: Notice) {
        let notice = {
            let _writer = self.writer.lock();
            fall_back_to_base(&self.store, task, notice)
        };
        self.notices.lock().push(notice);
    }

    /// Adds a quiet notice (shown in the settings view).
    pub fn add_notice(&self, kind: NoticeKind, message: String) {
        self.notices.lock().push(Notice { kind, message });
    }

    /// The settings with the environment overrides and notices.
    pub fn view(&self) -> SettingsView {
        SettingsView {
            settings: self.store.get(),
            env_overrides: self.env.lock().clone(),
            notices: self.notices.lock().clone(),
            settings_path: self.store.path().display().to_string(),
            models_dir: self.models_dir.display().to_string(),
            signals: *self.signals.lock(),
        }
    }

    /// Tells the UI the settings changed.
    pub fn notify_changed(&self) {
        if let Some(hook) = self.on_change.get() {
            hook(&self.view());
        }
    }

    /// The core's configuration for the saved settings and the overrides in force.
    fn config_in_force(&self) -> model_manager::ManagerConfig {
        let env = self.env.lock().clone();
        self.store.read(|s| env.apply(s))
    }
}

/// Makes `task` use its base model again because of `notice`, saving that if the settings
/// file can be written and keeping it for this session if not (never an error: the app must
/// start and serve requests either way). Returns the notice, with the saving problem added.
/// At start-up, before the core exists, it is called on the store directly.
pub fn fall_back_to_base(settings: &SettingsStore, task: Task, mut notice: Notice) -> Notice {
    tracing::warn!(task = task.label(), reason = %notice.message, "active user model unusable; using the base model");
    if let Some(error) = settings.update_or_keep_unsaved(|s| s.active_user_models.set(task, None)) {
        notice.message.push_str(&format!(
            " This could not be saved ({}), so it applies until Dormouse quits.",
            error.message()
        ));
    }
    notice
}
