//! The user's memory strategy: [`ManagerConfig`] with its [`Strategy`], [`TimerScope`],
//! per-model [`ModelOverride`]s, preload list, memory budget, check interval, answer to
//! memory pressure ([`PressurePolicy`]) and on-battery timeout, plus its
//! validation and the `MODEL_INACTIVITY_TIMEOUT` / `MODEL_CHECK_INTERVAL` overrides.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ManagerError;
use crate::key::ModelKey;

/// When an unused model is unloaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Unload after [`Strategy::AUTO_TIMEOUT`] without use.
    #[default]
    Auto,
    /// Never unload on idle (only on demand, for memory, or at shutdown).
    AlwaysLoaded,
    /// Unload as soon as the last lease ends.
    Immediate,
    /// Unload after this long without use (serialised in milliseconds).
    Custom(#[serde(with = "millis")] Duration),
}

impl Strategy {
    /// The idle timeout of [`Strategy::Auto`].
    pub const AUTO_TIMEOUT: Duration = Duration::from_secs(5 * 60);
    /// Shortest [`Strategy::Custom`] timeout accepted (use [`Strategy::Immediate`] for zero).
    pub const MIN_CUSTOM: Duration = Duration::from_secs(1);
    /// Longest [`Strategy::Custom`] timeout accepted.
    pub const MAX_CUSTOM: Duration = Duration::from_secs(30 * 24 * 3600);

    /// How long a model may sit unused before it is unloaded; `None` for never.
    pub fn idle_timeout(self) -> Option<Duration> {
        match self {
            Strategy::Auto => Some(Self::AUTO_TIMEOUT),
            Strategy::AlwaysLoaded => None,
            Strategy::Immediate => Some(Duration::ZERO),
            Strategy::Custom(timeout) => Some(timeout),
        }
    }
}

/// Whose activity keeps a model warm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerScope {
    /// Any model's activity keeps every model warm; on timeout they all unload together.
    #[default]
    Global,
    /// Each model has its own idle clock.
    PerModel,
}

/// Per-model exceptions to the global strategy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelOverride {
    /// Keep this model loaded: never unloaded on idle or to make room (only on demand or at shutdown).
    pub pinned: bool,
    /// This model's own strategy instead of the global one.
    pub strategy: Option<Strategy>,
}

/// Everything the user can choose about memory. The user's choice always wins.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ManagerConfig {
    /// Default strategy for every model.
    pub strategy: Strategy,
    /// Global or per-model idle clocks.
    pub timer_scope: TimerScope,
    /// Per-model pin and strategy overrides.
    pub overrides: BTreeMap<ModelKey, ModelOverride>,
    /// Models loaded in the background when the manager starts (e.g. the recently used ones).
    pub preload: Vec<ModelKey>,
    /// Upper bound on the bytes of all loaded models; idle ones are evicted (least recently
    /// used first) to make room, and a load that cannot fit fails. `None`: no budget.
    pub memory_budget_bytes: Option<u64>,
    /// Longest the idle checker sleeps while any model has a deadline (serialised in milliseconds).
    #[serde(with = "millis")]
    pub check_interval: Duration,
    /// Longest a load may take (serialised in milliseconds). A load still running then fails
    /// with a clear error, its cancel token is set, and whatever it returns later is dropped
    /// at once, so a hung engine never holds a slot or its memory for good.
    #[serde(with = "millis")]
    pub load_timeout: Duration,
    /// How the system's memory-pressure signal is answered.
    pub pressure: PressurePolicy,
    /// While the machine runs on battery, an unused model unloads after at most this long,
    /// whatever its strategy says (pinned models excepted; the immediate strategy stays
    /// immediate). `None`: the power source changes nothing (serialised in milliseconds).
    #[serde(with = "millis_opt")]
    pub battery_idle_timeout: Option<Duration>,
}

/// How the core answers the system's memory pressure
/// ([`crate::ModelManager::report_memory_pressure`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PressurePolicy {
    /// Answer it at all (the user's setting; off: pressure changes nothing).
    pub enabled: bool,
    /// How long pressure must last before anything is unloaded, and how long the system
    /// must be back to normal before an episode ends (serialised in milliseconds). While
    /// pressure lasts, one step (one model on warn, every model on critical) is taken per
    /// sustain window, so a flapping signal cannot unload in bursts.
    #[serde(with = "millis")]
    pub sustain: Duration,
    /// Shortest time between two pressure unloads of the same model (serialised in
    /// milliseconds): a model the user loads again is not evicted again before it has
    /// passed. At least `sustain`.
    #[serde(with = "millis")]
    pub cooldown: Duration,
}

impl Default for PressurePolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            sustain: Self::DEFAULT_SUSTAIN,
            cooldown: Self::DEFAULT_COOLDOWN,
        }
    }
}

impl PressurePolicy {
    /// Default sustain window.
    pub const DEFAULT_SUSTAIN: Duration = Duration::from_secs(5);
    /// Default per-model cooldown.
    pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(30);
    /// Shortest sustain window accepted.
    pub const MIN_SUSTAIN: Duration = Duration::from_millis(1);
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::Auto,
            timer_scope: TimerScope::Global,
            overrides: BTreeMap::new(),
            preload: Vec::new(),
            memory_budget_bytes: None,
            check_interval: Self::DEFAULT_CHECK_INTERVAL,
            load_timeout: Self::DEFAULT_LOAD_TIMEOUT,
            pressure: PressurePolicy::default(),
            battery_idle_timeout: None,
        }
    }
}

impl ManagerConfig {
    /// Default bound on the idle checker's sleep.
    pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(10);
    /// Shortest check interval accepted.
    pub const MIN_CHECK_INTERVAL: Duration = Duration::from_millis(10);
    /// Longest check interval accepted.
    pub const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(3600);
    /// Default bound on a load (ViT-H from a slow disk in a debug build fits well within it).
    pub const DEFAULT_LOAD_TIMEOUT: Duration = Duration::from_secs(10 * 60);
    /// Shortest load timeout accepted.
    pub const MIN_LOAD_TIMEOUT: Duration = Duration::from_millis(10);

    /// The strategy that applies to `key`.
    pub fn strategy_for(&self, key: &ModelKey) -> Strategy {
        self.overrides
            .get(key)
            .and_then(|o| o.strategy)
            .unwrap_or(self.strategy)
    }

    /// Whether `key` is pinned.
    pub fn is_pinned(&self, key: &ModelKey) -> bool {
        self.overrides.get(key).is_some_and(|o| o.pinned)
    }

    /// How long `key` may sit unused before it is unloaded, on battery or not; `None` for
    /// never. Pins are the caller's business (a pinned model has no idle deadline).
    pub fn idle_timeout_for(&self, key: &ModelKey, on_battery: bool) -> Option<Duration> {
        let strategy = self.strategy_for(key).idle_timeout();
        match (on_battery, self.battery_idle_timeout) {
            (true, Some(battery)) => Some(strategy.map_or(battery, |t| t.min(battery))),
            _ => strategy,
        }
    }

    /// Checks every value is in range; the error names the offending setting.
    pub fn validate(&self) -> Result<(), ManagerError> {
        let strategies = std::iter::once(self.strategy)
            .chain(self.overrides.values().filter_map(|o| o.strategy));
        for strategy in strategies {
            if let Strategy::Custom(t) = strategy {
                if !(Strategy::MIN_CUSTOM..=Strategy::MAX_CUSTOM).contains(&t) {
                    return Err(ManagerError::InvalidConfig(format!(
                        "custom idle timeout must be between {}s and {}s (got {:.3}s); use the immediate strategy to unload at once",
                        Strategy::MIN_CUSTOM.as_secs(),
                        Strategy::MAX_CUSTOM.as_secs(),
                        t.as_secs_f64()
                    )));
                }
            }
        }
        if !(Self::MIN_CHECK_INTERVAL..=Self::MAX_CHECK_INTERVAL).contains(&self.check_interval) {
            return Err(ManagerError::InvalidConfig(format!(
                "check interval must be between {}ms and {}s (got {}ms)",
                Self::MIN_CHECK_INTERVAL.as_millis(),
                Self::MAX_CHECK_INTERVAL.as_secs(),
                self.check_interval.as_millis()
            )));
        }
        if self.load_timeout < Self::MIN_LOAD_TIMEOUT {
            return Err(ManagerError::InvalidConfig(format!(
                "load timeout must be at least {}ms (got {}ms)",
                Self::MIN_LOAD_TIMEOUT.as_millis(),
                self.load_timeout.as_millis()
            )));
        }
        if self.pressure.sustain < PressurePolicy::MIN_SUSTAIN
            || self.pressure.cooldown < self.pressure.sustain
        {
            return Err(ManagerError::InvalidConfig(format!(
                "memory-pressure sustain must be at least {}ms and the cooldown at least the sustain (got {}ms and {}ms)",
                PressurePolicy::MIN_SUSTAIN.as_millis(),
                self.pressure.sustain.as_millis(),
                self.pressure.cooldown.as_millis()
            )));
        }
        if let Some(t) = self.battery_idle_timeout {
            if !(Strategy::MIN_CUSTOM..=Strategy::MAX_CUSTOM).contains(&t) {
                return Err(ManagerError::InvalidConfig(format!(
                    "on-battery idle timeout must be between {}s and {}s (got {:.3}s)",
                    Strategy::MIN_CUSTOM.as_secs(),
                    Strategy::MAX_CUSTOM.as_secs(),
                    t.as_secs_f64()
                )));
            }
        }
        if self.memory_budget_bytes == Some(0) {
            return Err(ManagerError::InvalidConfig(
                "memory budget must be more than 0 bytes (leave it unset for no budget)".into(),
            ));
        }
        Ok(())
    }

    /// Applies `MODEL_INACTIVITY_TIMEOUT` (seconds; `0` means unload immediately) and
    /// `MODEL_CHECK_INTERVAL` (seconds, fractions allowed) as read by `lookup`, then validates.
    /// A malformed value is an error naming the variable; nothing is changed then.
    pub fn apply_env_overrides(
        &mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<(), ManagerError> {
        let mut next = self.clone();
        if let Some(raw) = lookup("MODEL_INACTIVITY_TIMEOUT") {
            let secs = parse_secs("MODEL_INACTIVITY_TIMEOUT", &raw)?;
            next.strategy = if secs.is_zero() {
                Strategy::Immediate
            } else {
                Strategy::Custom(secs)
            };
        }
        if let Some(raw) = lookup("MODEL_CHECK_INTERVAL") {
            next.check_interval = parse_secs("MODEL_CHECK_INTERVAL", &raw)?;
        }
        if let Some(raw) = lookup("MODEL_LOAD_TIMEOUT") {
            next.load_timeout = parse_secs("MODEL_LOAD_TIMEOUT", &raw)?;
        }
        next.validate()?;
        *self = next;
        Ok(())
    }
}

fn parse_secs(var: &str, raw: &str) -> Result<Duration, ManagerError> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| {
            ManagerError::InvalidConfig(format!(
                "{var} must be a number of seconds (0 or more), got {raw:?}"
            ))
        })
}

/// Serde helper: a [`Duration`] as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Serde helper: an optional [`Duration`] as whole milliseconds or `null`.
mod millis_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::millis::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ModelKey {
        ModelKey::new(name).expect("valid key")
    }

    #[test]
    fn strategies_map_to_their_timeouts() {
        assert_eq!(
            Strategy::Auto.idle_timeout(),
            Some(Duration::from_secs(300))
        );
        assert_eq!(Strategy::AlwaysLoaded.idle_timeout(), None);
        assert_eq!(Strategy::Immediate.idle_timeout(), Some(Duration::ZERO));
        let custom = Strategy::Custom(Duration::from_secs(42));
        assert_eq!(custom.idle_timeout(), Some(Duration::from_secs(42)));
    }

    #[test]
    fn overrides_win_over_the_global_strategy() {
        let mut config = ManagerConfig::default();
        let pinned = ModelOverride {
            pinned: true,
            strategy: Some(Strategy::Immediate),
        };
        config.overrides.insert(key("a"), pinned);
        assert_eq!(config.strategy_for(&key("a")), Strategy::Immediate);
        assert_eq!(config.strategy_for(&key("b")), Strategy::Auto);
        assert!(config.is_pinned(&key("a")));
        assert!(!config.is_pinned(&key("b")));
    }

    #[test]
    fn validation_rejects_out_of_range_values() {
        let bad = [
            ManagerConfig {
                strategy: Strategy::Custom(Duration::ZERO),
                ..Default::default()
            },
            ManagerConfig {
                check_interval: Duration::from_millis(1),
                ..Default::default()
            },
            ManagerConfig {
                memory_budget_bytes: Some(0),
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.validate(), Err(ManagerError::InvalidConfig(_))),
                "{config:?}"
            );
        }
        assert!(ManagerConfig::default().validate().is_ok());
    }

    #[test]
    fn env_overrides_set_timeout_and_interval() {
        let mut config = ManagerConfig::default();
        let env = |var: &str| match var {
            "MODEL_INACTIVITY_TIMEOUT" => Some("90".to_string()),
            "MODEL_CHECK_INTERVAL" => Some("0.5".to_string()),
            _ => None,
        };
        config.apply_env_overrides(env).expect("valid env");
        assert_eq!(config.strategy, Strategy::Custom(Duration::from_secs(90)));
        assert_eq!(config.check_interval, Duration::from_millis(500));

        config
            .apply_env_overrides(|v| (v == "MODEL_INACTIVITY_TIMEOUT").then(|| "0".into()))
            .expect("zero is immediate");
        assert_eq!(config.strategy, Strategy::Immediate);
    }

    #[test]
    fn malformed_env_values_name_the_variable_and_change_nothing() {
        let mut config = ManagerConfig::default();
        for raw in ["soon", "-3", "", "NaN"] {
            let err = config
                .apply_env_overrides(|v| (v == "MODEL_CHECK_INTERVAL").then(|| raw.to_string()))
                .expect_err("malformed");
            assert!(err.to_string().contains("MODEL_CHECK_INTERVAL"), "{err}");
        }
        assert_eq!(config, ManagerConfig::default());
    }

    #[test]
    fn config_round_trips_through_json() {
        let mut config = ManagerConfig {
            strategy: Strategy::Custom(Duration::from_secs(90)),
            timer_scope: TimerScope::PerModel,
            memory_budget_bytes: Some(1 << 30),
            preload: vec![key("transcription")],
            ..Default::default()
        };
        config.overrides.insert(
            key("segmentation"),
            ModelOverride {
                pinned: true,
                strategy: None,
            },
        );
        let json = serde_json::to_string(&config).expect("serialise");
        assert!(json.contains("\"custom\":90000"), "{json}");
        let back: ManagerConfig = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, config);
        // Missing fields take their defaults.
        let partial: ManagerConfig =
            serde_json::from_str("{\"strategy\":\"immediate\"}").expect("parse");
        assert_eq!(partial.strategy, Strategy::Immediate);
        assert_eq!(
            partial.check_interval,
            ManagerConfig::DEFAULT_CHECK_INTERVAL
        );
    }
}
