//! The local control socket's contract: where it lives and what is said on it. The running
//! app answers on it (`server.rs`); `dormouse status` and `dormouse unload` ask on it
//! (`cli.rs`). One JSON request per connection, one JSON answer, then the connection closes.
//!
//! Where: a Unix-domain socket file on Linux and macOS (`$XDG_RUNTIME_DIR/dormouse/control.sock`
//! where there is a runtime folder, else `control.sock` in the app's data folder), created
//! owner-only (the folder 0700, the socket 0600); a named pipe on Windows
//! (`\\.\pipe\dormouse-control-<user>`) whose security descriptor lets only its owner in.
//! Never a TCP port. `DORMOUSE_CONTROL_SOCKET` names another socket file or pipe (tests).

pub mod cli;
pub mod server;

use serde::{Deserialize, Serialize};

use crate::catalog::Slot;
use crate::views::{StatusView, UnloadSummary};

/// The environment variable that names another socket (a path on Unix, a pipe name on
/// Windows).
pub const SOCKET_ENV: &str = "DORMOUSE_CONTROL_SOCKET";
/// The longest request or answer line read (a status of every model is a few KiB).
pub const MAX_LINE: u64 = 1 << 20;

/// What a client asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// The status of every model.
    Status,
    /// Unload one slot's model, or every model (`null`).
    Unload {
        /// The slot; `None` for all.
        slot: Option<Slot>,
    },
    /// Debug builds only (the end-to-end tests): report this memory-pressure level to the
    /// core as if the system's signal had said it. A release build refuses it.
    DebugPressure {
        /// The level.
        level: model_manager::PressureLevel,
    },
}

/// What the app answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The status snapshot.
    Status(StatusView),
    /// What the unload did.
    Unloaded(UnloadSummary),
    /// Done (a debug request).
    Done,
    /// The request could not be served (unreadable, unknown, or it failed).
    Error(String),
}

/// Where the control socket of this user's app lives (`env` reads the environment).
pub fn socket_name(env: impl Fn(&str) -> Option<String>) -> Option<String> {
    if let Some(name) = env(SOCKET_ENV).filter(|n| !n.is_empty()) {
        return Some(name);
    }
    #[cfg(windows)]
    {
        let user = env("USERNAME").unwrap_or_else(|| "user".into());
        let user: String = user
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Some(format!("dormouse-control-{user}"))
    }
    #[cfg(not(windows))]
    {
        let _ = env;
        let dir: std::path::PathBuf = match dirs::runtime_dir() {
            Some(runtime) => runtime.join("dormouse"),
            None => dirs::data_dir()?.join(crate::APP_IDENTIFIER),
        };
        Some(dir.join("control.sock").display().to_string())
    }
}
