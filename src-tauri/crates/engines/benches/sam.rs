//! Segment Anything through the model manager: load time, first prompt (image embedding +
//! mask decode), re-prompt (decode only, embedding cached), and process RSS before load,
//! after load, and after unload. Random weights of the real architectures: timings and
//! memory depend on the architecture, not on the weight values.
//!
//! `cargo bench -p engines --bench sam` (~2 min; `-- --tiny` for MobileSAM only).

use std::sync::Arc;
use std::time::{Duration, Instant};

use engines::segmentation::{weights, Point, Prompt, SamLoader, SamModel, SamSize};
use image::{Rgb, RgbImage};
use model_manager::memory::{process_rss_bytes, release_to_os};
use model_manager::{ModelKey, ModelManager, ModelSpec};

fn mib(bytes: i128) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn rss() -> i128 {
    release_to_os();
    i128::from(process_rss_bytes().unwrap_or(0))
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn scene(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let inside = (w / 4..3 * w / 4).contains(&x) && (h / 4..3 * h / 4).contains(&y);
        if inside {
            Rgb([200, (x % 256) as u8, 40])
        } else {
            Rgb([90, 90, (y % 256) as u8])
        }
    })
}

fn run(size: SamSize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sam.safetensors");
    let info = weights::write_random_weights(size, &path, 1).expect("weights");
    let key = ModelKey::new("segmentation").expect("key");
    let manager = ModelManager::builder()
        .idle_checker(false)
        .register(
            key.clone(),
            Arc::new(SamLoader),
            ModelSpec::with_path("sam", &path),
        )
        .build()
        .expect("manager");
    let image = scene(1024, 768);

    let before = rss();
    let t0 = Instant::now();
    let lease = manager.acquire(&key).expect("load");
    let load = t0.elapsed();
    let loaded = rss();
    let sam = lease.downcast::<SamModel>().expect("sam");

    let t0 = Instant::now();
    let first = sam
        .segment(
            &image,
            &Prompt {
                points: vec![Point {
                    x: 512.0,
                    y: 384.0,
                    foreground: true,
                }],
                bbox: None,
            },
        )
        .expect("first prompt");
    let first_prompt = t0.elapsed();
    assert!(!first.embedding_cached);

    let mut reprompts: Vec<Duration> = (0..7)
        .map(|i| {
            let prompt = Prompt {
                points: vec![Point {
                    x: 300.0 + 50.0 * i as f32,
                    y: 300.0,
                    foreground: true,
                }],
                bbox: Some([256.0, 192.0, 768.0, 576.0]),
            };
            let t0 = Instant::now();
            let mask = sam.segment(&image, &prompt).expect("re-prompt");
            assert!(mask.embedding_cached);
            t0.elapsed()
        })
        .collect();
    reprompts.sort();
    let reprompt = reprompts[reprompts.len() / 2];
    let in_use = rss();
    drop(lease);
    let report = manager.unload_all();
    let after = rss();
    let freed = report
        .unloaded
        .first()
        .and_then(|u| u.bytes_freed)
        .unwrap_or(0);

    let name = match size {
        SamSize::Tiny => "MobileSAM (ViT-T)",
        SamSize::VitB => "SAM ViT-B",
    };
    println!(
        "| {name} | {} | {} | {} | {} ({:.0}×) | {} → {} → {} (after prompts: {}) | {} | {} |",
        mib(i128::from(info.f32_bytes)),
        ms(load),
        ms(first_prompt),
        ms(reprompt),
        first_prompt.as_secs_f64() / reprompt.as_secs_f64(),
        mib(before),
        mib(loaded),
        mib(after),
        mib(in_use),
        mib(after - before),
        mib(i128::from(freed)),
    );
}

fn main() {
    let tiny_only = std::env::args().any(|a| a == "--tiny");
    println!("| model | weights (f32) | load | first prompt (embed + decode) | re-prompt, median of 7 (speed-up) | RSS before → loaded → unloaded | unloaded − before | freed (reported) |");
    println!("|---|---|---|---|---|---|---|---|");
    run(SamSize::Tiny);
    if !tiny_only {
        run(SamSize::VitB);
    }
}
