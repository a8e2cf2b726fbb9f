//! # Dormouse — the Tauri app
//!
//! Wiring only: [`configure`] puts the managers ([`managers`]) in Tauri state, registers the
//! typed commands ([`commands`]) and events ([`events`]) built by [`specta_builder`], starts
//! the event forwarder and the tray ([`tray`]), and [`run`] adds logging, the single-instance
//! guard and a clean shutdown (idle checker joined, every model unloaded) on quit.
//! The lifecycle core is `model-manager`; the engines are `engines`.

mod atomic_file;
pub mod catalog;
pub mod commands;
pub mod control;
mod debris;
pub mod error;
pub mod events;
mod id_reservation;
mod logging;
pub mod managers;
pub mod paths;
pub mod power;
pub mod pressure;
pub mod sleep;
pub mod training_set;
pub mod tray;
pub mod user_models;
pub mod views;

use std::sync::Arc;

use specta_typescript::Typescript;
use tauri::{Manager, RunEvent, Runtime};
use tauri_specta::{collect_commands, collect_events, Event};

use crate::managers::downloads::ModelDownloads;
use crate::managers::segmentation::SegmentationManager;
use crate::managers::slots::SlotManager;
use crate::managers::training::TrainingManager;
use crate::managers::transcription::TranscriptionManager;
use crate::paths::AppPaths;

/// The commands that move raw bytes, listed once: registered beside the typed ones
/// (tauri-specta cannot type raw IPC bodies) and routed by name; their names are exported as
/// constants in the bindings.
macro_rules! raw_commands {
    ($($module:ident :: $command:ident as $constant:ident),* $(,)?) => {
        /// The raw-body commands' names.
        pub const RAW_COMMANDS: &[&str] = &[$(stringify!($command)),*];

        fn raw_handler<R: Runtime>() -> Box<dyn Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync> {
            Box::new(tauri::generate_handler![$(commands::$module::$command),*])
        }

        /// Each raw command's name as a constant of the bindings (`TRANSCRIBE_AUDIO_COMMAND`...).
        fn with_raw_command_names<R: Runtime>(
            builder: tauri_specta::Builder<R>,
        ) -> tauri_specta::Builder<R> {
            builder$(.constant(stringify!($constant), stringify!($command)))*
        }
    };
}

raw_commands!(
    transcription::transcribe_audio as TRANSCRIBE_AUDIO_COMMAND,
    segmentation::mask_png as MASK_PNG_COMMAND,
    segmentation::open_image as OPEN_IMAGE_COMMAND,
    training::add_training_example as ADD_TRAINING_EXAMPLE_COMMAND,
    training::training_thumbnail as TRAINING_THUMBNAIL_COMMAND,
);

/// Where the generated TypeScript bindings live, relative to the workspace root.
pub const BINDINGS_PATH: &str = "src/lib/bindings.ts";
/// The app's identifier (`tauri.conf.json`), which names its folders.
pub const APP_IDENTIFIER: &str = "app.dormouse.desktop";

/// The typed commands and events, for the invoke handler and the TypeScript bindings.
pub fn specta_builder<R: Runtime>() -> tauri_specta::Builder<R> {
    with_raw_command_names(tauri_specta::Builder::<R>::new())
        .commands(collect_commands![
            commands::models::get_model_status,
            commands::models::get_model_info,
            commands::models::list_models,
            commands::models::set_model,
            commands::models::warm_model,
            commands::models::load_user_model,
            commands::models::reset_to_base_model,
            commands::models::import_model,
            commands::models::manually_unload_model,
            commands::downloads::download_model,
            commands::downloads::cancel_download,
            commands::downloads::list_downloads,
            commands::downloads::delete_model,
            commands::settings::get_settings,
            commands::settings::update_model_config,
            commands::settings::update_settings,
            commands::transcription::transcribe,
            commands::segmentation::open_image_file,
            commands::segmentation::segment,
            commands::training::list_training_examples,
            commands::training::add_training_files,
            commands::training::add_segment_to_training_set,
            commands::training::remove_training_example,
            commands::training::start_training,
            commands::training::cancel_training,
            commands::training::training_status,
        ])
        .events(collect_events![
            events::ModelStatusChanged,
            events::ModelLoadProgress,
            events::ModelUnloaded,
            events::SettingsChanged,
            events::UnloadedFromOutside,
            events::DownloadProgress,
            events::TrainingProgress,
            events::ImagePrepared,
        ])
        .typ::<managers::transcription::TranscribeSettings>()
        .typ::<managers::transcription::Transcription>()
        .typ::<error::CommandError>()
        // Byte counts and epoch milliseconds stay far below 2^53, where a JS number is exact.
        .dangerously_cast_bigints_to_number()
        .constant(
            "TRANSCRIBE_SETTINGS_HEADER",
            commands::transcription::SETTINGS_HEADER,
        )
        .constant(
            "TRAINING_EXAMPLE_HEADER",
            commands::training::EXAMPLE_HEADER,
        )
        .constant(
            "DEFAULT_TRAINING_STEPS",
            engines::segmentation::training::TrainOptions::default().steps as u32,
        )
        .constant(
            "MIN_TRAINING_PAIRS",
            engines::segmentation::training::MIN_PAIRS as u32,
        )
        .constant(
            "MAX_TRAINING_PAIRS",
            engines::segmentation::training::MAX_PAIRS as u32,
        )
        .typ::<managers::segmentation::OpenedImage>()
        .typ::<training_set::TrainingExample>()
}

/// The TypeScript bindings as text (what [`BINDINGS_PATH`] must hold).
pub fn render_bindings() -> anyhow::Result<String> {
    let dir = tempfile_dir()?;
    let path = dir.join("bindings.ts");
    specta_builder::<tauri::Wry>()
        .export(Typescript::default().header("// Generated by tauri-specta from src-tauri: do not edit. Regenerate with `UPDATE_BINDINGS=1 cargo test -p dormouse --lib bindings`.\n"), &path)
        .map_err(|e| anyhow::anyhow!("exporting the bindings failed: {e}"))?;
    let text = std::fs::read_to_string(&path)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(text)
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "dormouse-bindings-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Reads an environment variable (injected so tests control the environment).
pub type EnvLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// How the app starts: where its folders are, how the environment is read, whether it
/// shows a tray (not in tests, which have no desktop).
pub struct Launch {
    /// The folders; `None` resolves them from the platform's app folders.
    pub paths: Option<AppPaths>,
    /// Reads an environment variable.
    pub env: EnvLookup,
    /// Build the tray icon.
    pub tray: bool,
    /// Log to stderr and a rotating file in the app's log folder.
    pub logs: bool,
    /// Listen to the system's signals (memory pressure, sleep, power source): on for the
    /// real app, off in tests that drive the core themselves.
    pub system_signals: bool,
    /// Answer `dormouse status` / `dormouse unload` on this control socket (see
    /// [`control`]); `None`: no socket.
    pub control_socket: Option<String>,
}

impl Launch {
    /// The real app: platform folders, the process environment, a tray.
    pub fn desktop() -> Self {
        Self {
            paths: None,
            env: Arc::new(|name| std::env::var(name).ok()),
            tray: true,
            logs: true,
            system_signals: true,
            control_socket: control::socket_name(|name| std::env::var(name).ok()),
        }
    }
}

/// Registers the commands (typed and raw) on `builder`.
pub fn with_commands<R: Runtime>(builder: tauri::Builder<R>) -> tauri::Builder<R> {
    let typed = specta_builder::<R>().invoke_handler();
    let raw = raw_handler::<R>();
    builder.invoke_handler(move |invoke| {
        if RAW_COMMANDS.contains(&invoke.message.command()) {
            raw(invoke)
        } else {
            typed(invoke)
        }
    })
}

/// The commands, and [`initialize`] run when the app sets up.
pub fn configure<R: Runtime>(builder: tauri::Builder<R>, launch: Launch) -> tauri::Builder<R> {
    with_commands(builder).setup(move |app| initialize(app.handle(), launch))
}

/// Mounts the typed events, starts the managers (settings, lifecycle core), the event
/// forwarder and the tray, and puts the managers in Tauri state. Tests on the mock runtime
/// call it after `build()` (setup only runs inside the event loop).
pub fn initialize<R: Runtime>(
    app: &tauri::AppHandle<R>,
    launch: Launch,
) -> Result<(), Box<dyn std::error::Error>> {
    specta_builder::<R>().mount_events(app);
    if launch.logs {
        if let Some(guard) = app
            .path()
            .app_log_dir()
            .ok()
            .and_then(|dir| logging::init(&dir))
        {
            app.manage(LogGuard(guard));
        }
    }
    let paths = match launch.paths {
        Some(paths) => paths,
        None => {
            let path = app.path();
            AppPaths::resolve(
                path.app_config_dir()?,
                path.app_data_dir()?,
                path.app_log_dir()?,
                bundled_resources(app),
                |v| (launch.env)(v),
            )
        }
    };
    engines::onnx_runtime::set_app_dirs(paths.onnxruntime_dirs());
    let managers::startup::Started {
        settings,
        library,
        slots,
    } = managers::startup::start(paths, |v| (launch.env)(v))?;
    tracing::info!(models_dir = %library.paths().models_dir.display(), "Dormouse started");
    let handle = app.clone();
    settings.on_settings_changed(move |view| {
        if let Err(error) = events::SettingsChanged(view.clone()).emit(&handle) {
            tracing::warn!(%error, "could not emit SettingsChanged");
        }
    });
    let tray = if launch.tray {
        match tray::Tray::build(app, slots.clone()) {
            Ok(tray) => Some(tray),
            Err(error) => {
                tracing::warn!(%error, "no tray icon (no system tray on this desktop?)");
                None
            }
        }
    } else {
        None
    };
    events::spawn_forwarder(
        app.clone(),
        slots.clone(),
        slots.subscribe(),
        move |models| {
            if let Some(tray) = &tray {
                tray.update(models);
            }
        },
    )?;
    let handle = app.clone();
    let downloads = ModelDownloads::new(
        library.clone(),
        &settings,
        |v| (launch.env)(v),
        move |view| {
            if let Err(error) = events::DownloadProgress(view).emit(&handle) {
                tracing::warn!(%error, "could not emit DownloadProgress");
            }
        },
    );
    app.manage(Arc::new(downloads));
    if launch.system_signals {
        let watcher = slots.clone();
        let memory_pressure = pressure::watch(move |level| watcher.report_memory_pressure(level));
        let sleep = sleep::watch(sleep::app_hooks(slots.clone(), settings.clone()));
        let watcher = slots.clone();
        let power_source = power::watch(move |source| watcher.report_power_source(source));
        tracing::info!(?memory_pressure, ?sleep, ?power_source, "system signals");
        settings.set_signals(managers::settings::SystemSignals {
            memory_pressure: memory_pressure.is_some(),
            sleep: sleep.is_some(),
            power_source: power_source.is_some(),
        });
    }
    if let Some(name) = launch.control_socket.clone() {
        let handle = app.clone();
        let started = control::server::start(name, slots.clone(), move |summary| {
            let event = events::UnloadedFromOutside {
                origin: events::UnloadOrigin::CommandLine,
                summary: summary.clone(),
            };
            if let Err(error) = event.emit(&handle) {
                tracing::warn!(%error, "could not tell the window what the command line unloaded");
            }
        });
        match started {
            Ok(socket) => {
                app.manage(socket);
            }
            Err(error) => {
                tracing::warn!(%error, "no control socket: `dormouse status` and `dormouse unload` will say the app is not running");
            }
        }
    }
    app.manage(Arc::new(TranscriptionManager::new(slots.clone())));
    let handle = app.clone();
    app.manage(Arc::new(SegmentationManager::new(
        slots.clone(),
        move |prepared| {
            if let Err(error) = events::ImagePrepared(prepared).emit(&handle) {
                tracing::warn!(%error, "could not emit ImagePrepared");
            }
        },
    )));
    let handle = app.clone();
    app.manage(Arc::new(TrainingManager::new(
        slots.clone(),
        library.clone(),
        move |view| {
            if let Err(error) = events::TrainingProgress(view).emit(&handle) {
                tracing::warn!(%error, "could not emit TrainingProgress");
            }
        },
    )));
    app.manage(settings);
    app.manage(library);
    app.manage(slots);
    Ok(())
}

/// Keeps the log file writer flushing until the app ends.
struct LogGuard(#[allow(dead_code)] tracing_appender::non_blocking::WorkerGuard);

/// The installed package's resource folder, when it holds what a package ships (a build
/// folder run by a developer has none: its models folder holds ONNX Runtime and the VAD).
fn bundled_resources<R: Runtime>(app: &tauri::AppHandle<R>) -> Option<std::path::PathBuf> {
    let dir = app.path().resource_dir().ok()?;
    let ships = dir.join("onnxruntime").is_dir() || dir.join("silero_vad.onnx").is_file();
    tracing::info!(resources = %dir.display(), ships, "package resources");
    ships.then_some(dir)
}

/// Stops the idle checker and unloads everything; safe to call more than once.
pub fn shut_down<R: Runtime>(app: &tauri::AppHandle<R>) {
    if let Some(downloads) = app.try_state::<Arc<ModelDownloads>>() {
        downloads.shutdown();
    }
    if let Some(training) = app.try_state::<Arc<TrainingManager>>() {
        training.shutdown();
    }
    if let Some(socket) = app.try_state::<control::server::ControlSocket>() {
        socket.close();
    }
    if let Some(slots) = app.try_state::<Arc<SlotManager>>() {
        let summary = slots.shutdown();
        tracing::info!(
            unloaded = summary.unloaded.len(),
            freed_bytes = summary.total_freed_bytes,
            "models unloaded on quit"
        );
    }
}

/// Runs the desktop app.
pub fn run() {
    let launch = Launch::desktop();
    let builder =
        tauri::Builder::default().plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.unminimize();
                let _ = window.show();
                let _ = window.set_focus();
            }
        }));
    let app = match configure(builder, launch).build(tauri::generate_context!()) {
        Ok(app) => app,
        Err(error) => {
            eprintln!("Dormouse could not start: {error}");
            std::process::exit(1);
        }
    };
    quit_on_terminate_signal(app.handle().clone());
    app.run(|handle, event| {
        if let RunEvent::Exit = event {
            shut_down(handle);
        }
    });
}

/// Quits like the tray's Quit (models unloaded, idle checker joined) when the system or the
/// user ends the process with SIGTERM or SIGINT (logging out, `kill`, Ctrl-C in a terminal),
/// instead of dying with models loaded and downloads unsaved.
#[cfg(unix)]
fn quit_on_terminate_signal<R: Runtime>(app: tauri::AppHandle<R>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(error) => {
            tracing::warn!(%error, "SIGTERM will not quit cleanly");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("dormouse-signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "quitting on a termination signal");
                app.exit(0);
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "SIGTERM will not quit cleanly");
    }
}

/// Windows ends a GUI app with WM_CLOSE / WM_ENDSESSION, which Tauri turns into an exit.
#[cfg(not(unix))]
fn quit_on_terminate_signal<R: Runtime>(_app: tauri::AppHandle<R>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identifier_is_the_one_tauri_uses() {
        let conf: serde_json::Value = serde_json::from_str(include_str!("../tauri.conf.json"))
            .expect("tauri.conf.json parses");
        assert_eq!(conf["identifier"], APP_IDENTIFIER);
    }

    /// The checked-in bindings must match the Rust types. `UPDATE_BINDINGS=1` rewrites them.
    #[test]
    fn bindings_are_up_to_date() {
        let fresh = render_bindings().expect("render bindings");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(BINDINGS_PATH);
        if std::env::var_os("UPDATE_BINDINGS").is_some() {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &fresh).expect("write bindings");
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == fresh,
            "{} is stale: run `UPDATE_BINDINGS=1 cargo test -p dormouse --lib bindings` and commit it",
            BINDINGS_PATH
        );
    }
}
