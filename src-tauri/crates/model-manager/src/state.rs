//! The slot state machine's vocabulary: [`ModelState`], the [`TransitionReason`]s, and the one
//! table ([`ModelState::can_become`]) that says which transitions are valid.

use serde::{Deserialize, Serialize};

/// Where a slot is in its life.
///
/// ```text
///            ┌──────────── cancelled / superseded ───────────┐
///            ▼                                               │
///  Idle ──► Loading ──► Loaded ──► Unloading ──► Idle        │
///   ▲          │ └───────────────────────────────────────────┘
///   │          ▼
///   └────── Failed ──► Loading (the next use retries)
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelState {
    /// Nothing in memory.
    Idle,
    /// A load is running.
    Loading,
    /// In memory and ready for leases.
    Loaded,
    /// Being dropped and its memory given back.
    Unloading,
    /// The last load failed; the error is kept and the next use retries.
    Failed,
}

impl ModelState {
    /// Every state, for exhaustive tests and UIs.
    pub const ALL: [ModelState; 5] = [
        ModelState::Idle,
        ModelState::Loading,
        ModelState::Loaded,
        ModelState::Unloading,
        ModelState::Failed,
    ];

    /// The single table of valid transitions.
    pub fn can_become(self, to: ModelState) -> bool {
        use ModelState::*;
        matches!(
            (self, to),
            (Idle, Loading)
                | (Failed, Loading)
                | (Loading, Loaded)
                | (Loading, Failed)
                | (Loading, Idle)
                | (Loaded, Unloading)
                | (Unloading, Idle)
                | (Failed, Idle)
        )
    }

    /// Whether the slot holds (or is about to hold) memory.
    pub fn holds_memory(self) -> bool {
        matches!(
            self,
            ModelState::Loading | ModelState::Loaded | ModelState::Unloading
        )
    }
}

/// Why a transition happened; logged and published with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionReason {
    /// A request needed the model.
    FirstUse,
    /// The user showed intent (started recording, opened an image): load ahead of the request.
    Warm,
    /// Loaded at startup from the preload list.
    Preload,
    /// A different spec was requested for the slot ("set model size").
    Superseded,
    /// The load finished and its result was kept.
    LoadFinished,
    /// The load returned an error or panicked.
    LoadFailed,
    /// The load was cancelled on request.
    Cancelled,
    /// Unused for longer than its strategy allows.
    IdleTimeout,
    /// The user (button, tray, command) asked for it.
    Manual,
    /// Unloaded to make room for another model within the memory budget.
    EvictedForMemory,
    /// The system said it was short of memory (its memory-pressure signal).
    MemoryPressure,
    /// The system was about to sleep (suspend or hibernate).
    SystemSleep,
    /// The immediate strategy: unloaded when the last lease ended.
    Immediate,
    /// The manager is shutting down.
    Shutdown,
}

/// One step of a slot's state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// State before.
    pub from: ModelState,
    /// State after.
    pub to: ModelState,
    /// Why.
    pub reason: TransitionReason,
}

#[cfg(test)]
mod tests {
    use super::ModelState::*;
    use super::*;

    #[test]
    fn every_pair_of_states_is_valid_or_invalid_as_documented() {
        let valid = [
            (Idle, Loading),
            (Failed, Loading),
            (Loading, Loaded),
            (Loading, Failed),
            (Loading, Idle),
            (Loaded, Unloading),
            (Unloading, Idle),
            (Failed, Idle),
        ];
        let mut checked = 0;
        for from in ModelState::ALL {
            for to in ModelState::ALL {
                assert_eq!(
                    from.can_become(to),
                    valid.contains(&(from, to)),
                    "{from:?} -> {to:?}"
                );
                checked += 1;
            }
        }
        assert_eq!(checked, 25);
    }

    #[test]
    fn no_state_skips_loading_or_unloading() {
        assert!(
            !Idle.can_become(Loaded),
            "memory appears only through a load"
        );
        assert!(
            !Loaded.can_become(Idle),
            "memory is released only through unloading"
        );
        assert!(
            !Unloading.can_become(Loaded),
            "an unload can never resurrect a model"
        );
        assert!(!Loaded.can_become(Loading));
    }
}
