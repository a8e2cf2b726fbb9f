//! Segment Anything through the model manager, on random weights of the real architectures
//! (no real SAM weights exist in the registries this project can reach).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use engines::segmentation::{weights, Point, Prompt, SamLoader, SamModel, SamSize};
use engines::EngineError;
use image::{Rgb, RgbImage};
use model_manager::{ManagerError, ModelKey, ModelManager, ModelSpec, ModelState};

/// Random MobileSAM weights, written once per test run.
fn tiny_weights() -> &'static Path {
    static PATH: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    let (_, path) = PATH.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("mobile_sam-random.safetensors");
        let info = weights::write_random_weights(SamSize::Tiny, &path, 7).expect("generate");
        assert_eq!(info.size, SamSize::Tiny);
        (dir, path)
    });
    path
}

fn scene() -> RgbImage {
    // A red square on grey, 640×480.
    RgbImage::from_fn(640, 480, |x, y| {
        if (200..400).contains(&x) && (150..330).contains(&y) {
            Rgb([220, 30, 30])
        } else {
            Rgb([128, 128, 128])
        }
    })
}

fn click(x: f32, y: f32) -> Point {
    Point {
        x,
        y,
        foreground: true,
    }
}

fn manager_with(path: &Path) -> (ModelManager, ModelKey) {
    let key = ModelKey::new("segmentation").expect("valid");
    let manager = ModelManager::builder()
        .idle_checker(false)
        .register(
            key.clone(),
            Arc::new(SamLoader),
            ModelSpec::with_path("sam-tiny", path),
        )
        .build()
        .expect("builds");
    (manager, key)
}

#[test]
fn random_weights_have_the_real_architecture() {
    let info = weights::inspect(tiny_weights()).expect("valid");
    assert_eq!(info.size, SamSize::Tiny);
    assert!(info.tensors > 100, "{info:?}");
    // MobileSAM is ~10 M parameters.
    assert!(
        (30_000_000..60_000_000).contains(&info.f32_bytes),
        "{info:?}"
    );
}

#[test]
fn segment_through_the_manager_then_reprompt_from_the_cache() {
    let (manager, key) = manager_with(tiny_weights());
    let lease = manager.acquire(&key).expect("loads");
    let sam = lease.downcast::<SamModel>().expect("a SAM model");
    assert_eq!(sam.size(), SamSize::Tiny);
    let image = scene();

    let first = sam
        .segment(
            &image,
            &Prompt {
                points: vec![click(300.0, 240.0)],
                bbox: None,
            },
        )
        .expect("segments");
    assert_eq!((first.width, first.height), (640, 480));
    assert_eq!(first.pixels.len(), 640 * 480);
    assert!(first.pixels.iter().all(|&p| p == 0 || p == 255));
    assert!(first.score.is_finite());
    assert!(
        !first.embedding_cached,
        "first prompt computes the embedding"
    );

    let second = sam
        .segment(
            &image,
            &Prompt {
                points: vec![
                    click(250.0, 200.0),
                    Point {
                        x: 10.0,
                        y: 10.0,
                        foreground: false,
                    },
                ],
                bbox: Some([190.0, 140.0, 410.0, 340.0]),
            },
        )
        .expect("segments");
    assert!(
        second.embedding_cached,
        "re-prompting the same image only decodes"
    );
    assert_eq!(second.pixels.len(), 640 * 480);

    let png = second.to_png().expect("png");
    let decoded = image::load_from_memory(&png).expect("valid png").to_luma8();
    assert_eq!(decoded.dimensions(), (640, 480));
    assert_eq!(decoded.as_raw(), &second.pixels);

    // A different image is embedded afresh.
    let other = RgbImage::from_pixel(300, 500, Rgb([10, 200, 10]));
    let third = sam
        .segment(
            &other,
            &Prompt {
                points: vec![click(5.0, 5.0)],
                bbox: None,
            },
        )
        .expect("segments");
    assert!(!third.embedding_cached);
    assert_eq!((third.width, third.height), (300, 500));

    // The status shows what it costs: weights plus the two cached embeddings.
    let weights_bytes = weights::inspect(tiny_weights()).expect("valid").f32_bytes;
    assert_eq!(sam.cached_embedding_bytes(), 2 * 256 * 64 * 64 * 4);
    assert_eq!(
        model_manager::LoadedModel::resident_bytes(sam),
        weights_bytes + sam.cached_embedding_bytes()
    );
    drop(lease);
    let status = manager.status();
    assert_eq!(
        status.models[0].resident_bytes,
        Some(weights_bytes),
        "measured at load time"
    );

    let report = manager.unload_all();
    assert_eq!(report.unloaded.len(), 1);
    assert!(report.unloaded[0].bytes_freed.is_some());
    assert_eq!(manager.status().models[0].state, ModelState::Idle);
}

#[test]
fn bad_prompts_are_clear_errors_and_keep_the_model_usable() {
    let model = SamModel::load(tiny_weights()).expect("loads");
    // A fine-tune starts from the file the loaded model came from, not the slot's choice now.
    assert_eq!(model.source(), tiny_weights());
    let image = scene();
    let err = model
        .segment(&image, &Prompt::default())
        .expect_err("no prompt");
    assert!(matches!(err, EngineError::InvalidRequest(_)), "{err}");
    let err = model
        .segment(
            &image,
            &Prompt {
                points: vec![click(700.0, 10.0)],
                bbox: None,
            },
        )
        .expect_err("outside");
    assert!(
        err.to_string().contains("outside the 640×480 image"),
        "{err}"
    );
    assert!(model
        .segment(
            &image,
            &Prompt {
                points: vec![click(1.0, 1.0)],
                bbox: None
            }
        )
        .is_ok());
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

#[test]
fn wrong_or_corrupt_weight_files_fail_clearly_and_change_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let full = std::fs::read(tiny_weights()).expect("read");
    let other_model = {
        // A valid safetensors file of some other model.
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(
            &varmap,
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        );
        candle_nn::linear(4, 4, vb.pp("classifier")).expect("layer");
        let path = dir.path().join("other.safetensors");
        varmap.save(&path).expect("save");
        path
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (write(dir.path(), "empty.safetensors", &[]), "only 0 bytes"),
        (
            write(
                dir.path(),
                "text.safetensors",
                b"hello, I am not a model at all",
            ),
            "not a safetensors file",
        ),
        (
            write(dir.path(), "cut.safetensors", &full[..full.len() / 2]),
            "truncated or corrupt",
        ),
        (other_model, "match neither"),
        (dir.path().join("missing.safetensors"), "cannot read"),
    ];

    let (manager, key) = manager_with(tiny_weights());
    drop(manager.acquire(&key).expect("the good model loads"));

    for (path, expected) in cases {
        let err = SamModel::load(&path).expect_err("bad file");
        assert!(
            err.to_string().contains(expected),
            "{}: {err}",
            path.display()
        );
        // Through the manager: the slot fails with that message, and the user's previous
        // model file is untouched.
        let user = ModelKey::new(format!(
            "user:{}",
            path.file_stem().and_then(|s| s.to_str()).unwrap_or("x")
        ))
        .expect("key");
        manager
            .register(
                user.clone(),
                Arc::new(SamLoader),
                ModelSpec::with_path("custom", &path),
            )
            .expect("registers");
        match manager.acquire(&user) {
            Err(ManagerError::Load { source, .. }) => {
                assert!(source.to_string().contains(expected), "{source}")
            }
            other => panic!("expected a load error, got {other:?}"),
        }
        let status = manager.status();
        assert_eq!(
            status.model(&user).expect("registered").state,
            ModelState::Failed
        );
    }
    assert_eq!(
        std::fs::read(tiny_weights()).expect("read"),
        full,
        "nothing the user had is touched"
    );
    assert_eq!(
        manager.status().model(&key).expect("seg").state,
        ModelState::Loaded
    );
}

#[test]
fn vit_b_random_weights_load_and_segment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sam_vit_b-random.safetensors");
    let info = weights::write_random_weights(SamSize::VitB, &path, 3).expect("generate");
    assert_eq!(info.size, SamSize::VitB);
    // SAM ViT-B is ~94 M parameters.
    assert!(
        (330_000_000..420_000_000).contains(&info.f32_bytes),
        "{info:?}"
    );
    let model = SamModel::load(&path).expect("loads");
    assert_eq!(model.size(), SamSize::VitB);
    let mask = model
        .segment(
            &scene(),
            &Prompt {
                points: vec![],
                bbox: Some([190.0, 140.0, 410.0, 340.0]),
            },
        )
        .expect("segments");
    assert_eq!(mask.pixels.len(), 640 * 480);
}

#[test]
fn a_cancelled_load_stops_between_tensors_with_progress_reported() {
    use model_manager::{CancelToken, LoadContext, LoadError, ModelLoader, ProgressReporter};
    use std::sync::Mutex;

    let spec = ModelSpec::with_path("sam-tiny", tiny_weights());
    // Progress rises as the weights are read; the load is cancelled a third of the way in.
    let token = CancelToken::new();
    let seen = Arc::new(Mutex::new(Vec::<f32>::new()));
    let ctx = LoadContext {
        cancel: token.clone(),
        progress: ProgressReporter::new({
            let seen = Arc::clone(&seen);
            move |fraction| {
                seen.lock().expect("progress").push(fraction);
                if fraction > 0.35 {
                    token.cancel();
                }
            }
        }),
    };
    let result = SamLoader.load(&spec, &ctx);
    assert!(
        matches!(result, Err(LoadError::Cancelled)),
        "{:?}",
        result.err()
    );
    let seen = seen.lock().expect("progress").clone();
    let last = *seen.last().expect("progress reported");
    assert!(
        last > 0.35 && last < 0.6,
        "stopped at the first tensor after the cancel (last progress {last})"
    );
    // Reported per tensor, rising: MobileSAM has hundreds of tensors.
    assert!(seen.len() > 50, "{} reports", seen.len());
    assert!(seen.windows(2).all(|w| w[0] <= w[1]));

    // Not cancelled: the same loader reaches 100 %.
    let full = Arc::new(Mutex::new(0.0f32));
    let ctx = LoadContext {
        cancel: CancelToken::new(),
        progress: ProgressReporter::new({
            let full = Arc::clone(&full);
            move |fraction| *full.lock().expect("progress") = fraction
        }),
    };
    assert!(SamLoader.load(&spec, &ctx).is_ok());
    assert_eq!(*full.lock().expect("progress"), 1.0);
}

/// Embedding ahead of the first prompt (what the app does when an image is opened): the
/// prompt after it only decodes; a stopped preparation caches nothing; and a prompt that
/// arrives while its image is being prepared waits for that work instead of repeating it.
#[test]
fn an_image_prepared_ahead_is_embedded_once() {
    let sam = SamModel::load(tiny_weights()).expect("loads");
    let image = scene();
    let prompt = Prompt {
        points: vec![click(300.0, 240.0)],
        bbox: None,
    };

    let stopped = sam.prepare(&image, &|| true).expect_err("stopped");
    assert!(matches!(stopped, EngineError::Cancelled), "{stopped}");
    assert_eq!(
        sam.cached_embedding_bytes(),
        0,
        "nothing cached when stopped"
    );

    assert!(
        sam.prepare(&image, &|| false).expect("prepared"),
        "computed"
    );
    assert!(
        !sam.prepare(&image, &|| false).expect("prepared"),
        "cached the second time"
    );
    assert!(sam.segment(&image, &prompt).expect("mask").embedding_cached);

    // A second image, prepared and prompted at the same time: exactly one of the two runs
    // the encoder, whichever claims the work first.
    let other = RgbImage::from_fn(640, 480, |x, _| Rgb([(x % 256) as u8, 90, 200]));
    let (prepared, mask) = std::thread::scope(|s| {
        let preparing = s.spawn(|| sam.prepare(&other, &|| false).expect("prepared"));
        let mask = sam.segment(&other, &prompt).expect("mask");
        (preparing.join().expect("thread"), mask)
    });
    assert!(
        prepared == mask.embedding_cached,
        "prepare computed: {prepared}, the prompt found it cached: {}",
        mask.embedding_cached
    );
    // A preparation stopped midway (after the first stage) leaves the image unembedded, and
    // the prompt then computes it itself.
    let third = RgbImage::from_fn(640, 480, |_, y| Rgb([40, (y % 256) as u8, 40]));
    let asked = std::sync::atomic::AtomicU32::new(0);
    let stop_after_first_look = || asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= 1;
    assert!(matches!(
        sam.prepare(&third, &stop_after_first_look),
        Err(EngineError::Cancelled)
    ));
    assert!(!sam.segment(&third, &prompt).expect("mask").embedding_cached);
}
