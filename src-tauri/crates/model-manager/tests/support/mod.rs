//! Test doubles for the lifecycle core: a scriptable loader whose models count themselves, so
//! tests can assert that nothing leaks.
#![allow(dead_code, missing_docs)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use model_manager::{
    LoadContext, LoadError, LoadedModel, ManagerConfig, ManualClock, ModelKey, ModelLoader,
    ModelManager, ModelSpec,
};
use parking_lot::{Condvar, Mutex};

pub fn key(name: &str) -> ModelKey {
    ModelKey::new(name).expect("valid key")
}

/// A model that counts how many of its kind are alive.
pub struct TestModel {
    pub spec: ModelSpec,
    pub bytes: u64,
    live: Arc<AtomicUsize>,
}

impl LoadedModel for TestModel {
    fn resident_bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for TestModel {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A gate a load can be held at until the test opens it.
#[derive(Default)]
pub struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
    waiting: AtomicUsize,
}

impl Gate {
    pub fn open(&self) {
        *self.open.lock() = true;
        self.cv.notify_all();
    }
    /// Waits until opened, or (if `cancel_aware`) until the load is cancelled.
    fn pass(&self, ctx: &LoadContext, cancel_aware: bool) -> Result<(), LoadError> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut open = self.open.lock();
        while !*open {
            if cancel_aware && ctx.cancel.is_cancelled() {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Err(LoadError::Cancelled);
            }
            self.cv.wait_for(&mut open, Duration::from_millis(1));
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
    /// Blocks until `n` loads wait at the gate.
    pub fn wait_for_waiters(&self, n: usize) {
        let until = Instant::now() + Duration::from_secs(10);
        while self.waiting.load(Ordering::SeqCst) < n {
            assert!(Instant::now() < until, "loads never reached the gate");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// What the next load does.
#[derive(Clone)]
pub enum Step {
    Succeed,
    Fail(&'static str),
    Panic,
    /// Wait at the gate; `cancel_aware` loads give up when cancelled.
    Hold {
        gate: Arc<Gate>,
        cancel_aware: bool,
    },
    Sleep(Duration),
    /// Wait at the gate, then fail.
    HoldThenFail {
        gate: Arc<Gate>,
        message: &'static str,
    },
}

/// A loader whose behaviour is scripted step by step (default: succeed at once).
pub struct TestLoader {
    pub live: Arc<AtomicUsize>,
    /// Most models of this loader alive at once.
    pub peak: AtomicUsize,
    pub loads: AtomicUsize,
    pub bytes: Mutex<u64>,
    pub estimate: Mutex<Option<u64>>,
    script: Mutex<VecDeque<Step>>,
    pub default_step: Mutex<Step>,
}

impl TestLoader {
    pub fn new(bytes: u64) -> Arc<Self> {
        Arc::new(Self {
            live: Arc::new(AtomicUsize::new(0)),
            peak: AtomicUsize::new(0),
            loads: AtomicUsize::new(0),
            bytes: Mutex::new(bytes),
            estimate: Mutex::new(Some(bytes)),
            script: Mutex::new(VecDeque::new()),
            default_step: Mutex::new(Step::Succeed),
        })
    }
    pub fn then(&self, step: Step) -> &Self {
        self.script.lock().push_back(step);
        self
    }
    /// Scripts the next load to wait at a new gate (giving up on cancel if `cancel_aware`);
    /// returns the gate.
    pub fn hold_next(&self, cancel_aware: bool) -> Arc<Gate> {
        let gate = Arc::new(Gate::default());
        self.then(Step::Hold {
            gate: gate.clone(),
            cancel_aware,
        });
        gate
    }
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
    pub fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

impl ModelLoader for TestLoader {
    fn estimate_bytes(&self, _: &ModelSpec) -> Option<u64> {
        *self.estimate.lock()
    }

    fn load(&self, spec: &ModelSpec, ctx: &LoadContext) -> Result<Box<dyn LoadedModel>, LoadError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        let step = self
            .script
            .lock()
            .pop_front()
            .unwrap_or_else(|| self.default_step.lock().clone());
        ctx.progress.report(0.5);
        match step {
            Step::Succeed => {}
            Step::Fail(message) => return Err(LoadError::failed(message)),
            Step::Panic => panic!("loader exploded"),
            Step::Hold { gate, cancel_aware } => gate.pass(ctx, cancel_aware)?,
            Step::Sleep(d) => std::thread::sleep(d),
            Step::HoldThenFail { gate, message } => {
                gate.pass(ctx, false)?;
                return Err(LoadError::failed(message));
            }
        }
        let now_live = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now_live, Ordering::SeqCst);
        Ok(Box::new(TestModel {
            spec: spec.clone(),
            bytes: *self.bytes.lock(),
            live: self.live.clone(),
        }))
    }
}

/// The default configuration with another strategy.
pub fn with_strategy(strategy: model_manager::Strategy) -> ManagerConfig {
    ManagerConfig {
        strategy,
        ..Default::default()
    }
}

/// A manager on a manual clock with no idle-checker thread: tests drive deadlines with
/// `clock.advance` + `run_idle_check`.
pub fn manual_manager(
    config: ManagerConfig,
    slots: &[(&str, &Arc<TestLoader>)],
) -> (ModelManager, ManualClock) {
    let clock = ManualClock::new();
    let mut builder = ModelManager::builder()
        .config(config)
        .clock(clock.clone())
        .idle_checker(false);
    for (name, loader) in slots {
        let loader: Arc<dyn ModelLoader> = (*loader).clone();
        builder = builder.register(key(name), loader, ModelSpec::new(format!("{name}-base")));
    }
    (builder.build().expect("manager builds"), clock)
}

/// Polls `cond` for up to 10 s (for states reached on other threads).
pub fn eventually(what: &str, cond: impl Fn() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
