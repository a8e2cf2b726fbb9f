//! Time for the lifecycle core: the injectable monotonic [`Clock`], the real [`SystemClock`]
//! (which keeps counting while the machine sleeps) and the [`ManualClock`] tests move by hand.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

/// Source of time. Deadlines use the monotonic [`Clock::now`]; [`Clock::wall_now`] only turns
/// them into wall-clock times for status snapshots.
pub trait Clock: Send + Sync + 'static {
    /// Monotonic now.
    fn now(&self) -> Instant;
    /// Wall-clock now, read at the same moment as [`Clock::now`] would be.
    fn wall_now(&self) -> SystemTime;
}

/// The real clock. Its [`Clock::now`] keeps running while the machine sleeps, so time
/// asleep counts as idle: [`Instant`] alone stops during a suspend on Linux
/// (`CLOCK_MONOTONIC`) and macOS (`mach_absolute_time`) and runs on Windows
/// (`QueryPerformanceCounter`; rust-lang/rust#79462). Here, Linux reads `CLOCK_BOOTTIME` and
/// macOS `CLOCK_MONOTONIC` (which counts sleep there), each turned into an [`Instant`] by
/// its offset from the first reading; Windows and other systems use [`Instant::now`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        // The first reading of both clocks; `None` where there is no clock that counts sleep
        // (then `Instant::now` throughout, never a mix of the two).
        static ORIGIN: OnceLock<Option<(Instant, Duration)>> = OnceLock::new();
        let origin = *ORIGIN.get_or_init(|| Some((Instant::now(), time_including_sleep()?)));
        match origin {
            Some((instant, at)) => match time_including_sleep() {
                Some(t) => instant + t.saturating_sub(at),
                None => instant, // cannot happen once the clock has been read; stays monotonic
            },
            None => Instant::now(),
        }
    }
    fn wall_now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A monotonic reading that includes time asleep, where the system has such a clock.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios"
))]
fn time_including_sleep() -> Option<Duration> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_BOOTTIME;
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    const CLOCK: libc::clockid_t = libc::CLOCK_MONOTONIC;
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK is a clock this system has.
    if unsafe { libc::clock_gettime(CLOCK, &mut ts) } != 0 {
        return None;
    }
    let secs = u64::try_from(ts.tv_sec).ok()?;
    let nanos = u32::try_from(ts.tv_nsec).ok()?;
    Some(Duration::new(secs, nanos))
}

/// Windows's [`Instant`] already counts sleep; elsewhere there is no known clock that does.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "macos",
    target_os = "ios"
)))]
fn time_including_sleep() -> Option<Duration> {
    None
}

/// A clock that only moves when told to; clones share the same time.
#[derive(Clone, Debug)]
pub struct ManualClock {
    inner: Arc<Mutex<(Instant, SystemTime)>>,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock frozen at the current real time.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new((Instant::now(), SystemTime::now()))),
        }
    }

    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.inner.lock();
        now.0 += by;
        now.1 += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.lock().0
    }
    fn wall_now(&self) -> SystemTime {
        self.inner.lock().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_clock_is_monotonic_and_moves_with_real_time() {
        let clock = SystemClock;
        let (a, real_a) = (clock.now(), Instant::now());
        std::thread::sleep(Duration::from_millis(20));
        let (b, real_b) = (clock.now(), Instant::now());
        assert!(b >= a);
        // No sleep happened here, so both clocks moved by the same amount (within a few ms).
        let moved = b - a;
        let real = real_b - real_a;
        assert!(moved >= Duration::from_millis(20), "{moved:?}");
        assert!(
            moved.abs_diff(real) < Duration::from_millis(5),
            "{moved:?} vs {real:?}"
        );
    }

    #[cfg(any(target_os = "linux", target_os = "macos"))]
    #[test]
    fn the_clock_that_counts_sleep_is_at_least_the_one_that_does_not() {
        // CLOCK_BOOTTIME = CLOCK_MONOTONIC + time suspended since boot (Linux), so it is
        // never behind; this is what lets `SystemClock` count time asleep.
        let with_sleep = time_including_sleep().expect("readable");
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        #[cfg(target_os = "linux")]
        let without = libc::CLOCK_MONOTONIC;
        #[cfg(target_os = "macos")]
        let without = libc::CLOCK_UPTIME_RAW;
        // SAFETY: valid timespec, valid clock.
        assert_eq!(unsafe { libc::clock_gettime(without, &mut ts) }, 0);
        let awake = Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
        assert!(with_sleep + Duration::from_millis(1) >= awake);
    }

    #[test]
    fn manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let clock = ManualClock::new();
        let twin = clock.clone();
        let (t0, w0) = (clock.now(), clock.wall_now());
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(clock.now(), t0);
        twin.advance(Duration::from_secs(7));
        assert_eq!(clock.now() - t0, Duration::from_secs(7));
        assert_eq!(
            clock.wall_now().duration_since(w0).expect("forward"),
            Duration::from_secs(7)
        );
    }
}
