//! The download manager against a scripted HTTP server on 127.0.0.1: full download, resume
//! after a dropped or stalled connection, a server that ignores ranges, checksum mismatch,
//! HTTP errors, wrong lengths, cancel, single flight, a full disk, archives, throttled
//! progress. Every test checks what is left on disk.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use downloads::{
    partial_path, Artifact, DownloadError, DownloadManager, DownloadStatus, FixedSpace, Options,
    Phase, SpaceProbe, SystemSpace, Unpack,
};
use parking_lot::Mutex;
use support::{bytes, sha256, Reply, Server};

fn fast_options() -> Options {
    Options {
        connect_timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_millis(400),
        max_attempts: 3,
        backoff_initial: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        progress_interval: Duration::from_millis(50),
        space_margin: 0,
    }
}

struct Rig {
    manager: DownloadManager,
    statuses: Arc<Mutex<Vec<DownloadStatus>>>,
    dir: tempfile::TempDir,
}

fn rig_with(options: Options, space: Arc<dyn SpaceProbe>) -> Rig {
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let sink = statuses.clone();
    Rig {
        manager: DownloadManager::new(
            options,
            space,
            Arc::new(move |s| sink.lock().push(s.clone())),
        ),
        statuses,
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl Rig {
    /// Downloads `artifact` to `dest` under `id` and waits for the outcome.
    fn download(
        &self,
        id: &str,
        artifact: Artifact,
        dest: PathBuf,
    ) -> Result<PathBuf, DownloadError> {
        self.manager
            .start(id, artifact, dest)
            .expect("start")
            .wait()
    }
}

fn rig() -> Rig {
    rig_with(fast_options(), Arc::new(SystemSpace))
}

fn artifact(url: String, body: &[u8]) -> Artifact {
    Artifact {
        url,
        sha256: sha256(body),
        bytes: Some(body.len() as u64),
        unpack: Unpack::File,
    }
}

/// Names of the files left in `dir`.
fn left_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_full_download_is_verified_and_moved_into_place() {
    let body = bytes(1 << 20, 1);
    let served = body.clone();
    let server = Server::start(move |_, _| Reply::file(&served));
    let rig = rig();
    let dest = rig.dir.path().join("ggml-tiny.bin");
    let handle = rig
        .manager
        .start(
            "whisper-tiny",
            artifact(server.url("ggml-tiny.bin"), &body),
            dest.clone(),
        )
        .expect("start");
    assert!(!handle.joined);
    assert_eq!(handle.wait().expect("downloaded"), dest);
    assert_eq!(fs::read(&dest).expect("read"), *body);
    assert_eq!(left_in(rig.dir.path()), ["ggml-tiny.bin"]);
    let statuses = rig.statuses.lock().clone();
    let phases: Vec<Phase> = statuses.iter().map(|s| s.phase).collect();
    for phase in [
        Phase::Connecting,
        Phase::Downloading,
        Phase::Verifying,
        Phase::Finished,
    ] {
        assert!(phases.contains(&phase), "{phase:?} missing from {phases:?}");
    }
    assert_eq!(phases.last(), Some(&Phase::Finished));
    let last = statuses.last().expect("last");
    assert_eq!((last.bytes, last.total), (1 << 20, Some(1 << 20)));
    assert!(
        statuses.windows(2).all(|w| w[0].bytes <= w[1].bytes),
        "progress never goes back"
    );
    assert!(rig.manager.active().is_empty());
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn a_dropped_connection_resumes_with_a_range_request() {
    let body = bytes(600 * 1024, 2);
    let served = body.clone();
    let server =
        Server::start(move |_, n| Reply::file(&served).cut_after((n == 0).then_some(200 * 1024)));
    let rig = rig();
    let dest = rig.dir.path().join("model.bin");
    let handle = rig
        .manager
        .start("m", artifact(server.url("model.bin"), &body), dest.clone())
        .expect("start");
    handle.wait().expect("resumed and finished");
    assert_eq!(fs::read(&dest).expect("read"), *body);
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range_start, None);
    assert_eq!(
        seen[1].range_start,
        Some(200 * 1024),
        "the second request resumes"
    );
    let statuses = rig.statuses.lock().clone();
    let retrying = statuses
        .iter()
        .find(|s| s.phase == Phase::Retrying)
        .expect("a retry was shown");
    assert!(
        matches!(retrying.error, Some(DownloadError::Network { .. })),
        "{retrying:?}"
    );
    assert!(retrying.retry_in_ms.is_some());
    assert!(statuses
        .iter()
        .any(|s| s.attempt == 2 && s.resumed_from == Some(200 * 1024)));
    assert_eq!(left_in(rig.dir.path()), ["model.bin"]);
}

#[test]
fn a_stalled_connection_times_out_and_resumes() {
    let body = bytes(300 * 1024, 3);
    let served = body.clone();
    let server = Server::start(move |_, n| match n {
        0 => Reply::file(&served)
            .cut_after(Some(64 * 1024))
            .stall(Duration::from_secs(3)),
        _ => Reply::file(&served),
    });
    let rig = rig();
    let dest = rig.dir.path().join("model.bin");
    rig.download("m", artifact(server.url("model.bin"), &body), dest.clone())
        .expect("finished after the stall");
    assert_eq!(fs::read(&dest).expect("read"), *body);
    assert_eq!(server.seen()[1].range_start, Some(64 * 1024));
}

#[test]
fn a_server_that_ignores_ranges_gets_a_fresh_download() {
    let body = bytes(400 * 1024, 4);
    let served = body.clone();
    let server = Server::start(move |_, n| {
        Reply::file(&served)
            .without_ranges()
            .cut_after((n == 0).then_some(100 * 1024))
    });
    let rig = rig();
    let dest = rig.dir.path().join("model.bin");
    rig.download("m", artifact(server.url("model.bin"), &body), dest.clone())
        .expect("finished");
    assert_eq!(
        fs::read(&dest).expect("read"),
        *body,
        "no duplicated prefix"
    );
}

#[test]
fn a_checksum_mismatch_deletes_the_file_and_says_so() {
    let body = bytes(200 * 1024, 5);
    let served = body.clone();
    let server = Server::start(move |_, _| Reply::file(&served));
    let rig = rig();
    let dest = rig.dir.path().join("model.bin");
    let mut wrong = artifact(server.url("model.bin"), &body);
    wrong.sha256 = sha256(b"something else");
    let error = rig
        .download("m", wrong.clone(), dest.clone())
        .expect_err("mismatch");
    match &error {
        DownloadError::ChecksumMismatch { expected, actual } => {
            assert_eq!(expected, &wrong.sha256);
            assert_eq!(actual, &sha256(&body));
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(error.to_string().contains("corrupt"), "{error}");
    assert!(
        left_in(rig.dir.path()).is_empty(),
        "nothing kept: {:?}",
        left_in(rig.dir.path())
    );
    let last = rig.statuses.lock().last().cloned().expect("status");
    assert_eq!(last.phase, Phase::Failed);
    assert_eq!(last.error, Some(error));
}

#[test]
fn http_errors_are_final_or_retried_as_they_deserve() {
    let server = Server::start(|request, _| match request.path.as_str() {
        "missing.bin" => Reply::Status(404),
        _ => Reply::Status(500),
    });
    let rig = rig();
    let body = bytes(10, 6);
    let error = rig
        .download(
            "a",
            artifact(server.url("missing.bin"), &body),
            rig.dir.path().join("a.bin"),
        )
        .expect_err("404");
    assert!(
        matches!(error, DownloadError::Http { status: 404, .. }),
        "{error:?}"
    );
    assert_eq!(server.seen().len(), 1, "a 404 is not retried");

    let error = rig
        .download(
            "b",
            artifact(server.url("broken.bin"), &body),
            rig.dir.path().join("b.bin"),
        )
        .expect_err("500");
    assert!(
        matches!(error, DownloadError::Http { status: 500, .. }),
        "{error:?}"
    );
    assert_eq!(
        server.seen().len(),
        1 + 3,
        "a 500 is retried up to max_attempts"
    );
    assert!(left_in(rig.dir.path())
        .iter()
        .all(|n| n.ends_with(".partial")));
}

#[test]
fn a_wrong_length_is_refused_or_resumed() {
    let body = bytes(100 * 1024, 7);
    let served = body.clone();
    // The server claims more bytes than the publisher states: refused before downloading.
    let server = Server::start(move |_, _| Reply::file(&served).claiming(100 * 1024 + 10));
    let rig = rig();
    let dest = rig.dir.path().join("model.bin");
    let error = rig
        .download("m", artifact(server.url("model.bin"), &body), dest.clone())
        .expect_err("wrong length");
    assert_eq!(
        error,
        DownloadError::WrongSize {
            expected: 100 * 1024,
            actual: 100 * 1024 + 10
        }
    );
    assert!(left_in(rig.dir.path()).is_empty());

    // The server always closes early: the retries run out, the partial file is kept so a
    // later request resumes it.
    let served = body.clone();
    let short = Server::start(move |_, _| Reply::file(&served).cut_after(Some(1024)));
    let error = rig
        .download("m", artifact(short.url("model.bin"), &body), dest.clone())
        .expect_err("short");
    assert!(
        matches!(error, DownloadError::Network { attempts: 3, .. }),
        "{error:?}"
    );
    assert_eq!(
        fs::metadata(partial_path(&dest)).expect("partial").len(),
        3 * 1024
    );
    assert!(!dest.exists());
}

#[test]
fn cancel_mid_download_removes_what_was_written() {
    let body = bytes(2 << 20, 8);
    let served = body.clone();
    let server = Server::start(move |_, _| Reply::file(&served).paced(Duration::from_millis(5)));
    let rig = rig();
    let dest = rig.dir.path().join("model.bin");
    let handle = rig
        .manager
        .start("m", artifact(server.url("model.bin"), &body), dest.clone())
        .expect("start");
    while handle.status().bytes < 64 * 1024 {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(rig.manager.cancel("m"));
    assert_eq!(handle.wait(), Err(DownloadError::Cancelled));
    assert!(
        left_in(rig.dir.path()).is_empty(),
        "{:?}",
        left_in(rig.dir.path())
    );
    assert_eq!(
        rig.statuses.lock().last().map(|s| s.phase),
        Some(Phase::Cancelled)
    );
    assert!(!rig.manager.cancel("m"), "nothing left to cancel");
}

#[test]
fn two_requests_for_one_model_share_one_download() {
    let body = bytes(512 * 1024, 9);
    let served = body.clone();
    let server = Server::start(move |_, _| Reply::file(&served).paced(Duration::from_millis(2)));
    let rig = rig();
    let dest = rig.dir.path().join("model.bin");
    let a = artifact(server.url("model.bin"), &body);
    let first = rig
        .manager
        .start("m", a.clone(), dest.clone())
        .expect("first");
    let second = rig.manager.start("m", a, dest.clone()).expect("second");
    assert!(second.joined);
    let waiters: Vec<_> = [first, second]
        .into_iter()
        .map(|h| std::thread::spawn(move || h.wait()))
        .collect();
    for waiter in waiters {
        assert_eq!(waiter.join().expect("join"), Ok(dest.clone()));
    }
    assert_eq!(server.seen().len(), 1, "one transfer");
    assert_eq!(fs::read(&dest).expect("read"), *body);
}

#[test]
fn a_full_disk_is_refused_before_writing() {
    let body = bytes(64 * 1024, 10);
    let served = body.clone();
    let server = Server::start(move |_, _| Reply::file(&served));
    let rig = rig_with(fast_options(), Arc::new(FixedSpace(1000)));
    let dest = rig.dir.path().join("model.bin");
    let error = rig
        .download("m", artifact(server.url("model.bin"), &body), dest)
        .expect_err("no space");
    assert_eq!(
        error,
        DownloadError::InsufficientSpace {
            dir: rig.dir.path().display().to_string(),
            needed: 64 * 1024,
            available: 1000
        }
    );
    assert!(error.to_string().contains("not enough disk space"));
    assert!(
        server.seen().is_empty(),
        "with the publisher's size known, nothing is fetched"
    );
    // Without a published size, the server's Content-Length is checked before writing.
    let mut no_size = artifact(server.url("model.bin"), &body);
    no_size.bytes = None;
    let error = rig
        .download("m", no_size, rig.dir.path().join("model.bin"))
        .expect_err("no space");
    assert!(
        matches!(
            error,
            DownloadError::InsufficientSpace { needed: 65536, .. }
        ),
        "{error:?}"
    );
    assert_eq!(server.seen().len(), 1);
    assert!(left_in(rig.dir.path())
        .iter()
        .all(|n| fs::metadata(rig.dir.path().join(n))
            .map(|m| m.len())
            .unwrap_or(0)
            == 0));
}

#[test]
fn an_archive_is_unpacked_into_its_folder() {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, data) in [
        ("parakeet/encoder.onnx", &b"weights"[..]),
        ("parakeet/vocab.txt", b"a\nb"),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, data)
            .expect("append");
    }
    let archive = Arc::new(builder.into_inner().expect("tar").finish().expect("gz"));
    let served = archive.clone();
    let server = Server::start(move |_, _| Reply::file(&served));
    let rig = rig();
    let dest = rig.dir.path().join("parakeet-tdt-0.6b-v3-int8");
    let mut a = artifact(server.url("parakeet.tar.gz"), &archive);
    a.unpack = Unpack::TarGz;
    rig.download("parakeet", a, dest.clone()).expect("unpacked");
    assert_eq!(
        fs::read(dest.join("encoder.onnx")).expect("encoder"),
        b"weights"
    );
    assert_eq!(left_in(rig.dir.path()), ["parakeet-tdt-0.6b-v3-int8"]);
    assert!(rig
        .statuses
        .lock()
        .iter()
        .any(|s| s.phase == Phase::Unpacking));
}

#[test]
fn progress_is_throttled() {
    let body = bytes(4 << 20, 11);
    let served = body.clone();
    let server = Server::start(move |_, _| Reply::file(&served).paced(Duration::from_millis(1)));
    let options = Options {
        progress_interval: Duration::from_millis(200),
        ..fast_options()
    };
    let rig = rig_with(options, Arc::new(SystemSpace));
    let dest = rig.dir.path().join("model.bin");
    let started = std::time::Instant::now();
    rig.download("m", artifact(server.url("model.bin"), &body), dest)
        .expect("done");
    let elapsed = started.elapsed();
    let statuses = rig.statuses.lock().clone();
    let progress = statuses
        .iter()
        .filter(|s| s.phase == Phase::Downloading)
        .count();
    // 256 chunks of 16 KiB arrived; at most one byte-progress status per 200 ms went out
    // (plus the one that opens the phase).
    let allowed = (elapsed.as_millis() / 200) as usize + 2;
    assert!(
        progress <= allowed,
        "{progress} progress statuses in {elapsed:?}"
    );
    assert!(
        statuses.iter().any(|s| s.phase == Phase::Downloading
            && s.bytes_per_sec > 0.0
            && s.eta_secs.is_some())
            || progress < 3
    );
}

#[test]
fn quitting_keeps_what_arrived_and_the_next_start_resumes_it() {
    let body = bytes(2 << 20, 12);
    let served = body.clone();
    let server = Server::start(move |_, _| Reply::file(&served).paced(Duration::from_millis(5)));
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("model.bin");
    let a = artifact(server.url("model.bin"), &body);
    let first = DownloadManager::new(fast_options(), Arc::new(SystemSpace), Arc::new(|_| {}));
    let handle = first.start("m", a.clone(), dest.clone()).expect("start");
    while handle.status().bytes < 64 * 1024 {
        std::thread::sleep(Duration::from_millis(5));
    }
    first.shutdown();
    assert_eq!(handle.wait(), Err(DownloadError::Cancelled));
    let kept = fs::metadata(partial_path(&dest))
        .expect("partial kept")
        .len();
    assert!(kept >= 64 * 1024);

    let second = DownloadManager::new(fast_options(), Arc::new(SystemSpace), Arc::new(|_| {}));
    second
        .start("m", a, dest.clone())
        .expect("start")
        .wait()
        .expect("resumed");
    assert_eq!(fs::read(&dest).expect("read"), *body);
    assert_eq!(server.seen().last().and_then(|s| s.range_start), Some(kept));
}

/// A manager whose sink holds the worker at `phase` until the test says go, so a quit can
/// land exactly there.
fn held_at(
    phase: Phase,
) -> (
    DownloadManager,
    std::sync::mpsc::Receiver<()>,
    Arc<std::sync::Barrier>,
) {
    let (reached, at_phase) = std::sync::mpsc::channel();
    let reached = Mutex::new(Some(reached));
    let go = Arc::new(std::sync::Barrier::new(2));
    let release = go.clone();
    let manager = DownloadManager::new(
        fast_options(),
        Arc::new(SystemSpace),
        Arc::new(move |s: &DownloadStatus| {
            if s.phase == phase {
                if let Some(tx) = reached.lock().take() {
                    let _ = tx.send(());
                    release.wait();
                }
            }
        }),
    );
    (manager, at_phase, go)
}

#[test]
fn quitting_during_verification_keeps_the_file_and_the_next_start_fetches_nothing() {
    let body = bytes(1 << 20, 21);
    let served = body.clone();
    let server = Server::start(move |_, _| Reply::file(&served));
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("model.bin");
    // Sizes both known (the catalog's) and unknown (the server's 416 says it).
    for known_size in [true, false] {
        let _ = fs::remove_file(&dest);
        let mut a = artifact(server.url("model.bin"), &body);
        if !known_size {
            a.bytes = None;
        }
        let (first, at_verifying, go) = held_at(Phase::Verifying);
        let handle = first.start("m", a.clone(), dest.clone()).expect("start");
        at_verifying.recv().expect("reached verification");
        first.request_shutdown();
        go.wait();
        first.shutdown();
        assert_eq!(handle.wait(), Err(DownloadError::Cancelled));
        assert_eq!(
            fs::read(partial_path(&dest)).expect("the finished file was kept"),
            *body
        );
        let before = server.seen().len();
        let second = DownloadManager::new(fast_options(), Arc::new(SystemSpace), Arc::new(|_| {}));
        second
            .start("m", a, dest.clone())
            .expect("start")
            .wait()
            .expect("verified and moved into place");
        assert_eq!(fs::read(&dest).expect("read"), *body);
        let seen = server.seen();
        assert_eq!(seen.len(), before + 1, "one request");
        assert_eq!(
            seen.last().and_then(|s| s.range_start),
            Some(body.len() as u64),
            "asked only for what comes after the end"
        );
    }
}

#[test]
fn quitting_during_unpacking_keeps_the_archive_and_the_next_start_unpacks_it() {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    header.set_size(7);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "model/encoder.onnx", &b"weights"[..])
        .expect("append");
    let archive = Arc::new(builder.into_inner().expect("tar").finish().expect("gz"));
    let served = archive.clone();
    let server = Server::start(move |_, _| Reply::file(&served));
    let dir = tempfile::tempdir().expect("tempdir");
    let dest = dir.path().join("model");
    let mut a = artifact(server.url("model.tar.gz"), &archive);
    a.unpack = Unpack::TarGz;
    let (first, at_unpacking, go) = held_at(Phase::Unpacking);
    let handle = first.start("m", a.clone(), dest.clone()).expect("start");
    at_unpacking.recv().expect("reached unpacking");
    first.request_shutdown();
    go.wait();
    first.shutdown();
    assert_eq!(handle.wait(), Err(DownloadError::Cancelled));
    assert!(!dest.exists(), "no half-unpacked folder");
    assert_eq!(
        fs::read(partial_path(&dest)).expect("archive kept"),
        *archive
    );
    let second = DownloadManager::new(fast_options(), Arc::new(SystemSpace), Arc::new(|_| {}));
    second
        .start("m", a, dest.clone())
        .expect("start")
        .wait()
        .expect("unpacked");
    assert_eq!(
        fs::read(dest.join("encoder.onnx")).expect("encoder"),
        b"weights"
    );
    assert_eq!(left_in(dir.path()), ["model"]);
}

struct PanickingSpace;

impl SpaceProbe for PanickingSpace {
    fn available(&self, _: &Path) -> std::io::Result<u64> {
        panic!("probe exploded")
    }
}

#[test]
fn a_panicking_worker_ends_its_job_as_failed_and_quitting_does_not_hang() {
    let body = bytes(1024, 22);
    let served = body.clone();
    let server = Server::start(move |_, _| Reply::file(&served));
    let rig = rig_with(fast_options(), Arc::new(PanickingSpace));
    let dest = rig.dir.path().join("model.bin");
    let handle = rig
        .manager
        .start("m", artifact(server.url("model.bin"), &body), dest.clone())
        .expect("start");
    let error = handle.wait().expect_err("failed");
    assert!(error.to_string().contains("probe exploded"), "{error}");
    assert_eq!(handle.status().phase, Phase::Failed);
    assert!(rig.manager.active().is_empty(), "the job ended");
    rig.manager.shutdown();
    // A later request starts afresh (and fails the same way, not by joining a dead job).
    let again = rig
        .manager
        .start("m", artifact(server.url("model.bin"), &body), dest)
        .expect("start");
    assert!(!again.joined);
    assert!(again.wait().is_err());
}
