//! The operating system's memory-pressure signal as the core takes it: [`PressureLevel`].
//! Where it comes from (PSI, `MemAvailable`, a dispatch source, a Windows notification) is
//! the app's business; the core only hears levels, through
//! [`crate::ModelManager::report_memory_pressure`], and answers them by its
//! [`crate::config::PressurePolicy`].

use serde::{Deserialize, Serialize};

/// How short of memory the system says it is.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PressureLevel {
    /// Enough memory.
    #[default]
    Normal,
    /// Memory is getting short: idle, unpinned models go, least recently used and largest
    /// first, one at a time.
    Warn,
    /// Memory is short now: every model without a lease goes, pinned ones too; leased ones
    /// go when their lease ends.
    Critical,
}
