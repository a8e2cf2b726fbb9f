//! A tiny HTTP/1.1 server on 127.0.0.1 for the download tests: every response is scripted
//! (range support, dropped connections, stalls, wrong lengths, error statuses) and every
//! request is recorded. No external network is used.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// A request the server saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub range_start: Option<u64>,
}

/// How to answer one request.
#[derive(Clone)]
pub enum Reply {
    /// Serve `body` (honouring `Range` when `ranges`), sending at most `cut_after` bytes of the
    /// body before closing, pausing `stall` after them (connection left open) when set,
    /// claiming `claim_length` as Content-Length when set, sleeping `pace` per 16 KiB chunk.
    Body {
        body: Arc<Vec<u8>>,
        ranges: bool,
        cut_after: Option<u64>,
        stall: Option<Duration>,
        claim_length: Option<u64>,
        pace: Duration,
    },
    /// An empty response with this status.
    Status(u16),
}

impl Reply {
    /// `body`, served whole, honouring ranges.
    pub fn file(body: &Arc<Vec<u8>>) -> Self {
        Reply::Body {
            body: body.clone(),
            ranges: true,
            cut_after: None,
            stall: None,
            claim_length: None,
            pace: Duration::ZERO,
        }
    }

    fn with(
        mut self,
        change: impl FnOnce(
            &mut Option<u64>,
            &mut Option<Duration>,
            &mut Option<u64>,
            &mut Duration,
            &mut bool,
        ),
    ) -> Self {
        if let Reply::Body {
            cut_after,
            stall,
            claim_length,
            pace,
            ranges,
            ..
        } = &mut self
        {
            change(cut_after, stall, claim_length, pace, ranges);
        }
        self
    }

    /// Closes the connection after `bytes` of the body (when `Some`).
    pub fn cut_after(self, bytes: Option<u64>) -> Self {
        self.with(|cut, _, _, _, _| *cut = bytes)
    }

    /// After the body (or its cut), keeps the connection open and silent for `wait`.
    pub fn stall(self, wait: Duration) -> Self {
        self.with(|_, stall, _, _, _| *stall = Some(wait))
    }

    /// Claims `bytes` as the Content-Length.
    pub fn claiming(self, bytes: u64) -> Self {
        self.with(|_, _, claim, _, _| *claim = Some(bytes))
    }

    /// Sleeps `wait` after each 16 KiB chunk.
    pub fn paced(self, wait: Duration) -> Self {
        self.with(|_, _, _, pace, _| *pace = wait)
    }

    /// Ignores `Range` headers (always answers 200 with the whole body).
    pub fn without_ranges(self) -> Self {
        self.with(|_, _, _, _, ranges| *ranges = false)
    }
}

type Script = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

pub struct Server {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    port: u16,
}

impl Server {
    /// Starts a server answering the `n`-th request (0-based) with `script(request, n)`.
    pub fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let script: Arc<Script> = Arc::new(script);
        {
            let seen = seen.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let seen = seen.clone();
                    let script = script.clone();
                    std::thread::spawn(move || serve(stream, &seen, &*script));
                }
            });
        }
        Self {
            base: format!("http://127.0.0.1:{port}"),
            seen,
            stop,
            port,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{path}", self.base)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(mut stream: TcpStream, seen: &Mutex<Vec<Seen>>, script: &Script) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_owned();
    let mut range_start = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            break;
        }
        let lower = header.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("range: bytes=") {
            range_start = value.trim().trim_end_matches('-').parse().ok();
        }
    }
    let request = Seen { path, range_start };
    let n = {
        let mut all = seen.lock();
        all.push(request.clone());
        all.len() - 1
    };
    match script(&request, n) {
        Reply::Status(status) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
        Reply::Body {
            body,
            ranges,
            cut_after,
            stall,
            claim_length,
            pace,
        } => {
            let len = body.len() as u64;
            let start = match (ranges, request.range_start) {
                (true, Some(start)) if start < len => start,
                (true, Some(_)) => {
                    let _ = write!(
                        stream,
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    return;
                }
                _ => 0,
            };
            let length = claim_length.unwrap_or(len) - start;
            let head = if ranges && request.range_start.is_some() {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{}\r\nContent-Length: {length}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                    len - 1,
                    claim_length.unwrap_or(len)
                )
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n")
            };
            if stream.write_all(head.as_bytes()).is_err() {
                return;
            }
            let limit = cut_after.map_or(len, |cut| (start + cut).min(len));
            let mut at = start as usize;
            while (at as u64) < limit {
                let end = (at + 16 * 1024).min(limit as usize);
                if stream.write_all(&body[at..end]).is_err() {
                    return;
                }
                at = end;
                if !pace.is_zero() {
                    std::thread::sleep(pace);
                }
            }
            let _ = stream.flush();
            if let Some(stall) = stall {
                std::thread::sleep(stall);
            }
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Arc<Vec<u8>> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    Arc::new(
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect(),
    )
}

/// Lower-case hex SHA-256.
pub fn sha256(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
