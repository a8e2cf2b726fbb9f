//! Every command through Tauri's IPC on the mock runtime, with real models: good input,
//! bad input (missing file, corrupt model, path-traversal id, out-of-range config, empty
//! audio) and the persistence rules (restart with a user model, with its file deleted, with
//! a corrupt settings file, with environment overrides).

mod app_downloads;
mod app_training;
mod crash;
mod support;

use serde_json::{json, Value};
use support::{fixture, install_models, link, sam_tiny_weights, write_square_png, TestApp};
use tauri::Manager;

const BECKETT: &str = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.";

fn wer(hypothesis: &str) -> f32 {
    engines::speech::word_error_rate(BECKETT, hypothesis)
}

#[test]
fn status_info_and_list_never_load_anything() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let app = TestApp::start(dir.path(), &[]);
    let status: Value = app.ok("get_model_status", json!({}));
    let slots: Vec<&str> = status["models"]
        .as_array()
        .expect("models")
        .iter()
        .map(|m| m["slot"].as_str().expect("slot"))
        .collect();
    assert_eq!(slots, ["transcription", "segmentation", "vad"]);
    let info: Value = app.ok("get_model_info", json!({ "modelId": "whisper-base" }));
    assert_eq!(info["installed"], true);
    assert_eq!(info["active"], true);
    assert_eq!(info["memory_measured"], false);
    let vit_b: Value = app.ok("get_model_info", json!({ "modelId": "sam-vit-b" }));
    assert_eq!(vit_b["installed"], false);
    let list: Vec<Value> = app.ok("list_models", json!({}));
    assert!(list
        .iter()
        .any(|m| m["id"] == "sam-tiny" && m["installed"] == true));
    let (kind, _) = app.err("get_model_info", json!({ "modelId": "gpt-5" }));
    assert_eq!(kind, "unknown_model");
    for slot in ["transcription", "segmentation", "vad"] {
        assert_eq!(
            app.state(slot),
            "unloaded",
            "{slot} was loaded by a status call"
        );
        assert!(
            app.model(slot)["last_used_ms"].is_null(),
            "a status call counted as activity"
        );
    }
}

#[test]
fn transcribe_a_file_then_unload_reports_what_was_freed() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), false);
    let app = TestApp::start(dir.path(), &[]);
    let result: Value = app.ok(
        "transcribe",
        json!({ "path": fixture("beckett.wav"), "settings": { "language": "en" } }),
    );
    let text = result["text"].as_str().expect("text");
    assert!(wer(text) <= 0.10, "WER too high for {text:?}");
    assert_eq!(result["timings"]["cold"], true);
    assert_eq!(result["skipped_silence"], true);
    let segments = result["segments"].as_array().expect("segments");
    assert!(!segments.is_empty());
    let audio_seconds = result["audio_seconds"].as_f64().expect("length");
    assert!(
        segments
            .iter()
            .all(|s| s["end"].as_f64().expect("end") <= audio_seconds + 0.01),
        "{segments:?}"
    );
    let model = app.model("transcription");
    assert_eq!(model["state"], "loaded");
    assert!(model["resident_bytes"].as_u64().expect("measured") > 50_000_000);
    assert!(
        model["last_request"]["inference_us"]
            .as_u64()
            .expect("timed")
            > 0
    );
    assert_eq!(app.state("vad"), "loaded");

    let again: Value = app.ok(
        "transcribe",
        json!({ "path": fixture("beckett.wav"), "settings": {} }),
    );
    assert_eq!(
        again["timings"]["cold"], false,
        "the second request found the model warm"
    );

    let summary: Value = app.ok("manually_unload_model", json!({ "slot": null }));
    let unloaded: Vec<&str> = summary["unloaded"]
        .as_array()
        .expect("list")
        .iter()
        .map(|u| u["display_name"].as_str().expect("name"))
        .collect();
    assert_eq!(unloaded, ["Whisper base", "Silero VAD"]);
    assert!(summary["total_freed_bytes"].as_u64().expect("bytes") > 0);
    assert_eq!(app.state("transcription"), "unloaded");
    let nothing: Value = app.ok("manually_unload_model", json!({ "slot": null }));
    assert_eq!(nothing["unloaded"], json!([]));
}

/// What one request costs the app layer besides the engine: status snapshots of the core
/// (the event forwarder's included) and copies of the settings. Printed for the record; a
/// warm request takes neither (the lease says which model it holds and whether it was cold,
/// the core answers "is it loaded?" directly, the forwarder builds the tray's view from the
/// events). Before the app layer was split, a warm transcription took 7 snapshots and 4
/// copies, a warm re-prompt 5 and 3.
#[test]
fn a_warm_request_takes_no_status_snapshot_and_copies_no_settings() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let app = TestApp::start(dir.path(), &[]);
    let slots = app
        .app
        .state::<std::sync::Arc<dormouse_lib::managers::slots::SlotManager>>();
    let settings = app
        .app
        .state::<std::sync::Arc<dormouse_lib::managers::settings::SettingsManager>>();
    let counts = || {
        (
            slots.core().snapshots_taken(),
            settings.store().copies_made(),
        )
    };
    let transcribe = || {
        let _: Value = app.ok(
            "transcribe",
            json!({ "path": fixture("beckett.wav"), "settings": { "language": "en" } }),
        );
    };
    let png = dir.path().join("square.png");
    write_square_png(&png, 64);
    let opened: Value = app.ok("open_image_file", json!({ "path": png }));
    let id = opened["image_id"].clone();
    // A re-prompt on an opened image: the embedding is cached, so the request is mostly
    // the app layer and the decoder.
    let segment = || {
        let _: Value = app.ok(
            "segment",
            json!({ "request": { "image_id": id, "points": [{ "x": 32.0, "y": 32.0, "foreground": true }], "bbox": null } }),
        );
    };
    for (name, request) in [
        ("transcribe", &transcribe as &dyn Fn()),
        ("segment", &segment),
    ] {
        request();
        // The event forwarder handles the cold request's events on its own thread.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let before = counts();
        request();
        std::thread::sleep(std::time::Duration::from_millis(500));
        let after = counts();
        let taken = (after.0 - before.0, after.1 - before.1);
        println!(
            "warm {name}: {} status snapshots, {} settings copies",
            taken.0, taken.1
        );
        assert_eq!(taken, (0, 0), "warm {name}: (snapshots, settings copies)");
    }
}

/// Memory settings and UI preferences changed from several threads at once (as two windows,
/// or a fast user, could): afterwards the core's configuration is exactly what
/// `settings.json` says, and the file is the last change each thread made.
#[test]
fn concurrent_settings_changes_leave_the_core_and_the_file_in_agreement() {
    use dormouse_lib::managers::settings::{parse, EnvOverrides, SettingsManager};
    const CHANGES: u32 = 100;
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), false);
    let app = TestApp::start(dir.path(), &[]);
    let threads: Vec<_> = (0..6u32)
        .map(|t| {
            let window = app.window.clone();
            std::thread::spawn(move || {
                for i in 0..CHANGES {
                    let body = if t % 3 == 2 {
                        (
                            "update_settings",
                            json!({ "patch": { "show_memory_usage": i % 2 == 0, "preload_on_startup": null } }),
                        )
                    } else {
                        (
                            "update_model_config",
                            json!({ "memory": {
                                "strategy": "custom",
                                "custom_timeout_secs": 60 + t * 1000 + i,
                                "timer_scope": if i % 2 == 0 { "all_together" } else { "each_on_its_own" },
                                "pinned": [],
                                "memory_budget_mib": null
                            } }),
                        )
                    };
                    support::request_on(
                        &window,
                        body.0,
                        tauri::ipc::InvokeBody::Json(body.1),
                        Default::default(),
                    )
                    .unwrap_or_else(|e| panic!("{} failed: {e}", body.0));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("no panic");
    }
    let settings = app
        .app
        .state::<std::sync::Arc<SettingsManager>>()
        .inner()
        .clone();
    let saved = parse(&std::fs::read(app.paths.settings_file()).expect("settings.json"))
        .expect("a whole settings file");
    assert_eq!(saved, settings.get(), "the file is the settings in force");
    let slots = app
        .app
        .state::<std::sync::Arc<dormouse_lib::managers::slots::SlotManager>>();
    assert_eq!(
        slots.core().config(),
        EnvOverrides::default().apply(&saved),
        "the core runs what the file says"
    );
    let last = saved.memory.custom_timeout_secs;
    assert!(
        [0, 1, 3, 4]
            .map(|t| 60 + t * 1000 + CHANGES - 1)
            .contains(&last),
        "the last change of one thread wins, got {last}"
    );
}

/// The system's memory pressure, as the platform watcher reports it, unloads an idle model
/// through the real app (the core's checker thread, the views, the status command), saying
/// why; with the user's setting off it unloads nothing.
#[test]
fn memory_pressure_unloads_an_idle_model_and_says_so_unless_the_user_turned_it_off() {
    use model_manager::PressureLevel;
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), false);
    let app = TestApp::start(dir.path(), &[]);
    let slots = app
        .app
        .state::<std::sync::Arc<dormouse_lib::managers::slots::SlotManager>>()
        .inner()
        .clone();
    let wait_until_unloaded = |what: &str| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let model = app.model("transcription");
            if model["state"] == "unloaded" {
                return model;
            }
            assert!(std::time::Instant::now() < until, "{what}: still {model}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    // Off: pressure changes nothing.
    let memory = json!({ "strategy": "always_loaded", "custom_timeout_secs": 300, "timer_scope": "all_together", "pinned": [], "memory_budget_mib": null, "respond_to_memory_pressure": false });
    let _: Value = app.ok("update_model_config", json!({ "memory": memory }));
    app.warm_whisper();
    slots.report_memory_pressure(PressureLevel::Critical);
    std::thread::sleep(
        model_manager::PressurePolicy::DEFAULT_SUSTAIN + std::time::Duration::from_secs(1),
    );
    assert_eq!(
        app.state("transcription"),
        "loaded",
        "the user turned it off"
    );
    // On (the default): after the sustain window the idle model goes, and says why.
    slots.report_memory_pressure(PressureLevel::Normal);
    let mut memory = memory;
    memory["respond_to_memory_pressure"] = json!(true);
    let view: Value = app.ok("update_model_config", json!({ "memory": memory }));
    assert_eq!(
        view["settings"]["memory"]["respond_to_memory_pressure"],
        true
    );
    slots.report_memory_pressure(PressureLevel::Warn);
    let model = wait_until_unloaded("under warn");
    assert_eq!(model["last_unload"]["reason"], "memory_pressure", "{model}");
    assert!(
        model["last_unload"]["resident_bytes"]
            .as_u64()
            .expect("bytes")
            > 50_000_000
    );
    let status: Value = app.ok("get_model_status", json!({}));
    assert_eq!(status["pressure"], "warn", "{status}");
}

/// Before the computer sleeps, the app's sleep hook (what the logind watcher calls) unloads
/// the loaded models with the reason `system_sleep`, unless the user turned that off; on
/// battery, the on-battery timeout moves the idle deadline the status shows.
#[test]
fn sleep_unloads_models_unless_the_user_turned_it_off_and_battery_moves_the_deadline() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), false);
    let app = TestApp::start(dir.path(), &[]);
    let slots = app
        .app
        .state::<std::sync::Arc<dormouse_lib::managers::slots::SlotManager>>()
        .inner()
        .clone();
    let settings = app
        .app
        .state::<std::sync::Arc<dormouse_lib::managers::settings::SettingsManager>>()
        .inner()
        .clone();
    let hooks = dormouse_lib::sleep::app_hooks(slots.clone(), settings);
    let mut memory = json!({ "strategy": "auto", "custom_timeout_secs": 300, "timer_scope": "all_together", "pinned": [], "memory_budget_mib": null, "respond_to_memory_pressure": true, "unload_before_sleep": false, "battery_timeout_secs": null });
    let _: Value = app.ok("update_model_config", json!({ "memory": memory }));
    app.warm_whisper();
    (hooks.before_sleep)();
    assert_eq!(
        app.state("transcription"),
        "loaded",
        "the user turned it off"
    );
    (hooks.after_wake)();
    assert_eq!(
        app.state("transcription"),
        "loaded",
        "waking unloads nothing not due"
    );

    // On battery with a 1-minute timeout: the deadline is a minute after the last use.
    memory["battery_timeout_secs"] = json!(60);
    let _: Value = app.ok("update_model_config", json!({ "memory": memory }));
    let before = app.model("transcription")["expires_at_ms"]
        .as_u64()
        .expect("scheduled");
    slots.report_power_source(model_manager::PowerSource::Battery);
    let status: Value = app.ok("get_model_status", json!({}));
    assert_eq!(status["on_battery"], true, "{status}");
    let model = app.model("transcription");
    let after = model["expires_at_ms"].as_u64().expect("scheduled");
    let last_used = model["last_used_ms"].as_u64().expect("used");
    assert_eq!(before - after, 240_000, "5 min became 1 min: {model}");
    assert_eq!(after - last_used, 60_000, "{model}");
    slots.report_power_source(model_manager::PowerSource::Mains);

    // On (the default): the model goes before the sleep, and says why.
    memory["unload_before_sleep"] = json!(true);
    let view: Value = app.ok("update_model_config", json!({ "memory": memory }));
    assert_eq!(view["settings"]["memory"]["unload_before_sleep"], true);
    (hooks.before_sleep)();
    let model = app.model("transcription");
    assert_eq!(model["state"], "unloaded", "{model}");
    assert_eq!(model["last_unload"]["reason"], "system_sleep", "{model}");
    assert!(
        model["last_unload"]["resident_bytes"]
            .as_u64()
            .expect("bytes")
            > 50_000_000
    );
    // A bad on-battery timeout is refused with its name, and nothing is lost.
    memory["battery_timeout_secs"] = json!(5);
    let (kind, error) = app.err("update_model_config", json!({ "memory": memory }));
    assert_eq!(kind, "invalid_setting", "{error}");
    assert!(error.to_string().contains("on-battery timeout"), "{error}");
    let saved: Value = app.ok("get_settings", json!({}));
    assert_eq!(
        saved["settings"]["memory"]["battery_timeout_secs"], 60,
        "{saved}"
    );
}

/// `dormouse status` and `dormouse unload`: the real executable, run as a script or a game
/// launcher would, talks to the running app over its control socket.
#[test]
fn the_command_line_reports_status_and_unloads_through_the_running_app() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), false);
    let socket = dir.path().join("run").join("control.sock");
    let socket_name = socket.display().to_string();
    let app = TestApp::start(
        dir.path(),
        &[(dormouse_lib::control::SOCKET_ENV, socket_name.as_str())],
    );
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dormouse"))
            .args(args)
            .env(dormouse_lib::control::SOCKET_ENV, &socket_name)
            .output()
            .expect("the executable runs");
        (
            out.status.code().expect("exited"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p).expect("exists").permissions().mode() & 0o777
        };
        assert_eq!(mode(&socket), 0o600, "owner-only socket");
        assert_eq!(
            mode(socket.parent().expect("dir")),
            0o700,
            "owner-only folder"
        );
    }

    let (code, out, err) = cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Whisper base (transcription): not loaded"),
        "{out}"
    );
    assert!(out.contains("Total: 0 MB loaded"), "{out}");

    app.warm_whisper();
    let (code, out, err) = cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    let whisper = out
        .lines()
        .find(|l| l.starts_with("Whisper base (transcription): loaded · "))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        whisper.contains(" MB · unloads in 4m ") || whisper.contains(" MB · unloads in 5m "),
        "{whisper}"
    );
    let (code, out, _) = cli(&["status", "--json"]);
    assert_eq!(code, 0);
    let status: Value = serde_json::from_str(&out).expect("JSON");
    let listed = status["models"]
        .as_array()
        .expect("models")
        .iter()
        .find(|m| m["slot"] == "transcription")
        .expect("whisper listed")
        .clone();
    assert_eq!(listed["state"], "loaded");
    assert!(listed["resident_bytes"].as_u64().expect("bytes") > 50_000_000);

    let (code, out, err) = cli(&["unload", "all"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("Models unloaded: Whisper base"), "{out}");
    assert!(out.contains("(freed "), "{out}");
    let model = app.model("transcription");
    assert_eq!(model["state"], "unloaded", "{model}");
    assert_eq!(model["last_unload"]["reason"], "manual", "{model}");
    let (code, out, _) = cli(&["unload"]);
    assert_eq!((code, out.trim()), (0, "No models were loaded"));
    let (code, out, _) = cli(&["unload", "segmentation", "--json"]);
    assert_eq!(code, 0);
    let summary: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(summary["unloaded"], json!([]), "{summary}");

    // A wrong command line is refused before anything is asked.
    let (code, _, err) = cli(&["unload", "whisper"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown model slot \"whisper\""), "{err}");

    // A client that sends garbage gets an error, and the app goes on answering.
    #[cfg(unix)]
    {
        use std::io::{BufRead, Write};
        let mut raw = std::os::unix::net::UnixStream::connect(&socket).expect("connects");
        raw.write_all(b"{not json\n").expect("sent");
        let mut answer = String::new();
        std::io::BufReader::new(&raw)
            .read_line(&mut answer)
            .expect("answer");
        assert!(answer.contains("unreadable request"), "{answer}");
    }
    assert_eq!(cli(&["status"]).0, 0);

    // Nothing listening: the exit status says Dormouse is not running.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dormouse"))
        .args(["status"])
        .env(
            dormouse_lib::control::SOCKET_ENV,
            dir.path().join("nobody.sock"),
        )
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Dormouse is not running.\n"
    );
}

#[test]
fn transcribe_a_recording_sent_as_raw_bytes() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), false);
    let app = TestApp::start(dir.path(), &[]);
    let wav = std::fs::read(fixture("beckett.wav")).expect("wav");
    let body = app
        .invoke_raw(
            "transcribe_audio",
            wav,
            &[("x-dormouse-transcribe", r#"{"skip_silence":false}"#)],
        )
        .expect("transcribed");
    let result: Value = body.deserialize().expect("json");
    assert!(
        wer(result["text"].as_str().expect("text")) <= 0.10,
        "{result}"
    );
    assert_eq!(result["skipped_silence"], false);

    let empty = app
        .invoke_raw("transcribe_audio", Vec::new(), &[])
        .expect_err("empty");
    assert_eq!(empty["kind"], "invalid_input", "{empty}");
    let bad_header = app
        .invoke_raw(
            "transcribe_audio",
            vec![1, 2, 3],
            &[("x-dormouse-transcribe", "{nope")],
        )
        .expect_err("bad header");
    assert_eq!(bad_header["kind"], "invalid_input");
    let (kind, _) = app.err("transcribe_audio", json!({ "audio": [1, 2, 3] }));
    assert_eq!(kind, "invalid_input", "JSON instead of raw bytes");
}

#[test]
fn bad_audio_is_a_clear_error_and_loads_nothing() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), false);
    let app = TestApp::start(dir.path(), &[]);
    let (kind, err) = app.err(
        "transcribe",
        json!({ "path": "/nonexistent/x.wav", "settings": {} }),
    );
    assert_eq!(kind, "file_not_found", "{err}");
    let corrupt = dir.path().join("corrupt.wav");
    std::fs::write(&corrupt, b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk").expect("write");
    let empty = dir.path().join("empty.mp3");
    std::fs::write(&empty, b"").expect("write");
    for path in [&corrupt, &empty] {
        let (kind, err) = app.err("transcribe", json!({ "path": path, "settings": {} }));
        assert_eq!(kind, "invalid_input", "{err}");
        assert!(err["message"].as_str().expect("message").len() > 10);
    }
    let (kind, _) = app.err(
        "transcribe",
        json!({ "path": fixture("beckett.wav"), "settings": { "language": "../x" } }),
    );
    assert_eq!(kind, "invalid_input");
    assert_eq!(
        app.state("transcription"),
        "unloaded",
        "bad input must not load the model"
    );
}

#[test]
fn missing_models_are_named_with_where_they_belong() {
    let dir = tempfile::tempdir().expect("temp");
    let app = TestApp::start(dir.path(), &[]);
    let (kind, err) = app.err(
        "transcribe",
        json!({ "path": fixture("beckett.wav"), "settings": {} }),
    );
    assert_eq!(kind, "model_not_installed", "{err}");
    assert!(err["expected_path"]
        .as_str()
        .expect("path")
        .ends_with("ggml-base.bin"));
    let (kind, _) = app.err("warm_model", json!({ "task": "segmentation" }));
    assert_eq!(kind, "model_not_installed");
    let (kind, _) = app.err(
        "set_model",
        json!({ "task": "segmentation", "modelId": "sam-vit-b" }),
    );
    assert_eq!(kind, "model_not_installed");
    let (kind, _) = app.err(
        "set_model",
        json!({ "task": "segmentation", "modelId": "whisper-base" }),
    );
    assert_eq!(
        kind, "unknown_model",
        "a transcription model cannot segment"
    );
}

#[test]
fn segment_returns_a_mask_and_reprompts_hit_the_cache() {
    use dormouse_lib::events::ImagePrepared;
    use dormouse_lib::managers::segmentation::PreparationOutcome;
    use tauri_specta::Event;

    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let app = TestApp::start(dir.path(), &[]);
    let (prepared_tx, prepared_rx) = std::sync::mpsc::channel();
    ImagePrepared::listen(&app.app, move |e| drop(prepared_tx.send(e.payload.0)));
    let image = dir.path().join("square.png");
    write_square_png(&image, 64);
    let opened: Value = app.ok("open_image_file", json!({ "path": image }));
    assert_eq!(opened["preparing"], true, "the embedding starts on open");
    assert_eq!(
        (opened["width"].as_u64(), opened["height"].as_u64()),
        (Some(64), Some(64))
    );
    assert_ne!(
        app.state("segmentation"),
        "unloaded",
        "opening an image warms the model"
    );
    let id = opened["image_id"].clone();
    let request = |x: f32| json!({ "request": { "image_id": id, "points": [{ "x": x, "y": 32.0, "foreground": true }], "bbox": null } });
    let first: Value = app.ok("segment", request(32.0));
    assert_eq!(
        (first["width"].as_u64(), first["height"].as_u64()),
        (Some(64), Some(64))
    );
    // The image was embedded when it was opened (engines' tests check that a prompt waits
    // for that work instead of repeating it); the first click may still have got there first.
    assert!(first["embedding_cached"].is_boolean());
    let second: Value = app.ok("segment", request(20.0));
    assert_eq!(second["embedding_cached"], true);
    // The embedding computed on open said it was ready (or the first click had computed it
    // already, and the work on open found it cached).
    let prepared = prepared_rx
        .recv_timeout(std::time::Duration::from_secs(120))
        .expect("the embedding ahead ends with an ImagePrepared event");
    assert_eq!(
        Some(u64::from(prepared.image_id)),
        opened["image_id"].as_u64()
    );
    assert!(
        matches!(prepared.outcome, PreparationOutcome::Ready { .. }),
        "{prepared:?}"
    );
    let body = app.bytes("mask_png", json!({ "maskId": second["mask_id"] }));
    assert_eq!(&body[..8], b"\x89PNG\r\n\x1a\n");
    let decoded = image::load_from_memory(&body).expect("a PNG");
    assert_eq!((decoded.width(), decoded.height()), (64, 64));

    let (kind, _) = app.err(
        "segment",
        json!({ "request": { "image_id": id, "points": [], "bbox": null } }),
    );
    assert_eq!(kind, "invalid_input");
    let (kind, _) = app.err("segment", json!({ "request": { "image_id": id, "points": [{ "x": 500.0, "y": 1.0, "foreground": true }], "bbox": null } }));
    assert_eq!(kind, "invalid_input", "a point outside the image");
    let (kind, _) = app.err("segment", json!({ "request": { "image_id": 4242, "points": [{ "x": 1.0, "y": 1.0, "foreground": true }], "bbox": null } }));
    assert_eq!(kind, "invalid_input", "an image that was never opened");
    let (kind, _) = app.err("open_image_file", json!({ "path": "/no/such.png" }));
    assert_eq!(kind, "file_not_found");
    // Raw bytes: a real PNG opens, garbage is a readable error.
    let raw = app
        .invoke_raw("open_image", std::fs::read(&image).expect("png"), &[])
        .expect("opened");
    let raw: Value = raw.deserialize().expect("json");
    assert_eq!(raw["width"], 64);
    let garbage = app
        .invoke_raw("open_image", b"not an image".to_vec(), &[])
        .expect_err("garbage");
    assert_eq!(garbage["kind"], "invalid_input", "{garbage}");
    let (kind, _) = app.err("mask_png", json!({ "maskId": 9999 }));
    assert_eq!(kind, "invalid_input");
}

#[test]
fn memory_settings_are_validated_applied_and_persisted() {
    let dir = tempfile::tempdir().expect("temp");
    let app = TestApp::start(dir.path(), &[]);
    let before: Value = app.ok("get_settings", json!({}));
    let mut memory = before["settings"]["memory"].clone();
    memory["custom_timeout_secs"] = json!(0);
    let (kind, _) = app.err("update_model_config", json!({ "memory": memory }));
    assert_eq!(kind, "invalid_setting");
    memory["custom_timeout_secs"] = json!(600);
    memory["memory_budget_mib"] = json!(1);
    let (kind, _) = app.err("update_model_config", json!({ "memory": memory }));
    assert_eq!(kind, "invalid_setting");
    let unchanged: Value = app.ok("get_settings", json!({}));
    assert_eq!(
        unchanged["settings"], before["settings"],
        "a refused change changed something"
    );

    let memory = json!({ "strategy": "custom", "custom_timeout_secs": 90, "timer_scope": "each_on_its_own", "pinned": ["transcription"], "memory_budget_mib": 2048, "respond_to_memory_pressure": false, "unload_before_sleep": false, "battery_timeout_secs": 120 });
    let after: Value = app.ok("update_model_config", json!({ "memory": memory }));
    assert_eq!(after["settings"]["memory"], memory);
    let patched: Value = app.ok(
        "update_settings",
        json!({ "patch": { "show_memory_usage": false, "preload_on_startup": true } }),
    );
    assert_eq!(patched["settings"]["show_memory_usage"], false);
    assert_eq!(app.model("transcription")["pinned"], true);
    assert_eq!(
        app.app
            .state::<std::sync::Arc<dormouse_lib::managers::slots::SlotManager>>()
            .core()
            .config()
            .battery_idle_timeout,
        Some(std::time::Duration::from_secs(120)),
        "the on-battery timeout reaches the core"
    );
    let file = std::fs::read_to_string(app.paths.settings_file()).expect("saved");
    assert!(file.contains("\"custom_timeout_secs\": 90"), "{file}");
    drop(app);
    let restarted = TestApp::start(dir.path(), &[]);
    let reloaded: Value = restarted.ok("get_settings", json!({}));
    assert_eq!(reloaded["settings"]["memory"], memory);
    assert_eq!(reloaded["settings"]["preload_on_startup"], true);
}

#[test]
fn env_overrides_win_at_startup_and_are_shown() {
    let dir = tempfile::tempdir().expect("temp");
    let app = TestApp::start(
        dir.path(),
        &[
            ("MODEL_INACTIVITY_TIMEOUT", "3"),
            ("MODEL_CHECK_INTERVAL", "0.5"),
            ("MODEL_LOAD_TIMEOUT", "120"),
        ],
    );
    let settings: Value = app.ok("get_settings", json!({}));
    assert_eq!(settings["env_overrides"]["inactivity_timeout_secs"], 3.0);
    assert_eq!(settings["env_overrides"]["check_interval_secs"], 0.5);
    assert_eq!(settings["env_overrides"]["load_timeout_secs"], 120.0);
    assert_eq!(
        app.app
            .state::<std::sync::Arc<dormouse_lib::managers::slots::SlotManager>>()
            .core()
            .config()
            .strategy,
        model_manager::Strategy::Custom(std::time::Duration::from_secs(3))
    );
    assert_eq!(
        app.app
            .state::<std::sync::Arc<dormouse_lib::managers::slots::SlotManager>>()
            .core()
            .config()
            .load_timeout,
        std::time::Duration::from_secs(120)
    );
    drop(app);
    let bad = TestApp::start(dir.path(), &[("MODEL_INACTIVITY_TIMEOUT", "soon")]);
    let settings: Value = bad.ok("get_settings", json!({}));
    assert!(settings["env_overrides"]["inactivity_timeout_secs"].is_null());
    assert_eq!(settings["notices"][0]["kind"], "env_ignored");
}

#[test]
fn a_corrupt_settings_file_is_moved_aside_and_defaults_used() {
    let dir = tempfile::tempdir().expect("temp");
    std::fs::create_dir_all(dir.path().join("config")).expect("dir");
    std::fs::write(
        dir.path().join("config/settings.json"),
        "{\"schema_version\": 1, \"memory\": ",
    )
    .expect("write");
    let app = TestApp::start(dir.path(), &[]);
    let settings: Value = app.ok("get_settings", json!({}));
    assert_eq!(settings["notices"][0]["kind"], "settings_reset");
    assert_eq!(settings["settings"]["memory"]["strategy"], "auto");
    let kept = std::fs::read_dir(dir.path().join("config"))
        .expect("dir")
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("settings.json.corrupt-")
        });
    assert!(kept, "the unreadable file was not kept");
}

#[test]
fn user_models_import_activate_survive_restart_and_fall_back_when_deleted() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let corrupt = dir.path().join("broken.safetensors");
    std::fs::write(&corrupt, b"not weights at all").expect("write");
    let app = TestApp::start(dir.path(), &[]);
    let (kind, err) = app.err(
        "import_model",
        json!({ "path": corrupt, "displayName": "Broken" }),
    );
    assert_eq!(kind, "invalid_model", "{err}");
    assert!(
        !dir.path().join("models/user").exists()
            || std::fs::read_dir(dir.path().join("models/user"))
                .expect("dir")
                .next()
                .is_none(),
        "nothing was copied"
    );
    let (kind, _) = app.err(
        "import_model",
        json!({ "path": "/no/such/file", "displayName": null }),
    );
    assert_eq!(kind, "file_not_found");

    let info: Value = app.ok(
        "import_model",
        json!({ "path": sam_tiny_weights(), "displayName": "Leaf cells" }),
    );
    assert_eq!(info["id"], "user:leaf-cells");
    assert_eq!(info["slot"], "segmentation");
    assert_eq!(info["active"], false);
    for bad_id in ["../../etc/passwd", "a/b", "", "UPPER"] {
        let (kind, _) = app.err("load_user_model", json!({ "id": bad_id }));
        assert_eq!(kind, "unknown_model", "{bad_id:?}");
    }
    let (kind, _) = app.err("get_model_info", json!({ "modelId": "user:../x" }));
    assert_eq!(kind, "unknown_model");
    let loaded: Value = app.ok("load_user_model", json!({ "id": "leaf-cells" }));
    assert_eq!(loaded["model_id"], "user:leaf-cells");
    assert_eq!(loaded["state"], "loaded");
    assert_eq!(loaded["is_user_model"], true);
    assert_eq!(loaded["display_name"], "Leaf cells");
    drop(app);

    // Restart: still active, restored lazily (not loaded until used).
    let app = TestApp::start(dir.path(), &[]);
    let model = app.model("segmentation");
    assert_eq!(model["model_id"], "user:leaf-cells");
    assert_eq!(model["state"], "unloaded");
    let image = dir.path().join("img.png");
    write_square_png(&image, 32);
    let opened: Value = app.ok("open_image_file", json!({ "path": image }));
    let result: Value = app.ok("segment", json!({ "request": { "image_id": opened["image_id"], "points": [{ "x": 16.0, "y": 16.0, "foreground": true }], "bbox": null } }));
    assert_eq!(result["model_id"], "user:leaf-cells");
    // Reset to base switches back (and persists).
    let reset: Value = app.ok("reset_to_base_model", json!({ "task": "segmentation" }));
    assert_eq!(reset["model_id"], "sam-tiny");
    let loaded: Value = app.ok("load_user_model", json!({ "id": "leaf-cells" }));
    assert_eq!(loaded["model_id"], "user:leaf-cells");
    drop(app);

    // The file vanished: the setting is cleared, the base model used, and the user told once.
    std::fs::remove_file(dir.path().join("models/user/leaf-cells.safetensors")).expect("rm");
    let app = TestApp::start(dir.path(), &[]);
    assert_eq!(app.model("segmentation")["model_id"], "sam-tiny");
    let settings: Value = app.ok("get_settings", json!({}));
    assert_eq!(settings["notices"][0]["kind"], "user_model_missing");
    assert!(settings["settings"]["active_user_models"]["segmentation"].is_null());
    drop(app);
    let app = TestApp::start(dir.path(), &[]);
    let settings: Value = app.ok("get_settings", json!({}));
    assert_eq!(settings["notices"], json!([]), "told once only");
}

#[test]
fn a_broken_active_user_model_falls_back_to_base_at_start_and_at_first_use() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let weights = dir.path().join("models/user/parts.safetensors");
    let image = dir.path().join("img.png");
    write_square_png(&image, 32);
    let segment = |app: &TestApp| -> Value {
        let opened: Value = app.ok("open_image_file", json!({ "path": image }));
        app.ok("segment", json!({ "request": { "image_id": opened["image_id"], "points": [{ "x": 16.0, "y": 16.0, "foreground": true }], "bbox": null } }))
    };
    {
        let app = TestApp::start(dir.path(), &[]);
        app.ok::<Value>(
            "import_model",
            json!({ "path": sam_tiny_weights(), "displayName": "Parts" }),
        );
        app.ok::<Value>("load_user_model", json!({ "id": "parts" }));
    }
    // Damaged while Dormouse was closed: it starts anyway, on the base model, and says why.
    let good = std::fs::read(&weights).expect("read");
    std::fs::write(&weights, &good[..good.len() / 2]).expect("truncate");
    {
        let app = TestApp::start(dir.path(), &[]);
        assert_eq!(app.model("segmentation")["model_id"], "sam-tiny");
        let settings: Value = app.ok("get_settings", json!({}));
        assert_eq!(
            settings["notices"][0]["kind"], "user_model_unusable",
            "{settings}"
        );
        let message = settings["notices"][0]["message"].as_str().expect("text");
        assert!(message.contains("\"Parts\" cannot be used"), "{message}");
        assert!(settings["settings"]["active_user_models"]["segmentation"].is_null());
        assert_eq!(segment(&app)["model_id"], "sam-tiny");
    }
    // Repaired and active again; then its file vanishes while the app runs and the model is
    // unloaded: the next request falls back to the base model with a notice, not an error.
    std::fs::write(&weights, &good).expect("repair");
    let app = TestApp::start(dir.path(), &[]);
    app.ok::<Value>("load_user_model", json!({ "id": "parts" }));
    assert_eq!(segment(&app)["model_id"], "user:parts");
    app.ok::<Value>("manually_unload_model", json!({ "slot": "segmentation" }));
    std::fs::remove_file(&weights).expect("rm");
    assert_eq!(segment(&app)["model_id"], "sam-tiny");
    let settings: Value = app.ok("get_settings", json!({}));
    let kinds: Vec<&str> = settings["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .filter_map(|n| n["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["user_model_missing"], "{settings}");
    assert!(settings["settings"]["active_user_models"]["segmentation"].is_null());
    assert_eq!(app.model("segmentation")["model_id"], "sam-tiny");
}

#[test]
fn a_corrupt_user_model_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let app = TestApp::start(dir.path(), &[]);
    let info: Value = app.ok(
        "import_model",
        json!({ "path": sam_tiny_weights(), "displayName": "Parts" }),
    );
    assert_eq!(info["id"], "user:parts");
    // Damage the imported copy after import: loading it must fail and keep the base model.
    let path = dir.path().join("models/user/parts.safetensors");
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");
    let (kind, err) = app.err("load_user_model", json!({ "id": "parts" }));
    assert_eq!(kind, "invalid_model", "{err}");
    assert_eq!(app.model("segmentation")["model_id"], "sam-tiny");
    let settings: Value = app.ok("get_settings", json!({}));
    assert!(settings["settings"]["active_user_models"]["segmentation"].is_null());
}

#[test]
fn an_onnx_speech_model_is_chosen_and_transcribes_through_the_commands() {
    let dir = tempfile::tempdir().expect("temp");
    let models = dir.path().join("models");
    install_models(&models, false);
    // Parakeet's folder as the catalog names it, holding the synthetic tone model.
    let folder = models.join("parakeet-tdt-0.6b-v3-int8");
    std::fs::create_dir(&folder).expect("folder");
    let synthetic = support::fixtures().join("parakeet-synthetic");
    for name in [
        "encoder-model.onnx",
        "decoder_joint-model.onnx",
        "vocab.txt",
    ] {
        link(&synthetic.join(name), &folder.join(name));
    }
    let app = TestApp::start(dir.path(), &[]);
    // Incomplete (no preprocessor): refused, and Whisper stays the model.
    let (kind, err) = app.err(
        "set_model",
        json!({ "task": "transcription", "modelId": "parakeet-tdt-0.6b-v3" }),
    );
    assert_eq!(kind, "invalid_model", "{err}");
    assert!(
        err["message"]
            .as_str()
            .expect("message")
            .contains("lacks nemo128.onnx"),
        "{err}"
    );
    assert_eq!(app.model("transcription")["model_id"], "whisper-base");
    link(
        &synthetic.join("nemo128.onnx"),
        &folder.join("nemo128.onnx"),
    );
    let view: Value = app.ok(
        "set_model",
        json!({ "task": "transcription", "modelId": "parakeet-tdt-0.6b-v3" }),
    );
    assert_eq!(view["model_id"], "parakeet-tdt-0.6b-v3");
    let result: Value = app.ok(
        "transcribe",
        json!({ "path": fixture("parakeet-tones.wav"), "settings": { "skip_silence": false } }),
    );
    let expected = std::fs::read_to_string(fixture("parakeet-tones.txt")).expect("text");
    assert_eq!(result["text"], expected.trim(), "{result}");
    assert_eq!(result["model_id"], "parakeet-tdt-0.6b-v3");
    assert_eq!(
        result["segments"].as_array().expect("segments").len(),
        expected.split_whitespace().count()
    );
    let model = app.model("transcription");
    assert_eq!(model["state"], "loaded");
    assert!(model["resident_bytes"].as_u64().expect("measured") > 0);
    // Parakeet neither translates nor takes a language it does not know.
    let (kind, err) = app.err(
        "transcribe",
        json!({ "path": fixture("parakeet-tones.wav"), "settings": { "translate": true } }),
    );
    assert_eq!(kind, "invalid_input", "{err}");
    let summary: Value = app.ok("manually_unload_model", json!({ "slot": "transcription" }));
    assert_eq!(
        summary["unloaded"][0]["display_name"],
        "Parakeet TDT 0.6B v3 (int8)"
    );
}

#[test]
fn set_model_switches_and_loads_the_chosen_size() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let app = TestApp::start(dir.path(), &[]);
    let view: Value = app.ok(
        "set_model",
        json!({ "task": "segmentation", "modelId": "sam-tiny" }),
    );
    assert_eq!(view["model_id"], "sam-tiny");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while app.state("segmentation") != "loaded" {
        assert!(
            std::time::Instant::now() < deadline,
            "set_model did not load the model"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let settings: Value = app.ok("get_settings", json!({}));
    assert_eq!(settings["settings"]["models"]["segmentation"], "sam-tiny");
}

#[test]
fn quitting_unloads_everything_and_refuses_new_work() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let app = TestApp::start(dir.path(), &[]);
    let image = dir.path().join("img.png");
    write_square_png(&image, 32);
    let opened: Value = app.ok("open_image_file", json!({ "path": image }));
    let request = json!({ "request": { "image_id": opened["image_id"], "points": [{ "x": 8.0, "y": 8.0, "foreground": true }], "bbox": null } });
    app.ok::<Value>("segment", request.clone());
    assert_eq!(app.state("segmentation"), "loaded");
    dormouse_lib::shut_down(app.app.handle());
    assert_eq!(app.state("segmentation"), "unloaded");
    let (kind, _) = app.err("segment", request);
    assert_eq!(kind, "shutting_down");
    let models = app
        .app
        .state::<std::sync::Arc<dormouse_lib::managers::slots::SlotManager>>();
    assert_eq!(models.core().stats().loads_in_flight, 0);
}

#[test]
fn status_changes_progress_and_unloads_arrive_as_typed_events() {
    use dormouse_lib::events::{
        ModelLoadProgress, ModelStatusChanged, ModelUnloaded, SettingsChanged,
    };
    use dormouse_lib::views::{ModelStateView, ReasonView};
    use std::sync::mpsc::channel;
    use std::time::Duration;
    use tauri_specta::Event;

    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let app = TestApp::start(dir.path(), &[]);
    let (status_tx, status_rx) = channel();
    let (unload_tx, unload_rx) = channel();
    let (progress_tx, progress_rx) = channel();
    let (settings_tx, settings_rx) = channel();
    ModelStatusChanged::listen(&app.app, move |e| drop(status_tx.send(e.payload.0)));
    ModelUnloaded::listen(&app.app, move |e| drop(unload_tx.send(e.payload.0)));
    ModelLoadProgress::listen(&app.app, move |e| drop(progress_tx.send(e.payload)));
    SettingsChanged::listen(&app.app, move |e| drop(settings_tx.send(e.payload.0)));

    app.ok::<Value>("warm_model", json!({ "task": "segmentation" }));
    let mut states = Vec::new();
    while states.last() != Some(&ModelStateView::Loaded) {
        let view = status_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a status event");
        if view.slot == dormouse_lib::catalog::Slot::Segmentation {
            states.push(view.state);
        }
    }
    assert_eq!(states.first(), Some(&ModelStateView::Loading), "{states:?}");
    let progress = progress_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("progress");
    assert!((0.0..=1.0).contains(&progress.progress));

    app.ok::<Value>("manually_unload_model", json!({ "slot": "segmentation" }));
    let unloaded = unload_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("an unload event");
    assert_eq!(unloaded.reason, ReasonView::Manual);
    assert_eq!(unloaded.model_id, "sam-tiny");
    assert!(unloaded.resident_bytes > 0);

    app.ok::<Value>(
        "update_settings",
        json!({ "patch": { "show_memory_usage": false, "preload_on_startup": null } }),
    );
    let settings = settings_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("a settings event");
    assert!(!settings.settings.show_memory_usage);
}
