//! Segment Anything through the model manager: load time, first prompt (image embedding +
//! mask decode, median over three new images), re-prompt (decode only, embedding cached), and
//! process RSS before load, after load, and after unload. Random weights of the real
//! architectures: timings and memory depend on the architecture, not on the weight values.
//! Beside them, the encoder's arithmetic (`encoder_flops`, counted from the architecture)
//! over the embedding's time, as a fraction of this machine's matrix-product rate measured in
//! the same run (candle's f32 GEMM on the encoders' largest product shapes).
//!
//! `cargo bench -p engines --bench sam` (~2 min; `-- --tiny` for MobileSAM only,
//! `-- --no-reference` to skip candle's own TinyViT, e.g. under `perf record`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use engines::segmentation::{encoder_flops, weights, Point, Prompt, SamLoader, SamModel, SamSize};
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

/// candle's f32 matrix product on `(m × k) · (k × n)`: the best of five, in FLOP/s.
fn gemm_rate(m: usize, k: usize, n: usize) -> f64 {
    let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu).expect("a");
    let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu).expect("b");
    let best = (0..6)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(a.matmul(&b).expect("matmul"));
            t0.elapsed()
        })
        .skip(1)
        .min()
        .unwrap_or_default();
    (2 * m * k * n) as f64 / best.as_secs_f64()
}

/// candle's own TinyViT (what the engine ran before its own encoder) on the same weights:
/// the best of two embeddings of a 1024 × 1024 input.
fn reference_tiny_embedding(path: &std::path::Path) -> Duration {
    // SAFETY: a temporary file this bench wrote and does not change.
    let vb = unsafe {
        candle_nn::VarBuilder::from_mmaped_safetensors(
            &[path],
            candle_core::DType::F32,
            &Device::Cpu,
        )
    }
    .expect("weights");
    let encoder = candle_transformers::models::segment_anything::tiny_vit::tiny_vit_5m(
        vb.pp("image_encoder"),
    )
    .expect("candle's TinyViT");
    let input = Tensor::randn(0f32, 1.0, (1, 3, 1024, 1024), &Device::Cpu).expect("input");
    (0..2)
        .map(|_| {
            let t0 = Instant::now();
            std::hint::black_box(candle_core::Module::forward(&encoder, &input).expect("embeds"));
            t0.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn scene(w: u32, h: u32, shade: u8) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let inside = (w / 4..3 * w / 4).contains(&x) && (h / 4..3 * h / 4).contains(&y);
        if inside {
            Rgb([200, (x % 256) as u8, 40 + shade])
        } else {
            Rgb([90, 90, (y % 256) as u8])
        }
    })
}

/// The encoder's row and the lifecycle's row for `size`.
fn run(size: SamSize, gemm: f64) -> (String, String) {
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
    let image = scene(1024, 768, 0);

    let before = rss();
    let t0 = Instant::now();
    let lease = manager.acquire(&key).expect("load");
    let load = t0.elapsed();
    let loaded = rss();
    let sam = lease.downcast::<SamModel>().expect("sam");

    let click = Prompt {
        points: vec![Point {
            x: 512.0,
            y: 384.0,
            foreground: true,
        }],
        bbox: None,
    };
    let mut firsts: Vec<Duration> = (0..3u8)
        .map(|i| {
            let t0 = Instant::now();
            let first = sam
                .segment(&scene(1024, 768, 3 - i), &click)
                .expect("first prompt");
            assert!(!first.embedding_cached);
            t0.elapsed()
        })
        .collect();
    firsts.sort();
    let first_prompt = firsts[1];
    sam.segment(&image, &click).expect("first prompt");

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
    let flops = encoder_flops(size) as f64;
    let row = |label: &str, embed: Duration| {
        let seconds = embed.as_secs_f64();
        format!(
            "| {label} | {:.1} GFLOP | {} | {:.1} GFLOP/s | {:.0} % |",
            flops / 1e9,
            ms(embed),
            flops / seconds / 1e9,
            flops / seconds / gemm * 100.0
        )
    };
    let mut encoder_row = row(name, first_prompt.saturating_sub(reprompt));
    if size == SamSize::Tiny && !std::env::args().any(|a| a == "--no-reference") {
        let reference = reference_tiny_embedding(&path);
        encoder_row = format!(
            "{}\n{encoder_row}",
            row("MobileSAM, candle's TinyViT (before)", reference)
        );
    }
    let lifecycle_row = format!(
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
    (encoder_row, lifecycle_row)
}

fn main() {
    // What the app does at startup (glibc then returns unloaded models' memory).
    model_manager::memory::tune_allocator();
    let tiny_only = std::env::args().any(|a| a == "--tiny");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shapes = [(4096, 768, 3072), (4096, 320, 1280), (1024, 1024, 1024)];
    let rates: Vec<f64> = shapes.iter().map(|&(m, k, n)| gemm_rate(m, k, n)).collect();
    let gemm = rates.iter().copied().fold(0.0, f64::max);
    for ((m, k, n), rate) in shapes.iter().zip(&rates) {
        println!(
            "GEMM f32 ({m}×{k})·({k}×{n}), {threads} threads: {:.1} GFLOP/s",
            rate / 1e9
        );
    }
    let mut rows = vec![run(SamSize::Tiny, gemm)];
    if !tiny_only {
        rows.push(run(SamSize::VitB, gemm));
    }
    println!("| encoder | arithmetic | embedding (first prompt − re-prompt) | achieved | of the best GEMM rate ({:.1} GFLOP/s) |", gemm / 1e9);
    println!("|---|---|---|---|---|");
    for (encoder, _) in &rows {
        println!("{encoder}");
    }
    println!();
    println!("| model | weights (f32) | load | first prompt (embed + decode), median of 3 images | re-prompt, median of 7 (speed-up) | RSS before → loaded → unloaded | unloaded − before | freed (reported) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (_, lifecycle) in &rows {
        println!("{lifecycle}");
    }
}
