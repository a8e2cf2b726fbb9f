//! One HTTP attempt: fetch a URL from where the `.partial` file ends to the end of the file,
//! appending to it. Resumes with a `Range` request when part of the file is already there,
//! and starts over when the server ignores the range. Says whether a failure is worth
//! retrying (dropped or stalled connection, 5xx) or final (404, wrong size, cancelled).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use reqwest::blocking::Client;
use reqwest::header::{CONTENT_RANGE, RANGE};

use crate::error::DownloadError;

/// Why an attempt stopped short.
#[derive(Debug)]
pub(crate) enum AttemptError {
    /// Try again (after a back-off); the error is what to report if the retries run out.
    Retry(DownloadError),
    /// Stop: retrying cannot help.
    Fatal(DownloadError),
}

/// What the attempt tells its owner as it goes.
pub(crate) trait AttemptHooks {
    /// The file's full size is known (or not) and `offset` bytes are already there; may refuse
    /// (e.g. not enough disk space).
    fn sized(&mut self, total: Option<u64>, offset: u64) -> Result<(), DownloadError>;
    /// `bytes` of the file are now on disk.
    fn progress(&mut self, bytes: u64);
    /// Whether the user cancelled.
    fn cancelled(&self) -> bool;
}

const CHUNK: usize = 256 * 1024;

/// Fetches `url` into `partial` (appending from its current length). Returns the file's
/// length when the server sent everything.
pub(crate) fn fetch(
    client: &Client,
    url: &str,
    partial: &Path,
    expected: Option<u64>,
    hooks: &mut dyn AttemptHooks,
) -> Result<u64, AttemptError> {
    let mut offset = fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
    if expected.is_some_and(|total| offset > total) {
        restart(partial)?;
        offset = 0;
    }
    let mut request = client.get(url);
    if offset > 0 {
        request = request.header(RANGE, format!("bytes={offset}-"));
    }
    let mut response = request
        .send()
        .map_err(|e| AttemptError::Retry(network(&e)))?;
    let status = response.status().as_u16();
    let total = match status {
        200 => {
            if offset > 0 {
                tracing::info!(url, offset, "the server ignored the range; starting over");
                restart(partial)?;
                offset = 0;
            }
            response.content_length()
        }
        206 => {
            let range = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range);
            match range {
                Some((start, total)) if start == offset => total,
                _ => {
                    restart(partial)?;
                    return Err(AttemptError::Retry(DownloadError::Network {
                        attempts: 0,
                        reason: "the server resumed at the wrong place".into(),
                    }));
                }
            }
        }
        // Everything is here already (a quit during verification): nothing to fetch.
        416 if expected.or_else(|| unsatisfiable_total(&response)) == Some(offset) => {
            return Ok(offset)
        }
        416 => {
            restart(partial)?;
            return Err(AttemptError::Retry(http(status, url)));
        }
        408 | 425 | 429 | 500..=599 => return Err(AttemptError::Retry(http(status, url))),
        _ => return Err(AttemptError::Fatal(http(status, url))),
    };
    if let (Some(expected), Some(total)) = (expected, total) {
        if expected != total {
            let _ = fs::remove_file(partial);
            return Err(AttemptError::Fatal(DownloadError::WrongSize {
                expected,
                actual: total,
            }));
        }
    }
    let total = total.or(expected);
    hooks.sized(total, offset).map_err(AttemptError::Fatal)?;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .map_err(|e| AttemptError::Fatal(DownloadError::io(partial, &e)))?;
    let mut buffer = vec![0u8; CHUNK];
    loop {
        if hooks.cancelled() {
            return Err(AttemptError::Fatal(DownloadError::Cancelled));
        }
        let read = match response.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) => {
                let _ = file.flush();
                return Err(AttemptError::Retry(DownloadError::Network {
                    attempts: 0,
                    reason: read_failure(&error, offset),
                }));
            }
        };
        file.write_all(&buffer[..read])
            .map_err(|e| AttemptError::Fatal(DownloadError::io(partial, &e)))?;
        offset += read as u64;
        if let Some(total) = total.filter(|&t| offset > t) {
            drop(file);
            let _ = fs::remove_file(partial);
            return Err(AttemptError::Fatal(DownloadError::WrongSize {
                expected: total,
                actual: offset,
            }));
        }
        hooks.progress(offset);
    }
    file.sync_all()
        .map_err(|e| AttemptError::Fatal(DownloadError::io(partial, &e)))?;
    match total {
        Some(total) if offset < total => Err(AttemptError::Retry(DownloadError::Network {
            attempts: 0,
            reason: format!("the connection closed after {offset} of {total} bytes"),
        })),
        _ => Ok(offset),
    }
}

fn restart(partial: &Path) -> Result<(), AttemptError> {
    File::create(partial)
        .map(drop)
        .map_err(|e| AttemptError::Fatal(DownloadError::io(partial, &e)))
}

fn http(status: u16, url: &str) -> DownloadError {
    DownloadError::Http {
        status,
        url: url.to_owned(),
    }
}

fn network(error: &reqwest::Error) -> DownloadError {
    let reason = if error.is_timeout() {
        "the server did not answer in time".to_owned()
    } else if error.is_connect() {
        format!("could not connect: {}", source_chain(error))
    } else {
        source_chain(error)
    };
    DownloadError::Network {
        attempts: 0,
        reason,
    }
}

fn read_failure(error: &std::io::Error, offset: u64) -> String {
    if error.kind() == std::io::ErrorKind::TimedOut
        || error.to_string().to_lowercase().contains("timed out")
    {
        format!("the connection stalled after {offset} bytes")
    } else {
        format!("the connection dropped after {offset} bytes: {error}")
    }
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// `bytes START-END/TOTAL` → (START, TOTAL), TOTAL `None` when `*`.
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start.trim().parse().ok()?, total))
}

/// The full size a 416 answer states (`Content-Range: bytes */N`).
fn unsatisfiable_total(response: &reqwest::blocking::Response) -> Option<u64> {
    response
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes */")?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::parse_content_range;

    #[test]
    fn content_range_is_parsed() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range("bytes x-9/10"), None);
    }
}
