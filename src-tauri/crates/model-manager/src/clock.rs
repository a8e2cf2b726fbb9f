//! Time for the lifecycle core: the injectable monotonic [`Clock`], the real [`SystemClock`]
//! and the [`ManualClock`] tests move by hand.

use std::sync::Arc;
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

/// The real clock: [`Instant::now`] and [`SystemTime::now`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall_now(&self) -> SystemTime {
        SystemTime::now()
    }
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
