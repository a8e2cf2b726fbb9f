//! Download throughput on loopback: the download manager (stream to disk, then SHA-256, then
//! rename) against the same server read by a bare HTTP client that writes nothing, and the
//! cost of the verification alone. Prints a table; `-- --quick` for a smoke run.
//!
//! `cargo bench -p downloads --bench loopback`

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use downloads::{Artifact, DownloadManager, Options, SystemSpace, Unpack};
use support::{bytes, sha256, Reply, Server};

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn mb_per_s(size: usize, t: Duration) -> f64 {
    size as f64 / 1e6 / t.as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let size: usize = if quick { 16 << 20 } else { 256 << 20 };
    let runs = if quick { 1 } else { 5 };
    let body = bytes(size, 99);
    let digest = sha256(&body);
    let served = body.clone();
    let server = Server::start(move |_, _| Reply::file(&served));
    let url = server.url("model.bin");
    let dir = tempfile::tempdir().expect("tempdir");

    let client = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .expect("client");
    let mut bare = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let mut response = client.get(&url).send().expect("get");
        let mut buffer = vec![0u8; 256 * 1024];
        let mut total = 0;
        loop {
            let n = response.read(&mut buffer).expect("read");
            if n == 0 {
                break;
            }
            total += n;
        }
        assert_eq!(total, size);
        bare.push(started.elapsed());
    }

    let manager = DownloadManager::new(Options::default(), Arc::new(SystemSpace), Arc::new(|_| {}));
    let mut managed = Vec::new();
    for run in 0..runs {
        let dest = dir.path().join(format!("model-{run}.bin"));
        let artifact = Artifact {
            url: url.clone(),
            sha256: digest.clone(),
            bytes: Some(size as u64),
            unpack: Unpack::File,
        };
        let started = Instant::now();
        manager
            .start("m", artifact, dest.clone())
            .expect("start")
            .wait()
            .expect("downloaded");
        managed.push(started.elapsed());
        std::fs::remove_file(dest).expect("remove");
    }

    let path = dir.path().join("hash-me.bin");
    std::fs::write(&path, &*body).expect("write");
    let mut hashing = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let data = std::fs::read(&path).expect("read");
        assert_eq!(sha256(&data), digest);
        hashing.push(started.elapsed());
    }

    let (bare, managed, hashing) = (median(bare), median(managed), median(hashing));
    println!(
        "loopback download of {} MiB, median of {runs} run(s)",
        size >> 20
    );
    println!("| what | time | throughput |");
    println!("|---|---|---|");
    println!(
        "| bare HTTP read, nothing written | {:.0} ms | {:.0} MB/s |",
        bare.as_secs_f64() * 1e3,
        mb_per_s(size, bare)
    );
    println!(
        "| download manager: stream to .partial, SHA-256, rename | {:.0} ms | {:.0} MB/s |",
        managed.as_secs_f64() * 1e3,
        mb_per_s(size, managed)
    );
    println!(
        "| SHA-256 of the file alone (read + hash) | {:.0} ms | {:.0} MB/s |",
        hashing.as_secs_f64() * 1e3,
        mb_per_s(size, hashing)
    );
}
