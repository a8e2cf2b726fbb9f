//! Whisper's speed levers, one at a time and combined, on the same weights and audio: the
//! thread count, flash attention, greedy decoding against beam search, the encoder's audio
//! context fitted to the clip, q8_0 weights (`scripts/quantize_ggml_whisper.py`) and language
//! detection, and the encoder's large products on ggml's own kernels rather than the packed
//! ones (the patch's change 5). Each row gives the median time on Beckett's recording and the word error rate
//! on Beckett and on the espeak sentences (English, and German with the language given), so
//! no speed-up is taken at the cost of a word.
//!
//! `bash scripts/bench_setup.sh && cargo bench -p engines --bench whisper_levers` (~3 min;
//! `-- --only TEXT` runs the rows whose name contains TEXT).

use std::path::Path;
use std::time::{Duration, Instant};

use engines::audio::decode_file;
use engines::speech::{word_error_rate, TranscribeOptions, WhisperDecoding, WhisperModel};

const BECKETT: &str = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.";
const RUNS: usize = 5;

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;
use fixtures::fixture;

struct Lever {
    name: &'static str,
    weights: &'static str,
    flash_attention: bool,
    threads: Option<u32>,
    beam_size: u32,
    fit_audio_context: bool,
    detect_language: bool,
    /// The encoder's large products on the packed kernels (the patch's change 5) or ggml's.
    packed_products: bool,
}

const BASE: Lever = Lever {
    name: "",
    weights: "ggml-base.bin",
    flash_attention: true,
    threads: None,
    beam_size: 3,
    fit_audio_context: false,
    detect_language: false,
    packed_products: true,
};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // What the app does at startup (glibc then returns unloaded models' memory).
    model_manager::memory::tune_allocator();
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
    let beckett = decode_file(&fixture("beckett.wav")).expect("run scripts/fixtures.sh first");
    let espeak = decode_file(&fixture("espeak.wav")).expect("espeak fixture");
    let espeak_text = std::fs::read_to_string(fixture("espeak.txt")).expect("sentence");
    let german = decode_file(&fixture("espeak-de.wav")).expect("German fixture");
    let german_text = std::fs::read_to_string(fixture("espeak-de.txt")).expect("German sentence");
    let quantized = fixture("ggml-base-q8_0.bin");
    let seconds = beckett.duration().as_secs_f64();

    let levers = [
        Lever {
            name: "before: beam 3, whole 30 s window, flash attention, all threads, f16",
            ..BASE
        },
        Lever {
            name: "ggml's own kernels for the large products (before the patch's change 5)",
            packed_products: false,
            ..BASE
        },
        Lever {
            name: "1 thread",
            threads: Some(1),
            ..BASE
        },
        Lever {
            name: "no flash attention",
            flash_attention: false,
            ..BASE
        },
        Lever {
            name: "greedy decoding (beam 1)",
            beam_size: 1,
            ..BASE
        },
        Lever {
            name: "audio context fitted to the clip",
            fit_audio_context: true,
            ..BASE
        },
        Lever {
            name: "q8_0 weights",
            weights: "ggml-base-q8_0.bin",
            ..BASE
        },
        Lever {
            name: "q8_0 weights, no flash attention",
            weights: "ggml-base-q8_0.bin",
            flash_attention: false,
            ..BASE
        },
        Lever {
            name: "language detected (beam 3, whole window)",
            detect_language: true,
            ..BASE
        },
        Lever {
            name: "greedy + fitted context",
            beam_size: 1,
            fit_audio_context: true,
            ..BASE
        },
        Lever {
            name: "greedy + fitted context + q8_0",
            weights: "ggml-base-q8_0.bin",
            beam_size: 1,
            fit_audio_context: true,
            ..BASE
        },
        Lever {
            name: "beam 3 + fitted context + q8_0",
            weights: "ggml-base-q8_0.bin",
            fit_audio_context: true,
            ..BASE
        },
        Lever {
            name: "language detected, greedy + fitted context + q8_0",
            weights: "ggml-base-q8_0.bin",
            beam_size: 1,
            fit_audio_context: true,
            detect_language: true,
            ..BASE
        },
    ];

    println!(
        "Beckett {seconds:.2} s, median of {RUNS} after one warm-up; {threads} threads unless said"
    );
    println!();
    println!(
        "| setting | Beckett | RTF | vs before | WER Beckett | WER espeak en | WER espeak de |"
    );
    println!("|---|---|---|---|---|---|---|");
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1));
    let mut before = None;
    for lever in levers
        .iter()
        .filter(|l| only.is_none_or(|o| l.name.contains(o.as_str())))
    {
        let path = fixture(lever.weights);
        if lever.weights != BASE.weights && !Path::new(&path).exists() {
            println!(
                "| {} | not run: {} is missing (scripts/bench_setup.sh makes it) | | | | | |",
                lever.name,
                quantized.display()
            );
            continue;
        }
        engines::speech::use_packed_products(lever.packed_products);
        let model = WhisperModel::load_with_attention(&path, lever.flash_attention)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let options = |language: Option<&str>| TranscribeOptions {
            language: language.map(str::to_owned),
            threads: lever.threads.unwrap_or(threads),
            decoding: WhisperDecoding {
                beam_size: lever.beam_size,
                fit_audio_context: lever.fit_audio_context,
            },
            ..Default::default()
        };
        let english = options((!lever.detect_language).then_some("en"));
        let run = |samples: &[f32], options: &TranscribeOptions| {
            model
                .transcribe(samples, options, None)
                .expect("transcribes")
                .text
        };
        run(&beckett.samples, &english); // warm-up
        let mut times = Vec::new();
        let mut text = String::new();
        for _ in 0..RUNS {
            let t0 = Instant::now();
            text = run(&beckett.samples, &english);
            times.push(t0.elapsed());
        }
        let time = median(times);
        let en = run(&espeak.samples, &english);
        let de = run(
            &german.samples,
            &options((!lever.detect_language).then_some("de")),
        );
        let before_time = *before.get_or_insert(time);
        println!(
            "| {} | {:.0} ms | {:.3} | {:.2}× | {:.0} % | {:.0} % | {:.0} % ({de:?}) |",
            lever.name,
            time.as_secs_f64() * 1e3,
            time.as_secs_f64() / seconds,
            before_time.as_secs_f64() / time.as_secs_f64(),
            word_error_rate(BECKETT, &text) * 100.0,
            word_error_rate(&espeak_text, &en) * 100.0,
            word_error_rate(&german_text, &de) * 100.0,
        );
    }
}
