//! The ONNX speech family through real ONNX Runtime: Parakeet (NeMo's real preprocessor,
//! the TDT decoder loop), GigaAM and SenseVoice (CTC; SenseVoice's settings from the ONNX
//! metadata and its leading tags) on the synthetic tone-recognising models that
//! scripts/make_onnx_speech_fixtures.py builds (no real weights exist in the registries).
//! Each token of their vocabulary owns a pure tone, so audio made of tones has a known
//! transcript and known word times.

mod fixtures;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use engines::audio::TARGET_RATE;
use engines::speech::onnx::{OnnxFamily, OnnxSpeechModel};
use engines::speech::{as_transcriber, SpeechLoader, TranscribeOptions, Transcriber};
use fixtures::fixture_dir;
use model_manager::{ModelKey, ModelManager, ModelSpec, ModelState};

const WORDS: [&str; 6] = ["ever", "tried", "no", "matter", "fail", "better"];

fn tones(model: &Path) -> HashMap<String, f32> {
    let text = std::fs::read_to_string(model.join("tones.json")).expect("tones.json");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    value
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().expect("hz") as f32))
        .collect()
}

/// 0.5 s of quiet, then each word's tone for 0.4 s followed by 0.3 s of quiet, over faint
/// noise; returns the audio and when each tone starts. Parakeet's preprocessor normalises
/// each mel band over the clip, so a tone must sound for well under a fifth of it to stand
/// out: give it four words or more.
fn tone_audio(model: &Path, words: &[&str]) -> (Vec<f32>, Vec<f32>) {
    let tones = tones(model);
    let rate = TARGET_RATE as usize;
    let mut samples = vec![0.0f32; rate / 2];
    let mut starts = Vec::new();
    for word in words {
        let hz = tones[*word];
        starts.push(samples.len() as f32 / rate as f32);
        let n = rate * 2 / 5;
        samples.extend(
            (0..n).map(|i| 0.3 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin()),
        );
        samples.extend(std::iter::repeat_n(0.0, rate * 3 / 10));
    }
    add_noise(&mut samples);
    (samples, starts)
}

/// Faint deterministic white noise (a silent stretch is never digital zero in a recording).
fn add_noise(samples: &mut [f32]) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for s in samples {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *s += ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.01;
    }
}

fn no_vad() -> TranscribeOptions {
    TranscribeOptions::default()
}

fn parakeet_dir() -> PathBuf {
    fixture_dir("parakeet-synthetic")
}

fn gigaam_dir() -> PathBuf {
    fixture_dir("gigaam-synthetic")
}

fn sense_voice_dir() -> PathBuf {
    fixture_dir("sensevoice-synthetic")
}

fn all_dirs() -> [PathBuf; 3] {
    [parakeet_dir(), gigaam_dir(), sense_voice_dir()]
}

#[test]
fn parakeet_transcribes_through_its_preprocessor_encoder_and_decoder_loop() {
    let dir = parakeet_dir();
    let model = OnnxSpeechModel::load(&dir).expect("loads");
    assert_eq!(model.info().family, OnnxFamily::Parakeet);
    let (audio, starts) = tone_audio(&dir, &WORDS);
    let transcript = model.transcribe(&audio, &no_vad(), None).expect("runs");
    assert_eq!(transcript.text, WORDS.join(" "));
    assert_eq!(transcript.segments.len(), WORDS.len(), "{transcript:?}");
    for ((segment, start), word) in transcript.segments.iter().zip(&starts).zip(WORDS) {
        assert_eq!(segment.text, word);
        // Parakeet's frames are 80 ms; its 250 ms of leading silence is taken off again.
        assert!(
            (segment.start - start).abs() <= 0.16,
            "{word} at {start} s, segment {segment:?}"
        );
    }
    assert!((transcript.speech_seconds - audio.len() as f32 / 16_000.0).abs() < 1e-3);
}

#[test]
fn gigaam_and_sense_voice_transcribe_with_ctc_decoding() {
    for (dir, family) in [
        (gigaam_dir(), OnnxFamily::GigaAm),
        (sense_voice_dir(), OnnxFamily::SenseVoice),
    ] {
        let model = OnnxSpeechModel::load(&dir).expect("loads");
        assert_eq!(model.info().family, family);
        let (audio, _) = tone_audio(&dir, &WORDS);
        let transcript = model.transcribe(&audio, &no_vad(), None).expect("runs");
        assert_eq!(transcript.text, WORDS.join(" "), "{family:?}");
        // Repeated words come out repeated (CTC keeps tokens a blank separates).
        let (again, _) = tone_audio(&dir, &["fail", "fail", "better"]);
        let transcript = model.transcribe(&again, &no_vad(), None).expect("runs");
        assert_eq!(transcript.text, "fail fail better", "{family:?}");
    }
    // SenseVoice takes a language hint it knows.
    let model = OnnxSpeechModel::load(&sense_voice_dir()).expect("loads");
    let (audio, _) = tone_audio(&sense_voice_dir(), &["ever", "tried"]);
    let english = TranscribeOptions {
        language: Some("en".into()),
        ..Default::default()
    };
    let transcript = model.transcribe(&audio, &english, None).expect("runs");
    assert_eq!(transcript.text, "ever tried");
}

#[test]
fn silence_noise_and_empty_input_give_empty_transcripts() {
    for dir in all_dirs() {
        let model = OnnxSpeechModel::load(&dir).expect("loads");
        let mut noise = vec![0.0f32; 3 * TARGET_RATE as usize];
        add_noise(&mut noise);
        for (label, audio) in [
            ("noise", noise),
            ("zeros", vec![0.0; 16_000]),
            ("empty", Vec::new()),
            ("one sample", vec![0.5]),
        ] {
            let transcript = model
                .transcribe(&audio, &no_vad(), None)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(transcript.text, "", "{} on {label}", dir.display());
        }
    }
}

#[test]
fn settings_the_model_cannot_honour_are_refused() {
    let model = OnnxSpeechModel::load(&gigaam_dir()).expect("loads");
    let (audio, _) = tone_audio(&gigaam_dir(), &["ever"]);
    let french = TranscribeOptions {
        language: Some("fr".into()),
        ..Default::default()
    };
    let err = model.transcribe(&audio, &french, None).expect_err("fr");
    assert!(err.to_string().contains("GigaAM transcribes ru"), "{err}");
    let translate = TranscribeOptions {
        translate: true,
        ..Default::default()
    };
    let err = model
        .transcribe(&audio, &translate, None)
        .expect_err("translate");
    assert!(err.to_string().contains("cannot translate"), "{err}");
}

fn manager_for(dir: &Path) -> (ModelManager, ModelKey) {
    let key = ModelKey::new("transcription").expect("key");
    let manager = ModelManager::builder()
        .idle_checker(false)
        .register(
            key.clone(),
            Arc::new(SpeechLoader),
            ModelSpec::with_path("onnx", dir),
        )
        .build()
        .expect("manager");
    (manager, key)
}

#[test]
fn onnx_models_are_loaded_used_and_freed_through_the_manager() {
    for dir in all_dirs() {
        let (manager, key) = manager_for(&dir);
        let folder_bytes: u64 = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").metadata().expect("meta").len())
            .sum();
        {
            let lease = manager.acquire(&key).expect("loads");
            let model = as_transcriber(&lease).expect("a transcriber");
            let words = ["better", "no", "matter", "ever", "fail", "tried"];
            let (audio, _) = tone_audio(&dir, &words);
            let transcript = model.transcribe(&audio, &no_vad(), None).expect("runs");
            assert_eq!(transcript.text, words.join(" "), "{}", model.describe());
        }
        let status = manager.status();
        let resident = status.models[0].resident_bytes.expect("loaded");
        // At least the graphs and vocabulary on disk (tones.json aside, a few bytes).
        assert!(
            resident + 1_000 >= folder_bytes,
            "{resident} < {folder_bytes}"
        );
        let report = manager.unload_all();
        assert_eq!(report.unloaded.len(), 1, "{report:?}");
        assert_eq!(manager.status().models[0].state, ModelState::Idle);
    }
}

#[test]
fn a_broken_model_folder_is_a_clear_error_and_changes_nothing() {
    let (manager, key) = manager_for(&parakeet_dir());
    drop(manager.acquire(&key).expect("loads"));
    // A copy of the model whose encoder is cut short (a download that stopped).
    let broken = tempfile::tempdir().expect("temp");
    for entry in std::fs::read_dir(parakeet_dir()).expect("dir") {
        let path = entry.expect("entry").path();
        let target = broken.path().join(path.file_name().expect("name"));
        std::fs::copy(&path, &target).expect("copy");
    }
    let encoder = broken.path().join("encoder-model.onnx");
    let bytes = std::fs::read(&encoder).expect("read");
    std::fs::write(&encoder, &bytes[..bytes.len() / 2]).expect("cut");
    let err = manager
        .set_spec(&key, ModelSpec::with_path("broken", broken.path()))
        .and_then(|()| manager.acquire(&key).map(drop))
        .expect_err("broken");
    assert!(
        err.to_string().contains("not a usable Parakeet model"),
        "{err}"
    );
    assert_eq!(manager.status().models[0].state, ModelState::Failed);
    // The files the user had are untouched, and the good model loads again.
    assert_eq!(
        std::fs::read(&encoder).expect("read").len(),
        bytes.len() / 2
    );
    manager
        .set_spec(&key, ModelSpec::with_path("onnx", parakeet_dir()))
        .expect("known");
    drop(manager.acquire(&key).expect("loads again"));
    // A folder missing a file is named before ONNX Runtime is touched.
    std::fs::remove_file(broken.path().join("nemo128.onnx")).expect("rm");
    let err = OnnxSpeechModel::load(broken.path()).expect_err("missing");
    assert!(err.to_string().contains("lacks nemo128.onnx"), "{err}");
}
