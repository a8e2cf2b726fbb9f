//! The system tray: a line per model with its state and memory, "Unload models" (enabled only
//! while something is loaded; it then shows what it freed), "Open Dormouse" and "Quit".
//! It follows the status events; it never polls, and it touches the menu only when what it
//! shows changes (a countdown or a lease count changes the status, not the tray's text).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Runtime};
use tauri_specta::Event;

use crate::catalog::Slot;
use crate::events::{UnloadOrigin, UnloadedFromOutside};
use crate::managers::slots::SlotManager;
use crate::views::{ModelStateView, ModelStatusView, ReasonView};

const UNLOAD: &str = "unload-models";
const OPEN: &str = "open-dormouse";
const QUIT: &str = "quit";

/// The tray icon and the menu items it updates.
pub struct Tray<R: Runtime> {
    icon: TrayIcon<R>,
    lines: BTreeMap<Slot, MenuItem<R>>,
    unload: MenuItem<R>,
    /// What the tray's last "Unload models" freed, shown on that item.
    last_freed: Arc<Mutex<Option<String>>>,
    /// What the menu and tooltip show now, so an update that changes nothing costs nothing.
    shown: Mutex<Option<TrayText>>,
}

/// Everything the tray shows, as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrayText {
    /// Each model's line.
    pub lines: BTreeMap<Slot, String>,
    /// Whether "Unload models" can be clicked.
    pub unload_enabled: bool,
    /// The "Unload models" item's text.
    pub unload: String,
    /// The icon's tooltip.
    pub tooltip: String,
}

impl TrayText {
    /// What the tray shows for `models`, given what the last tray unload freed.
    pub fn of(models: &[ModelStatusView], last_freed: Option<&str>) -> Self {
        let loaded: Vec<&ModelStatusView> = models
            .iter()
            .filter(|m| m.state == ModelStateView::Loaded)
            .collect();
        let tooltip = if loaded.is_empty() {
            "Dormouse — no models loaded".to_owned()
        } else {
            format!(
                "Dormouse — {} loaded ({})",
                loaded
                    .iter()
                    .map(|m| m.display_name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                megabytes(models.iter().filter_map(|m| m.resident_bytes).sum())
            )
        };
        Self {
            lines: models.iter().map(|m| (m.slot, line(m))).collect(),
            unload_enabled: !loaded.is_empty(),
            unload: unload_label(last_freed),
            tooltip,
        }
    }
}

/// The "Unload models" item's text, with what the last tray unload freed.
pub fn unload_label(last_freed: Option<&str>) -> String {
    match last_freed {
        Some(freed) => format!("Unload models (last: {freed})"),
        None => "Unload models".to_owned(),
    }
}

/// What an unload freed, in a few words.
pub fn freed_words(summary: &crate::views::UnloadSummary) -> String {
    if summary.unloaded.is_empty() {
        "nothing was loaded".to_owned()
    } else {
        format!("freed {}", megabytes(summary.total_freed_bytes))
    }
}

/// Megabytes for people.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1_000_000.0)
}

/// The tray line of one model.
pub fn line(model: &ModelStatusView) -> String {
    let state = match model.state {
        ModelStateView::Unloaded => match model.last_unload.as_ref().map(|u| u.reason) {
            Some(ReasonView::MemoryPressure) => "not loaded (the system was low on memory)",
            Some(ReasonView::SystemSleep) => "not loaded (unloaded before sleep)",
            _ => "not loaded",
        }
        .to_owned(),
        ModelStateView::Loading => match model.load_progress {
            Some(p) => format!("loading {:.0}%", p * 100.0),
            None => "loading".to_owned(),
        },
        ModelStateView::Loaded => match model.resident_bytes {
            Some(b) => format!("loaded · {}", megabytes(b)),
            None => "loaded".to_owned(),
        },
        ModelStateView::Unloading => "unloading".to_owned(),
        ModelStateView::Failed => "failed to load".to_owned(),
    };
    format!("{} — {state}", model.display_name)
}

impl<R: Runtime> Tray<R> {
    /// Builds the tray for `app`.
    pub fn build(app: &AppHandle<R>, slots: Arc<SlotManager>) -> tauri::Result<Arc<Self>> {
        let status = slots.status();
        let last_freed: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let freed_sink = last_freed.clone();
        // The menu handler needs the tray it belongs to, which exists only once built.
        let this: Arc<OnceLock<Weak<Self>>> = Arc::new(OnceLock::new());
        let this_in_handler = this.clone();
        let mut lines = BTreeMap::new();
        for model in &status.models {
            lines.insert(
                model.slot,
                MenuItem::new(app, line(model), false, None::<&str>)?,
            );
        }
        let unload = MenuItem::with_id(app, UNLOAD, "Unload models", false, None::<&str>)?;
        let open = MenuItem::with_id(app, OPEN, "Open Dormouse", true, None::<&str>)?;
        let quit = MenuItem::with_id(app, QUIT, "Quit", true, None::<&str>)?;
        let separator = PredefinedMenuItem::separator(app)?;
        let menu = Menu::new(app)?;
        for item in lines.values() {
            menu.append(item)?;
        }
        menu.append(&separator)?;
        menu.append(&unload)?;
        menu.append(&open)?;
        menu.append(&quit)?;
        let mut builder = TrayIconBuilder::with_id("dormouse")
            .menu(&menu)
            .tooltip("Dormouse — no models loaded")
            .show_menu_on_left_click(true);
        if cfg!(target_os = "macos") {
            // A template image: black and alpha only, which macOS tints for a light or dark
            // menu bar (the coloured app icon would not fit either).
            let template =
                tauri::image::Image::from_bytes(include_bytes!("../icons/tray-template@2x.png"))?;
            builder = builder.icon(template).icon_as_template(true);
        } else if let Some(icon) = app.default_window_icon() {
            builder = builder.icon(icon.clone());
        }
        let icon = builder
            .on_menu_event(move |app, event| match event.id().as_ref() {
                UNLOAD => {
                    let slots = slots.clone();
                    let app = app.clone();
                    let freed_sink = freed_sink.clone();
                    let this = this_in_handler.clone();
                    std::thread::spawn(move || match slots.unload(None) {
                        Ok(summary) => {
                            *freed_sink.lock() = Some(freed_words(&summary));
                            // The unload's own events may have reached the tray before
                            // what it freed was known: show it now.
                            if let Some(tray) = this.get().and_then(Weak::upgrade) {
                                tray.show_last_freed();
                            }
                            let event = UnloadedFromOutside {
                                origin: UnloadOrigin::Tray,
                                summary,
                            };
                            if let Err(error) = event.emit(&app) {
                                tracing::warn!(%error, "could not tell the window what the tray unloaded");
                            }
                        }
                        Err(error) => tracing::warn!(%error, "tray unload failed"),
                    });
                }
                OPEN => {
                    if let Some(window) = app.get_webview_window("main") {
                        let _ = window.unminimize();
                        let _ = window.show();
                        let _ = window.set_focus();
                    }
                }
                QUIT => app.exit(0),
                _ => {}
            })
            .build(app)?;
        let tray = Arc::new(Self {
            icon,
            lines,
            unload,
            last_freed,
            shown: Mutex::new(None),
        });
        let _ = this.set(Arc::downgrade(&tray));
        tray.update(&status.models);
        Ok(tray)
    }

    /// Writes what the last tray unload freed on its item, leaving the rest as shown.
    fn show_last_freed(&self) {
        let label = unload_label(self.last_freed.lock().as_deref());
        let mut shown = self.shown.lock();
        if let Some(shown) = shown.as_mut() {
            if shown.unload != label {
                let _ = self.unload.set_text(&label);
                shown.unload = label;
            }
        }
    }

    /// Shows `models` in the menu and tooltip, touching only what changed.
    pub fn update(&self, models: &[ModelStatusView]) {
        let next = TrayText::of(models, self.last_freed.lock().as_deref());
        let mut shown = self.shown.lock();
        let before = shown.as_ref();
        for (slot, text) in &next.lines {
            if before.and_then(|b| b.lines.get(slot)) != Some(text) {
                if let Some(item) = self.lines.get(slot) {
                    let _ = item.set_text(text);
                }
            }
        }
        if before.map(|b| b.unload_enabled) != Some(next.unload_enabled) {
            let _ = self.unload.set_enabled(next.unload_enabled);
        }
        if before.map(|b| &b.unload) != Some(&next.unload) {
            let _ = self.unload.set_text(&next.unload);
        }
        if before.map(|b| &b.tooltip) != Some(&next.tooltip) {
            let _ = self.icon.set_tooltip(Some(&next.tooltip));
        }
        *shown = Some(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::{ReasonView, UnloadSummary, UnloadedView};

    #[test]
    fn the_unload_item_says_what_the_last_unload_freed() {
        assert_eq!(unload_label(None), "Unload models");
        let mut summary = UnloadSummary::default();
        assert_eq!(freed_words(&summary), "nothing was loaded");
        summary.unloaded.push(UnloadedView {
            slot: Slot::Transcription,
            model_id: "whisper-base".into(),
            display_name: "Whisper base".into(),
            resident_bytes: 190_000_000,
            bytes_freed: Some(187_000_000),
            reason: ReasonView::Manual,
            at_ms: 0,
        });
        summary.total_freed_bytes = 187_000_000;
        assert_eq!(
            unload_label(Some(&freed_words(&summary))),
            "Unload models (last: freed 187 MB)"
        );
    }

    #[test]
    fn a_models_line_says_when_the_system_caused_its_unload() {
        let unloaded = |reason| UnloadedView {
            slot: Slot::Transcription,
            model_id: "whisper-base".into(),
            display_name: "Whisper base".into(),
            resident_bytes: 190_000_000,
            bytes_freed: None,
            reason,
            at_ms: 0,
        };
        let model = |last_unload| ModelStatusView {
            slot: Slot::Transcription,
            model_id: "whisper-base".into(),
            display_name: "Whisper base".into(),
            is_user_model: false,
            model_path: None,
            state: ModelStateView::Unloaded,
            resident_bytes: None,
            expected_bytes: None,
            loaded_at_ms: None,
            last_used_ms: None,
            expires_at_ms: None,
            load_progress: None,
            last_error: None,
            leases: 0,
            pinned: false,
            last_load_us: None,
            load_count: 1,
            last_unload,
            last_request: None,
        };
        assert_eq!(line(&model(None)), "Whisper base — not loaded");
        assert_eq!(
            line(&model(Some(unloaded(ReasonView::MemoryPressure)))),
            "Whisper base — not loaded (the system was low on memory)"
        );
        assert_eq!(
            line(&model(Some(unloaded(ReasonView::SystemSleep)))),
            "Whisper base — not loaded (unloaded before sleep)"
        );
        assert_eq!(
            line(&model(Some(unloaded(ReasonView::IdleTimeout)))),
            "Whisper base — not loaded"
        );
    }
}
