//! Multi-threaded stress: thousands of random operations from 8 threads against a manager on
//! the real clock with its idle checker, loaders that sleep, fail and panic. Bounded in time;
//! afterwards: no panic, no deadlock, no model leaked, every event-stream transition valid and
//! chained.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use model_manager::{
    ManagerConfig, ManagerError, ManagerEvent, ModelKey, ModelManager, ModelOverride, ModelSpec,
    ModelState, Strategy, TimerScope,
};
use support::{key, Step, TestLoader};

const THREADS: usize = 8;
const OPS_PER_THREAD: usize = 1500;
const TIME_LIMIT: Duration = Duration::from_secs(20);
const KEYS: [&str; 4] = ["stt", "seg", "user:1", "user:2"];

/// xorshift64*: deterministic per thread, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_config(rng: &mut Rng) -> ManagerConfig {
    let strategy = match rng.below(4) {
        0 => Strategy::Auto,
        1 => Strategy::Immediate,
        2 => Strategy::AlwaysLoaded,
        _ => Strategy::Custom(Duration::from_secs(1)),
    };
    let mut config = ManagerConfig {
        strategy,
        timer_scope: if rng.below(2) == 0 {
            TimerScope::Global
        } else {
            TimerScope::PerModel
        },
        memory_budget_bytes: [None, Some(40), Some(25)][rng.below(3) as usize],
        check_interval: Duration::from_millis(10),
        ..Default::default()
    };
    if rng.below(3) == 0 {
        let pinned = key(KEYS[rng.below(KEYS.len() as u64) as usize]);
        config.overrides.insert(
            pinned,
            ModelOverride {
                pinned: true,
                strategy: None,
            },
        );
    }
    config
}

fn worker(manager: &ModelManager, loaders: &[Arc<TestLoader>], seed: u64, deadline: Instant) {
    let mut rng = Rng(seed);
    for _ in 0..OPS_PER_THREAD {
        if Instant::now() > deadline {
            break;
        }
        let k = rng.below(KEYS.len() as u64) as usize;
        let model = key(KEYS[k]);
        match rng.below(100) {
            0..=54 => match manager.acquire(&model) {
                Ok(lease) => {
                    assert_eq!(lease.key(), &model);
                    if rng.below(4) == 0 {
                        std::thread::sleep(Duration::from_micros(rng.below(2000)));
                    }
                }
                Err(ManagerError::Load { .. })
                | Err(ManagerError::LoadCancelled(_))
                | Err(ManagerError::MemoryBudgetExceeded { .. }) => {}
                Err(other) => panic!("unexpected error: {other}"),
            },
            55..=59 => match manager.warm(&model) {
                Ok(()) | Err(ManagerError::MemoryBudgetExceeded { .. }) => {}
                Err(other) => panic!("unexpected warm error: {other}"),
            },
            60..=64 => {
                manager.unload(&model).expect("known key");
            }
            65..=66 => {
                manager.unload_all();
            }
            67..=69 => {
                manager.cancel_load(&model).expect("known key");
            }
            70..=74 => {
                let spec = ["small", "base"][rng.below(2) as usize];
                manager
                    .set_spec(&model, ModelSpec::new(spec))
                    .expect("known key");
            }
            75..=77 => manager
                .update_config(random_config(&mut rng))
                .expect("valid config"),
            78..=83 => {
                let status = manager.status();
                assert_eq!(status.models.len(), KEYS.len());
            }
            84..=86 => {
                manager.run_idle_check();
            }
            87..=89 => {
                loaders[k].then(Step::Fail("injected failure"));
            }
            90 => {
                loaders[k].then(Step::Panic);
            }
            _ => {
                loaders[k].then(Step::Sleep(Duration::from_millis(rng.below(5))));
            }
        }
    }
}

#[test]
fn thousands_of_random_operations_leave_no_leak_and_a_valid_history() {
    // Injected loader panics are expected; keep their backtraces out of the log.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.to_string().contains("loader exploded") {
            default_hook(info);
        }
    }));
    let loaders: Vec<Arc<TestLoader>> = (0..KEYS.len())
        .map(|i| {
            let loader = TestLoader::new(10 + 5 * i as u64);
            *loader.default_step.lock() = Step::Sleep(Duration::from_micros(200));
            loader
        })
        .collect();
    let mut builder = ModelManager::builder().config(ManagerConfig {
        check_interval: Duration::from_millis(10),
        ..Default::default()
    });
    for (name, loader) in KEYS.iter().zip(&loaders) {
        let loader: Arc<dyn model_manager::ModelLoader> = loader.clone();
        builder = builder.register(key(name), loader, ModelSpec::new("base"));
    }
    let manager = Arc::new(builder.build().expect("builds"));

    // Collect every event while the storm runs.
    let events = manager.subscribe();
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut all = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                all.extend(events.try_iter());
                std::thread::sleep(Duration::from_millis(5));
            }
            all.extend(events.try_iter());
            all
        })
    };

    let deadline = Instant::now() + TIME_LIMIT;
    let (done_tx, done_rx) = mpsc::channel();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (manager, loaders, done) = (manager.clone(), loaders.clone(), done_tx.clone());
            std::thread::spawn(move || {
                worker(
                    &manager,
                    &loaders,
                    0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1),
                    deadline,
                );
                let _ = done.send(t);
            })
        })
        .collect();
    for _ in 0..THREADS {
        // A worker that never finishes is a deadlock (or a lost wake-up).
        done_rx
            .recv_timeout(TIME_LIMIT + Duration::from_secs(30))
            .expect("deadlock: a worker never finished");
    }
    for w in workers {
        w.join().expect("no worker panicked");
    }

    let stats = manager.stats();
    assert_eq!(stats.invalid_transitions, 0, "{stats:?}");
    assert!(
        stats.loads_started > 50,
        "the storm did load models: {stats:?}"
    );

    let report = manager.shutdown(Duration::from_secs(10));
    assert!(report.deferred.is_empty(), "no lease outlives the workers");
    let stats = manager.stats();
    assert_eq!(stats.loads_in_flight, 0, "{stats:?}");
    assert!(
        stats.loads_completed + stats.loads_failed + stats.loads_discarded <= stats.loads_started
    );
    for (name, loader) in KEYS.iter().zip(&loaders) {
        assert_eq!(loader.live(), 0, "{name} leaked a model");
    }
    for model in manager.status().models {
        assert!(
            matches!(model.state, ModelState::Idle | ModelState::Failed),
            "{model:?}"
        );
        assert_eq!(model.leases, 0);
    }

    stop.store(true, Ordering::SeqCst);
    let events = collector.join().expect("collector");
    let mut current: HashMap<ModelKey, ModelState> = HashMap::new();
    let mut transitions = 0;
    for event in &events {
        if let ManagerEvent::Transition {
            key, transition, ..
        } = event
        {
            let from = current.get(key).copied().unwrap_or(ModelState::Idle);
            assert_eq!(
                transition.from, from,
                "broken chain for {key}: {transition:?}"
            );
            assert!(transition.from.can_become(transition.to), "{transition:?}");
            current.insert(key.clone(), transition.to);
            transitions += 1;
        }
    }
    assert!(transitions > 100, "only {transitions} transitions seen");
    eprintln!(
        "stress: {stats:?}, {transitions} transitions, {} events",
        events.len()
    );
}
