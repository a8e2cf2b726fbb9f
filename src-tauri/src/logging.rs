//! Logging: `tracing` to stderr and to a daily-rotating file in the app's log folder (the
//! last 7 files are kept, each capped at [`DAILY_CAP_BYTES`], so the folder never holds more
//! than 7 × 16 MiB). `RUST_LOG` overrides the default filter.

use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::rolling::{Builder, Rotation};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{fmt, EnvFilter, Layer};

/// Default filter: our crates at info, whisper.cpp's chatter at warn.
const DEFAULT_FILTER: &str = "info,whisper_rs=warn";

/// Most bytes written to one day's log file; later lines that day are dropped, after one
/// line saying so (stderr still gets everything).
pub const DAILY_CAP_BYTES: u64 = 16 << 20;

/// Installs the global subscriber. Keep the guard alive until exit so the file is flushed.
/// Without a usable log folder, logs go to stderr only.
pub fn init(log_dir: &Path) -> Option<WorkerGuard> {
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let stderr = fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter());
    let file = std::fs::create_dir_all(log_dir).ok().and_then(|()| {
        Builder::new()
            .rotation(Rotation::DAILY)
            .filename_prefix("dormouse")
            .filename_suffix("log")
            .max_log_files(7)
            .build(log_dir)
            .ok()
    });
    match file {
        Some(appender) => {
            let today = utc_day(SystemTime::now());
            // What earlier runs today wrote counts too.
            let already =
                std::fs::metadata(log_dir.join(format!("dormouse.{}.log", civil_date(today))))
                    .map_or(0, |m| m.len());
            let capped = CappedWriter::new(appender, DAILY_CAP_BYTES, already, || {
                utc_day(SystemTime::now())
            });
            let (writer, guard) = tracing_appender::non_blocking(capped);
            let file_layer = fmt::layer()
                .with_ansi(false)
                .with_writer(writer)
                .with_filter(filter());
            let _ = tracing_subscriber::registry()
                .with(stderr)
                .with(file_layer)
                .try_init();
            Some(guard)
        }
        None => {
            let _ = tracing_subscriber::registry().with(stderr).try_init();
            None
        }
    }
}

/// Days since the Unix epoch, in UTC (the appender rotates on UTC days).
fn utc_day(now: SystemTime) -> u64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

/// `YYYY-MM-DD` of a day since the epoch (the appender's file-name date).
fn civil_date(day: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = i64::try_from(day).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Passes writes through until `cap` bytes were written on the current day, then drops them
/// (after one line saying so) until the day changes.
struct CappedWriter<W, D> {
    inner: W,
    cap: u64,
    written: u64,
    day: u64,
    today: D,
    told: bool,
}

impl<W: Write, D: Fn() -> u64> CappedWriter<W, D> {
    fn new(inner: W, cap: u64, already: u64, today: D) -> Self {
        let day = today();
        Self {
            inner,
            cap,
            written: already,
            day,
            today,
            told: false,
        }
    }
}

impl<W: Write, D: Fn() -> u64> Write for CappedWriter<W, D> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let day = (self.today)();
        if day != self.day {
            (self.day, self.written, self.told) = (day, 0, false);
        }
        let len = buf.len() as u64;
        if self.written.saturating_add(len) > self.cap {
            if !self.told {
                self.told = true;
                self.inner.write_all(
                    b"(today's log reached its size cap; further lines go to stderr only until tomorrow)\n",
                )?;
            }
            return Ok(buf.len());
        }
        self.written += len;
        self.inner.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn a_day_of_logs_stops_at_the_cap_and_the_next_day_starts_afresh() {
        let day = Rc::new(Cell::new(100u64));
        let clock = day.clone();
        let mut out = CappedWriter::new(Vec::new(), 100, 40, move || clock.get());
        for _ in 0..10 {
            out.write_all(&[b'x'; 10]).expect("write");
        }
        // 40 bytes were there from an earlier run: 6 lines fit, then one notice, then nothing.
        let text = String::from_utf8(out.inner.clone()).expect("utf8");
        assert_eq!(text.matches('x').count(), 60);
        assert_eq!(text.matches("size cap").count(), 1);
        day.set(101);
        out.write_all(b"tomorrow\n").expect("write");
        assert!(String::from_utf8(out.inner)
            .expect("utf8")
            .ends_with("tomorrow\n"));
    }

    #[test]
    fn file_dates_match_the_appenders_names() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_427), "2025-12-05");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(
            civil_date(utc_day(UNIX_EPOCH + std::time::Duration::from_secs(86_399))),
            "1970-01-01"
        );
    }
}
