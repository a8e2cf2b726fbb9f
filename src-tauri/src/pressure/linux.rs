//! Linux's memory-pressure signal. PSI triggers (`/proc/pressure/memory`, kernel 5.2+;
//! unprivileged with windows of whole multiples of 2 s since 6.5): the kernel wakes the
//! watcher when tasks stall on memory for more than a threshold within a window, so nothing
//! runs while memory is fine. The kernel never says when pressure is over, so while it lasts
//! the watcher reads the 10-second averages every second until they fall back. Without PSI,
//! `MemAvailable` is read every 5 s (the one polling path, documented).
//!
//! A cgroup v2 `memory.pressure` file would scope the signal to Dormouse's own group; this
//! reads the system-wide file, which is what "the system is short of memory" means to a
//! desktop user (and what exists under cgroup v1).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::Duration;

use model_manager::PressureLevel;
use rustix::event::{poll, PollFd, PollFlags, Timespec};

use super::Source;

const PSI: &str = "/proc/pressure/memory";
const MEMINFO: &str = "/proc/meminfo";
/// Some task stalled on memory for 300 ms within 2 s (15 %): warn. (7.5 % fired on this
/// 2-core machine from page-cache churn alone while three builds ran, with the 10 s average
/// under 2 %: a blip, not a shortage.)
const WARN_TRIGGER: &str = "some 300000 2000000";
/// Every task stalled on memory for 500 ms within 2 s (25 %): critical.
const CRITICAL_TRIGGER: &str = "full 500000 2000000";
/// While pressure lasts, how often the averages are read to see it end: well inside the
/// core's sustain window, so a blip is over before the core acts on it.
const RELIEF_CHECK: Duration = Duration::from_secs(1);
/// How often `MemAvailable` is read where there is no PSI.
const MEMINFO_PERIOD: Duration = Duration::from_secs(5);

/// The stall averages of `/proc/pressure/memory`, percent of the last 10 s.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Psi {
    /// Some task was stalled on memory.
    pub some_avg10: f64,
    /// Every non-idle task was stalled on memory.
    pub full_avg10: f64,
}

/// Reads the `avg10` figures of a PSI file's text.
pub fn parse_psi(text: &str) -> Option<Psi> {
    let avg10 = |kind: &str| -> Option<f64> {
        let line = text.lines().find(|l| l.starts_with(kind))?;
        line.split_whitespace()
            .find_map(|field| field.strip_prefix("avg10="))?
            .parse()
            .ok()
    };
    Some(Psi {
        some_avg10: avg10("some ")?,
        // Kernels before 5.13 have no "full" line for the system-wide file.
        full_avg10: avg10("full ").unwrap_or(0.0),
    })
}

/// The level the averages say, given the level in force (hysteresis: pressure ends only when
/// the averages are well below where it began).
pub fn level_from_psi(psi: Psi, current: PressureLevel) -> PressureLevel {
    if psi.full_avg10 >= 10.0 {
        PressureLevel::Critical
    } else if psi.some_avg10 >= 10.0 {
        PressureLevel::Warn
    } else if psi.some_avg10 < 2.0 {
        PressureLevel::Normal
    } else {
        current
    }
}

/// `MemTotal` and `MemAvailable` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo(text: &str) -> Option<(u64, u64)> {
    let kib = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace()
            .nth(1)?
            .parse::<u64>()
            .ok()?
            .checked_mul(1024)
    };
    Some((kib("MemTotal:")?, kib("MemAvailable:")?))
}

/// The level the available memory says, given the level in force: under 5 % of the total is
/// critical, under 10 % warn, and pressure ends above 15 %.
pub fn level_from_meminfo(total: u64, available: u64, current: PressureLevel) -> PressureLevel {
    if total == 0 {
        return current;
    }
    let percent = available as f64 * 100.0 / total as f64;
    if percent < 5.0 {
        PressureLevel::Critical
    } else if percent < 10.0 {
        PressureLevel::Warn
    } else if percent > 15.0 {
        PressureLevel::Normal
    } else {
        current
    }
}

/// Registers a PSI trigger on `path`; the file must stay open for it to live.
pub fn trigger(path: &Path, spec: &str) -> std::io::Result<File> {
    let mut file = OpenOptions::new().read(true).write(true).open(path)?;
    file.write_all(format!("{spec}\0").as_bytes())?;
    Ok(file)
}

/// Starts the watcher thread: PSI triggers if the kernel takes them, else `MemAvailable`.
pub fn watch(report: impl Fn(PressureLevel) + Send + 'static) -> std::io::Result<Source> {
    let triggers = trigger(Path::new(PSI), WARN_TRIGGER)
        .and_then(|warn| Ok((warn, trigger(Path::new(PSI), CRITICAL_TRIGGER)?)));
    let (source, body): (Source, Box<dyn FnOnce() + Send>) = match triggers {
        Ok((warn, critical)) => (
            Source::Psi,
            Box::new(move || watch_psi(&warn, &critical, &report)),
        ),
        Err(error) => {
            tracing::info!(%error, "no PSI trigger; reading MemAvailable every {MEMINFO_PERIOD:?}");
            std::fs::read_to_string(MEMINFO)?;
            (
                Source::MemAvailable,
                Box::new(move || watch_meminfo(&report)),
            )
        }
    };
    std::thread::Builder::new()
        .name("dormouse-memory-pressure".into())
        .spawn(body)?;
    tracing::info!(?source, "watching the system's memory pressure");
    Ok(source)
}

fn watch_psi(warn: &File, critical: &File, report: &dyn Fn(PressureLevel)) {
    let mut level = PressureLevel::Normal;
    let mut averages = File::open(PSI).ok();
    loop {
        let mut fds = [
            PollFd::new(warn, PollFlags::PRI),
            PollFd::new(critical, PollFlags::PRI),
        ];
        let relief = Timespec::try_from(RELIEF_CHECK).ok();
        // Normal: sleep until the kernel fires a trigger. Under pressure: look again soon.
        let timeout = if level == PressureLevel::Normal {
            None
        } else {
            relief.as_ref()
        };
        if let Err(error) = poll(&mut fds, timeout) {
            if error == rustix::io::Errno::INTR {
                continue;
            }
            tracing::warn!(%error, "memory-pressure watch stopped");
            return;
        }
        let (warn_fired, critical_fired) = (
            fds[0].revents().contains(PollFlags::PRI),
            fds[1].revents().contains(PollFlags::PRI),
        );
        if fds.iter().any(|fd| fd.revents().contains(PollFlags::ERR)) {
            tracing::warn!(
                "the PSI triggers were closed by the kernel; memory-pressure watch stopped"
            );
            return;
        }
        let next = if critical_fired {
            PressureLevel::Critical
        } else if warn_fired {
            level.max(PressureLevel::Warn)
        } else {
            // Timed out under pressure: has it ended?
            read_psi(&mut averages).map_or(level, |psi| level_from_psi(psi, level))
        };
        if next != level {
            level = next;
            report(level);
        }
    }
}

fn read_psi(file: &mut Option<File>) -> Option<Psi> {
    let file = file.as_mut()?;
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    parse_psi(&text)
}

fn watch_meminfo(report: &dyn Fn(PressureLevel)) {
    let mut level = PressureLevel::Normal;
    loop {
        if let Some((total, available)) = std::fs::read_to_string(MEMINFO)
            .ok()
            .and_then(|text| parse_meminfo(&text))
        {
            let next = level_from_meminfo(total, available, level);
            if next != level {
                level = next;
                report(level);
            }
        }
        std::thread::sleep(MEMINFO_PERIOD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_real_proc_files_of_this_machine_parse() {
        if let Ok(text) = std::fs::read_to_string(PSI) {
            let psi = parse_psi(&text).expect("PSI parses");
            assert!((0.0..=100.0).contains(&psi.some_avg10), "{text}");
        }
        let text = std::fs::read_to_string(MEMINFO).expect("meminfo");
        let (total, available) = parse_meminfo(&text).expect("meminfo parses");
        assert!(total > 0 && available <= total, "{total} {available}");
    }

    #[test]
    fn psi_and_meminfo_texts_give_levels_with_hysteresis() {
        // Contents copied from kernels under load (6.1 and 5.10).
        let calm = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n";
        let busy = "some avg10=23.51 avg60=8.02 avg300=2.11 total=91233341\nfull avg10=4.20 avg60=1.30 avg300=0.40 total=20313841\n";
        let thrashing = "some avg10=71.90 avg60=40.12 avg300=12.00 total=991233341\nfull avg10=35.70 avg60=20.00 avg300=5.00 total=420313841\n";
        let old = "some avg10=12.00 avg60=1.00 avg300=0.10 total=1000\n";
        let level = |text: &str, current| level_from_psi(parse_psi(text).expect("parses"), current);
        assert_eq!(level(calm, PressureLevel::Warn), PressureLevel::Normal);
        assert_eq!(level(busy, PressureLevel::Normal), PressureLevel::Warn);
        assert_eq!(
            level(thrashing, PressureLevel::Normal),
            PressureLevel::Critical
        );
        assert_eq!(
            level(old, PressureLevel::Normal),
            PressureLevel::Warn,
            "no full line"
        );
        let easing = "some avg10=5.00 avg60=9.00 avg300=3.00 total=1\nfull avg10=0.50 avg60=1.00 avg300=0.20 total=1\n";
        assert_eq!(
            level(easing, PressureLevel::Warn),
            PressureLevel::Warn,
            "not yet over"
        );
        assert_eq!(level(easing, PressureLevel::Normal), PressureLevel::Normal);
        assert_eq!(parse_psi("nonsense"), None);

        let meminfo = |available_kib: u64| {
            format!("MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   {available_kib} kB\n")
        };
        let at = |available_kib, current| {
            let (total, available) = parse_meminfo(&meminfo(available_kib)).expect("parses");
            level_from_meminfo(total, available, current)
        };
        assert_eq!(
            at(1_000_000, PressureLevel::Normal),
            PressureLevel::Critical
        );
        assert_eq!(at(2_000_000, PressureLevel::Normal), PressureLevel::Warn);
        assert_eq!(
            at(3_000_000, PressureLevel::Warn),
            PressureLevel::Warn,
            "12 %: not over"
        );
        assert_eq!(at(3_000_000, PressureLevel::Normal), PressureLevel::Normal);
        assert_eq!(at(4_000_000, PressureLevel::Warn), PressureLevel::Normal);
        assert_eq!(parse_meminfo("MemTotal: 10 kB\n"), None);
    }

    /// The real kernel interface: this machine's kernel takes an unprivileged trigger and,
    /// with memory fine, reports nothing within a poll of 100 ms.
    #[test]
    fn the_kernel_takes_the_triggers_and_stays_quiet_while_memory_is_fine() {
        let Ok(warn) = trigger(Path::new(PSI), WARN_TRIGGER) else {
            eprintln!("no PSI here: the MemAvailable path is the one that runs");
            return;
        };
        let critical = trigger(Path::new(PSI), CRITICAL_TRIGGER).expect("a second trigger");
        let mut fds = [
            PollFd::new(&warn, PollFlags::PRI),
            PollFd::new(&critical, PollFlags::PRI),
        ];
        let timeout = Timespec::try_from(Duration::from_millis(100)).expect("timespec");
        let ready = poll(&mut fds, Some(&timeout)).expect("poll");
        assert_eq!(ready, 0, "no memory stall on an idle test machine");
        assert!(
            trigger(Path::new(PSI), "some 150000 1000").is_err(),
            "the kernel refuses a malformed window: a refused trigger is an error, not silence"
        );
    }
}
