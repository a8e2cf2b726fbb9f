//! Peak memory of decoding one long audio file to 16 kHz mono: the process's peak resident
//! set (Linux `VmHWM`) grown while `decode_file` runs, against the size of its output.
//!
//! `cargo bench -p engines --bench audio_memory -- FILE` measures FILE. Without an argument it
//! builds a real one first: the Beckett fixture, upsampled by sox to 48 kHz stereo and
//! repeated to one hour (about 660 MiB of 16-bit WAV, in the system's temp folder, deleted
//! afterwards). Linux only (it reads `/proc/self/status`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use engines::audio::decode_file;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("Linux /proc");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("field in /proc/self/status")
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn main() {
    let arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let made = tempfile::tempdir().expect("temp dir");
    let path = match arg {
        Some(path) => PathBuf::from(path),
        None => {
            let fixtures = dirs::cache_dir()
                .expect("a cache folder")
                .join("dormouse/fixtures");
            let beckett = fixtures.join("beckett.wav");
            let path = made.path().join("beckett-1h-48k-stereo.wav");
            // Beckett is 9.96 s: the first copy plus 361 repeats make just over an hour.
            let status = Command::new("sox")
                .arg(&beckett)
                .args(["-r", "48000", "-c", "2", "-b", "16"])
                .arg(&path)
                .args(["repeat", "361"])
                .status()
                .expect("sox (scripts/install-deps.sh installs it; run scripts/fixtures.sh first)");
            assert!(status.success(), "sox failed");
            path
        }
    };
    let file_bytes = std::fs::metadata(&path).expect("the file").len();
    let before = status_kib("VmHWM:");
    let started = Instant::now();
    let audio = decode_file(&path).expect("decodes");
    let took = started.elapsed();
    let peak = status_kib("VmHWM:");
    let output_kib = (audio.samples.len() * 4) as u64 / 1024;
    let grown = peak.saturating_sub(before);
    println!(
        "{}: {:.1} MiB on disk, {} Hz, {} channel(s), {:.1} min",
        path.display(),
        file_bytes as f64 / (1024.0 * 1024.0),
        audio.source_rate,
        audio.source_channels,
        audio.duration().as_secs_f64() / 60.0
    );
    println!(
        "decode to 16 kHz mono: {:.2} s; output {:.1} MiB; peak RSS grew {:.1} MiB ({:.2}x the output); peak {:.1} MiB",
        took.as_secs_f64(),
        mib(output_kib),
        mib(grown),
        grown as f64 / output_kib.max(1) as f64,
        mib(peak)
    );
}
