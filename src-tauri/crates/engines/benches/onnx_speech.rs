//! The ONNX speech path on the synthetic Parakeet and GigaAM models that
//! scripts/make_onnx_speech_fixtures.py builds (real preprocessor and decoding, hand-set
//! tone-recognising weights: the figures measure the pipeline and ONNX Runtime's sessions, not
//! a real model's cost): load time, transcription time of a 4.7 s recording, and process RSS
//! before load, after load and after unload through the manager. ONNX Runtime itself (the
//! shared library and ort's process-wide environment, loaded once and kept) is measured
//! first and on its own, so the per-model figures are what a load and an unload cost.
//!
//! `bash scripts/fixtures.sh && cargo bench -p engines --bench onnx_speech` (seconds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use engines::audio::decode_file;
use engines::speech::{as_transcriber, SpeechLoader, TranscribeOptions};
use model_manager::memory::{process_rss_bytes, release_to_os};
use model_manager::{ModelKey, ModelManager, ModelSpec};

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;
use fixtures::{fixture, fixture_dir, use_fixture_onnx_runtime};

const RUNS: usize = 9;

fn rss_mib() -> f64 {
    release_to_os();
    process_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    // The Parakeet recording for both: GigaAM's tones are other frequencies, so its
    // transcript differs, but the work is the same (features, the CTC graph, decoding).
    let audio = decode_file(&fixture("parakeet-tones.wav")).expect("run scripts/fixtures.sh");
    let seconds = audio.duration().as_secs_f64();
    use_fixture_onnx_runtime();
    let bare = rss_mib();
    let t0 = Instant::now();
    let runtime = engines::onnx_runtime::ensure_runtime().expect("ONNX Runtime");
    println!(
        "ONNX Runtime {} initialised in {:.0} ms; RSS {bare:.1} → {:.1} MiB (kept for the process)\n",
        runtime.version,
        ms(t0.elapsed()),
        rss_mib()
    );
    println!("| model | load | transcription ({seconds:.1} s audio, median of {RUNS}) | RTF | RSS before → loaded → unloaded | transcript |");
    println!("|---|---|---|---|---|---|");
    // Parakeet twice: the first session ONNX Runtime creates pays its one-time costs (kernel
    // registry, thread pools), which stay for the process; the second load shows what a model
    // itself leaves behind.
    for name in [
        "parakeet-synthetic",
        "gigaam-synthetic",
        "parakeet-synthetic",
    ] {
        let key = ModelKey::new("transcription").expect("key");
        let manager = ModelManager::builder()
            .idle_checker(false)
            .register(
                key.clone(),
                Arc::new(SpeechLoader),
                ModelSpec::with_path(name, fixture_dir(name)),
            )
            .build()
            .expect("manager");
        let before = rss_mib();
        let t0 = Instant::now();
        drop(manager.acquire(&key).expect("loads"));
        let load = t0.elapsed();
        let loaded = rss_mib();
        let mut times = Vec::new();
        let mut text = String::new();
        for _ in 0..RUNS {
            let lease = manager.acquire(&key).expect("warm");
            let model = as_transcriber(&lease).expect("speech model");
            let t0 = Instant::now();
            text = model
                .transcribe(&audio.samples, &TranscribeOptions::default(), None)
                .expect("transcribes")
                .text;
            times.push(t0.elapsed());
        }
        times.sort();
        let median = times[RUNS / 2];
        manager.unload_all();
        let after = rss_mib();
        println!(
            "| {name} | {:.0} ms | {:.1} ms | {:.4} | {before:.1} → {loaded:.1} → {after:.1} MiB ({:+.1} MiB) | {text:?} |",
            ms(load),
            ms(median),
            median.as_secs_f64() / seconds,
            after - before,
        );
    }
}
