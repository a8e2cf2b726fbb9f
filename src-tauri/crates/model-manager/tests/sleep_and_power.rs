//! The machine's power state, on a manual clock: what goes before it sleeps (pins stay,
//! leased models go when released, loads are cancelled), that time asleep counts as idle on
//! waking, and the shorter idle timeout on battery (pins and the user's strategies).

mod support;

use std::time::Duration;

use model_manager::{
    ManagerConfig, ModelOverride, ModelState, PowerSource, Strategy, TimerScope, TransitionReason,
};
use support::{key, manual_manager, with_strategy, TestLoader};

fn state(manager: &model_manager::ModelManager, name: &str) -> ModelState {
    manager
        .status()
        .model(&key(name))
        .expect("registered")
        .state
}

fn last_reason(manager: &model_manager::ModelManager, name: &str) -> Option<TransitionReason> {
    let status = manager.status();
    status
        .model(&key(name))
        .and_then(|m| m.last_unload.as_ref())
        .map(|u| u.reason)
}

fn pin(config: &mut ManagerConfig, name: &str) {
    config.overrides.insert(
        key(name),
        ModelOverride {
            pinned: true,
            strategy: None,
        },
    );
}

#[test]
fn before_sleep_every_unpinned_model_unloads_and_a_leased_one_when_released() {
    let (a, b, pinned) = (
        TestLoader::new(100),
        TestLoader::new(200),
        TestLoader::new(300),
    );
    let mut config = with_strategy(Strategy::AlwaysLoaded);
    pin(&mut config, "pinned");
    let (manager, _clock) = manual_manager(config, &[("a", &a), ("b", &b), ("pinned", &pinned)]);
    drop(manager.acquire(&key("a")).expect("loads"));
    drop(manager.acquire(&key("pinned")).expect("loads"));
    let lease = manager.acquire(&key("b")).expect("loads");

    let report = manager.prepare_for_sleep();
    let unloaded: Vec<_> = report.unloaded.iter().map(|u| u.key.to_string()).collect();
    assert_eq!(unloaded, ["a"]);
    assert_eq!(report.unloaded[0].reason, TransitionReason::SystemSleep);
    assert_eq!(report.unloaded[0].resident_bytes, 100);
    assert_eq!(
        report.deferred,
        [key("b")],
        "a leased model is never torn away"
    );
    assert_eq!(
        state(&manager, "pinned"),
        ModelState::Loaded,
        "a pin holds across sleep"
    );
    assert_eq!(state(&manager, "b"), ModelState::Loaded);

    drop(lease);
    assert_eq!(state(&manager, "b"), ModelState::Idle);
    assert_eq!(
        last_reason(&manager, "b"),
        Some(TransitionReason::SystemSleep)
    );
    assert_eq!(a.live() + b.live(), 0, "their memory was dropped");
    assert_eq!(pinned.live(), 1);
}

#[test]
fn a_load_in_flight_when_the_system_sleeps_is_cancelled() {
    let loader = TestLoader::new(100);
    let gate = loader.hold_next(true);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("a", &loader)]);
    let m = std::sync::Arc::new(manager);
    let waiter = {
        let m = m.clone();
        std::thread::spawn(move || m.acquire(&key("a")).map(drop))
    };
    support::eventually("the load starts", || state(&m, "a") == ModelState::Loading);
    let report = m.prepare_for_sleep();
    assert_eq!(report.cancelled_loads, [key("a")]);
    gate.open();
    assert!(
        waiter.join().expect("joins").is_err(),
        "the waiting request is told"
    );
    support::eventually("the load ends", || loader.live() == 0);
}

#[test]
fn with_nothing_loaded_sleep_unloads_nothing() {
    let loader = TestLoader::new(100);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("a", &loader)]);
    assert!(manager.prepare_for_sleep().is_empty());
    assert_eq!(loader.loads(), 0, "sleep never loads anything");
}

#[test]
fn time_asleep_counts_as_idle_a_model_whose_timeout_ran_out_during_sleep_unloads_on_waking() {
    for scope in [TimerScope::Global, TimerScope::PerModel] {
        let loader = TestLoader::new(100);
        let config = ManagerConfig {
            strategy: Strategy::Custom(Duration::from_secs(300)),
            timer_scope: scope,
            ..ManagerConfig::default()
        };
        let (manager, clock) = manual_manager(config, &[("a", &loader)]);
        drop(manager.acquire(&key("a")).expect("loads"));
        clock.advance(Duration::from_secs(60)); // awake, idle for 1 min
        assert!(manager.run_idle_check().is_empty());
        // The user kept "unload before sleep" off: the model stays loaded into the sleep.
        // The clock the core reads (SystemClock: CLOCK_BOOTTIME on Linux) runs on through
        // 10 minutes asleep; the manual clock models that.
        clock.advance(Duration::from_secs(600));
        let unloaded = manager.resumed_from_sleep();
        assert_eq!(unloaded.len(), 1, "{scope:?}");
        assert_eq!(unloaded[0].reason, TransitionReason::IdleTimeout);
        assert_eq!(state(&manager, "a"), ModelState::Idle);
    }
}

#[test]
fn a_short_sleep_leaves_the_rest_of_the_timeout_running() {
    let loader = TestLoader::new(100);
    let config = with_strategy(Strategy::Custom(Duration::from_secs(300)));
    let (manager, clock) = manual_manager(config, &[("a", &loader)]);
    drop(manager.acquire(&key("a")).expect("loads"));
    let expires = manager.status().models[0].expires_at.expect("scheduled");
    clock.advance(Duration::from_secs(120)); // two minutes asleep
    assert!(manager.resumed_from_sleep().is_empty());
    assert_eq!(
        manager.status().models[0].expires_at,
        Some(expires),
        "the deadline does not move: 3 minutes remain"
    );
    clock.advance(Duration::from_secs(180));
    assert_eq!(manager.run_idle_check().len(), 1);
}

#[test]
fn on_battery_an_idle_model_unloads_after_the_battery_timeout() {
    let loader = TestLoader::new(100);
    let config = ManagerConfig {
        strategy: Strategy::Auto, // 5 min
        battery_idle_timeout: Some(Duration::from_secs(60)),
        ..ManagerConfig::default()
    };
    let (manager, clock) = manual_manager(config, &[("a", &loader)]);
    drop(manager.acquire(&key("a")).expect("loads"));
    let on_mains = manager.status().models[0].expires_at.expect("scheduled");

    manager.report_power_source(PowerSource::Battery);
    let status = manager.status();
    assert_eq!(status.power, PowerSource::Battery);
    let on_battery = status.models[0].expires_at.expect("scheduled");
    assert_eq!(
        on_mains.duration_since(on_battery).expect("earlier"),
        Duration::from_secs(240),
        "the badge's countdown shows the battery timeout"
    );
    clock.advance(Duration::from_secs(59));
    assert!(manager.run_idle_check().is_empty());
    clock.advance(Duration::from_secs(1));
    let unloaded = manager.run_idle_check();
    assert_eq!(unloaded.len(), 1);
    assert_eq!(unloaded[0].reason, TransitionReason::IdleTimeout);
}

#[test]
fn a_model_already_idle_longer_than_the_battery_timeout_unloads_when_unplugged() {
    let loader = TestLoader::new(100);
    let config = ManagerConfig {
        battery_idle_timeout: Some(Duration::from_secs(60)),
        ..ManagerConfig::default()
    };
    let (manager, clock) = manual_manager(config, &[("a", &loader)]);
    drop(manager.acquire(&key("a")).expect("loads"));
    clock.advance(Duration::from_secs(120));
    assert!(manager.run_idle_check().is_empty(), "on mains: 5 min");
    manager.report_power_source(PowerSource::Battery);
    assert_eq!(manager.run_idle_check().len(), 1);
}

#[test]
fn back_on_mains_the_strategy_timeout_applies_again() {
    let loader = TestLoader::new(100);
    let config = ManagerConfig {
        battery_idle_timeout: Some(Duration::from_secs(60)),
        ..ManagerConfig::default()
    };
    let (manager, clock) = manual_manager(config, &[("a", &loader)]);
    manager.report_power_source(PowerSource::Battery);
    drop(manager.acquire(&key("a")).expect("loads"));
    clock.advance(Duration::from_secs(30));
    manager.report_power_source(PowerSource::Mains);
    clock.advance(Duration::from_secs(60));
    assert!(manager.run_idle_check().is_empty());
    assert_eq!(state(&manager, "a"), ModelState::Loaded);
}

#[test]
fn on_battery_pins_hold_a_shorter_strategy_wins_and_always_loaded_gets_the_battery_timeout() {
    let (pinned, short, always) = (TestLoader::new(1), TestLoader::new(1), TestLoader::new(1));
    let mut config = ManagerConfig {
        timer_scope: TimerScope::PerModel,
        battery_idle_timeout: Some(Duration::from_secs(60)),
        ..with_strategy(Strategy::AlwaysLoaded)
    };
    pin(&mut config, "pinned");
    config.overrides.insert(
        key("short"),
        ModelOverride {
            pinned: false,
            strategy: Some(Strategy::Custom(Duration::from_secs(10))),
        },
    );
    let (manager, clock) = manual_manager(
        config,
        &[("pinned", &pinned), ("short", &short), ("always", &always)],
    );
    manager.report_power_source(PowerSource::Battery);
    for name in ["pinned", "short", "always"] {
        drop(manager.acquire(&key(name)).expect("loads"));
    }
    clock.advance(Duration::from_secs(10));
    let first: Vec<_> = manager
        .run_idle_check()
        .iter()
        .map(|u| u.key.to_string())
        .collect();
    assert_eq!(
        first,
        ["short"],
        "its own 10 s is shorter than the battery's 60 s"
    );
    clock.advance(Duration::from_secs(50));
    let second: Vec<_> = manager
        .run_idle_check()
        .iter()
        .map(|u| u.key.to_string())
        .collect();
    assert_eq!(
        second,
        ["always"],
        "the battery setting is the user's choice too"
    );
    clock.advance(Duration::from_secs(3600));
    assert!(manager.run_idle_check().is_empty());
    assert_eq!(state(&manager, "pinned"), ModelState::Loaded);
}

#[test]
fn without_a_battery_timeout_the_power_source_changes_nothing() {
    let loader = TestLoader::new(100);
    let (manager, clock) = manual_manager(ManagerConfig::default(), &[("a", &loader)]);
    drop(manager.acquire(&key("a")).expect("loads"));
    let expires = manager.status().models[0].expires_at;
    manager.report_power_source(PowerSource::Battery);
    assert_eq!(manager.status().models[0].expires_at, expires);
    clock.advance(Duration::from_secs(299));
    assert!(manager.run_idle_check().is_empty());
}

#[test]
fn a_battery_timeout_out_of_range_is_refused_with_its_name() {
    for bad in [Duration::ZERO, Duration::from_secs(40 * 24 * 3600)] {
        let config = ManagerConfig {
            battery_idle_timeout: Some(bad),
            ..ManagerConfig::default()
        };
        let error = config.validate().expect_err("out of range").to_string();
        assert!(error.contains("on-battery idle timeout"), "{error}");
    }
}
