//! [`DownloadManager`]: the one owner of the downloads in flight. Each model id has at most
//! one [`Job`], run by its own worker thread; callers get a [`DownloadHandle`] and wait on it.
//! The worker is the only writer of its job's [`DownloadStatus`]; every change is published
//! to the [`StatusSink`] (byte progress throttled to [`Options::progress_interval`]).
//!
//! Lock order: `jobs` → a job's `state`. Neither is held while the network or disk is used.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use sha2::{Digest, Sha256};

use crate::archive;
use crate::disk::SpaceProbe;
use crate::error::DownloadError;
use crate::partial_path;
use crate::transfer::{self, AttemptError, AttemptHooks};

/// How a downloaded file becomes the model on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unpack {
    /// The file is the model: renamed into place.
    File,
    /// A `.tar.gz` unpacked into a folder named like the destination.
    TarGz,
}

/// What to fetch and how to check it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Artifact {
    /// `http://` or `https://` URL.
    pub url: String,
    /// The publisher's SHA-256, 64 hex digits.
    pub sha256: String,
    /// The exact size, when the publisher states it (else the server's `Content-Length`).
    pub bytes: Option<u64>,
    /// File or archive.
    pub unpack: Unpack,
}

/// Where a download is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "typed",
    derive(serde::Serialize, serde::Deserialize, specta::Type),
    serde(rename = "DownloadPhase", rename_all = "snake_case")
)]
pub enum Phase {
    /// Opening the connection (also before each retry).
    Connecting,
    /// Bytes are arriving.
    Downloading,
    /// The connection failed; waiting before the next attempt.
    Retrying,
    /// Checking the SHA-256.
    Verifying,
    /// Unpacking the archive.
    Unpacking,
    /// In place and verified.
    Finished,
    /// Stopped with an error (see `error`).
    Failed,
    /// Cancelled by the user.
    Cancelled,
}

impl Phase {
    /// Whether the download is over.
    pub fn is_done(self) -> bool {
        matches!(self, Phase::Finished | Phase::Failed | Phase::Cancelled)
    }
}

/// A snapshot of one download.
#[derive(Clone, Debug, PartialEq)]
pub struct DownloadStatus {
    /// The model id it was started for.
    pub id: String,
    /// Where it is.
    pub phase: Phase,
    /// Bytes on disk.
    pub bytes: u64,
    /// The full size, once known.
    pub total: Option<u64>,
    /// Recent speed (smoothed), bytes per second.
    pub bytes_per_sec: f64,
    /// Seconds left at that speed.
    pub eta_secs: Option<f64>,
    /// The attempt running (1-based).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// Bytes already there when the current attempt resumed (a range request).
    pub resumed_from: Option<u64>,
    /// While retrying: milliseconds until the next attempt.
    pub retry_in_ms: Option<u64>,
    /// Why the last attempt failed (while retrying) or why the download failed.
    pub error: Option<DownloadError>,
    /// The destination.
    pub dest: PathBuf,
}

/// Receives every published status.
pub type StatusSink = Arc<dyn Fn(&DownloadStatus) + Send + Sync>;

/// Timeouts, retries and pacing.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for the next bytes before the connection counts as stalled.
    pub stall_timeout: Duration,
    /// Attempts before giving up on a failing connection.
    pub max_attempts: u32,
    /// First back-off; doubled after each failure.
    pub backoff_initial: Duration,
    /// Longest back-off.
    pub backoff_max: Duration,
    /// Shortest time between two byte-progress statuses.
    pub progress_interval: Duration,
    /// Free space to leave on the disk beyond the download itself.
    pub space_margin: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(30),
            max_attempts: 6,
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            progress_interval: Duration::from_millis(250),
            space_margin: 64 << 20,
        }
    }
}

impl Options {
    /// The defaults with the environment's overrides: `DORMOUSE_DOWNLOAD_TIMEOUT` (seconds
    /// without data before a connection counts as stalled), `DORMOUSE_DOWNLOAD_CONNECT_TIMEOUT`
    /// (seconds) and `DORMOUSE_DOWNLOAD_RETRIES` (attempts). A malformed value is ignored and
    /// named in the second element. (Proxies are read by the HTTP client itself.)
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> (Self, Option<String>) {
        let mut options = Self::default();
        let mut errors = Vec::new();
        let mut read = |name: &str, min: u64, max: u64| -> Option<u64> {
            let raw = lookup(name)?;
            match raw.trim().parse::<u64>() {
                Ok(v) if (min..=max).contains(&v) => Some(v),
                _ => {
                    errors.push(format!(
                        "{name}={raw:?} is not a whole number from {min} to {max}; ignored"
                    ));
                    None
                }
            }
        };
        if let Some(secs) = read("DORMOUSE_DOWNLOAD_TIMEOUT", 1, 3600) {
            options.stall_timeout = Duration::from_secs(secs);
        }
        if let Some(secs) = read("DORMOUSE_DOWNLOAD_CONNECT_TIMEOUT", 1, 600) {
            options.connect_timeout = Duration::from_secs(secs);
        }
        if let Some(n) = read("DORMOUSE_DOWNLOAD_RETRIES", 1, 100) {
            options.max_attempts = n as u32;
        }
        (options, (!errors.is_empty()).then(|| errors.join("; ")))
    }
}

const RUNNING: u8 = 0;
const CANCEL: u8 = 1;
const SHUTDOWN: u8 = 2;

struct Job {
    stop: AtomicU8,
    state: Mutex<JobState>,
    done: Condvar,
}

struct JobState {
    status: DownloadStatus,
    outcome: Option<Result<PathBuf, DownloadError>>,
}

struct Shared {
    options: Options,
    space: Arc<dyn SpaceProbe>,
    sink: StatusSink,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

/// Owner of every download in flight; see the module docs.
pub struct DownloadManager {
    shared: Arc<Shared>,
}

/// A caller's view of one download.
#[derive(Clone)]
pub struct DownloadHandle {
    job: Arc<Job>,
    /// Whether this request joined a download already running.
    pub joined: bool,
}

impl DownloadHandle {
    /// Waits until the download is over: the destination path, or why not.
    pub fn wait(&self) -> Result<PathBuf, DownloadError> {
        let mut state = self.job.state.lock();
        loop {
            if let Some(outcome) = &state.outcome {
                return outcome.clone();
            }
            self.job.done.wait(&mut state);
        }
    }

    /// The latest status.
    pub fn status(&self) -> DownloadStatus {
        self.job.state.lock().status.clone()
    }
}

impl DownloadManager {
    /// A manager checking free space with `space` and publishing statuses to `sink`.
    pub fn new(options: Options, space: Arc<dyn SpaceProbe>, sink: StatusSink) -> Self {
        Self {
            shared: Arc::new(Shared {
                options,
                space,
                sink,
                jobs: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Downloads `artifact` to `dest` under `id`, or joins the download of `id` already
    /// running. Refused before any byte is fetched when `dest` exists or the request is
    /// malformed.
    pub fn start(
        &self,
        id: &str,
        artifact: Artifact,
        dest: PathBuf,
    ) -> Result<DownloadHandle, DownloadError> {
        let mut jobs = self.shared.jobs.lock();
        if let Some(job) = jobs.get(id) {
            return Ok(DownloadHandle {
                job: job.clone(),
                joined: true,
            });
        }
        validate(&artifact, &dest)?;
        if dest.exists() {
            return Err(DownloadError::AlreadyExists {
                path: dest.display().to_string(),
            });
        }
        let status = DownloadStatus {
            id: id.to_owned(),
            phase: Phase::Connecting,
            bytes: 0,
            total: artifact.bytes,
            bytes_per_sec: 0.0,
            eta_secs: None,
            attempt: 1,
            max_attempts: self.shared.options.max_attempts,
            resumed_from: None,
            retry_in_ms: None,
            error: None,
            dest: dest.clone(),
        };
        let job = Arc::new(Job {
            stop: AtomicU8::new(RUNNING),
            state: Mutex::new(JobState {
                status: status.clone(),
                outcome: None,
            }),
            done: Condvar::new(),
        });
        let worker = Worker {
            shared: self.shared.clone(),
            job: job.clone(),
            artifact,
            dest,
            published: None,
            speed: 0.0,
        };
        std::thread::Builder::new()
            .name(format!("download-{id}"))
            .spawn(move || worker.run())
            .map_err(|e| DownloadError::Io {
                path: String::new(),
                reason: format!("could not start the download thread: {e}"),
            })?;
        jobs.insert(id.to_owned(), job.clone());
        drop(jobs);
        (self.shared.sink)(&status);
        Ok(DownloadHandle { job, joined: false })
    }

    /// Cancels the download of `id` and removes what it wrote. False when none is running.
    pub fn cancel(&self, id: &str) -> bool {
        match self.shared.jobs.lock().get(id) {
            Some(job) => {
                job.stop.store(CANCEL, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// The download of `id` in flight, if any.
    pub fn status(&self, id: &str) -> Option<DownloadStatus> {
        let job = self.shared.jobs.lock().get(id).cloned()?;
        let status = job.state.lock().status.clone();
        Some(status)
    }

    /// Every download in flight.
    pub fn active(&self) -> Vec<DownloadStatus> {
        let jobs: Vec<Arc<Job>> = self.shared.jobs.lock().values().cloned().collect();
        let mut all: Vec<DownloadStatus> =
            jobs.iter().map(|j| j.state.lock().status.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Tells every download to stop as for a quit (see [`Self::shutdown`]) without waiting.
    pub fn request_shutdown(&self) {
        self.stop_all_for_quit();
    }

    fn stop_all_for_quit(&self) -> Vec<Arc<Job>> {
        let jobs: Vec<Arc<Job>> = self.shared.jobs.lock().values().cloned().collect();
        for job in &jobs {
            let _ =
                job.stop
                    .compare_exchange(RUNNING, SHUTDOWN, Ordering::SeqCst, Ordering::SeqCst);
        }
        jobs
    }

    /// Stops every download and waits for the workers to finish (on quit). What was fetched
    /// is kept, whether it was arriving, being verified or being unpacked, so the next
    /// request resumes it (a complete file is verified again, not fetched again).
    pub fn shutdown(&self) {
        for job in self.stop_all_for_quit() {
            let _ = DownloadHandle { job, joined: true }.wait();
        }
    }
}

fn validate(artifact: &Artifact, dest: &Path) -> Result<(), DownloadError> {
    let url = artifact.url.to_ascii_lowercase();
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(DownloadError::Invalid(format!(
            "{} is not an http(s) URL",
            artifact.url
        )));
    }
    if artifact.sha256.len() != 64 || !artifact.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DownloadError::Invalid(format!(
            "{:?} is not a SHA-256 digest (64 hex digits)",
            artifact.sha256
        )));
    }
    if dest.file_name().is_none() || dest.parent().is_none() {
        return Err(DownloadError::Invalid(format!(
            "{} cannot be a destination",
            dest.display()
        )));
    }
    Ok(())
}

/// Runs one job: the only writer of its status.
struct Worker {
    shared: Arc<Shared>,
    job: Arc<Job>,
    artifact: Artifact,
    dest: PathBuf,
    published: Option<(Instant, u64, Phase)>,
    speed: f64,
}

impl Worker {
    fn run(mut self) {
        let partial = partial_path(&self.dest);
        // A panic must still end the job (as failed): callers wait on it, and quitting
        // waits for every job.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.download(&partial)))
                .unwrap_or_else(|panic| {
                    let reason = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "unknown cause".into());
                    tracing::error!(url = self.artifact.url, %reason, "download worker panicked");
                    Err(DownloadError::Invalid(format!(
                        "the download stopped on an internal error ({reason})"
                    )))
                });
        let stop = self.job.stop.load(Ordering::SeqCst);
        match &outcome {
            Ok(_) => self.update(true, |s| {
                s.phase = Phase::Finished;
                s.error = None;
                s.retry_in_ms = None;
                s.eta_secs = Some(0.0);
            }),
            Err(DownloadError::Cancelled) => {
                if stop != SHUTDOWN {
                    let _ = fs::remove_file(&partial);
                }
                self.update(true, |s| {
                    s.phase = Phase::Cancelled;
                    s.retry_in_ms = None;
                    s.eta_secs = None;
                });
            }
            Err(error) => {
                tracing::warn!(url = self.artifact.url, %error, "download failed");
                self.update(true, |s| {
                    s.phase = Phase::Failed;
                    s.error = Some(error.clone());
                    s.retry_in_ms = None;
                    s.eta_secs = None;
                });
            }
        }
        let id = self.job.state.lock().status.id.clone();
        {
            let mut jobs = self.shared.jobs.lock();
            if jobs.get(&id).is_some_and(|j| Arc::ptr_eq(j, &self.job)) {
                jobs.remove(&id);
            }
        }
        self.job.state.lock().outcome = Some(outcome);
        self.job.done.notify_all();
    }

    fn stopped(&self) -> bool {
        self.job.stop.load(Ordering::SeqCst) != RUNNING
    }

    fn download(&mut self, partial: &Path) -> Result<PathBuf, DownloadError> {
        let dir = self.dest.parent().unwrap_or(Path::new(".")).to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| DownloadError::io(&dir, &e))?;
        let options = self.shared.options.clone();
        let client = reqwest::blocking::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.stall_timeout)
            .user_agent(concat!("Dormouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DownloadError::Invalid(format!("no HTTP client: {e}")))?;
        // With the publisher's size known, a full disk is refused before connecting.
        let mut space_checked = false;
        if let Some(total) = self.artifact.bytes {
            let offset = fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
            self.check_space(&dir, total, offset)?;
            space_checked = true;
        }
        let mut attempt = 1;
        loop {
            let offset = fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
            self.update(true, |s| {
                s.phase = Phase::Connecting;
                s.attempt = attempt;
                s.bytes = offset;
                s.resumed_from = (offset > 0).then_some(offset);
                s.retry_in_ms = None;
            });
            let url = self.artifact.url.clone();
            let expected = self.artifact.bytes;
            let mut hooks = Hooks {
                worker: self,
                space_checked: &mut space_checked,
                dir: &dir,
            };
            match transfer::fetch(&client, &url, partial, expected, &mut hooks) {
                Ok(_) => break,
                Err(AttemptError::Fatal(error)) => return Err(error),
                Err(AttemptError::Retry(error)) => {
                    if self.stopped() {
                        return Err(DownloadError::Cancelled);
                    }
                    let error = match error {
                        DownloadError::Network { reason, .. } => DownloadError::Network {
                            attempts: attempt,
                            reason,
                        },
                        other => other,
                    };
                    if attempt >= options.max_attempts {
                        return Err(error);
                    }
                    let wait = backoff(&options, attempt);
                    tracing::info!(url, attempt, %error, ?wait, "download attempt failed; retrying");
                    self.update(true, |s| {
                        s.phase = Phase::Retrying;
                        s.retry_in_ms = Some(wait.as_millis() as u64);
                        s.error = Some(error.clone());
                        s.bytes_per_sec = 0.0;
                        s.eta_secs = None;
                    });
                    self.sleep(wait)?;
                    attempt += 1;
                }
            }
        }
        self.update(true, |s| {
            s.phase = Phase::Verifying;
            s.error = None;
            s.eta_secs = None;
        });
        // Stopped here, the file stays (a quit keeps it; a cancel removes it in `run`).
        let (actual, length) = match self.sha256(partial) {
            Ok(found) => found,
            Err(DownloadError::Cancelled) => return Err(DownloadError::Cancelled),
            Err(error) => {
                let _ = fs::remove_file(partial);
                return Err(error);
            }
        };
        if !actual.eq_ignore_ascii_case(&self.artifact.sha256) {
            let _ = fs::remove_file(partial);
            return Err(DownloadError::ChecksumMismatch {
                expected: self.artifact.sha256.to_ascii_lowercase(),
                actual,
            });
        }
        if let Some(expected) = self.artifact.bytes.filter(|&b| b != length) {
            let _ = fs::remove_file(partial);
            return Err(DownloadError::WrongSize {
                expected,
                actual: length,
            });
        }
        if self.dest.exists() {
            // Someone put a model there meanwhile: theirs stays.
            let _ = fs::remove_file(partial);
            return Err(DownloadError::AlreadyExists {
                path: self.dest.display().to_string(),
            });
        }
        match self.artifact.unpack {
            Unpack::File => {
                fs::rename(partial, &self.dest).map_err(|e| DownloadError::io(&self.dest, &e))?;
            }
            Unpack::TarGz => {
                self.update(true, |s| s.phase = Phase::Unpacking);
                let job = self.job.clone();
                let result = archive::unpack_tar_gz(partial, &self.dest, &|| {
                    job.stop.load(Ordering::SeqCst) != RUNNING
                });
                // A stopped unpack keeps the verified archive (see `run`); a broken one goes.
                if !matches!(result, Err(DownloadError::Cancelled)) {
                    let _ = fs::remove_file(partial);
                }
                result?;
            }
        }
        Ok(self.dest.clone())
    }

    /// Refuses when `dir`'s disk cannot take the rest of a `total`-byte file (`offset` bytes
    /// are there already), plus the unpacked copy of an archive and the margin.
    fn check_space(&self, dir: &Path, total: u64, offset: u64) -> Result<(), DownloadError> {
        let unpacked = match self.artifact.unpack {
            Unpack::File => 0,
            Unpack::TarGz => total,
        };
        let needed = total.saturating_sub(offset) + unpacked;
        let available = self
            .shared
            .space
            .available(dir)
            .map_err(|e| DownloadError::io(dir, &e))?;
        if needed.saturating_add(self.shared.options.space_margin) > available {
            return Err(DownloadError::InsufficientSpace {
                dir: dir.display().to_string(),
                needed,
                available,
            });
        }
        Ok(())
    }

    /// Sleeps `wait`, waking early to notice a cancel.
    fn sleep(&self, wait: Duration) -> Result<(), DownloadError> {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if self.stopped() {
                return Err(DownloadError::Cancelled);
            }
            std::thread::sleep(Duration::from_millis(20).min(until - Instant::now()));
        }
        Ok(())
    }

    fn sha256(&self, path: &Path) -> Result<(String, u64), DownloadError> {
        let mut file = fs::File::open(path).map_err(|e| DownloadError::io(path, &e))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut length = 0u64;
        loop {
            if self.stopped() {
                return Err(DownloadError::Cancelled);
            }
            let n = file
                .read(&mut buffer)
                .map_err(|e| DownloadError::io(path, &e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            length += n as u64;
        }
        let digest = hasher.finalize();
        Ok((digest.iter().map(|b| format!("{b:02x}")).collect(), length))
    }

    /// Changes the status and publishes it: always when `force`, else at most once per
    /// progress interval (and whenever the phase changed).
    fn update(&mut self, force: bool, change: impl FnOnce(&mut DownloadStatus)) {
        let mut state = self.job.state.lock();
        change(&mut state.status);
        let now = Instant::now();
        let status = &mut state.status;
        let due = match self.published {
            None => true,
            Some((at, _, phase)) => {
                force
                    || phase != status.phase
                    || now.duration_since(at) >= self.shared.options.progress_interval
            }
        };
        if !due {
            return;
        }
        if status.phase == Phase::Downloading {
            if let Some((at, bytes, Phase::Downloading)) = self.published {
                let dt = now.duration_since(at).as_secs_f64();
                if dt > 0.0 && status.bytes >= bytes {
                    let instant = (status.bytes - bytes) as f64 / dt;
                    self.speed = if self.speed == 0.0 {
                        instant
                    } else {
                        0.6 * self.speed + 0.4 * instant
                    };
                }
            }
            status.bytes_per_sec = self.speed;
            status.eta_secs = match status.total {
                Some(total) if self.speed > 0.0 => {
                    Some(total.saturating_sub(status.bytes) as f64 / self.speed)
                }
                _ => None,
            };
        } else if status.phase != Phase::Finished {
            self.speed = 0.0;
        }
        self.published = Some((now, status.bytes, status.phase));
        let snapshot = status.clone();
        drop(state);
        (self.shared.sink)(&snapshot);
    }
}

fn backoff(options: &Options, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    options
        .backoff_initial
        .saturating_mul(factor)
        .min(options.backoff_max)
}

/// The attempt's window into its worker.
struct Hooks<'a> {
    worker: &'a mut Worker,
    space_checked: &'a mut bool,
    dir: &'a Path,
}

impl AttemptHooks for Hooks<'_> {
    fn sized(&mut self, total: Option<u64>, offset: u64) -> Result<(), DownloadError> {
        if let (Some(total), false) = (total, *self.space_checked) {
            self.worker.check_space(self.dir, total, offset)?;
            *self.space_checked = true;
        }
        self.worker.update(true, |s| {
            s.phase = Phase::Downloading;
            s.total = total;
            s.bytes = offset;
        });
        Ok(())
    }

    fn progress(&mut self, bytes: u64) {
        self.worker.update(false, |s| s.bytes = bytes);
    }

    fn cancelled(&self) -> bool {
        self.worker.stopped()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let options = Options {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(500),
            ..Options::default()
        };
        let waits: Vec<u128> = (1..=5).map(|a| backoff(&options, a).as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
    }

    #[test]
    fn environment_overrides_timeouts_and_names_bad_values() {
        let env = |name: &str| match name {
            "DORMOUSE_DOWNLOAD_TIMEOUT" => Some("5".to_owned()),
            "DORMOUSE_DOWNLOAD_RETRIES" => Some("lots".to_owned()),
            _ => None,
        };
        let (options, error) = Options::from_env(env);
        assert_eq!(options.stall_timeout, Duration::from_secs(5));
        assert_eq!(options.max_attempts, Options::default().max_attempts);
        assert!(error.expect("named").contains("DORMOUSE_DOWNLOAD_RETRIES"));
    }

    #[test]
    fn malformed_requests_are_refused_before_anything_starts() {
        let manager = DownloadManager::new(
            Options::default(),
            Arc::new(crate::FixedSpace(u64::MAX)),
            Arc::new(|_| {}),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let good = Artifact {
            url: "http://127.0.0.1:1/x".into(),
            sha256: "0".repeat(64),
            bytes: None,
            unpack: Unpack::File,
        };
        let bad_url = Artifact {
            url: "file:///etc/passwd".into(),
            ..good.clone()
        };
        let bad_sha = Artifact {
            sha256: "abc".into(),
            ..good.clone()
        };
        for artifact in [bad_url, bad_sha] {
            assert!(matches!(
                manager.start("m", artifact, dir.path().join("m.bin")),
                Err(DownloadError::Invalid(_))
            ));
        }
        let existing = dir.path().join("there.bin");
        fs::write(&existing, b"good model").expect("write");
        assert!(matches!(
            manager.start("m", good, existing.clone()),
            Err(DownloadError::AlreadyExists { .. })
        ));
        assert_eq!(fs::read(&existing).expect("read"), b"good model");
        assert!(manager.active().is_empty());
    }
}
