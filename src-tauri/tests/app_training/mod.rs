//! Custom-model training through the app's commands, on random MobileSAM weights of the real
//! architecture and synthetic shapes: bad training sets refused before anything starts; a
//! short training run with progress events that becomes the active segmentation model,
//! survives a restart, is used by `segment`, and falls back to the base model when its file
//! is deleted; a cancelled run that leaves nothing behind.

use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::Duration;

use dormouse_lib::events::TrainingProgress;
use dormouse_lib::managers::training::{TrainingManager, TrainingPhase, TrainingView};
use engines::segmentation::training::write_synthetic_pairs;
use serde_json::{json, Value};
use tauri::Manager;
use tauri_specta::Event;

use super::support::{install_models, write_square_png, TestApp};

fn events(app: &TestApp) -> Receiver<TrainingView> {
    let (tx, rx) = channel();
    TrainingProgress::listen(&app.app, move |e| drop(tx.send(e.payload.0)));
    rx
}

fn until_finished(events: &Receiver<TrainingView>) -> Vec<TrainingView> {
    let mut seen = Vec::new();
    loop {
        let view = events
            .recv_timeout(Duration::from_secs(300))
            .expect("a training event");
        let finished = matches!(
            view.phase,
            TrainingPhase::Done | TrainingPhase::Failed | TrainingPhase::Cancelled
        );
        seen.push(view);
        if finished {
            return seen;
        }
    }
}

fn add_files(app: &TestApp, image: &std::path::Path, mask: &std::path::Path) -> Value {
    app.ok(
        "add_training_files",
        json!({ "imagePath": image, "maskPath": mask }),
    )
}

fn user_files(app: &TestApp) -> Vec<String> {
    std::fs::read_dir(app.paths.models_dir.join("user"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn more_examples_than_one_training_uses_are_refused_before_any_image_is_decoded() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    // A set an older version let grow to 65, whose images are not even images: any decode
    // would fail with a decoding error, so an error about the count proves none happened.
    let set = dir.path().join("models/training-set");
    std::fs::create_dir_all(&set).expect("dir");
    for n in 1..=65 {
        let id = format!("ex-{n}");
        let record = json!({ "id": id, "name": format!("{id}.png"), "width": 8, "height": 8, "mask_pixels": 4, "added_at_ms": n });
        std::fs::write(set.join(format!("{id}.json")), record.to_string()).expect("record");
        std::fs::write(set.join(format!("{id}.png")), b"not a png").expect("image");
        std::fs::write(set.join(format!("{id}.mask.png")), b"not a png").expect("mask");
    }
    let app = TestApp::start(dir.path(), &[]);
    let ids: Vec<String> = (1..=65).map(|n| format!("ex-{n}")).collect();
    let (kind, error) = app.err(
        "start_training",
        json!({ "request": { "example_ids": ids } }),
    );
    assert_eq!(kind, "invalid_dataset", "{error}");
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("at most 64"),
        "{error}"
    );
    // The whole set: the newest 64 are used, so the limit passes and the decode is what fails.
    let (_, error) = app.err("start_training", json!({ "request": {} }));
    let message = error["message"].as_str().expect("message");
    assert!(!message.contains("at most"), "{message}");
    // And the set takes no 66th example.
    let pairs = write_synthetic_pairs(&dir.path().join("pairs"), 1, 3).expect("pairs");
    let (kind, error) = app.err(
        "add_training_files",
        json!({ "imagePath": pairs[0].0, "maskPath": pairs[0].1 }),
    );
    assert_eq!(kind, "invalid_dataset", "{error}");
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("already holds 64"),
        "{error}"
    );
}

#[test]
fn bad_training_sets_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let app = TestApp::start(dir.path(), &[]);
    let pairs = write_synthetic_pairs(&dir.path().join("pairs"), 2, 5).expect("pairs");

    let (kind, error) = app.err("start_training", json!({ "request": {} }));
    assert_eq!(kind, "invalid_dataset", "{error}");
    assert!(error["message"]
        .as_str()
        .expect("message")
        .contains("at least 2"));

    // A mask of another size, an empty mask, a file that is no image, a missing file.
    let small = dir.path().join("small.png");
    write_square_png(&small, 50);
    let (kind, error) = app.err(
        "add_training_files",
        json!({ "imagePath": pairs[0].0, "maskPath": small }),
    );
    assert_eq!(kind, "invalid_dataset", "{error}");
    assert!(error["message"]
        .as_str()
        .expect("message")
        .contains("50×50"));
    let blank = dir.path().join("blank.png");
    image::GrayImage::new(256, 192).save(&blank).expect("png");
    let (kind, error) = app.err(
        "add_training_files",
        json!({ "imagePath": pairs[0].0, "maskPath": blank }),
    );
    assert_eq!(kind, "invalid_dataset", "{error}");
    assert!(error["message"]
        .as_str()
        .expect("message")
        .contains("empty"));
    let text = dir.path().join("notes.png");
    std::fs::write(&text, "not an image").expect("write");
    let (kind, _) = app.err(
        "add_training_files",
        json!({ "imagePath": text, "maskPath": pairs[0].1 }),
    );
    assert_eq!(kind, "invalid_input");
    let (kind, _) = app.err(
        "add_training_files",
        json!({ "imagePath": dir.path().join("gone.png"), "maskPath": pairs[0].1 }),
    );
    assert_eq!(kind, "file_not_found");
    let examples: Vec<Value> = app.ok("list_training_examples", json!({}));
    assert!(examples.is_empty(), "nothing bad was kept: {examples:?}");

    // One good pair is still too few; out-of-range options are refused too.
    add_files(&app, &pairs[0].0, &pairs[0].1);
    let (kind, _) = app.err("start_training", json!({ "request": {} }));
    assert_eq!(kind, "invalid_dataset");
    add_files(&app, &pairs[1].0, &pairs[1].1);
    let (kind, _) = app.err("start_training", json!({ "request": { "steps": 0 } }));
    assert_eq!(kind, "invalid_input");
    let (kind, _) = app.err(
        "start_training",
        json!({ "request": { "learning_rate": -1.0 } }),
    );
    assert_eq!(kind, "invalid_input");
    let (kind, _) = app.err(
        "start_training",
        json!({ "request": { "example_ids": ["ex-99"] } }),
    );
    assert_eq!(kind, "invalid_input");
    assert_eq!(app.state("segmentation"), "unloaded", "nothing was loaded");
    assert!(user_files(&app).is_empty());
}

#[test]
fn a_trained_model_becomes_active_survives_a_restart_and_falls_back_when_deleted() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let pairs = write_synthetic_pairs(&dir.path().join("pairs"), 4, 9).expect("pairs");
    let scene = dir.path().join("scene.png");
    write_square_png(&scene, 200);
    let model_id;
    {
        let app = TestApp::start(dir.path(), &[]);
        let rx = events(&app);
        // Two pairs from files, two as raw bytes (what the training page sends).
        add_files(&app, &pairs[0].0, &pairs[0].1);
        add_files(&app, &pairs[1].0, &pairs[1].1);
        // Non-ASCII names: escaped to ASCII as the front end sends them, and raw UTF-8.
        let names = ["caf\\u00e9 \\ud83d\\udc1f.png", "café.png"];
        for ((image, mask), name) in pairs[2..].iter().zip(names) {
            let image = std::fs::read(image).expect("image");
            let mask = std::fs::read(mask).expect("mask");
            let header = format!(r#"{{"name":"{name}","image_bytes":{}}}"#, image.len());
            let mut body = image;
            body.extend(mask);
            app.invoke_raw(
                "add_training_example",
                body,
                &[("x-dormouse-example", &header)],
            )
            .expect("added");
        }
        let examples: Vec<Value> = app.ok("list_training_examples", json!({}));
        assert_eq!(examples.len(), 4);
        let names: Vec<&str> = examples.iter().filter_map(|e| e["name"].as_str()).collect();
        assert!(
            names.contains(&"café 🐟.png") && names.contains(&"café.png"),
            "{names:?}"
        );
        let thumb = app.bytes(
            "training_thumbnail",
            json!({ "exampleId": examples[0]["id"] }),
        );
        assert!(image::load_from_memory(&thumb).is_ok());

        let started: Value = app.ok(
            "start_training",
            json!({ "request": { "display_name": "Green disks", "steps": 3 } }),
        );
        assert_eq!(started["phase"], "preparing");
        assert_eq!(started["pairs"], 4);
        assert_eq!(started["validation_held_out"], true);
        let (kind, _) = app.err("start_training", json!({ "request": {} }));
        assert_eq!(kind, "in_use", "one training at a time");

        let seen = until_finished(&rx);
        let last = seen.last().expect("events");
        assert_eq!(last.phase, TrainingPhase::Done, "{:?}", last.error);
        let steps: Vec<u32> = seen
            .iter()
            .filter(|v| v.phase == TrainingPhase::Training)
            .map(|v| v.step)
            .collect();
        assert_eq!(steps, [1, 2, 3]);
        assert!(seen
            .iter()
            .filter_map(|v| v.last)
            .all(|p| p.loss.is_finite()));
        assert!(seen.iter().any(|v| v.phase == TrainingPhase::Saving));
        let outcome = last.outcome.as_ref().expect("outcome");
        model_id = outcome.model.id.clone();
        assert_eq!(model_id, "user:green-disks");
        assert!(outcome.model.active);
        assert_eq!(outcome.record.base_model, "sam-tiny");
        assert_eq!(outcome.record.pairs, 4);
        assert_eq!(outcome.record.steps, 3);
        assert!(outcome.record.validation_iou.is_some());
        let status = app.model("segmentation");
        assert_eq!(status["model_id"], model_id.as_str());
        assert_eq!(status["state"], "loaded");
        assert_eq!(status["leases"], 0, "the training lease ended");
        let history = app
            .app
            .state::<Arc<TrainingManager>>()
            .status()
            .expect("status")
            .history;
        assert_eq!(history.len(), 3);

        // The models page lists it with its metrics; segment uses it.
        let list: Vec<Value> = app.ok("list_models", json!({}));
        let listed = list
            .iter()
            .find(|m| m["id"] == model_id.as_str())
            .expect("listed");
        assert_eq!(listed["training"]["pairs"], 4);
        let opened: Value = app.ok("open_image_file", json!({ "path": scene }));
        let result: Value = app.ok(
            "segment",
            json!({ "request": { "image_id": opened["image_id"], "points": [{ "x": 100.0, "y": 100.0, "foreground": true }], "bbox": null } }),
        );
        assert_eq!(result["model_id"], model_id.as_str());
        let meta: Value = serde_json::from_slice(
            &std::fs::read(app.paths.models_dir.join("user/green-disks.json")).expect("meta"),
        )
        .expect("json");
        assert_eq!(meta["training"]["steps"], 3);
        assert!(
            !user_files(&app).iter().any(|f| f.contains("partial")),
            "{:?}",
            user_files(&app)
        );
    }
    {
        let app = TestApp::start(dir.path(), &[]);
        assert_eq!(app.model("segmentation")["model_id"], model_id.as_str());
        let opened: Value = app.ok("open_image_file", json!({ "path": scene }));
        let result: Value = app.ok(
            "segment",
            json!({ "request": { "image_id": opened["image_id"], "points": [], "bbox": [40.0, 40.0, 160.0, 160.0] } }),
        );
        assert_eq!(
            result["model_id"],
            model_id.as_str(),
            "used after a restart"
        );
        let examples: Vec<Value> = app.ok("list_training_examples", json!({}));
        assert_eq!(examples.len(), 4, "the training set is kept");
        // "Add to training set" on the Segment page keeps the image and that mask, unless
        // the mask shows nothing (or everything), which is refused as a training example.
        let added = app.invoke::<Value>(
            "add_segment_to_training_set",
            json!({ "imageId": opened["image_id"], "maskId": result["mask_id"] }),
        );
        let area = result["area"].as_u64().expect("area");
        match added {
            Ok(example) => {
                assert!(area > 0 && area < 200 * 200, "{area}");
                assert_eq!(example["mask_pixels"], area);
                assert_eq!(example["width"], 200);
                let examples: Vec<Value> = app.ok("list_training_examples", json!({}));
                assert_eq!(examples.len(), 5);
            }
            Err(error) => {
                assert!(area == 0 || area == 200 * 200, "{error}");
                assert_eq!(error["kind"], "invalid_dataset");
            }
        }
        let (kind, _) = app.err(
            "add_segment_to_training_set",
            json!({ "imageId": opened["image_id"], "maskId": 999_999 }),
        );
        assert_eq!(kind, "invalid_input");
    }
    std::fs::remove_file(dir.path().join("models/user/green-disks.safetensors")).expect("rm");
    let app = TestApp::start(dir.path(), &[]);
    assert_eq!(app.model("segmentation")["model_id"], "sam-tiny");
    let settings: Value = app.ok("get_settings", json!({}));
    assert!(settings["notices"]
        .as_array()
        .expect("notices")
        .iter()
        .any(|n| n["kind"] == "user_model_missing"));
}

#[test]
fn cancelling_mid_training_leaves_nothing_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp");
    install_models(&dir.path().join("models"), true);
    let pairs = write_synthetic_pairs(&dir.path().join("pairs"), 2, 11).expect("pairs");
    let app = TestApp::start(dir.path(), &[]);
    let rx = events(&app);
    for (image, mask) in &pairs {
        add_files(&app, image, mask);
    }
    let _: Value = app.ok("start_training", json!({ "request": { "steps": 500 } }));
    // Cancel once the steps are running (and the lease is visibly held).
    loop {
        let view = rx.recv_timeout(Duration::from_secs(300)).expect("event");
        if view.phase == TrainingPhase::Training {
            assert_eq!(
                app.model("segmentation")["leases"],
                1,
                "training holds a lease"
            );
            break;
        }
    }
    let cancelled: bool = app.ok("cancel_training", json!({}));
    assert!(cancelled);
    let seen = until_finished(&rx);
    let last = seen.last().expect("events");
    assert_eq!(last.phase, TrainingPhase::Cancelled);
    assert!(last.step < 500);
    assert!(user_files(&app).is_empty(), "{:?}", user_files(&app));
    assert_eq!(app.model("segmentation")["model_id"], "sam-tiny");
    assert_eq!(app.model("segmentation")["leases"], 0);
    let settings: Value = app.ok("get_settings", json!({}));
    assert!(settings["settings"]["active_user_models"]["segmentation"].is_null());
    let again: bool = app.ok("cancel_training", json!({}));
    assert!(!again, "nothing is running any more");
}
