//! Whisper base on Beckett's recording: load, transcription time and real-time factor through
//! whisper.cpp; the same audio and weights through faster-whisper (CPU, int8 and fp32) in the
//! same run, as a ratio; the warm-path overhead of going through the manager; and process RSS
//! before load, after load and after unload.
//!
//! `bash scripts/bench_setup.sh && cargo bench -p engines --bench whisper` (~1 min).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use engines::audio::decode_file;
use engines::speech::{word_error_rate, SpeechLoader, TranscribeOptions, WhisperModel};
use model_manager::memory::{process_rss_bytes, release_to_os};
use model_manager::{ModelKey, ModelManager, ModelSpec};

const BECKETT: &str = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.";
const RUNS: usize = 7;

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;
use fixtures::fixture;

fn rss_mib() -> f64 {
    release_to_os();
    process_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn min(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap_or_default()
}

fn main() {
    // What the app does at startup (glibc then returns unloaded models' memory).
    model_manager::memory::tune_allocator();
    let wav = fixture("beckett.wav");
    let dir = wav.parent().expect("fixture folder").to_path_buf();
    let audio = decode_file(&wav).expect("run scripts/fixtures.sh first");
    let seconds = audio.duration().as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let options = TranscribeOptions {
        language: Some("en".into()),
        threads: threads as u32,
        ..Default::default()
    };

    let key = ModelKey::new("transcription").expect("key");
    let manager = ModelManager::builder()
        .idle_checker(false)
        .register(
            key.clone(),
            Arc::new(SpeechLoader),
            ModelSpec::with_path("whisper-base", dir.join("ggml-base.bin")),
        )
        .build()
        .expect("manager");

    let before = rss_mib();
    let t0 = Instant::now();
    drop(manager.acquire(&key).expect("loads"));
    let load = t0.elapsed();
    let loaded = rss_mib();

    // Direct engine calls vs the same calls through a lease, interleaved.
    let lease = manager.acquire(&key).expect("loaded");
    let model = lease.downcast::<WhisperModel>().expect("whisper");
    let mut direct = Vec::new();
    let mut managed = Vec::new();
    let mut text = String::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        text = model
            .transcribe(&audio.samples, &options, None)
            .expect("transcribes")
            .text;
        direct.push(t0.elapsed());
        let t0 = Instant::now();
        {
            let lease = manager.acquire(&key).expect("warm");
            let m = lease.downcast::<WhisperModel>().expect("whisper");
            m.transcribe(&audio.samples, &options, None)
                .expect("transcribes");
        }
        managed.push(t0.elapsed());
    }
    // What the manager itself adds per request: a lease taken and returned on a loaded model.
    const CALLS: u32 = 100_000;
    let t0 = Instant::now();
    for _ in 0..CALLS {
        let lease = manager.acquire(&key).expect("warm");
        std::hint::black_box(lease.downcast::<WhisperModel>());
    }
    let per_call = t0.elapsed() / CALLS;
    drop(lease);
    let (best_direct, best_managed) = (min(&direct), min(&managed));
    let spread = (median(direct.clone()).as_secs_f64() / best_direct.as_secs_f64() - 1.0) * 100.0;
    let direct = median(direct);
    let overhead = (best_managed.as_secs_f64() / best_direct.as_secs_f64() - 1.0) * 100.0;
    let own = per_call.as_secs_f64() / best_direct.as_secs_f64() * 100.0;
    let report = manager.unload_all();
    let after = rss_mib();

    println!("| measure | result |");
    println!("|---|---|");
    println!(
        "| audio | Beckett, {seconds:.2} s, 16 kHz mono; {threads} threads; beam 3; language en |"
    );
    println!(
        "| whisper.cpp transcript (WER) | {text:?} ({:.0} %) |",
        word_error_rate(BECKETT, &text) * 100.0
    );
    println!(
        "| load (cold acquire) | {:.0} ms |",
        load.as_secs_f64() * 1e3
    );
    println!(
        "| transcription, median of {RUNS} | {:.0} ms (real-time factor {:.3}) |",
        direct.as_secs_f64() * 1e3,
        direct.as_secs_f64() / seconds
    );
    println!(
        "| through the manager vs direct, best of {RUNS} each, interleaved | {:.0} ms vs {:.0} ms: {overhead:+.2} % (run-to-run spread of the direct calls: median is {spread:+.1} % over best) |",
        best_managed.as_secs_f64() * 1e3,
        best_direct.as_secs_f64() * 1e3
    );
    println!(
        "| the manager's own cost per request (acquire + downcast + release, {CALLS} calls) | {} ns = {own:.6} % of a transcription (target ≤ 1 %) |",
        per_call.as_nanos()
    );
    println!(
        "| RSS before → loaded → unloaded | {before:.1} → {loaded:.1} → {after:.1} MiB: {:+.1} MiB above baseline (target ≤ 10 MiB); freed (reported) {:.1} MiB |",
        after - before,
        report.unloaded.first().and_then(|u| u.bytes_freed).unwrap_or(0) as f64 / (1024.0 * 1024.0)
    );

    let python = std::env::var_os("FASTER_WHISPER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            dirs::cache_dir()
                .unwrap_or_default()
                .join("dormouse/bench-venv/bin/python")
        });
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../scripts/bench_faster_whisper.py");
    for compute_type in ["int8", "float32"] {
        let output = Command::new(&python)
            .arg(&script)
            .arg(dir.join("whisper-base-ct2"))
            .arg(&wav)
            .arg(compute_type)
            .arg(threads.to_string())
            .arg(RUNS.to_string())
            .output();
        let json = match output {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => {
                println!(
                    "| faster-whisper {compute_type} | not run: {} |",
                    String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                );
                continue;
            }
            Err(e) => {
                println!(
                    "| faster-whisper {compute_type} | not run ({e}): run scripts/bench_setup.sh |"
                );
                continue;
            }
        };
        let value: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
        let fw = value["transcribe_s"].as_f64().unwrap_or(f64::NAN);
        let fw_text = value["text"].as_str().unwrap_or("");
        println!(
            "| faster-whisper {compute_type} (same weights) | load {:.0} ms, transcription {:.0} ms (RTF {:.3}; WER {:.0} %): whisper.cpp takes {:.2}× its time |",
            value["load_s"].as_f64().unwrap_or(f64::NAN) * 1e3,
            fw * 1e3,
            fw / seconds,
            word_error_rate(BECKETT, fw_text) * 100.0,
            direct.as_secs_f64() / fw
        );
    }
}
