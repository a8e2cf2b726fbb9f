//! The idle-checker thread on the real clock: it unloads on time, sleeps without waking while
//! nothing is loaded, and is joined on shutdown.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use model_manager::{
    ManagerConfig, ModelLoader, ModelManager, ModelOverride, ModelSpec, ModelState, Strategy,
    TimerScope, TransitionReason,
};
use support::{eventually, key, TestLoader};

fn real_manager(config: ManagerConfig, loader: &Arc<TestLoader>) -> ModelManager {
    let loader: Arc<dyn ModelLoader> = loader.clone();
    ModelManager::builder()
        .config(config)
        .register(key("stt"), loader, ModelSpec::new("base"))
        .build()
        .expect("builds")
}

#[test]
fn checker_unloads_on_its_own_after_the_timeout() {
    let loader = TestLoader::new(1);
    let config = ManagerConfig {
        strategy: Strategy::Custom(Duration::from_secs(1)),
        check_interval: Duration::from_secs(60), // the deadline, not the interval, wakes it
        ..Default::default()
    };
    let manager = real_manager(config, &loader);
    let lease = manager.acquire(&key("stt")).expect("loads");
    let released = Instant::now(); // just before the release: the deadline is at least 1 s later
    drop(lease);
    eventually("idle unload", || {
        manager.status().models[0].state == ModelState::Idle
    });
    let after = released.elapsed();
    assert!(
        after >= Duration::from_secs(1),
        "not before the deadline: {after:?}"
    );
    let status = manager.status();
    let unload = status.models[0].last_unload.as_ref().expect("unloaded");
    assert_eq!(unload.reason, TransitionReason::IdleTimeout);
    assert_eq!(loader.live(), 0);
}

#[test]
fn a_release_that_creates_an_earlier_deadline_wakes_the_sleeping_checker() {
    let (slow, fast) = (TestLoader::new(1), TestLoader::new(1));
    let mut config = ManagerConfig {
        timer_scope: TimerScope::PerModel,
        strategy: Strategy::Custom(Duration::from_secs(60)),
        check_interval: ManagerConfig::MAX_CHECK_INTERVAL,
        ..Default::default()
    };
    config.overrides.insert(
        key("fast"),
        ModelOverride {
            pinned: false,
            strategy: Some(Strategy::Custom(Duration::from_secs(1))),
        },
    );
    let (a, b): (Arc<dyn ModelLoader>, Arc<dyn ModelLoader>) = (slow.clone(), fast.clone());
    let manager = ModelManager::builder()
        .config(config)
        .register(key("slow"), a, ModelSpec::new("a"))
        .register(key("fast"), b, ModelSpec::new("b"))
        .build()
        .expect("builds");
    drop(manager.acquire(&key("slow")).expect("loads"));
    // The checker now sleeps until slow's deadline, 60 s away.
    std::thread::sleep(Duration::from_millis(50));
    let lease = manager.acquire(&key("fast")).expect("loads");
    std::thread::sleep(Duration::from_millis(100)); // the checker settles while fast is in use
    drop(lease);
    // fast's 1 s deadline is earlier: the release must wake the checker, not leave it asleep.
    eventually("fast unloads on time, not at slow's deadline", || {
        manager.status().model(&key("fast")).expect("fast").state == ModelState::Idle
    });
    assert_eq!(
        manager.status().model(&key("slow")).expect("slow").state,
        ModelState::Loaded
    );
}

#[test]
fn checker_never_wakes_while_nothing_is_loaded() {
    let loader = TestLoader::new(1);
    let config = ManagerConfig {
        check_interval: ManagerConfig::MIN_CHECK_INTERVAL,
        ..Default::default()
    };
    let manager = real_manager(config, &loader);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(manager.stats().checker_wakeups, 0);
    // With a model loaded and a deadline pending, the interval bounds its sleep.
    drop(manager.acquire(&key("stt")).expect("loads"));
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        manager.stats().checker_wakeups >= 5,
        "{:?}",
        manager.stats()
    );
    // Unloaded again: back to sleeping without waking.
    manager.unload_all();
    std::thread::sleep(Duration::from_millis(50));
    let settled = manager.stats().checker_wakeups;
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        manager.stats().checker_wakeups <= settled + 1,
        "{:?}",
        manager.stats()
    );
}

#[test]
fn dropping_the_manager_shuts_it_down() {
    let loader = TestLoader::new(1);
    let manager = real_manager(ManagerConfig::default(), &loader);
    drop(manager.acquire(&key("stt")).expect("loads"));
    drop(manager);
    assert_eq!(loader.live(), 0);
}

#[test]
fn checker_fails_a_hung_load_at_its_timeout_on_its_own() {
    let loader = TestLoader::new(1);
    let gate = loader.hold_next(false);
    let config = ManagerConfig {
        load_timeout: Duration::from_millis(50),
        check_interval: Duration::from_secs(60), // the load's deadline, not the interval, wakes it
        ..Default::default()
    };
    let manager = real_manager(config, &loader);
    let error = manager.acquire(&key("stt")).expect_err("timed out");
    assert!(error.to_string().contains("load timeout"), "{error}");
    assert_eq!(manager.status().models[0].state, ModelState::Failed);
    gate.open();
    eventually("late result dropped", || {
        manager.stats().loads_discarded == 1
    });
    assert_eq!(loader.live(), 0);
}
