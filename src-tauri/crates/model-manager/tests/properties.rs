//! Property test: random sequences of operations, run against the real manager (manual clock,
//! no checker thread) and against a small reference model of the documented rules; after
//! every step, both must agree on what is loaded, leased and alive.

mod support;

use std::sync::Arc;
use std::time::Duration;

use model_manager::{Lease, ManagerConfig, ModelManager, ModelSpec, ModelState, TimerScope};
use proptest::prelude::*;
use support::{key, manual_manager, Step, TestLoader};

const KEYS: [&str; 3] = ["a", "b", "c"];
const SPECS: [&str; 3] = ["tiny", "base", "small"];
const WARM_GRACE_MS: u64 = 60_000;

#[derive(Clone, Debug)]
enum Op {
    Acquire(usize),
    Release(usize),
    Use(usize),
    Advance(u64),
    Tick,
    Unload(usize),
    UnloadAll,
    SetSpec(usize, usize),
    Configure(usize, bool),
    FailNext(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let k = 0..KEYS.len();
    prop_oneof![
        3 => k.clone().prop_map(Op::Acquire),
        3 => (0usize..8).prop_map(Op::Release),
        2 => k.clone().prop_map(Op::Use),
        3 => prop::sample::select(vec![0u64, 500, 1_000, 30_000, 59_000, 61_000, 299_000, 300_000, 301_000])
            .prop_map(Op::Advance),
        3 => Just(Op::Tick),
        1 => k.clone().prop_map(Op::Unload),
        1 => Just(Op::UnloadAll),
        1 => (k.clone(), 0..SPECS.len()).prop_map(|(k, s)| Op::SetSpec(k, s)),
        1 => (0usize..5, any::<bool>()).prop_map(|(s, g)| Op::Configure(s, g)),
        1 => k.prop_map(Op::FailNext),
    ]
}

fn strategy(i: usize) -> model_manager::Strategy {
    [
        model_manager::Strategy::Auto,
        model_manager::Strategy::Immediate,
        model_manager::Strategy::AlwaysLoaded,
        model_manager::Strategy::Custom(Duration::from_secs(60)),
        model_manager::Strategy::Custom(Duration::from_secs(1)),
    ][i]
}

/// The documented rules, written as plainly as possible.
#[derive(Default, Clone, Debug)]
struct RefSlot {
    wanted: usize,
    loaded: Option<usize>,
    leases: usize,
    last_used: u64,
    loaded_at: u64,
    used: bool,
    pending_unload: bool,
    failed: bool,
    fail_next: usize,
    loads: usize,
}

struct Reference {
    slots: Vec<RefSlot>,
    now: u64,
    last_activity: u64,
    strategy: model_manager::Strategy,
    global: bool,
}

impl Reference {
    fn new() -> Self {
        Self {
            slots: vec![
                RefSlot {
                    wanted: 1,
                    ..Default::default()
                };
                KEYS.len()
            ],
            now: 0,
            last_activity: 0,
            strategy: model_manager::Strategy::Auto,
            global: true,
        }
    }

    /// Whether an acquire would block (stale model still leased): such ops are skipped.
    fn would_block(&self, k: usize) -> bool {
        let s = &self.slots[k];
        s.loaded.is_some_and(|l| l != s.wanted) && s.leases > 0
    }

    fn acquire(&mut self, k: usize) -> bool {
        let now = self.now;
        let s = &mut self.slots[k];
        if s.loaded.is_none() {
            s.loads += 1;
            if s.fail_next > 0 {
                s.fail_next -= 1;
                s.failed = true;
                return false;
            }
            s.failed = false;
            s.loaded = Some(s.wanted);
            s.loaded_at = now;
            s.used = false;
            s.pending_unload = false;
        }
        s.leases += 1;
        s.last_used = now;
        s.used = true;
        self.last_activity = now;
        true
    }

    fn release(&mut self, k: usize) {
        let now = self.now;
        let immediate = self.strategy == model_manager::Strategy::Immediate;
        let s = &mut self.slots[k];
        s.leases -= 1;
        s.last_used = now;
        self.last_activity = now;
        if s.leases == 0 && (s.pending_unload || immediate) {
            s.loaded = None;
            s.pending_unload = false;
        }
    }

    fn deadline(&self, k: usize) -> Option<u64> {
        let s = &self.slots[k];
        s.loaded?;
        if s.leases > 0 {
            return None;
        }
        let timeout = self.strategy.idle_timeout()?.as_millis() as u64;
        if self.strategy == model_manager::Strategy::Immediate {
            return Some(if s.used {
                s.last_used
            } else {
                s.loaded_at + WARM_GRACE_MS
            });
        }
        if !self.global {
            return Some(s.last_used + timeout);
        }
        if self.slots.iter().any(|s| s.leases > 0) {
            return None;
        }
        Some(self.last_activity + timeout)
    }

    fn tick(&mut self) {
        let expired: Vec<usize> = (0..self.slots.len())
            .filter(|&k| self.deadline(k).is_some_and(|d| d <= self.now))
            .collect();
        for k in expired {
            self.slots[k].loaded = None;
        }
    }

    fn unload(&mut self, k: usize) {
        let s = &mut self.slots[k];
        if s.loaded.is_some() {
            if s.leases > 0 {
                s.pending_unload = true;
            } else {
                s.loaded = None;
            }
        }
    }

    fn set_spec(&mut self, k: usize, spec: usize) {
        let s = &mut self.slots[k];
        if s.wanted == spec {
            return;
        }
        s.wanted = spec;
        s.failed = false;
        if s.loaded.is_some() {
            if s.leases > 0 {
                s.pending_unload = true;
            } else {
                s.loaded = None;
            }
        }
    }
}

fn check(manager: &ModelManager, reference: &Reference, loaders: &[Arc<TestLoader>]) {
    let status = manager.status();
    for (k, r) in reference.slots.iter().enumerate() {
        let m = status.model(&key(KEYS[k])).expect("registered");
        let expected = match (r.loaded, r.failed) {
            (Some(_), _) => ModelState::Loaded,
            (None, true) => ModelState::Failed,
            (None, false) => ModelState::Idle,
        };
        assert_eq!(m.state, expected, "state of {}: {r:?}", KEYS[k]);
        assert_eq!(m.leases, r.leases, "leases of {}", KEYS[k]);
        if let Some(spec) = r.loaded {
            assert_eq!(m.model_id.as_ref(), SPECS[spec], "model of {}", KEYS[k]);
        }
        assert_eq!(
            loaders[k].live(),
            usize::from(r.loaded.is_some()),
            "live models of {}",
            KEYS[k]
        );
        assert!(
            loaders[k].peak() <= 1,
            "never two models of one slot at once"
        );
        assert_eq!(loaders[k].loads(), r.loads, "loads of {}", KEYS[k]);
        let expires = m.expires_at.map(|t| {
            t.duration_since(status.taken_at)
                .unwrap_or_default()
                .as_millis() as u64
        });
        let expected_expiry = reference
            .deadline(k)
            .map(|d| d.saturating_sub(reference.now));
        assert_eq!(expires, expected_expiry, "expires_at of {}", KEYS[k]);
    }
    assert_eq!(manager.stats().invalid_transitions, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn manager_matches_the_reference_model(ops in prop::collection::vec(op(), 1..60)) {
        let loaders: Vec<Arc<TestLoader>> = KEYS.iter().map(|_| TestLoader::new(10)).collect();
        let slots: Vec<(&str, &Arc<TestLoader>)> = KEYS.iter().copied().zip(loaders.iter()).collect();
        let (manager, clock) = manual_manager(ManagerConfig::default(), &slots);
        for name in KEYS {
            manager.set_spec(&key(name), ModelSpec::new(SPECS[1])).expect("known");
        }
        let mut reference = Reference::new();
        let mut held: Vec<(usize, Lease)> = Vec::new();

        for op in ops {
            match op {
                Op::Acquire(k) | Op::Use(k) if reference.would_block(k) => continue,
                Op::Acquire(k) => {
                    let ok = reference.acquire(k);
                    let got = manager.acquire(&key(KEYS[k]));
                    prop_assert_eq!(got.is_ok(), ok);
                    if let Ok(lease) = got {
                        held.push((k, lease));
                    }
                }
                Op::Use(k) => {
                    let ok = reference.acquire(k);
                    let got = manager.acquire(&key(KEYS[k]));
                    prop_assert_eq!(got.is_ok(), ok);
                    if ok {
                        drop(got);
                        reference.release(k);
                    }
                }
                Op::Release(i) => {
                    if !held.is_empty() {
                        let (k, lease) = held.remove(i % held.len());
                        drop(lease);
                        reference.release(k);
                    }
                }
                Op::Advance(ms) => {
                    clock.advance(Duration::from_millis(ms));
                    reference.now += ms;
                }
                Op::Tick => {
                    manager.run_idle_check();
                    reference.tick();
                }
                Op::Unload(k) => {
                    manager.unload(&key(KEYS[k])).expect("known");
                    reference.unload(k);
                }
                Op::UnloadAll => {
                    manager.unload_all();
                    for k in 0..KEYS.len() {
                        reference.unload(k);
                    }
                }
                Op::SetSpec(k, s) => {
                    manager.set_spec(&key(KEYS[k]), ModelSpec::new(SPECS[s])).expect("known");
                    reference.set_spec(k, s);
                }
                Op::Configure(s, global) => {
                    let config = ManagerConfig {
                        strategy: strategy(s),
                        timer_scope: if global { TimerScope::Global } else { TimerScope::PerModel },
                        ..Default::default()
                    };
                    manager.update_config(config).expect("valid");
                    reference.strategy = strategy(s);
                    reference.global = global;
                }
                Op::FailNext(k) => {
                    loaders[k].then(Step::Fail("scripted failure"));
                    reference.slots[k].fail_next += 1;
                }
            }
            check(&manager, &reference, &loaders);
        }
        drop(held);
        manager.shutdown(Duration::from_secs(5));
        for loader in &loaders {
            prop_assert_eq!(loader.live(), 0);
        }
    }
}
