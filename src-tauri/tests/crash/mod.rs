//! Kill -9 at random moments, in real processes: the test binary starts itself as a child
//! that writes in a loop (settings, model imports, fine-tune saves), kills it with SIGKILL after a random
//! delay, then checks what is on disk is the old or the new state, never a broken one, and
//! that the app still starts on it. Figures (kills, what was found) are printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use std::collections::HashMap;

use dormouse_lib::catalog::Task;
use dormouse_lib::managers::settings::SettingsStore;
use dormouse_lib::user_models::{TrainingRecord, UserModels};
use engines::segmentation::training::write_tuned_weights;

use super::support::{sam_tiny_weights, TestApp};

const CHILD_ENV: &str = "DORMOUSE_CRASH_CHILD";
const DIR_ENV: &str = "DORMOUSE_CRASH_DIR";
const KILLS: usize = 50;

/// The child's side: does nothing in a normal run; as a child, writes until killed.
#[test]
fn crash_child() {
    let (Ok(kind), Ok(dir)) = (std::env::var(CHILD_ENV), std::env::var(DIR_ENV)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    match kind.as_str() {
        "settings" => {
            let (store, _) = SettingsStore::open(dir.join("config/settings.json"));
            for i in 0u32.. {
                let _ = store.update(|s| {
                    s.memory.custom_timeout_secs = 60 + (i % 1000);
                    s.show_memory_usage = i % 2 == 0;
                });
            }
        }
        "import" => {
            let models = UserModels::new(&dir.join("models"));
            let source = dir.join("source.bin");
            loop {
                let _ = models.import(&source, Task::Transcription, "Crash test");
            }
        }
        "fine_tune" => {
            // Saving a fine-tune through the training manager's own save.
            let models = UserModels::new(&dir.join("models"));
            let base = dir.join("base.safetensors");
            loop {
                let _ = models.add_fine_tune("Crash test", record(), |out| {
                    write_tuned_weights(&base, &HashMap::new(), out)
                });
            }
        }
        other => panic!("unknown child {other}"),
    }
}

fn record() -> TrainingRecord {
    TrainingRecord {
        base_model: "sam-tiny".into(),
        pairs: 4,
        validation_pairs: 1,
        steps: 3,
        learning_rate: 1e-4,
        iou_before: 0.5,
        iou_after: 0.6,
        validation_iou: Some([0.5, 0.6]),
        duration_ms: 1000,
    }
}

/// A pseudo-random delay in 0..max_ms (xorshift on the iteration; no rand dependency).
fn delay(i: usize, max_ms: u64) -> Duration {
    let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    Duration::from_micros(x % (max_ms * 1000))
}

/// Starts the child writing `kind` into `dir` and SIGKILLs it after `wait`.
fn run_and_kill(kind: &str, dir: &Path, wait: Duration) {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args([
            "--exact",
            "crash::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, kind)
        .env(DIR_ENV, dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("child starts");
    std::thread::sleep(wait);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
}

fn leftovers(dir: &Path, suffixes: &[&str]) -> usize {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                suffixes.iter().any(|s| name.ends_with(s))
            })
            .count()
    })
}

#[test]
fn settings_survive_kill_9_at_any_moment() {
    let dir = tempfile::tempdir().expect("temp");
    let config = dir.path().join("config");
    let path = config.join("settings.json");
    let mut last = None;
    let mut temps = 0;
    for i in 0..KILLS {
        let wait = Duration::from_millis(40) + delay(i, 120);
        run_and_kill("settings", dir.path(), wait);
        temps += leftovers(&config, &[".tmp"]);
        let (store, warning) = SettingsStore::open(path.clone());
        assert!(warning.is_none(), "kill {i}: settings broken: {warning:?}");
        let now = store.get();
        assert!(now.validate().is_ok(), "kill {i}: {now:?}");
        assert_eq!(leftovers(&config, &[".tmp"]), 0, "swept on open");
        last = Some(now);
    }
    println!(
        "settings: {KILLS} kills, every restart read a complete file (last custom timeout {} s); {temps} temp files of interrupted writes found, each swept by the next open",
        last.map_or(0, |s| s.memory.custom_timeout_secs)
    );
    let app = TestApp::start(dir.path(), &[]);
    let settings: serde_json::Value = app.ok("get_settings", serde_json::json!({}));
    assert_eq!(
        settings["notices"],
        serde_json::json!([]),
        "started cleanly"
    );
}

#[test]
fn imports_survive_kill_9_at_any_moment() {
    let dir = tempfile::tempdir().expect("temp");
    let source = dir.path().join("source.bin");
    let body: Vec<u8> = (0..(4u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&source, &body).expect("source");
    let models = UserModels::new(&dir.path().join("models"));
    let user = dir.path().join("models/user");
    let mut listed = 0;
    for i in 0..KILLS {
        let wait = Duration::from_millis(40) + delay(i, 120);
        run_and_kill("import", dir.path(), wait);
        // Every model listed is whole: its weights are the source, byte for byte.
        for meta in models.list() {
            let path = models.weights_path(&meta.id, Task::Transcription);
            let weights = std::fs::read(&path).expect("weights of a listed model");
            assert!(weights == body, "kill {i}: {} is damaged", meta.id.as_str());
            assert_eq!(meta.file_bytes, body.len() as u64);
        }
        listed = models.list().len();
    }
    let debris = leftovers(&user, &[".partial", ".tmp", ".claim"]);
    println!(
        "imports: {KILLS} kills, {listed} complete models listed, none damaged; {debris} partial, temp or claim files left by the kills (never listed; swept at the next start)"
    );
    // The app starts on it, sweeps the debris and keeps every complete model.
    let _app = TestApp::start(dir.path(), &[]);
    assert_eq!(models.list().len(), listed, "nothing complete was lost");
    assert_only_listed_models_left(&models, &user, Task::Transcription);
    // A fresh import still works beside it.
    models
        .import(&source, Task::Transcription, "After the crashes")
        .expect("import after crashes");
}

#[test]
fn fine_tune_saves_survive_kill_9_at_any_moment() {
    let dir = tempfile::tempdir().expect("temp");
    let base = dir.path().join("base.safetensors");
    std::fs::copy(sam_tiny_weights(), &base).expect("base weights");
    // What every complete save must be, byte for byte (the writer is deterministic).
    let mut expected = Vec::new();
    write_tuned_weights(&base, &HashMap::new(), &mut expected).expect("reference");
    let models = UserModels::new(&dir.path().join("models"));
    let user = dir.path().join("models/user");
    let (mut listed, mut saved) = (0, 0);
    for i in 0..KILLS {
        // A save of these weights takes a few hundred ms: the kills land before, during and
        // between saves.
        let wait = Duration::from_millis(60) + delay(i, 900);
        run_and_kill("fine_tune", dir.path(), wait);
        for meta in models.list() {
            let path = models.weights_path(&meta.id, Task::Segmentation);
            let weights = std::fs::read(&path).expect("weights of a listed model");
            assert!(
                weights == expected,
                "kill {i}: {} is damaged ({} bytes, want {})",
                meta.id.as_str(),
                weights.len(),
                expected.len()
            );
            assert_eq!(meta.file_bytes, expected.len() as u64);
            assert_eq!(meta.training, Some(record()));
        }
        listed = models.list().len();
        saved += listed;
        // Checked whole: removed, so the folder stays small (each is a 39 MB file), except
        // after the last kill, whose models the app must start on and keep.
        if i + 1 < KILLS {
            for meta in models.list() {
                models.remove(&meta.id, Task::Segmentation).expect("remove");
            }
        }
    }
    let debris = leftovers(&user, &[".partial", ".tmp", ".claim"]);
    println!(
        "fine-tune saves: {KILLS} kills, {saved} complete saves found, none damaged; {debris} temp or claim files left by the kills (never listed; swept at the next start)"
    );
    assert!(
        saved > 0,
        "no save completed: the kills came too early to test anything"
    );
    let _app = TestApp::start(dir.path(), &[]);
    assert_eq!(models.list().len(), listed, "nothing complete was lost");
    // After the start-up sweep the folder holds the listed models' files and nothing else
    // (a writer's own temp names, such as `.tmpXXXXXX`, would show here).
    assert_only_listed_models_left(&models, &user, Task::Segmentation);
}

/// The user-models folder holds exactly the listed models' weights and records: no temp or
/// claim file, and no weights an interrupted add renamed into place before its record.
fn assert_only_listed_models_left(models: &UserModels, user: &Path, task: Task) {
    let kept: Vec<String> = models
        .list()
        .iter()
        .flat_map(|m| {
            let weights = models.weights_path(&m.id, task);
            let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
            [name(&weights), Some(format!("{}.json", m.id.as_str()))]
        })
        .flatten()
        .collect();
    let present: Vec<String> = std::fs::read_dir(user)
        .expect("user models")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let stray: Vec<&String> = present.iter().filter(|n| !kept.contains(n)).collect();
    let missing: Vec<&String> = kept.iter().filter(|n| !present.contains(n)).collect();
    assert!(
        stray.is_empty() && missing.is_empty(),
        "only complete models are left: stray {stray:?}, missing {missing:?}"
    );
}
