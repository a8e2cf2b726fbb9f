//! Scenario tests of the lifecycle core, on a manual clock and scripted loaders.

mod support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use model_manager::{
    ManagerConfig, ManagerError, ManagerEvent, ModelOverride, ModelSpec, ModelState, Strategy,
    TimerScope, TransitionReason,
};
use support::{eventually, key, manual_manager, with_strategy, Gate, Step, TestLoader, TestModel};

const MIN: Duration = Duration::from_secs(60);

fn state(manager: &model_manager::ModelManager, name: &str) -> ModelState {
    manager
        .status()
        .model(&key(name))
        .expect("registered")
        .state
}

#[test]
fn lazy_load_happens_on_first_use_only() {
    let loader = TestLoader::new(100);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    assert_eq!(state(&manager, "stt"), ModelState::Idle);
    assert_eq!(loader.loads(), 0, "nothing loads at start");
    let lease = manager.acquire(&key("stt")).expect("loads");
    assert_eq!(loader.loads(), 1);
    assert_eq!(
        lease
            .downcast::<TestModel>()
            .expect("type")
            .spec
            .id
            .as_ref(),
        "stt-base"
    );
    drop(lease);
    let _again = manager.acquire(&key("stt")).expect("warm");
    assert_eq!(loader.loads(), 1, "a loaded model is reused");
}

#[test]
fn status_never_loads_and_reports_everything() {
    let loader = TestLoader::new(4096);
    let (manager, clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    for _ in 0..10 {
        let status = manager.status();
        assert_eq!(status.models[0].state, ModelState::Idle);
        assert_eq!(status.total_resident_bytes, 0);
    }
    assert_eq!(loader.loads(), 0, "status() must never load");

    let lease = manager.acquire(&key("stt")).expect("loads");
    let status = manager.status();
    let model = status.model(&key("stt")).expect("registered");
    assert_eq!(model.state, ModelState::Loaded);
    assert_eq!(model.model_id.as_ref(), "stt-base");
    assert_eq!(model.resident_bytes, Some(4096));
    assert_eq!(status.total_resident_bytes, 4096);
    assert_eq!(model.leases, 1);
    assert_eq!(model.load_count, 1);
    assert!(model.last_load_duration.is_some());
    assert!(model.loaded_at.is_some() && model.last_used.is_some());
    assert_eq!(
        model.expires_at, None,
        "a leased model is not scheduled to unload"
    );
    assert_eq!(status.config, ManagerConfig::default());
    drop(lease);

    clock.advance(Duration::from_secs(10));
    let status = manager.status();
    let model = status.model(&key("stt")).expect("registered");
    let expires = model.expires_at.expect("idle model has a deadline");
    let remaining = expires
        .duration_since(status.taken_at)
        .expect("in the future");
    assert_eq!(remaining, Strategy::AUTO_TIMEOUT - Duration::from_secs(10));
}

#[test]
fn single_flight_64_threads_one_load_all_served() {
    let loader = TestLoader::new(1);
    let gate = loader.hold_next(false);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let manager = Arc::new(manager);
    let start = Arc::new(Barrier::new(64));
    let threads: Vec<_> = (0..64)
        .map(|_| {
            let (manager, start) = (manager.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                manager.acquire(&key("stt")).map(|lease| lease.generation())
            })
        })
        .collect();
    gate.wait_for_waiters(1);
    eventually("all 64 requests to be waiting", || {
        manager.stats().loads_started == 1
    });
    std::thread::sleep(Duration::from_millis(20));
    gate.open();
    let generations: Vec<u64> = threads
        .into_iter()
        .map(|t| t.join().expect("no panic").expect("served"))
        .collect();
    assert_eq!(loader.loads(), 1, "exactly one load for 64 cold requests");
    assert!(generations.iter().all(|&g| g == generations[0]));
    assert_eq!(loader.live(), 1);
}

#[test]
fn single_flight_shares_the_error_with_every_waiter() {
    let loader = TestLoader::new(1);
    let gate = Arc::new(Gate::default());
    loader.then(Step::HoldThenFail {
        gate: gate.clone(),
        message: "weights corrupt",
    });
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let manager = Arc::new(manager);
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let manager = manager.clone();
            std::thread::spawn(move || manager.acquire(&key("stt")).map(|_| ()))
        })
        .collect();
    gate.wait_for_waiters(1);
    std::thread::sleep(Duration::from_millis(20));
    gate.open();
    for thread in threads {
        let error = thread.join().expect("no panic").expect_err("load fails");
        assert!(error.to_string().contains("weights corrupt"), "{error}");
    }
    // Requests that arrived while the load ran shared it; one arriving after the failure would
    // retry (next use retries), which is why this is "at most one per late arrival".
    assert!(loader.loads() <= 16, "loads: {}", loader.loads());
    assert_eq!(manager.stats().loads_failed as usize, loader.loads());
    assert_eq!(state(&manager, "stt"), ModelState::Failed);
}

#[test]
fn other_models_are_not_blocked_by_a_slow_load() {
    let slow = TestLoader::new(1);
    let fast = TestLoader::new(1);
    let gate = slow.hold_next(false);
    let (manager, _clock) = manual_manager(
        ManagerConfig::default(),
        &[("slow", &slow), ("fast", &fast)],
    );
    let manager = Arc::new(manager);
    let waiter = {
        let manager = manager.clone();
        std::thread::spawn(move || manager.acquire(&key("slow")).map(|_| ()))
    };
    gate.wait_for_waiters(1);
    let lease = manager
        .acquire(&key("fast"))
        .expect("fast loads while slow is loading");
    assert_eq!(state(&manager, "slow"), ModelState::Loading);
    drop(lease);
    gate.open();
    waiter.join().expect("no panic").expect("slow served");
}

#[test]
fn a_leased_model_is_never_unloaded_and_the_clock_starts_at_the_last_release() {
    let loader = TestLoader::new(1);
    let (manager, clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let first = manager.acquire(&key("stt")).expect("loads");
    let second = manager.acquire(&key("stt")).expect("shared");
    clock.advance(Strategy::AUTO_TIMEOUT * 3);
    assert!(manager.run_idle_check().is_empty());
    assert_eq!(state(&manager, "stt"), ModelState::Loaded);
    drop(first);
    clock.advance(Strategy::AUTO_TIMEOUT * 3);
    assert!(manager.run_idle_check().is_empty(), "one lease still held");
    drop(second);
    clock.advance(Strategy::AUTO_TIMEOUT - Duration::from_millis(1));
    assert!(
        manager.run_idle_check().is_empty(),
        "idle clock started at the last release"
    );
    clock.advance(Duration::from_millis(1));
    let unloaded = manager.run_idle_check();
    assert_eq!(unloaded.len(), 1);
    assert_eq!(unloaded[0].reason, TransitionReason::IdleTimeout);
    assert_eq!(state(&manager, "stt"), ModelState::Idle);
    assert_eq!(loader.live(), 0);
}

#[test]
fn lease_dropped_by_a_panic_still_starts_the_idle_clock() {
    let loader = TestLoader::new(1);
    let (manager, _clock) = manual_manager(with_strategy(Strategy::Immediate), &[("stt", &loader)]);
    let manager = Arc::new(manager);
    let m = manager.clone();
    let result = std::thread::spawn(move || {
        let _lease = m.acquire(&key("stt")).expect("loads");
        panic!("inference blew up");
    })
    .join();
    assert!(result.is_err());
    assert_eq!(
        state(&manager, "stt"),
        ModelState::Idle,
        "unloaded despite the panic"
    );
    assert_eq!(loader.live(), 0);
}

/// The immediate strategy, on the paths a command can leave by.
fn transcribe(manager: &model_manager::ModelManager, audio: &[f32]) -> Result<usize, String> {
    let lease = manager.acquire(&key("stt")).map_err(|e| e.to_string())?;
    if audio.is_empty() {
        return Ok(0);
    }
    if audio.iter().any(|s| s.is_nan()) {
        return Err("corrupt audio".into());
    }
    let _model = lease.downcast::<TestModel>().ok_or("wrong model")?;
    Ok(audio.len())
}

#[test]
fn immediate_strategy_unloads_after_success_error_and_empty_input() {
    let loader = TestLoader::new(1);
    let (manager, _clock) = manual_manager(with_strategy(Strategy::Immediate), &[("stt", &loader)]);
    let inputs: [&[f32]; 3] = [&[0.1, 0.2], &[f32::NAN], &[]];
    for (i, audio) in inputs.iter().enumerate() {
        let _ = transcribe(&manager, audio);
        assert_eq!(state(&manager, "stt"), ModelState::Idle, "input {i}");
        assert_eq!(loader.live(), 0, "input {i}");
        let status = manager.status();
        let unload = status.models[0].last_unload.as_ref().expect("unloaded");
        assert_eq!(unload.reason, TransitionReason::Immediate);
    }
    assert_eq!(loader.loads(), 3);
}

#[test]
fn immediate_strategy_gives_a_warmed_model_a_grace_period() {
    let loader = TestLoader::new(1);
    let (manager, clock) = manual_manager(with_strategy(Strategy::Immediate), &[("stt", &loader)]);
    manager.warm(&key("stt")).expect("warm");
    eventually("warm load", || state(&manager, "stt") == ModelState::Loaded);
    assert!(
        manager.run_idle_check().is_empty(),
        "kept for the request the intent announced"
    );
    clock.advance(Duration::from_secs(61));
    assert_eq!(manager.run_idle_check().len(), 1, "but not forever");
}

#[test]
fn global_scope_keeps_every_model_warm_and_unloads_them_together() {
    let (a, b) = (TestLoader::new(1), TestLoader::new(1));
    let (manager, clock) = manual_manager(ManagerConfig::default(), &[("a", &a), ("b", &b)]);
    drop(manager.acquire(&key("a")).expect("a"));
    clock.advance(3 * MIN);
    drop(manager.acquire(&key("b")).expect("b"));
    clock.advance(2 * MIN);
    assert!(
        manager.run_idle_check().is_empty(),
        "b's activity keeps a warm"
    );
    clock.advance(3 * MIN);
    let mut unloaded: Vec<String> = manager
        .run_idle_check()
        .into_iter()
        .map(|u| u.key.to_string())
        .collect();
    unloaded.sort();
    assert_eq!(unloaded, ["a", "b"]);
}

#[test]
fn per_model_scope_unloads_each_model_on_its_own_clock() {
    let (a, b) = (TestLoader::new(1), TestLoader::new(1));
    let config = ManagerConfig {
        timer_scope: TimerScope::PerModel,
        ..Default::default()
    };
    let (manager, clock) = manual_manager(config, &[("a", &a), ("b", &b)]);
    drop(manager.acquire(&key("a")).expect("a"));
    clock.advance(3 * MIN);
    drop(manager.acquire(&key("b")).expect("b"));
    clock.advance(2 * MIN);
    let unloaded = manager.run_idle_check();
    assert_eq!(unloaded.len(), 1);
    assert_eq!(unloaded[0].key, key("a"));
    assert_eq!(state(&manager, "b"), ModelState::Loaded);
    clock.advance(3 * MIN);
    assert_eq!(manager.run_idle_check()[0].key, key("b"));
}

#[test]
fn global_scope_holds_every_model_while_any_is_leased() {
    let (a, b) = (TestLoader::new(1), TestLoader::new(1));
    let (manager, clock) = manual_manager(ManagerConfig::default(), &[("a", &a), ("b", &b)]);
    drop(manager.acquire(&key("a")).expect("a"));
    let busy = manager.acquire(&key("b")).expect("b");
    clock.advance(20 * MIN);
    assert!(manager.run_idle_check().is_empty());
    assert_eq!(
        manager.status().model(&key("a")).expect("a").expires_at,
        None
    );
    drop(busy);
}

#[test]
fn config_change_re_arms_the_deadline() {
    let loader = TestLoader::new(1);
    let (manager, clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    drop(manager.acquire(&key("stt")).expect("loads"));
    clock.advance(2 * MIN);
    let before = manager.status().models[0].expires_at.expect("deadline");

    let longer = ManagerConfig {
        strategy: Strategy::Custom(10 * MIN),
        ..Default::default()
    };
    manager.update_config(longer).expect("valid");
    let after = manager.status().models[0].expires_at.expect("deadline");
    assert_eq!(after.duration_since(before).expect("later"), 5 * MIN);
    clock.advance(4 * MIN);
    assert!(
        manager.run_idle_check().is_empty(),
        "old 5 min deadline no longer applies"
    );

    let shorter = ManagerConfig {
        strategy: Strategy::Custom(MIN),
        ..Default::default()
    };
    manager.update_config(shorter).expect("valid");
    assert_eq!(
        manager.run_idle_check().len(),
        1,
        "new 1 min deadline already passed"
    );

    drop(manager.acquire(&key("stt")).expect("reloads"));
    let always = with_strategy(Strategy::AlwaysLoaded);
    manager.update_config(always).expect("valid");
    clock.advance(1000 * MIN);
    assert!(manager.run_idle_check().is_empty());
    assert_eq!(manager.status().models[0].expires_at, None);

    manager
        .update_config(with_strategy(Strategy::Immediate))
        .expect("valid");
    assert_eq!(
        manager.run_idle_check().len(),
        1,
        "switching to immediate unloads idle models"
    );
}

#[test]
fn invalid_config_is_rejected_and_the_old_one_kept() {
    let loader = TestLoader::new(1);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let bad = ManagerConfig {
        check_interval: Duration::ZERO,
        ..Default::default()
    };
    assert!(matches!(
        manager.update_config(bad),
        Err(ManagerError::InvalidConfig(_))
    ));
    assert_eq!(manager.config(), ManagerConfig::default());
}

#[test]
fn pinned_and_overridden_models_follow_their_own_rules() {
    let (a, b) = (TestLoader::new(1), TestLoader::new(1));
    let mut config = ManagerConfig {
        timer_scope: TimerScope::PerModel,
        ..Default::default()
    };
    config.overrides.insert(
        key("a"),
        ModelOverride {
            pinned: true,
            strategy: None,
        },
    );
    config.overrides.insert(
        key("b"),
        ModelOverride {
            pinned: false,
            strategy: Some(Strategy::Custom(MIN)),
        },
    );
    let (manager, clock) = manual_manager(config, &[("a", &a), ("b", &b)]);
    drop(manager.acquire(&key("a")).expect("a"));
    drop(manager.acquire(&key("b")).expect("b"));
    clock.advance(MIN);
    let unloaded = manager.run_idle_check();
    assert_eq!(unloaded.len(), 1);
    assert_eq!(unloaded[0].key, key("b"));
    clock.advance(100 * MIN);
    assert!(manager.run_idle_check().is_empty(), "pinned model stays");
    assert!(manager.status().model(&key("a")).expect("a").pinned);
    // The user's explicit unload still wins over a pin.
    assert_eq!(manager.unload(&key("a")).expect("known").unloaded.len(), 1);
}

#[test]
fn cancel_during_load_leaks_nothing_and_waiters_are_told() {
    let loader = TestLoader::new(1);
    let gate = loader.hold_next(true);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let manager = Arc::new(manager);
    let waiter = {
        let manager = manager.clone();
        std::thread::spawn(move || manager.acquire(&key("stt")).map(|_| ()))
    };
    gate.wait_for_waiters(1);
    assert!(manager.cancel_load(&key("stt")).expect("known"));
    let error = waiter.join().expect("no panic").expect_err("cancelled");
    assert_eq!(error, ManagerError::LoadCancelled(key("stt")));
    eventually("load thread returns", || {
        manager.stats().loads_in_flight == 0
    });
    assert_eq!(loader.live(), 0);
    assert_eq!(state(&manager, "stt"), ModelState::Idle);
    // The next use loads again.
    let _lease = manager.acquire(&key("stt")).expect("retry loads");
    assert_eq!(loader.live(), 1);
}

#[test]
fn late_load_is_discarded_and_never_resurrects_the_model() {
    let loader = TestLoader::new(1);
    let gate = loader.hold_next(false);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    manager.warm(&key("stt")).expect("warm");
    gate.wait_for_waiters(1);
    let report = manager.unload_all();
    assert_eq!(report.cancelled_loads, vec![key("stt")]);
    gate.open();
    eventually("late load returns", || manager.stats().loads_in_flight == 0);
    assert_eq!(manager.stats().loads_discarded, 1);
    assert_eq!(
        state(&manager, "stt"),
        ModelState::Idle,
        "the late load did not resurrect it"
    );
    assert_eq!(loader.live(), 0, "its model was dropped at once");
}

#[test]
fn supersede_during_load_restarts_with_the_new_spec_and_leaks_nothing() {
    let loader = TestLoader::new(1);
    let gate = loader.hold_next(false);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let manager = Arc::new(manager);
    let waiter = {
        let manager = manager.clone();
        std::thread::spawn(move || {
            let lease = manager.acquire(&key("stt"))?;
            Ok::<_, ManagerError>(
                lease
                    .downcast::<TestModel>()
                    .expect("type")
                    .spec
                    .id
                    .to_string(),
            )
        })
    };
    gate.wait_for_waiters(1);
    manager
        .set_spec(&key("stt"), ModelSpec::new("whisper-small"))
        .expect("known");
    let got = waiter.join().expect("no panic").expect("served");
    assert_eq!(
        got, "whisper-small",
        "the waiter gets the new size, not the superseded one"
    );
    gate.open();
    eventually("old load returns", || manager.stats().loads_in_flight == 0);
    assert_eq!(manager.stats().loads_discarded, 1);
    assert_eq!(
        loader.live(),
        1,
        "only the new model is alive; the superseded one was dropped"
    );
    let status = manager.status();
    assert_eq!(status.models[0].model_id.as_ref(), "whisper-small");
}

#[test]
fn supersede_while_leased_waits_for_the_lease_then_swaps() {
    let loader = TestLoader::new(1);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let manager = Arc::new(manager);
    let old = manager.acquire(&key("stt")).expect("loads");
    manager
        .set_spec(&key("stt"), ModelSpec::new("whisper-small"))
        .expect("known");
    assert_eq!(
        state(&manager, "stt"),
        ModelState::Loaded,
        "leased: not unloaded"
    );
    let next = {
        let manager = manager.clone();
        std::thread::spawn(move || {
            let lease = manager.acquire(&key("stt")).expect("served");
            lease
                .downcast::<TestModel>()
                .expect("type")
                .spec
                .id
                .to_string()
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    assert!(
        !next.is_finished(),
        "a new request waits for the old model to go"
    );
    assert_eq!(
        old.downcast::<TestModel>().expect("type").spec.id.as_ref(),
        "stt-base"
    );
    assert_eq!(
        old.model_id(),
        "stt-base",
        "a lease names the model it holds, not the spec chosen since"
    );
    drop(old);
    assert_eq!(next.join().expect("no panic"), "whisper-small");
    let fresh = manager.acquire(&key("stt")).expect("loaded");
    assert_eq!(fresh.model_id(), "whisper-small");
    assert_eq!(loader.live(), 1);
    assert_eq!(
        loader.peak(),
        1,
        "the old model was freed before the new one loaded"
    );
    assert_eq!(loader.loads(), 2);
}

#[test]
fn memory_budget_evicts_idle_models_least_recently_used_first() {
    let (a, b, c, d) = (
        TestLoader::new(300),
        TestLoader::new(300),
        TestLoader::new(300),
        TestLoader::new(500),
    );
    let config = ManagerConfig {
        memory_budget_bytes: Some(1000),
        ..Default::default()
    };
    let (manager, clock) = manual_manager(config, &[("a", &a), ("b", &b), ("c", &c), ("d", &d)]);
    for name in ["b", "a", "c"] {
        drop(manager.acquire(&key(name)).expect("fits"));
        clock.advance(Duration::from_secs(1));
    }
    // 900 in use; d needs 500: evict b (oldest) then a.
    let _d = manager.acquire(&key("d")).expect("room is made");
    let status = manager.status();
    let reasons: Vec<_> = ["a", "b"]
        .iter()
        .map(|n| {
            let m = status.model(&key(n)).expect("registered");
            (m.state, m.last_unload.as_ref().map(|u| u.reason))
        })
        .collect();
    assert_eq!(
        reasons,
        vec![(ModelState::Idle, Some(TransitionReason::EvictedForMemory)); 2]
    );
    assert_eq!(
        status.model(&key("c")).expect("c").state,
        ModelState::Loaded
    );
    assert!(status.total_resident_bytes <= 1000);
    assert_eq!(a.live() + b.live(), 0);
}

#[test]
fn memory_budget_eviction_order_follows_use_not_load_order() {
    let (a, b, c) = (
        TestLoader::new(400),
        TestLoader::new(400),
        TestLoader::new(400),
    );
    let config = ManagerConfig {
        memory_budget_bytes: Some(1000),
        ..Default::default()
    };
    let (manager, clock) = manual_manager(config, &[("a", &a), ("b", &b), ("c", &c)]);
    drop(manager.acquire(&key("a")).expect("a"));
    clock.advance(Duration::from_secs(1));
    drop(manager.acquire(&key("b")).expect("b"));
    clock.advance(Duration::from_secs(1));
    drop(manager.acquire(&key("a")).expect("a used again"));
    clock.advance(Duration::from_secs(1));
    drop(manager.acquire(&key("c")).expect("c"));
    assert_eq!(
        state(&manager, "b"),
        ModelState::Idle,
        "b was least recently used"
    );
    assert_eq!(state(&manager, "a"), ModelState::Loaded);
}

#[test]
fn memory_budget_fails_clearly_when_leased_or_pinned_models_leave_no_room() {
    let (a, b, big) = (
        TestLoader::new(400),
        TestLoader::new(400),
        TestLoader::new(900),
    );
    let mut config = ManagerConfig {
        memory_budget_bytes: Some(1000),
        ..Default::default()
    };
    config.overrides.insert(
        key("b"),
        ModelOverride {
            pinned: true,
            strategy: None,
        },
    );
    let (manager, _clock) = manual_manager(config, &[("a", &a), ("b", &b), ("big", &big)]);
    let _held = manager.acquire(&key("a")).expect("a");
    drop(manager.acquire(&key("b")).expect("b"));
    let error = manager.acquire(&key("big")).expect_err("cannot fit");
    match &error {
        ManagerError::MemoryBudgetExceeded {
            needed,
            budget,
            in_use,
            blocked_by,
            ..
        } => {
            assert_eq!((*needed, *budget, *in_use), (900, 1000, 800));
            assert_eq!(blocked_by, &vec![key("a"), key("b")]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(error.to_string().contains("memory budget"), "{error}");
    assert_eq!(big.loads(), 0);
    assert_eq!(
        a.live() + b.live(),
        2,
        "nothing was evicted for a load that could not fit"
    );
}

#[test]
fn budget_uses_the_measured_size_once_known() {
    let loader = TestLoader::new(700);
    *loader.estimate.lock() = Some(100); // the estimate is wrong
    let other = TestLoader::new(400);
    let config = ManagerConfig {
        memory_budget_bytes: Some(1000),
        ..Default::default()
    };
    let (manager, _clock) = manual_manager(config, &[("stt", &loader), ("seg", &other)]);
    drop(manager.acquire(&key("stt")).expect("estimate fits"));
    assert_eq!(manager.status().models[0].expected_bytes, Some(700));
    manager.unload_all();
    drop(manager.acquire(&key("seg")).expect("seg"));
    drop(
        manager
            .acquire(&key("stt"))
            .expect("evicts seg: 700 + 400 > 1000"),
    );
    assert_eq!(state(&manager, "seg"), ModelState::Idle);
}

#[test]
fn lowering_the_budget_evicts_idle_models_to_fit() {
    let (a, b) = (TestLoader::new(400), TestLoader::new(400));
    let (manager, clock) = manual_manager(ManagerConfig::default(), &[("a", &a), ("b", &b)]);
    drop(manager.acquire(&key("a")).expect("a"));
    clock.advance(Duration::from_secs(1));
    drop(manager.acquire(&key("b")).expect("b"));
    manager
        .update_config(ManagerConfig {
            memory_budget_bytes: Some(500),
            ..Default::default()
        })
        .expect("valid");
    assert_eq!(state(&manager, "a"), ModelState::Idle);
    assert_eq!(state(&manager, "b"), ModelState::Loaded);
}

#[test]
fn loader_error_is_kept_and_the_next_use_retries() {
    let loader = TestLoader::new(1);
    loader.then(Step::Fail("file not found: base.bin"));
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let error = manager.acquire(&key("stt")).expect_err("fails");
    assert!(matches!(error, ManagerError::Load { .. }));
    assert!(
        error.to_string().contains("file not found: base.bin"),
        "{error}"
    );
    let status = manager.status();
    assert_eq!(status.models[0].state, ModelState::Failed);
    assert_eq!(
        status.models[0].last_error.as_deref(),
        Some("file not found: base.bin")
    );
    let _lease = manager.acquire(&key("stt")).expect("retry succeeds");
    assert_eq!(
        manager.status().models[0].last_error,
        None,
        "cleared by success"
    );
    assert_eq!(loader.loads(), 2);
}

#[test]
fn panicking_loader_ends_in_failed_and_the_manager_keeps_working() {
    let loader = TestLoader::new(1);
    loader.then(Step::Panic);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let error = manager.acquire(&key("stt")).expect_err("panicked");
    assert!(
        error
            .to_string()
            .contains("loader panicked: loader exploded"),
        "{error}"
    );
    assert_eq!(state(&manager, "stt"), ModelState::Failed);
    let _lease = manager
        .acquire(&key("stt"))
        .expect("manager not poisoned; retry works");
    let _status = manager.status();
}

#[test]
fn hanging_load_that_honours_cancel_is_ended_by_unload() {
    let loader = TestLoader::new(1);
    let gate = loader.hold_next(true); // never opened
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    manager.warm(&key("stt")).expect("warm");
    gate.wait_for_waiters(1);
    let report = manager.unload(&key("stt")).expect("known");
    assert_eq!(report.cancelled_loads, vec![key("stt")]);
    eventually("hanging load gives up", || {
        manager.stats().loads_in_flight == 0
    });
    assert_eq!(loader.live(), 0);
    assert_eq!(
        manager.stats().loads_discarded,
        0,
        "it produced nothing to discard"
    );
}

#[test]
fn unload_of_a_leased_model_is_deferred_to_its_last_release() {
    let loader = TestLoader::new(1);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let lease = manager.acquire(&key("stt")).expect("loads");
    let report = manager.unload_all();
    assert_eq!(report.deferred, vec![key("stt")]);
    assert!(report.unloaded.is_empty());
    assert_eq!(state(&manager, "stt"), ModelState::Loaded);
    drop(lease);
    assert_eq!(state(&manager, "stt"), ModelState::Idle);
    let status = manager.status();
    assert_eq!(
        status.models[0]
            .last_unload
            .as_ref()
            .expect("unloaded")
            .reason,
        TransitionReason::Manual
    );
}

#[test]
fn unload_all_reports_what_it_unloaded_or_that_nothing_was_loaded() {
    let (a, b) = (TestLoader::new(10), TestLoader::new(20));
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("a", &a), ("b", &b)]);
    assert!(manager.unload_all().is_empty(), "No models were loaded");
    drop(manager.acquire(&key("a")).expect("a"));
    drop(manager.acquire(&key("b")).expect("b"));
    let report = manager.unload_all();
    let mut keys: Vec<_> = report
        .unloaded
        .iter()
        .map(|u| (u.key.to_string(), u.resident_bytes))
        .collect();
    keys.sort();
    assert_eq!(keys, [("a".to_string(), 10), ("b".to_string(), 20)]);
    assert!(report
        .unloaded
        .iter()
        .all(|u| u.reason == TransitionReason::Manual));
    assert_eq!(a.live() + b.live(), 0);
    assert!(manager.unload_all().is_empty());
}

#[test]
fn unknown_and_duplicate_keys_are_clear_errors() {
    let loader = TestLoader::new(1);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    assert_eq!(
        manager.acquire(&key("nope")).expect_err("unknown"),
        ManagerError::UnknownModel(key("nope"))
    );
    let again: Arc<dyn model_manager::ModelLoader> = loader.clone();
    assert_eq!(
        manager.register(key("stt"), again, ModelSpec::new("x")),
        Err(ManagerError::AlreadyRegistered(key("stt")))
    );
}

#[test]
fn user_models_can_be_registered_at_run_time() {
    let loader = TestLoader::new(1);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[]);
    let user = key("user:42");
    manager
        .register(
            user.clone(),
            loader.clone(),
            ModelSpec::with_path("finetune", "/tmp/w.safetensors"),
        )
        .expect("new key");
    let _lease = manager.acquire(&user).expect("loads");
    let status = manager.status();
    assert_eq!(
        status.models[0].model_path.as_deref(),
        Some(std::path::Path::new("/tmp/w.safetensors"))
    );
}

#[test]
fn preload_loads_the_listed_models_at_startup() {
    let (a, b) = (TestLoader::new(1), TestLoader::new(1));
    let config = ManagerConfig {
        preload: vec![key("a"), key("missing")],
        ..Default::default()
    };
    let (manager, _clock) = manual_manager(config, &[("a", &a), ("b", &b)]);
    eventually("preload finishes", || {
        state(&manager, "a") == ModelState::Loaded
    });
    assert_eq!(state(&manager, "b"), ModelState::Idle);
    let status = manager.status();
    let transition = status.models[0].last_transition.expect("transitioned");
    assert_eq!(transition.to, ModelState::Loaded);
}

#[test]
fn events_follow_every_transition_in_order_with_progress() {
    let loader = TestLoader::new(8);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let events = manager.subscribe();
    drop(manager.acquire(&key("stt")).expect("loads"));
    manager.unload_all();
    let received: Vec<ManagerEvent> = events.try_iter().collect();
    let states: Vec<ModelState> = received
        .iter()
        .filter_map(|e| match e {
            ManagerEvent::Model(m) => Some(m.state),
            _ => None,
        })
        .collect();
    let mut distinct = states.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        [
            ModelState::Loading,
            ModelState::Loaded,
            ModelState::Unloading,
            ModelState::Idle
        ]
    );
    let transitions: Vec<(ModelState, ModelState, TransitionReason)> = received
        .iter()
        .filter_map(|e| match e {
            ManagerEvent::Transition { transition: t, .. } => Some((t.from, t.to, t.reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        transitions,
        [
            (
                ModelState::Idle,
                ModelState::Loading,
                TransitionReason::FirstUse
            ),
            (
                ModelState::Loading,
                ModelState::Loaded,
                TransitionReason::LoadFinished
            ),
            (
                ModelState::Loaded,
                ModelState::Unloading,
                TransitionReason::Manual
            ),
            (
                ModelState::Unloading,
                ModelState::Idle,
                TransitionReason::Manual
            ),
        ]
    );
    assert!(received.iter().any(|e| matches!(
        e,
        ManagerEvent::LoadProgress { progress, .. } if (*progress - 0.5).abs() < f32::EPSILON
    )));
    let in_use = received
        .iter()
        .any(|e| matches!(e, ManagerEvent::Model(m) if m.leases == 1));
    assert!(in_use, "lease changes are published");
    manager
        .update_config(with_strategy(Strategy::Immediate))
        .expect("valid");
    assert!(events
        .try_iter()
        .any(|e| matches!(e, ManagerEvent::Config(c) if c.strategy == Strategy::Immediate)));
}

#[test]
fn a_dropped_subscriber_is_forgotten() {
    let loader = TestLoader::new(1);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    drop(manager.subscribe());
    drop(
        manager
            .acquire(&key("stt"))
            .expect("publishing to a closed channel is fine"),
    );
}

#[test]
fn shutdown_unloads_everything_and_refuses_new_work() {
    let (a, b) = (TestLoader::new(1), TestLoader::new(1));
    let gate = b.hold_next(true);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("a", &a), ("b", &b)]);
    drop(manager.acquire(&key("a")).expect("a"));
    manager.warm(&key("b")).expect("b loading");
    gate.wait_for_waiters(1);
    let report = manager.shutdown(Duration::from_secs(5));
    assert_eq!(report.unloaded.len(), 1);
    assert_eq!(report.unloaded[0].reason, TransitionReason::Shutdown);
    assert_eq!(report.cancelled_loads, vec![key("b")]);
    assert_eq!(
        manager.stats().loads_in_flight,
        0,
        "shutdown waited for the load thread"
    );
    assert_eq!(a.live() + b.live(), 0);
    assert_eq!(
        manager.acquire(&key("a")).expect_err("closed"),
        ManagerError::ShuttingDown
    );
    assert!(
        manager.shutdown(Duration::from_secs(1)).is_empty(),
        "second call is a no-op"
    );
}

#[test]
fn shutdown_waits_for_leases_within_the_grace() {
    let loader = TestLoader::new(1);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let manager = Arc::new(manager);
    let lease = manager.acquire(&key("stt")).expect("loads");
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        drop(lease);
    });
    let report = manager.shutdown(Duration::from_secs(10));
    releaser.join().expect("no panic");
    assert_eq!(report.unloaded.len(), 1, "the lease ended within the grace");
    assert_eq!(loader.live(), 0);
}

#[test]
fn shutdown_past_the_grace_defers_leased_models_to_their_release() {
    let loader = TestLoader::new(1);
    let (manager, _clock) = manual_manager(ManagerConfig::default(), &[("stt", &loader)]);
    let lease = manager.acquire(&key("stt")).expect("loads");
    let report = manager.shutdown(Duration::from_millis(20));
    assert_eq!(report.deferred, vec![key("stt")]);
    assert_eq!(loader.live(), 1);
    drop(lease);
    assert_eq!(loader.live(), 0, "unloaded when the last lease ended");
}

#[test]
fn manager_and_lease_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<model_manager::ModelManager>();
    assert_send_sync::<model_manager::Lease>();
}

#[test]
fn while_unloaded_refuses_a_loaded_leased_or_loading_model_and_blocks_loads_while_it_runs() {
    let loader = TestLoader::new(100);
    let (manager, _clock) =
        manual_manager(with_strategy(Strategy::AlwaysLoaded), &[("stt", &loader)]);
    let manager = Arc::new(manager);
    assert_eq!(manager.while_unloaded(&key("stt"), || 7), Ok(7));

    let lease = manager.acquire(&key("stt")).expect("loads");
    match manager.while_unloaded(&key("stt"), || ()) {
        Err(ManagerError::InUse { state, leases, .. }) => {
            assert_eq!((state, leases), (ModelState::Loaded, 1));
        }
        other => panic!("expected InUse, got {other:?}"),
    }
    drop(lease);
    let refused = manager.while_unloaded(&key("stt"), || ());
    assert!(
        matches!(
            &refused,
            Err(ManagerError::InUse {
                state: ModelState::Loaded,
                leases: 0,
                ..
            })
        ),
        "{refused:?}"
    );
    assert!(refused
        .expect_err("in use")
        .to_string()
        .contains("unload it first"));
    manager.unload(&key("stt")).expect("unload");

    let gate = loader.hold_next(false);
    manager.warm(&key("stt")).expect("warm");
    assert!(matches!(
        manager.while_unloaded(&key("stt"), || ()),
        Err(ManagerError::InUse {
            state: ModelState::Loading,
            ..
        })
    ));
    gate.open();
    eventually("loaded", || state(&manager, "stt") == ModelState::Loaded);
    manager.unload(&key("stt")).expect("unload");

    // A request that arrives while the work runs waits until it is done.
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let worker = {
        let manager = manager.clone();
        std::thread::spawn(move || {
            manager
                .while_unloaded(&key("stt"), || {
                    entered_tx.send(()).expect("send");
                    release_rx.recv().expect("release");
                })
                .expect("idle")
        })
    };
    entered_rx.recv().expect("entered");
    let loads_before = loader.loads();
    let requester = {
        let manager = manager.clone();
        std::thread::spawn(move || manager.acquire(&key("stt")).map(drop))
    };
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(
        loader.loads(),
        loads_before,
        "no load starts while the work runs"
    );
    release_tx.send(()).expect("release");
    worker.join().expect("worker");
    requester
        .join()
        .expect("requester")
        .expect("loads afterwards");
    assert_eq!(loader.loads(), loads_before + 1);
}

#[test]
fn a_load_past_its_timeout_fails_clearly_and_its_late_result_is_dropped() {
    let loader = TestLoader::new(100);
    let config = ManagerConfig {
        load_timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let (manager, clock) = manual_manager(config, &[("stt", &loader)]);
    let manager = Arc::new(manager);
    // An engine that hangs and ignores its cancel token.
    let gate = loader.hold_next(false);
    let waiter = {
        let manager = manager.clone();
        std::thread::spawn(move || manager.acquire(&key("stt")).map(drop))
    };
    gate.wait_for_waiters(1);
    clock.advance(Duration::from_secs(29));
    manager.run_idle_check();
    assert_eq!(
        manager.status().models[0].state,
        ModelState::Loading,
        "not yet"
    );
    clock.advance(Duration::from_secs(1));
    manager.run_idle_check();
    let error = waiter.join().expect("thread").expect_err("timed out");
    assert!(error.to_string().contains("load timeout (30 s)"), "{error}");
    let status = manager.status();
    assert_eq!(status.models[0].state, ModelState::Failed);
    assert_eq!(status.models[0].resident_bytes, None);
    // The engine returns at last: its model is dropped at once, never installed.
    gate.open();
    eventually("late load discarded", || {
        manager.stats().loads_discarded == 1
    });
    assert_eq!(loader.live(), 0);
    assert_eq!(manager.status().models[0].state, ModelState::Failed);
    // The next request loads afresh.
    let lease = manager.acquire(&key("stt")).expect("loads");
    assert_eq!(loader.live(), 1);
    drop(lease);
}

#[test]
fn a_cancel_aware_load_stops_when_its_timeout_passes() {
    let loader = TestLoader::new(100);
    let config = ManagerConfig {
        load_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let (manager, clock) = manual_manager(config, &[("stt", &loader)]);
    let gate = loader.hold_next(true);
    manager.warm(&key("stt")).expect("warms");
    gate.wait_for_waiters(1);
    clock.advance(Duration::from_secs(5));
    manager.run_idle_check();
    // The token is set: the loader gives up without the gate ever opening.
    eventually("the load thread ended", || {
        manager.stats().loads_in_flight == 0
    });
    assert_eq!(loader.live(), 0);
    let status = manager.status();
    assert_eq!(status.models[0].state, ModelState::Failed);
    assert!(status.models[0]
        .last_error
        .as_ref()
        .is_some_and(|e| e.to_string().contains("load timeout")));
    assert!(ManagerConfig {
        load_timeout: Duration::ZERO,
        ..Default::default()
    }
    .validate()
    .is_err());
}

#[test]
fn an_abandoned_load_still_running_counts_against_the_memory_budget() {
    let stt = TestLoader::new(100);
    let sam = TestLoader::new(100);
    let config = ManagerConfig {
        memory_budget_bytes: Some(150),
        load_timeout: Duration::from_secs(5),
        ..Default::default()
    };
    let (manager, clock) = manual_manager(config, &[("stt", &stt), ("sam", &sam)]);
    // stt's engine hangs, ignoring its token, and the load times out.
    let gate = stt.hold_next(false);
    manager.warm(&key("stt")).expect("warms");
    gate.wait_for_waiters(1);
    clock.advance(Duration::from_secs(5));
    manager.run_idle_check();
    assert_eq!(manager.status().models[0].state, ModelState::Failed);
    // Its 100 bytes are still in memory somewhere: sam (100 more) does not fit the budget.
    let refused = manager.acquire(&key("sam")).expect_err("over budget");
    assert!(
        matches!(refused, ManagerError::MemoryBudgetExceeded { ref blocked_by, .. } if blocked_by == &[key("stt")]),
        "{refused}"
    );
    // Once the engine returns and its model is dropped, sam fits.
    gate.open();
    eventually("late load discarded", || {
        manager.stats().loads_discarded == 1
    });
    let lease = manager.acquire(&key("sam")).expect("fits now");
    drop(lease);
}
