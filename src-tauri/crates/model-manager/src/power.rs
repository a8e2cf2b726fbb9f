//! Where the machine's power comes from, as the core takes it: [`PowerSource`]. Reading it
//! (sysfs, IOKit, Windows power notifications) is the app's business; the core only hears
//! changes, through [`crate::ModelManager::report_power_source`], and shortens idle timeouts
//! on battery by [`crate::ManagerConfig::battery_idle_timeout`].

use serde::{Deserialize, Serialize};

/// Mains or battery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerSource {
    /// Plugged in, or a machine without a battery (also what is assumed until told).
    #[default]
    Mains,
    /// Running on its battery.
    Battery,
}
