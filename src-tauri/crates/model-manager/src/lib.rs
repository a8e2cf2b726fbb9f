//! # model-manager — Dormouse's lifecycle core
//!
//! Loads local AI models lazily, shares them between concurrent users, unloads them when idle,
//! on demand or to make room, and reports exactly what is loaded and what it costs. It knows
//! nothing of Tauri or of any ML library: engines implement [`ModelLoader`] and
//! [`LoadedModel`]; the app talks to a [`ModelManager`].
//!
//! ```
//! use std::sync::Arc;
//! use model_manager::{LoadContext, LoadError, LoadedModel, ModelKey, ModelLoader, ModelManager, ModelSpec};
//!
//! struct Echo(Vec<u8>);
//! impl LoadedModel for Echo {
//!     fn resident_bytes(&self) -> u64 { self.0.len() as u64 }
//! }
//! struct EchoLoader;
//! impl ModelLoader for EchoLoader {
//!     fn load(&self, _: &ModelSpec, _: &LoadContext) -> Result<Box<dyn LoadedModel>, LoadError> {
//!         Ok(Box::new(Echo(vec![0; 1024])))
//!     }
//! }
//!
//! let key = ModelKey::new("transcription").unwrap();
//! let manager = ModelManager::builder()
//!     .register(key.clone(), Arc::new(EchoLoader), ModelSpec::new("echo"))
//!     .build()
//!     .unwrap();
//! {
//!     let lease = manager.acquire(&key).unwrap(); // loads on first use
//!     assert_eq!(lease.downcast::<Echo>().unwrap().0.len(), 1024);
//! } // lease dropped: the idle clock starts
//! assert_eq!(manager.unload_all().unloaded.len(), 1);
//! ```
//!
//! See `docs/architecture.md` for the design.

pub mod clock;
pub mod config;
pub mod error;
pub mod key;
pub mod loader;
mod manager;
pub mod memory;
pub mod power;
pub mod pressure;
pub mod state;
pub mod status;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{ManagerConfig, ModelOverride, PressurePolicy, Strategy, TimerScope};
pub use error::ManagerError;
pub use key::{ModelKey, ModelSpec};
pub use loader::{CancelToken, LoadContext, LoadError, LoadedModel, ModelLoader, ProgressReporter};
pub use manager::{Lease, ModelManager, ModelManagerBuilder, DEFAULT_SHUTDOWN_GRACE};
pub use power::PowerSource;
pub use pressure::PressureLevel;
pub use state::{ModelState, Transition, TransitionReason};
pub use status::{
    ManagerEvent, ManagerStats, ManagerStatus, ModelStatus, UnloadReport, UnloadedModel,
};
