//! [`EnvOverrides`]: the `MODEL_INACTIVITY_TIMEOUT`, `MODEL_CHECK_INTERVAL` and
//! `MODEL_LOAD_TIMEOUT` variables read at start-up, and the core's configuration built from the
//! settings with them on top.

use std::time::Duration;

use model_manager::{ManagerConfig, ModelOverride, Strategy, TimerScope};
use serde::{Deserialize, Serialize};
use specta::Type;

use super::values::{Settings, TimerScopeChoice};
use crate::catalog::Slot;

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
        config.pressure.enabled = memory.respond_to_memory_pressure;
        config.battery_idle_timeout = memory
            .battery_timeout_secs
            .map(|secs| std::time::Duration::from_secs(u64::from(secs)));
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

#[cfg(test)]
mod tests {
    use super::*;

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
