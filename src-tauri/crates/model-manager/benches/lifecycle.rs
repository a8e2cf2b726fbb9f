//! Lifecycle benchmarks (a bench binary, not criterion): acquire latency, single flight under
//! 64 cold requests, idle-unload lateness on the real clock, idle-checker wake-ups with
//! nothing loaded, and the cost of `status()`. Prints a Markdown table for docs/benchmarks.md.
//!
//! `cargo bench -p model-manager --bench lifecycle` (full, ~45 s) or add `-- --quick` for a
//! smoke run with fewer samples (used by CI to keep the binary working; its figures are not
//! the ones reported).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use model_manager::{
    LoadContext, LoadError, LoadedModel, ManagerConfig, ManagerEvent, ModelKey, ModelLoader,
    ModelManager, ModelSpec, ModelState, Strategy,
};

struct Model;
impl LoadedModel for Model {
    fn resident_bytes(&self) -> u64 {
        1 << 20
    }
}

/// A loader that takes `delay` and counts its loads.
struct SlowLoader {
    delay: Duration,
    loads: AtomicUsize,
}

impl ModelLoader for SlowLoader {
    fn load(&self, _: &ModelSpec, _: &LoadContext) -> Result<Box<dyn LoadedModel>, LoadError> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.delay);
        Ok(Box::new(Model))
    }
}

fn key(name: &str) -> ModelKey {
    ModelKey::new(name).expect("valid key")
}

fn manager_with(
    config: ManagerConfig,
    names: &[&str],
    delay: Duration,
) -> (ModelManager, Arc<SlowLoader>) {
    let loader = Arc::new(SlowLoader {
        delay,
        loads: AtomicUsize::new(0),
    });
    let mut builder = ModelManager::builder().config(config);
    for name in names {
        let l: Arc<dyn ModelLoader> = loader.clone();
        builder = builder.register(key(name), l, ModelSpec::new(format!("{name}-model")));
    }
    (builder.build().expect("builds"), loader)
}

struct Summary {
    median: Duration,
    p99: Duration,
    n: usize,
}

fn summarise(mut samples: Vec<Duration>) -> Summary {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Summary {
        median: at(0.5),
        p99: at(0.99),
        n: samples.len(),
    }
}

fn ns(d: Duration) -> String {
    format!("{} ns", d.as_nanos())
}

/// Per-call latency of `acquire` (lease dropped outside the timed region) on `threads` threads
/// hammering the same loaded model.
fn acquire_latency(threads: usize, per_thread: usize, subscribed: bool) -> (Summary, Summary) {
    let (manager, _) = manager_with(ManagerConfig::default(), &["stt"], Duration::ZERO);
    let manager = Arc::new(manager);
    let events = subscribed.then(|| manager.subscribe());
    let drain = events.map(|rx| std::thread::spawn(move || while rx.recv().is_ok() {}));
    drop(manager.acquire(&key("stt")).expect("warm up"));
    let start = Arc::new(Barrier::new(threads));
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (manager, start) = (manager.clone(), start.clone());
            std::thread::spawn(move || {
                let k = key("stt");
                let mut acquire = Vec::with_capacity(per_thread);
                let mut release = Vec::with_capacity(per_thread);
                start.wait();
                for _ in 0..per_thread {
                    let t0 = Instant::now();
                    let lease = manager.acquire(&k).expect("loaded");
                    let t1 = Instant::now();
                    drop(lease);
                    let t2 = Instant::now();
                    acquire.push(t1 - t0);
                    release.push(t2 - t1);
                }
                (acquire, release)
            })
        })
        .collect();
    let (mut acquire, mut release) = (Vec::new(), Vec::new());
    for w in workers {
        let (a, r) = w.join().expect("worker");
        acquire.extend(a);
        release.extend(r);
    }
    let manager = Arc::try_unwrap(manager).ok().expect("sole owner");
    drop(manager); // closes the event channel
    if let Some(d) = drain {
        d.join().expect("drain");
    }
    (summarise(acquire), summarise(release))
}

fn single_flight(delay: Duration) -> (usize, Duration) {
    let (manager, loader) = manager_with(ManagerConfig::default(), &["stt"], delay);
    let manager = Arc::new(manager);
    let start = Arc::new(Barrier::new(65));
    let workers: Vec<_> = (0..64)
        .map(|_| {
            let (manager, start) = (manager.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                manager.acquire(&key("stt")).map(drop).expect("served");
            })
        })
        .collect();
    start.wait();
    let t0 = Instant::now();
    for w in workers {
        w.join().expect("worker");
    }
    (loader.loads.load(Ordering::SeqCst), t0.elapsed())
}

/// Lateness of idle unloads with a 1 s custom timeout: from the lease's end + 1 s to the
/// `Unloading -> Idle` transition event arriving.
fn idle_lateness(trials: usize) -> Vec<Duration> {
    let config = ManagerConfig {
        strategy: Strategy::Custom(Duration::from_secs(1)),
        ..Default::default() // check interval 10 s: the deadline, not polling, wakes the checker
    };
    let (manager, _) = manager_with(config, &["stt"], Duration::ZERO);
    let events = manager.subscribe();
    (0..trials)
        .map(|_| {
            let lease = manager.acquire(&key("stt")).expect("loads");
            while events.try_recv().is_ok() {}
            drop(lease);
            let due = Instant::now() + Duration::from_secs(1);
            loop {
                let event = events.recv().expect("manager alive");
                if let ManagerEvent::Transition { transition, .. } = event {
                    if transition.to == ModelState::Idle {
                        return Instant::now().saturating_duration_since(due);
                    }
                }
            }
        })
        .collect()
}

fn idle_wakeups(window: Duration) -> u64 {
    let (manager, _) = manager_with(ManagerConfig::default(), &["stt", "seg"], Duration::ZERO);
    std::thread::sleep(window);
    manager.stats().checker_wakeups
}

fn status_cost(calls: usize) -> Summary {
    let names = ["transcription", "segmentation", "user:1", "user:2"];
    let (manager, _) = manager_with(ManagerConfig::default(), &names, Duration::ZERO);
    drop(manager.acquire(&key("transcription")).expect("loads"));
    drop(manager.acquire(&key("segmentation")).expect("loads"));
    let samples = (0..calls)
        .map(|_| {
            let t0 = Instant::now();
            let status = manager.status();
            let elapsed = t0.elapsed();
            assert_eq!(status.models.len(), names.len());
            elapsed
        })
        .collect();
    summarise(samples)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**missed**"
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (per_thread, trials, window, calls) = if quick {
        (2_000, 2, Duration::from_secs(1), 2_000)
    } else {
        (200_000, 20, Duration::from_secs(10), 100_000)
    };
    println!("| benchmark | result | target |");
    println!("|---|---|---|");

    for (threads, subscribed) in [(1, false), (1, true), (8, false), (8, true)] {
        let (acquire, release) = acquire_latency(threads, per_thread / threads.max(1), subscribed);
        let target = if threads == 1 {
            format!(
                "median ≤ 1 µs: {}",
                verdict(acquire.median <= Duration::from_micros(1))
            )
        } else {
            format!(
                "p99 ≤ 10 µs: {}",
                verdict(acquire.p99 <= Duration::from_micros(10))
            )
        };
        println!(
            "| acquire loaded model, {threads} thread(s){} | median {}, p99 {} (release: median {}, p99 {}; n = {}) | {target} |",
            if subscribed { ", 1 event subscriber" } else { "" },
            ns(acquire.median),
            ns(acquire.p99),
            ns(release.median),
            ns(release.p99),
            acquire.n
        );
    }

    for delay in [Duration::ZERO, Duration::from_millis(200)] {
        let (loads, elapsed) = single_flight(delay);
        println!(
            "| 64 concurrent cold requests, load takes {} ms | {loads} load(s), all served in {:.2} ms | 1 load: {} |",
            delay.as_millis(),
            elapsed.as_secs_f64() * 1e3,
            verdict(loads == 1)
        );
    }

    let lateness = idle_lateness(trials);
    let worst = lateness.iter().max().copied().unwrap_or_default();
    let mut sorted = lateness.clone();
    sorted.sort_unstable();
    println!(
        "| idle-unload lateness, 1 s timeout, {} trials | median {:.2} ms, worst {:.2} ms | ≤ 250 ms: {} |",
        lateness.len(),
        sorted[sorted.len() / 2].as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        verdict(worst <= Duration::from_millis(250))
    );

    let wakeups = idle_wakeups(window);
    println!(
        "| idle-checker wake-ups in {} s, nothing loaded | {wakeups} | 0: {} |",
        window.as_secs(),
        verdict(wakeups == 0)
    );

    let status = status_cost(calls);
    println!(
        "| `status()`, 4 models (2 loaded) | median {}, p99 {} (n = {}) | ≤ 10 µs: {} |",
        ns(status.median),
        ns(status.p99),
        status.n,
        verdict(status.median <= Duration::from_micros(10))
    );
}
