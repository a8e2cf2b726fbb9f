//! The idle checker: one thread that sleeps until the earliest deadline (an idle unload or a
//! load's timeout; never longer than the check interval while a deadline exists, indefinitely
//! while none does), acts on what expired, and exits when the manager shuts down.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

use super::work::Shared;

/// Body of the idle-checker thread.
pub(crate) fn run(shared: Arc<Shared>) {
    let activity = shared.activity.clone();
    let mut inner = shared.state.lock();
    loop {
        if inner.shutting_down {
            break;
        }
        // Announce "no planned wake-up" before looking, so a lease returned while we look
        // either is seen below or sees this and wakes us (see `hot`).
        activity.checker_wake_at.store(u64::MAX, SeqCst);
        let now = shared.clock.now();
        let expired = shared.begin_due_unloads(&mut inner, now);
        if !expired.is_empty() {
            drop(inner);
            for eviction in expired {
                shared.finish_unload(eviction);
            }
            inner = shared.state.lock();
            continue;
        }
        match inner.next_deadline() {
            None => shared.checker_wake.wait(&mut inner),
            Some(deadline) => {
                let wake_at = deadline.min(now + inner.config.check_interval);
                activity
                    .checker_wake_at
                    .store(activity.encode(wake_at), SeqCst);
                let sleep = wake_at.saturating_duration_since(now);
                shared.checker_wake.wait_for(&mut inner, sleep);
            }
        }
        inner.stats.checker_wakeups += 1;
    }
    activity.checker_wake_at.store(u64::MAX, SeqCst);
    tracing::debug!("idle checker stopped");
}
