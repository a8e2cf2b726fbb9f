//! ONNX Runtime discovery and Silero VAD on real data: the ONNX Runtime library from the
//! `onnxruntime==1.24.2` wheel, Silero VAD v4 from `faster-whisper==1.0.2`, and Beckett's
//! recording from `moonshine-voice==0.1.5` (see scripts/fixtures.sh).

mod fixtures;

use std::process::Command;
use std::sync::Arc;

use engines::audio::{decode_file, TARGET_RATE};
use engines::onnx_runtime::{find_runtime, library_version};
use engines::vad::{SileroVad, VadLoader, VadOptions};
use fixtures::{fixture, padded_with_silence};
use model_manager::{ModelKey, ModelManager, ModelSpec};

#[test]
fn the_real_runtime_is_found_and_its_version_read_before_init() {
    let lib = fixture("libonnxruntime.so.1.24.2");
    assert_eq!(library_version(&lib).expect("loads"), "1.24.2");
    let info = find_runtime(&[lib.parent().expect("dir").to_path_buf()]).expect("found");
    assert_eq!(info.version, "1.24.2");
}

#[test]
fn an_older_runtime_is_refused_before_ort_can_deadlock_on_it() {
    // A stand-in library that answers OrtGetApiBase like ONNX Runtime 1.16.3 would.
    let dir = tempfile::tempdir().expect("temp");
    let source = dir.path().join("old.c");
    std::fs::write(
        &source,
        r#"
        typedef struct { const void* (*get_api)(unsigned); const char* (*get_version)(void); } OrtApiBase;
        static const void* get_api(unsigned v) { (void)v; return 0; }
        static const char* get_version(void) { return "1.16.3"; }
        static const OrtApiBase base = { get_api, get_version };
        const OrtApiBase* OrtGetApiBase(void) { return &base; }
        "#,
    )
    .expect("write");
    let lib = dir.path().join("libonnxruntime.so.1.16.3");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&source)
        .status()
        .expect("cc runs");
    assert!(status.success());
    assert_eq!(library_version(&lib).expect("loads"), "1.16.3");
    let err = find_runtime(&[dir.path().to_path_buf()]).expect_err("too old");
    let text = err.to_string();
    assert!(
        text.contains("is version 1.16.3") && text.contains("1.24 or newer"),
        "{text}"
    );
}

fn padded_beckett() -> (Vec<f32>, usize) {
    let speech = decode_file(&fixture("beckett.wav"))
        .expect("decodes")
        .samples;
    (padded_with_silence(&speech, 2), speech.len())
}

#[test]
fn vad_trims_the_silence_around_real_speech() {
    let vad = SileroVad::load(&fixture("silero_vad.onnx")).expect("loads");
    let (padded, speech_len) = padded_beckett();
    let options = VadOptions::default();
    let segments = vad.speech_segments(&padded, &options).expect("runs");
    assert!(!segments.is_empty(), "Beckett's speech is detected");
    let pad = 2 * TARGET_RATE as usize;
    let first = segments.first().expect("one").start;
    let last = segments.last().expect("one").end;
    assert!(
        first >= pad - 16_000 && last <= pad + speech_len + 16_000,
        "{segments:?}"
    );
    let trimmed = vad.trim(&padded, &options).expect("runs");
    assert!(
        trimmed.len() < padded.len() - 3 * TARGET_RATE as usize,
        "most of the 4 s of padding is gone"
    );
    assert!(
        trimmed.len() > speech_len * 6 / 10,
        "the speech is kept: {} of {speech_len}",
        trimmed.len()
    );
}

#[test]
fn vad_finds_nothing_in_silence() {
    let vad = SileroVad::load(&fixture("silero_vad.onnx")).expect("loads");
    let silence = vec![0.0f32; 3 * TARGET_RATE as usize];
    assert!(vad
        .trim(&silence, &VadOptions::default())
        .expect("runs")
        .is_empty());
    assert!(vad
        .trim(&[], &VadOptions::default())
        .expect("runs")
        .is_empty());
}

#[test]
fn vad_is_loaded_and_freed_through_the_manager() {
    let key = ModelKey::new("vad").expect("key");
    let manager = ModelManager::builder()
        .idle_checker(false)
        .register(
            key.clone(),
            Arc::new(VadLoader),
            ModelSpec::with_path("silero-v4", fixture("silero_vad.onnx")),
        )
        .build()
        .expect("manager");
    {
        let lease = manager.acquire(&key).expect("loads");
        let vad = lease.downcast::<SileroVad>().expect("vad");
        let (padded, _) = padded_beckett();
        assert!(!vad
            .speech_segments(&padded, &VadOptions::default())
            .expect("runs")
            .is_empty());
    }
    let status = manager.status();
    assert!(status.models[0]
        .resident_bytes
        .is_some_and(|b| b >= 1_000_000));
    assert_eq!(manager.unload_all().unloaded.len(), 1);
}

#[test]
fn a_file_that_is_not_an_onnx_model_fails_clearly() {
    let dir = tempfile::tempdir().expect("temp");
    let bogus = dir.path().join("vad.onnx");
    std::fs::write(&bogus, b"definitely not protobuf").expect("write");
    let err = SileroVad::load(&bogus).expect_err("invalid");
    assert!(err.to_string().contains("not a usable Silero VAD"), "{err}");
}
