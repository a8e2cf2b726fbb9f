//! Custom-model training at the default settings: 5 synthetic pairs (256×192 images of a
//! green disk beside a blue square, exact masks) on random MobileSAM weights of the real
//! architecture. Prints the time to embed the images, the time per step (median and mean),
//! the total, IoU before/after, and process RSS: with the model loaded, the peak during
//! training (VmHWM after resetting it), and after training ends. With `-- --sweep` it also
//! trains at three learning rates and two step counts, the measurement behind the defaults.
//!
//! `cargo bench -p engines --bench training` (~3 min; `-- --sweep` ~15 min more).

use std::time::{Duration, Instant};

use engines::segmentation::training::{self, Progress, TrainOptions};
use engines::segmentation::{weights, SamModel, SamSize};
use model_manager::memory::{process_rss_bytes, release_to_os};

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn rss() -> u64 {
    release_to_os();
    process_rss_bytes().unwrap_or(0)
}

/// Resets the kernel's peak-RSS counter for this process (Linux `clear_refs` = 5).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn main() {
    let sweep = std::env::args().any(|a| a == "--sweep");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sam.safetensors");
    weights::write_random_weights(SamSize::Tiny, &path, 7).expect("weights");
    let model = SamModel::load(&path).expect("load");
    let pairs = training::synthetic_pairs(5, 3);
    let loaded = rss();

    let options = TrainOptions::default();
    reset_peak();
    let mut embedded_at = None;
    let mut step_times = Vec::new();
    let mut last = Instant::now();
    let started = Instant::now();
    let tuned = training::fine_tune(&model, &path, &pairs, &options, &mut |p| {
        match p {
            Progress::Embedding { done, total } if done == total => {
                embedded_at = Some(started.elapsed());
                last = Instant::now();
            }
            Progress::Step(_) => {
                step_times.push(last.elapsed());
                last = Instant::now();
            }
            Progress::Embedding { .. } => {}
        }
        true
    })
    .expect("trains");
    let peak_training = peak();
    let (before, after, validation, steps, elapsed) = (
        tuned.iou_before,
        tuned.iou_after,
        tuned.validation,
        tuned.steps,
        tuned.elapsed,
    );
    drop(tuned);
    let after_rss = rss();
    step_times.sort();
    let median = step_times[step_times.len() / 2];
    let mean = step_times.iter().sum::<Duration>() / step_times.len() as u32;
    println!(
        "defaults: {steps} steps, {} prompts per step, learning rate {}",
        options.prompts_per_step, options.learning_rate
    );
    println!(
        "embedding 5 images: {:.1} s; per step: median {:.0} ms, mean {:.0} ms; total {:.1} s",
        embedded_at.unwrap_or_default().as_secs_f64(),
        median.as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        elapsed.as_secs_f64()
    );
    println!(
        "IoU on the examples {before:.3} -> {after:.3}; held-out pair {}",
        validation.map_or("-".into(), |(a, b)| format!("{a:.3} -> {b:.3}"))
    );
    println!(
        "RSS: model loaded {}, peak during training {} (+{}), after training {} (+{})",
        mib(loaded),
        mib(peak_training),
        mib(peak_training.saturating_sub(loaded)),
        mib(after_rss),
        mib(after_rss.saturating_sub(loaded))
    );

    if sweep {
        for (lr, steps) in [(3e-4, 60), (1e-3, 60), (3e-3, 60), (1e-3, 30), (1e-3, 120)] {
            let options = TrainOptions {
                steps,
                learning_rate: lr,
                ..TrainOptions::default()
            };
            let t = training::fine_tune(&model, &path, &pairs, &options, &mut |_| true)
                .expect("trains");
            println!(
                "sweep: lr {lr:e}, {steps} steps: IoU {:.3} -> {:.3}, held-out {}, {:.0} s",
                t.iou_before,
                t.iou_after,
                t.validation
                    .map_or("-".into(), |(a, b)| format!("{a:.3} -> {b:.3}")),
                t.elapsed.as_secs_f64()
            );
        }
    }
}
