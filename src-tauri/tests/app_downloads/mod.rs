//! Downloads and deletion through the app's commands, against the scripted HTTP server of the
//! `downloads` crate's tests on 127.0.0.1 (the catalog's sources pointed at it through
//! `DORMOUSE_CATALOG_OVERRIDES`): a real Whisper model downloaded, verified and used; a
//! corrupt download reported; delete refused while loaded; bad overrides reported.

#[path = "../../crates/downloads/tests/support/mod.rs"]
mod http;

use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use dormouse_lib::events::DownloadProgress;
use dormouse_lib::managers::downloads::{DownloadErrorKind, DownloadView};
use downloads::Phase;
use serde_json::{json, Value};
use tauri_specta::Event;

use super::support::{fixture, install_models, TestApp};
use super::wer;

/// Writes an overrides file pointing `model` at `url` with `sha256`.
fn overrides(dir: &std::path::Path, entries: &[(&str, String, String)]) -> String {
    let map: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(id, url, sha)| ((*id).to_owned(), json!({ "url": url, "sha256": sha })))
        .collect();
    let path = dir.join("overrides.json");
    std::fs::write(&path, Value::Object(map).to_string()).expect("write overrides");
    path.display().to_string()
}

fn until_done(events: &Receiver<DownloadView>, model_id: &str) -> Vec<DownloadView> {
    let mut seen = Vec::new();
    loop {
        let view = events
            .recv_timeout(Duration::from_secs(60))
            .expect("a download event");
        if view.model_id != model_id {
            continue;
        }
        let done = matches!(
            view.phase,
            Phase::Finished | Phase::Failed | Phase::Cancelled
        );
        seen.push(view);
        if done {
            return seen;
        }
    }
}

#[test]
fn a_catalog_model_downloads_with_progress_events_and_is_then_used() {
    let whisper = std::fs::read(fixture("ggml-base.bin")).expect("fixture");
    let sha = http::sha256(&whisper);
    let body = std::sync::Arc::new(whisper);
    let served = body.clone();
    // The first connection drops after 20 MB: the app resumes it.
    let server = http::Server::start(move |_, n| {
        http::Reply::file(&served).cut_after((n == 0).then_some(20_000_000))
    });
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), false);
    let file = overrides(
        dir.path(),
        &[("whisper-tiny", server.url("ggml-tiny.bin"), sha)],
    );
    let app = TestApp::start(dir.path(), &[("DORMOUSE_CATALOG_OVERRIDES", &file)]);
    let (tx, rx) = channel();
    DownloadProgress::listen(&app.app, move |e| drop(tx.send(e.payload.0)));

    let listed: Vec<Value> = app.ok("list_models", json!({}));
    let tiny = listed
        .iter()
        .find(|m| m["id"] == "whisper-tiny")
        .expect("in the catalog");
    assert_eq!(tiny["installed"], false);
    assert_eq!(
        tiny["download"]["bytes"], 77_691_713,
        "the publisher's size is shown"
    );

    let first: DownloadView = app.ok("download_model", json!({ "modelId": "whisper-tiny" }));
    assert_eq!(first.model_id, "whisper-tiny");
    let again: DownloadView = app.ok("download_model", json!({ "modelId": "whisper-tiny" }));
    assert_eq!(
        again.model_id, "whisper-tiny",
        "a second request joins the first"
    );
    let events = until_done(&rx, "whisper-tiny");
    let last = events.last().expect("events");
    assert_eq!(last.phase, Phase::Finished, "{last:?}");
    assert!(events.iter().any(|e| e.phase == Phase::Retrying));
    assert!(events.iter().any(|e| e.resumed_from == Some(20_000_000)));
    assert!(events.iter().any(|e| e.phase == Phase::Verifying));
    assert_eq!(server.seen().len(), 2, "one transfer, resumed once");
    let path = app.paths.models_dir.join("ggml-tiny.bin");
    assert_eq!(
        std::fs::metadata(&path).expect("installed").len(),
        body.len() as u64
    );

    app.ok::<Value>(
        "set_model",
        json!({ "task": "transcription", "modelId": "whisper-tiny" }),
    );
    let result: Value = app.ok(
        "transcribe",
        json!({ "path": fixture("beckett.wav"), "settings": { "language": "en", "translate": false, "skip_silence": true } }),
    );
    assert!(
        wer(result["text"].as_str().expect("text")) <= 0.1,
        "{result}"
    );
    let (kind, error) = app.err("download_model", json!({ "modelId": "whisper-tiny" }));
    assert_eq!(kind, "invalid_input");
    assert!(error["message"]
        .as_str()
        .expect("msg")
        .contains("already installed"));
    let active: Vec<Value> = app.ok("list_downloads", json!({}));
    assert!(active.is_empty());
}

#[test]
fn a_corrupt_download_is_reported_and_leaves_nothing() {
    let body = http::bytes(3 << 20, 42);
    let served = body.clone();
    let server = http::Server::start(move |_, _| http::Reply::file(&served));
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), false);
    let file = overrides(
        dir.path(),
        &[(
            "whisper-small",
            server.url("ggml-small.bin"),
            "ab".repeat(32),
        )],
    );
    let app = TestApp::start(dir.path(), &[("DORMOUSE_CATALOG_OVERRIDES", &file)]);
    let (tx, rx) = channel();
    DownloadProgress::listen(&app.app, move |e| drop(tx.send(e.payload.0)));
    app.ok::<DownloadView>("download_model", json!({ "modelId": "whisper-small" }));
    let last = until_done(&rx, "whisper-small").pop().expect("events");
    assert_eq!(last.phase, Phase::Failed);
    let error = last.error.expect("an error");
    assert_eq!(error.kind, DownloadErrorKind::ChecksumMismatch);
    assert!(error.message.contains("corrupt"), "{}", error.message);
    let left: Vec<_> = std::fs::read_dir(&app.paths.models_dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("small"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    let listed: Vec<Value> = app.ok("list_models", json!({}));
    let small = listed
        .iter()
        .find(|m| m["id"] == "whisper-small")
        .expect("listed");
    assert_eq!(
        small["partial_bytes"],
        Value::Null,
        "a corrupt file is not kept for resuming"
    );
    // What an interrupted download left (e.g. the app quit mid-way) is offered for resuming.
    std::fs::write(
        app.paths.models_dir.join("ggml-small.bin.partial"),
        [0u8; 1000],
    )
    .expect("partial");
    let listed: Vec<Value> = app.ok("list_models", json!({}));
    let small = listed
        .iter()
        .find(|m| m["id"] == "whisper-small")
        .expect("listed");
    assert_eq!(small["partial_bytes"], 1000);

    let (kind, _) = app.err("download_model", json!({ "modelId": "silero-vad" }));
    assert_eq!(
        kind, "invalid_input",
        "no source: installed by the setup script"
    );
    let (kind, _) = app.err("download_model", json!({ "modelId": "nope" }));
    assert_eq!(kind, "unknown_model");
}

#[test]
fn delete_is_refused_while_loaded_and_frees_the_file_once_unloaded() {
    let dir = tempfile::tempdir().expect("temp");
    let models = dir.path().join("models");
    install_models(&models, false);
    // A real copy (not the fixture link) so deleting it frees space.
    let copy = dir.path().join("models/ggml-base.bin");
    std::fs::remove_file(&copy).expect("unlink");
    std::fs::copy(fixture("ggml-base.bin"), &copy).expect("copy");
    let app = TestApp::start(dir.path(), &[]);
    app.ok::<Value>(
        "transcribe",
        json!({ "path": fixture("beckett.wav"), "settings": { "language": "en", "translate": false, "skip_silence": false } }),
    );
    assert_eq!(app.state("transcription"), "loaded");
    let (kind, error) = app.err("delete_model", json!({ "modelId": "whisper-base" }));
    assert_eq!(kind, "in_use");
    assert!(
        error["message"]
            .as_str()
            .expect("msg")
            .contains("unload it first"),
        "{error}"
    );
    assert!(copy.is_file(), "nothing was deleted");

    app.ok::<Value>("manually_unload_model", json!({ "slot": "transcription" }));
    let deleted: Value = app.ok("delete_model", json!({ "modelId": "whisper-base" }));
    assert_eq!(
        deleted["freed_bytes"],
        std::fs::metadata(fixture("ggml-base.bin"))
            .expect("fixture")
            .len()
    );
    assert!(!copy.exists());
    let listed: Vec<Value> = app.ok("list_models", json!({}));
    let base = listed
        .iter()
        .find(|m| m["id"] == "whisper-base")
        .expect("listed");
    assert_eq!(
        (base["installed"].clone(), base["active"].clone()),
        (json!(false), json!(true))
    );
    let (kind, _) = app.err(
        "transcribe",
        json!({ "path": fixture("beckett.wav"), "settings": { "language": "en", "translate": false, "skip_silence": false } }),
    );
    assert_eq!(kind, "model_not_installed");
    let (kind, _) = app.err("delete_model", json!({ "modelId": "whisper-base" }));
    assert_eq!(
        kind, "file_not_found",
        "deleting twice says it is not installed"
    );
}

#[test]
fn bad_overrides_are_reported_and_the_catalog_is_used() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), false);
    let path = dir.path().join("overrides.json");
    std::fs::write(
        &path,
        r#"{"whisper-huge": {"url": "http://x", "sha256": "00"}}"#,
    )
    .expect("write");
    let app = TestApp::start(
        dir.path(),
        &[("DORMOUSE_CATALOG_OVERRIDES", path.to_str().expect("utf-8"))],
    );
    let settings: Value = app.ok("get_settings", json!({}));
    let notices = settings["notices"].as_array().expect("notices");
    assert!(
        notices
            .iter()
            .any(|n| n["message"].as_str().unwrap_or("").contains("whisper-huge")),
        "{notices:?}"
    );
}
