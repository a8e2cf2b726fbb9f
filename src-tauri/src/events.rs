//! Typed events pushed to the front end (through tauri-specta), and the forwarder thread
//! that turns the lifecycle core's subscription into them. Nothing polls: every status
//! change, load progress and unload arrives here as it happens.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use model_manager::ManagerEvent;
use serde::{Deserialize, Serialize};
use specta::Type;
use tauri::{AppHandle, Runtime};
use tauri_specta::Event;

use crate::catalog::Slot;
use crate::managers::settings::SettingsView;
use crate::managers::slots::SlotManager;
use crate::views::{ModelStatusView, UnloadSummary, UnloadedView};

/// A model's status changed (state, memory, deadline, leases, error...).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type, Event)]
pub struct ModelStatusChanged(pub ModelStatusView);

/// A load in flight progressed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type, Event)]
pub struct ModelLoadProgress {
    /// The slot loading.
    pub slot: Slot,
    /// Fraction done, 0–1.
    pub progress: f32,
}

/// A model was unloaded (idle timeout, button, tray, memory, quit), with what it freed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type, Event)]
pub struct ModelUnloaded(pub UnloadedView);

/// The settings changed (from this window or another).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type, Event)]
pub struct SettingsChanged(pub SettingsView);

/// A download progressed, retried, finished, failed or was cancelled (byte progress at most
/// four times a second).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type, Event)]
pub struct DownloadProgress(pub crate::managers::downloads::DownloadView);

/// A training job progressed (each step, with its loss and validation IoU), finished,
/// failed or was cancelled.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type, Event)]
pub struct TrainingProgress(pub crate::managers::training::TrainingView);

/// An opened image's embedding, computed ahead of its first click, is ready or failed (an
/// image replaced before it finished gets none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type, Event)]
pub struct ImagePrepared(pub crate::managers::segmentation::ImagePreparation);

/// "Unload models" ran from outside the window (the tray's menu, or `dormouse unload` on
/// the command line); the window shows what it freed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type, Event)]
pub struct UnloadedFromOutside {
    /// Where the unload was asked.
    pub origin: UnloadOrigin,
    /// What it did.
    pub summary: UnloadSummary,
}

/// Where an unload from outside the window was asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum UnloadOrigin {
    /// The tray's "Unload models".
    Tray,
    /// `dormouse unload`.
    CommandLine,
}

/// Forwards the core's events to the front end until the core goes away, calling
/// `on_status` after each model change with every model's latest view (the tray follows it).
/// The views come from the events themselves: no status snapshot is taken per event.
pub fn spawn_forwarder<R: Runtime>(
    app: AppHandle<R>,
    slots: Arc<SlotManager>,
    events: Receiver<ManagerEvent>,
    on_status: impl Fn(&[ModelStatusView]) + Send + 'static,
) -> std::io::Result<()> {
    let mut latest: Vec<ModelStatusView> = slots.status().models;
    std::thread::Builder::new()
        .name("dormouse-events".into())
        .spawn(move || {
            let mut last_unload_seen: HashMap<Slot, u64> = HashMap::new();
            for event in events {
                let sent = match event {
                    ManagerEvent::Model(status) => {
                        let Some(view) = slots.model_event_view(&status) else {
                            continue;
                        };
                        if let Some(unload) = &view.last_unload {
                            let seen = last_unload_seen.entry(view.slot).or_insert(0);
                            if unload.at_ms > *seen {
                                *seen = unload.at_ms;
                                if let Err(error) = ModelUnloaded(unload.clone()).emit(&app) {
                                    tracing::warn!(%error, "could not emit ModelUnloaded");
                                }
                            }
                        }
                        match latest.iter_mut().find(|m| m.slot == view.slot) {
                            Some(known) => *known = view.clone(),
                            None => latest.push(view.clone()),
                        }
                        let sent = ModelStatusChanged(view).emit(&app);
                        on_status(&latest);
                        sent
                    }
                    ManagerEvent::LoadProgress { key, progress, .. } => {
                        match Slot::from_key(&key) {
                            Some(slot) => ModelLoadProgress { slot, progress }.emit(&app),
                            None => Ok(()),
                        }
                    }
                    ManagerEvent::Transition { .. } | ManagerEvent::Config(_) => Ok(()),
                };
                if let Err(error) = sent {
                    tracing::warn!(%error, "could not emit a status event");
                }
            }
            tracing::debug!("event forwarder stopped: the model manager is gone");
        })
        .map(drop)
}
