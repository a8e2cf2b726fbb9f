//! The answer to the system's memory pressure, on a manual clock: what warn and critical
//! unload, leases and pins, the sustain window (no flapping), the per-model cooldown (no
//! storm), the end of an episode, the user's "off"; and a randomized storm on real threads.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use model_manager::{
    ManagerConfig, ManagerEvent, ModelManager, ModelOverride, ModelSpec, ModelState, PressureLevel,
    PressurePolicy, TransitionReason,
};
use support::{key, manual_manager, TestLoader};

const SUSTAIN: Duration = PressurePolicy::DEFAULT_SUSTAIN;
const COOLDOWN: Duration = PressurePolicy::DEFAULT_COOLDOWN;

fn state(manager: &ModelManager, name: &str) -> ModelState {
    manager
        .status()
        .model(&key(name))
        .expect("registered")
        .state
}

fn names(unloaded: &[model_manager::UnloadedModel]) -> Vec<String> {
    unloaded.iter().map(|u| u.key.to_string()).collect()
}

/// Loads each of `names` (a lease taken and returned), `gap` apart on the manual clock.
fn load_in_order(manager: &ModelManager, clock: &model_manager::ManualClock, names: &[&str]) {
    for name in names {
        drop(manager.acquire(&key(name)).expect("loads"));
        clock.advance(Duration::from_secs(10));
    }
}

fn pinned(names: &[&str]) -> ManagerConfig {
    let mut config = ManagerConfig {
        strategy: model_manager::Strategy::AlwaysLoaded,
        ..ManagerConfig::default()
    };
    for name in names {
        config.overrides.insert(
            key(name),
            ModelOverride {
                pinned: true,
                strategy: None,
            },
        );
    }
    config
}

#[test]
fn warn_unloads_one_idle_unpinned_model_per_sustain_window_least_recent_first() {
    let (a, b, pin, busy) = (
        TestLoader::new(100),
        TestLoader::new(100),
        TestLoader::new(100),
        TestLoader::new(100),
    );
    let (manager, clock) = manual_manager(
        pinned(&["pin"]),
        &[("a", &a), ("b", &b), ("pin", &pin), ("busy", &busy)],
    );
    load_in_order(&manager, &clock, &["a", "b", "pin"]);
    let lease = manager.acquire(&key("busy")).expect("loads");
    manager.report_memory_pressure(PressureLevel::Warn);
    manager.report_memory_pressure(PressureLevel::Warn); // a repeat changes nothing
    assert_eq!(manager.status().pressure, PressureLevel::Warn);
    clock.advance(SUSTAIN - Duration::from_millis(1));
    assert!(
        manager.run_idle_check().is_empty(),
        "nothing before the pressure has lasted the sustain window"
    );
    clock.advance(Duration::from_millis(1));
    let first = manager.run_idle_check();
    assert_eq!(names(&first), ["a"], "the least recently used goes first");
    assert_eq!(first[0].reason, TransitionReason::MemoryPressure);
    assert!(
        manager.run_idle_check().is_empty(),
        "one step per sustain window"
    );
    clock.advance(SUSTAIN);
    assert_eq!(names(&manager.run_idle_check()), ["b"]);
    clock.advance(SUSTAIN * 5);
    assert!(
        manager.run_idle_check().is_empty(),
        "a pinned model and a leased one stay under warn"
    );
    assert_eq!(state(&manager, "pin"), ModelState::Loaded);
    assert_eq!(state(&manager, "busy"), ModelState::Loaded);
    drop(lease);
    clock.advance(SUSTAIN);
    assert_eq!(
        names(&manager.run_idle_check()),
        ["busy"],
        "released, it is an idle model like any other"
    );
    assert_eq!(manager.stats().pressure_unloads, 3);
}

#[test]
fn warn_weighs_what_a_model_frees_against_how_recently_it_was_used() {
    let (small, large) = (TestLoader::new(100), TestLoader::new(10_000));
    let (manager, clock) = manual_manager(pinned(&[]), &[("small", &small), ("large", &large)]);
    // The small model is older (idle 20 s) but frees 100× less than the large one (idle 10 s).
    load_in_order(&manager, &clock, &["small", "large"]);
    manager.report_memory_pressure(PressureLevel::Warn);
    clock.advance(SUSTAIN);
    assert_eq!(names(&manager.run_idle_check()), ["large"]);
}

#[test]
fn critical_unloads_every_model_pins_included_and_leased_ones_when_released() {
    let (a, pin, busy) = (
        TestLoader::new(100),
        TestLoader::new(100),
        TestLoader::new(100),
    );
    let (manager, clock) = manual_manager(
        pinned(&["pin"]),
        &[("a", &a), ("pin", &pin), ("busy", &busy)],
    );
    load_in_order(&manager, &clock, &["a", "pin"]);
    let lease = manager.acquire(&key("busy")).expect("loads");
    manager.report_memory_pressure(PressureLevel::Critical);
    clock.advance(SUSTAIN);
    let mut now = names(&manager.run_idle_check());
    now.sort();
    assert_eq!(now, ["a", "pin"], "the documented exception to a pin");
    assert_eq!(
        state(&manager, "busy"),
        ModelState::Loaded,
        "a lease is never broken"
    );
    assert_eq!(lease.model_id(), "busy-base");
    drop(lease);
    assert_eq!(
        state(&manager, "busy"),
        ModelState::Idle,
        "it goes when its last lease ends"
    );
    let last = manager
        .status()
        .model(&key("busy"))
        .and_then(|m| m.last_unload.clone())
        .expect("unloaded");
    assert_eq!(last.reason, TransitionReason::MemoryPressure);
}

#[test]
fn pressure_shorter_than_the_sustain_window_unloads_nothing_however_often_it_flaps() {
    let a = TestLoader::new(100);
    let (manager, clock) = manual_manager(pinned(&[]), &[("a", &a)]);
    load_in_order(&manager, &clock, &["a"]);
    for _ in 0..50 {
        manager.report_memory_pressure(PressureLevel::Critical);
        clock.advance(Duration::from_millis(10));
        manager.report_memory_pressure(PressureLevel::Normal);
        clock.advance(SUSTAIN);
        assert!(manager.run_idle_check().is_empty());
    }
    assert_eq!(state(&manager, "a"), ModelState::Loaded);
    assert_eq!(manager.stats().pressure_unloads, 0);
}

#[test]
fn a_blip_that_is_over_when_the_window_ends_unloads_nothing() {
    let a = TestLoader::new(100);
    let (manager, clock) = manual_manager(pinned(&[]), &[("a", &a)]);
    load_in_order(&manager, &clock, &["a"]);
    manager.report_memory_pressure(PressureLevel::Warn);
    clock.advance(Duration::from_millis(100));
    manager.report_memory_pressure(PressureLevel::Normal);
    // The window of the warn has ended, normal has not yet lasted a window: whatever wakes
    // the checker now (a lease released, a setting changed), nothing goes.
    clock.advance(SUSTAIN - Duration::from_millis(100));
    assert!(manager.run_idle_check().is_empty());
    clock.advance(SUSTAIN);
    assert!(manager.run_idle_check().is_empty(), "the episode is over");
    assert_eq!(state(&manager, "a"), ModelState::Loaded);
}

#[test]
fn a_signal_flapping_faster_than_the_window_is_pressure_and_acts_once_per_window() {
    let (a, b, c) = (
        TestLoader::new(100),
        TestLoader::new(100),
        TestLoader::new(100),
    );
    let (manager, clock) = manual_manager(pinned(&[]), &[("a", &a), ("b", &b), ("c", &c)]);
    load_in_order(&manager, &clock, &["a", "b", "c"]);
    let mut unloaded = Vec::new();
    // Warn and normal alternate every 10 ms for three windows (and the 10 ms by which a step
    // may wait for a look that finds the signal above normal): the episode never ends
    // (normal never lasts a window), so it acts once per window, on warn.
    let steps = 3 * SUSTAIN.as_millis() as usize / 10 + 3;
    for i in 0..steps {
        let level = if i % 2 == 0 {
            PressureLevel::Warn
        } else {
            PressureLevel::Normal
        };
        manager.report_memory_pressure(level);
        clock.advance(Duration::from_millis(10));
        unloaded.extend(names(&manager.run_idle_check()));
    }
    assert_eq!(
        unloaded,
        ["a", "b", "c"],
        "one per window (three windows), least recent first"
    );
}

#[test]
fn a_model_used_again_is_not_evicted_again_before_its_cooldown() {
    let a = TestLoader::new(100);
    let (manager, clock) = manual_manager(pinned(&[]), &[("a", &a)]);
    load_in_order(&manager, &clock, &["a"]);
    manager.report_memory_pressure(PressureLevel::Warn);
    clock.advance(SUSTAIN);
    assert_eq!(names(&manager.run_idle_check()), ["a"]);
    // The user needs it again while the pressure lasts.
    drop(manager.acquire(&key("a")).expect("loads again"));
    let mut elapsed = Duration::ZERO;
    while elapsed + SUSTAIN < COOLDOWN {
        clock.advance(SUSTAIN);
        elapsed += SUSTAIN;
        assert!(
            manager.run_idle_check().is_empty(),
            "evicted again after {elapsed:?}, inside the cooldown"
        );
    }
    clock.advance(COOLDOWN - elapsed);
    assert_eq!(names(&manager.run_idle_check()), ["a"]);
    assert_eq!(a.loads(), 2);
}

#[test]
fn normal_for_a_whole_window_ends_the_episode_and_calls_off_waiting_unloads() {
    let busy = TestLoader::new(100);
    let (manager, clock) = manual_manager(pinned(&[]), &[("busy", &busy)]);
    let lease = manager.acquire(&key("busy")).expect("loads");
    manager.report_memory_pressure(PressureLevel::Critical);
    clock.advance(SUSTAIN);
    assert!(manager.run_idle_check().is_empty(), "leased: it waits");
    manager.report_memory_pressure(PressureLevel::Normal);
    clock.advance(SUSTAIN);
    assert!(manager.run_idle_check().is_empty());
    drop(lease);
    assert_eq!(
        state(&manager, "busy"),
        ModelState::Loaded,
        "the pressure is over: the waiting unload was called off"
    );
    // A new episode starts from scratch: another full window before anything goes.
    manager.report_memory_pressure(PressureLevel::Warn);
    clock.advance(SUSTAIN - Duration::from_millis(1));
    assert!(manager.run_idle_check().is_empty());
}

#[test]
fn the_users_off_switch_means_pressure_changes_nothing() {
    let a = TestLoader::new(100);
    let mut config = pinned(&[]);
    config.pressure.enabled = false;
    let (manager, clock) = manual_manager(config, &[("a", &a)]);
    load_in_order(&manager, &clock, &["a"]);
    manager.report_memory_pressure(PressureLevel::Critical);
    clock.advance(SUSTAIN * 10);
    assert!(manager.run_idle_check().is_empty());
    assert_eq!(state(&manager, "a"), ModelState::Loaded);
    assert_eq!(
        manager.status().pressure,
        PressureLevel::Critical,
        "still shown"
    );
}

#[test]
fn a_cooldown_shorter_than_the_sustain_window_is_refused() {
    let mut config = ManagerConfig::default();
    config.pressure.cooldown = config.pressure.sustain / 2;
    assert!(config.validate().is_err());
}

/// Pressure flapping every few ms while 8 threads take and return leases on 3 models, with
/// the real idle checker and a 20 ms sustain window: no lease ever sees its model dropped,
/// no model is unloaded for pressure twice within the cooldown, and everything finishes.
#[test]
fn a_randomized_pressure_storm_breaks_no_lease_and_evicts_each_model_at_most_once_per_window() {
    let policy = PressurePolicy {
        enabled: true,
        sustain: Duration::from_millis(20),
        cooldown: Duration::from_millis(40),
    };
    let loaders: Vec<Arc<TestLoader>> = (0..3).map(|_| TestLoader::new(1_000)).collect();
    let names = ["m0", "m1", "m2"];
    let mut builder = ModelManager::builder().config(ManagerConfig {
        strategy: model_manager::Strategy::AlwaysLoaded,
        check_interval: Duration::from_millis(10),
        pressure: policy,
        ..ManagerConfig::default()
    });
    for (name, loader) in names.iter().zip(&loaders) {
        let loader: Arc<dyn model_manager::ModelLoader> = loader.clone();
        builder = builder.register(key(name), loader, ModelSpec::new(format!("{name}-base")));
    }
    let manager = Arc::new(builder.build().expect("manager"));
    let events = manager.subscribe();
    let stop = Arc::new(AtomicBool::new(false));
    let broken = Arc::new(AtomicUsize::new(0));
    let mut threads = Vec::new();
    for t in 0..8u64 {
        let (manager, stop, broken) = (manager.clone(), stop.clone(), broken.clone());
        threads.push(std::thread::spawn(move || {
            let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while !stop.load(Ordering::SeqCst) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let name = ["m0", "m1", "m2"][(x % 3) as usize];
                if let Ok(lease) = manager.acquire(&key(name)) {
                    std::thread::sleep(Duration::from_micros(x % 2_000));
                    // The model a lease holds stays loaded while the lease lives.
                    if manager.status().model(&key(name)).map(|m| m.state)
                        != Some(ModelState::Loaded)
                    {
                        broken.fetch_add(1, Ordering::SeqCst);
                    }
                    drop(lease);
                }
            }
        }));
    }
    let flapper = {
        let (manager, stop) = (manager.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut x = 0x2545_F491_4F6C_DD1Du64;
            while !stop.load(Ordering::SeqCst) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let level = match x % 3 {
                    0 => PressureLevel::Normal,
                    1 => PressureLevel::Warn,
                    _ => PressureLevel::Critical,
                };
                manager.report_memory_pressure(level);
                std::thread::sleep(Duration::from_millis(1 + x % 4));
            }
        })
    };
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    for thread in threads.into_iter().chain(std::iter::once(flapper)) {
        while !thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "deadlock: a thread never finished"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        thread.join().expect("no panic");
    }
    manager.report_memory_pressure(PressureLevel::Normal);
    let lasted = started.elapsed();
    // Pressure unloads per model, from the state machine's own transitions.
    let mut per_model: std::collections::HashMap<String, u32> = Default::default();
    for event in events.try_iter() {
        if let ManagerEvent::Transition {
            key, transition, ..
        } = event
        {
            if transition.reason == TransitionReason::MemoryPressure
                && transition.to == ModelState::Unloading
            {
                *per_model.entry(key.to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(broken.load(Ordering::SeqCst), 0, "a lease saw its model go");
    let total: u32 = per_model.values().sum();
    assert!(total > 0, "the storm never unloaded anything");
    // The cooldown (counted from each decision) bounds every model's pressure unloads; the
    // manual-clock tests check the spacing exactly.
    let bound = (lasted.as_millis() / policy.cooldown.as_millis()) as u32 + 1;
    for (model, count) in &per_model {
        assert!(
            *count <= bound,
            "{model} was unloaded for pressure {count} times in {lasted:?} (at most {bound})"
        );
    }
    println!(
        "pressure storm: {total} pressure unloads in {lasted:?} ({per_model:?}; at most {bound} each), {} reports, {} loads, {} checker wake-ups",
        manager.stats().pressure_reports,
        loaders.iter().map(|l| l.loads()).sum::<usize>(),
        manager.stats().checker_wakeups
    );
}
