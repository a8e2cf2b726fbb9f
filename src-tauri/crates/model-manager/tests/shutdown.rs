//! Shutdown joins the idle-checker thread. Alone in its own test binary so that no other
//! test's checker thread blurs the thread count.

mod support;

use std::sync::Arc;
use std::time::Duration;

use model_manager::{ManagerConfig, ModelLoader, ModelManager, ModelSpec};
use support::{key, TestLoader};

/// Threads of this process whose name starts with `prefix` (Linux only).
fn threads_named(prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[test]
fn shutdown_joins_the_checker_thread_and_unloads() {
    let before = threads_named("dormouse-idle");
    let loader = TestLoader::new(1);
    let dyn_loader: Arc<dyn ModelLoader> = loader.clone();
    let manager = ModelManager::builder()
        .config(ManagerConfig::default())
        .register(key("stt"), dyn_loader, ModelSpec::new("base"))
        .build()
        .expect("builds");
    drop(manager.acquire(&key("stt")).expect("loads"));
    if cfg!(target_os = "linux") {
        // The thread names itself once it runs, which a loaded machine may delay.
        support::eventually("the checker thread runs", || {
            threads_named("dormouse-idle") == before + 1
        });
    }
    let report = manager.shutdown(Duration::from_secs(5));
    assert_eq!(report.unloaded.len(), 1);
    assert_eq!(loader.live(), 0);
    if cfg!(target_os = "linux") {
        assert_eq!(
            threads_named("dormouse-idle"),
            before,
            "joined, not left running"
        );
    }
}
