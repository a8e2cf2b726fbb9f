//! The settings' values: what Dormouse remembers between runs ([`Settings`]), their ranges,
//! and how the memory choices map to the core's strategy.

use std::time::Duration;

use model_manager::Strategy;
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
/// Shortest on-battery idle timeout offered (seconds): the "1 min on battery" choice.
pub const MIN_BATTERY_TIMEOUT_SECS: u32 = 60;

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
    /// Unload models when the system says it is low on memory (on by default; under
    /// critical pressure pinned models go too).
    pub respond_to_memory_pressure: bool,
    /// Unload models (all but pinned ones) just before the computer sleeps (on by default).
    pub unload_before_sleep: bool,
    /// While on battery, unload unused models after this many seconds at most (pinned ones
    /// excepted); `null`: the power source changes nothing.
    pub battery_timeout_secs: Option<u32>,
}

impl Default for MemorySettings {
    fn default() -> Self {
        Self {
            strategy: StrategyChoice::Auto,
            custom_timeout_secs: 300,
            timer_scope: TimerScopeChoice::AllTogether,
            pinned: Vec::new(),
            memory_budget_mib: None,
            respond_to_memory_pressure: true,
            unload_before_sleep: true,
            battery_timeout_secs: None,
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
        if let Some(secs) = self.battery_timeout_secs {
            if !(MIN_BATTERY_TIMEOUT_SECS..=MAX_CUSTOM_TIMEOUT_SECS).contains(&secs) {
                return Err(CommandError::invalid_setting(format!(
                    "the on-battery timeout must be between 1 minute and {} hours (got {secs} seconds); leave it off to use the same timeout on battery",
                    MAX_CUSTOM_TIMEOUT_SECS / 3600
                )));
            }
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
