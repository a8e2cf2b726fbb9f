//! [`ModelsManager`] owns everything about *which* model fills each slot and *how* memory is
//! managed: it builds the lifecycle core ([`ModelManager`]) with the real engines, resolves
//! each slot's spec from the settings (base model, chosen size, or the active user model),
//! takes leases for the other managers, imports and switches user models, applies the memory
//! settings, and turns the core's snapshots into views. Every decision about a model's state
//! is the core's; this owner only asks.
//!
//! Lock order: the settings store's lock is never held while calling the core (the core
//! takes its own lock inside each call), and `timings` / `notices` are leaf locks.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use engines::segmentation::{weights as sam_weights, SamLoader};
use engines::speech::{self, SpeechLoader};
use engines::vad::VadLoader;
use model_manager::{
    Lease, ManagerEvent, ModelLoader, ModelManager, ModelSpec, ModelState, DEFAULT_SHUTDOWN_GRACE,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::catalog::{self, Engine, Slot, Task};
use crate::error::{CommandError, CommandResult};
use crate::managers::settings::{
    EnvOverrides, MemorySettings, Settings, SettingsStore, SettingsWarning,
};
use crate::paths::AppPaths;
use crate::user_models::{TrainingRecord, UserModelId, UserModelMeta, UserModels};
pub use crate::views::RequestTimings;
use crate::views::{micros, ModelStatusView, StatusView, UnloadSummary, Views};

/// Static and on-disk facts about a model; answering never loads anything.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct ModelInfo {
    /// `whisper-base`, `sam-tiny`, ... or `user:<id>`.
    pub id: String,
    /// The slot it loads into.
    pub slot: Slot,
    /// Its name for people.
    pub display_name: String,
    /// How it runs.
    pub engine: Engine,
    /// Whether the user imported or trained it.
    pub is_user_model: bool,
    /// Its weights file.
    pub path: String,
    /// Whether that file is there.
    pub installed: bool,
    /// Size of the file.
    pub file_bytes: Option<u64>,
    /// Memory once loaded: measured in this session if it has been loaded, else the catalog's figure.
    pub memory_bytes: Option<u64>,
    /// Whether that memory figure was measured here.
    pub memory_measured: bool,
    /// Languages it handles.
    pub languages: String,
    /// Licence of the weights.
    pub licence: String,
    /// What it is good for.
    pub good_for: String,
    /// Whether it is the model its task uses now.
    pub active: bool,
    /// Where it can be downloaded from (`None`: installed by the setup script, or a user model).
    pub download: Option<DownloadOffer>,
    /// Bytes of an interrupted download kept for resuming (the next download continues there).
    pub partial_bytes: Option<u64>,
    /// How it was trained, for a custom model trained in Dormouse.
    pub training: Option<TrainingRecord>,
}

/// A catalog model's download, as the models page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct DownloadOffer {
    /// The URL.
    pub url: String,
    /// Exact size, where the publisher lists it.
    pub bytes: Option<u64>,
    /// Who publishes it.
    pub publisher: String,
    /// Unpacked from an archive into a folder.
    pub archive: bool,
}

/// What [`ModelsManager::delete_model`] removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct DeletedModel {
    /// The model's id.
    pub id: String,
    /// Its name.
    pub display_name: String,
    /// Disk space given back.
    pub freed_bytes: u64,
}

/// A message for the user that is shown once, quietly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The settings file was unusable and defaults were used.
    SettingsReset,
    /// The active user model's file was gone; the base model is used again.
    UserModelMissing,
    /// The active user model's file failed the check an import makes; the base model is
    /// used again.
    UserModelUnusable,
    /// An environment override was malformed and ignored.
    EnvIgnored,
}

/// A quiet notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Notice {
    /// What it is about.
    pub kind: NoticeKind,
    /// What to show.
    pub message: String,
}

/// The settings as the UI shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct SettingsView {
    /// The stored settings.
    pub settings: Settings,
    /// Environment variables overriding them in this session.
    pub env_overrides: EnvOverrides,
    /// Notices from startup (corrupt settings, vanished user model, bad environment).
    pub notices: Vec<Notice>,
    /// The settings file.
    pub settings_path: String,
    /// The models folder.
    pub models_dir: String,
}

/// The UI-only preferences `update_settings` changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SettingsPatch {
    /// Load the models used last time when the app starts.
    pub preload_on_startup: Option<bool>,
    /// Show memory figures in the badge.
    pub show_memory_usage: Option<bool>,
}

/// A lease on a slot's model plus when it was granted, for timing the request.
pub struct ModelUse {
    /// Keeps the model loaded until dropped.
    pub lease: Lease,
    slot: Slot,
    cold: bool,
    wait: Duration,
    granted: Instant,
}

type SettingsHook = Box<dyn Fn(&SettingsView) + Send + Sync>;

/// Owner of model choice and memory policy; see the module docs.
pub struct ModelsManager {
    core: Arc<ModelManager>,
    settings: SettingsStore,
    env: Mutex<EnvOverrides>,
    paths: AppPaths,
    user_models: UserModels,
    notices: Mutex<Vec<Notice>>,
    timings: Mutex<HashMap<Slot, RequestTimings>>,
    on_settings: OnceLock<SettingsHook>,
}

impl ModelsManager {
    /// Opens the settings, restores the active user models (clearing any whose file
    /// vanished, with a notice), and starts the lifecycle core with every slot registered
    /// (nothing is loaded unless preload is on).
    pub fn start(
        paths: AppPaths,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Arc<Self>> {
        std::fs::create_dir_all(&paths.models_dir)?;
        let (settings, warning) = SettingsStore::open(paths.settings_file());
        let env = EnvOverrides::read(&lookup);
        let user_models = UserModels::new(&paths.models_dir);
        crate::debris::sweep_unfinished_adds(&paths.models_dir.join("user"));
        crate::debris::sweep(
            &paths.models_dir.join("user"),
            crate::debris::is_write_debris,
        );
        let mut notices = Vec::new();
        if let Some(SettingsWarning { message, .. }) = warning {
            notices.push(Notice {
                kind: NoticeKind::SettingsReset,
                message,
            });
        }
        if let Some(error) = &env.error {
            notices.push(Notice {
                kind: NoticeKind::EnvIgnored,
                message: error.clone(),
            });
        }
        for task in Task::ALL {
            let Some(id) = settings.get().active_user_models.get(task).cloned() else {
                continue;
            };
            if let Some(notice) = user_model_problem(&user_models, &id, task) {
                notices.push(fall_back_to_base(&settings, task, notice));
            }
        }
        let config = env.apply(&settings.get());
        let mut builder = ModelManager::builder().config(config);
        for slot in Slot::ALL {
            let loader: Arc<dyn ModelLoader> = match slot {
                Slot::Transcription => Arc::new(SpeechLoader),
                Slot::Segmentation => Arc::new(SamLoader),
                Slot::Vad => Arc::new(VadLoader),
            };
            builder = builder.register(
                slot.key(),
                loader,
                spec_for(&paths, &user_models, &settings.get(), slot),
            );
        }
        let core = Arc::new(builder.build()?);
        Ok(Arc::new(Self {
            core,
            settings,
            env: Mutex::new(env),
            paths,
            user_models,
            notices: Mutex::new(notices),
            timings: Mutex::new(HashMap::new()),
            on_settings: OnceLock::new(),
        }))
    }

    /// Calls `hook` with the new view whenever the settings change.
    pub fn on_settings_changed(&self, hook: impl Fn(&SettingsView) + Send + Sync + 'static) {
        let _ = self.on_settings.set(Box::new(hook));
    }

    /// The core's events, for forwarding.
    pub fn subscribe(&self) -> Receiver<ManagerEvent> {
        self.core.subscribe()
    }

    /// The lifecycle core (for tests and diagnostics).
    pub fn core(&self) -> &ModelManager {
        &self.core
    }

    /// The settings store (for tests and diagnostics).
    pub fn settings_store(&self) -> &SettingsStore {
        &self.settings
    }

    /// The folders in use.
    pub fn paths(&self) -> &AppPaths {
        &self.paths
    }

    /// A lease on `slot`'s model, loading it if needed; counts as activity and records the
    /// slot as recently used. A missing weights file is a clear error before any load.
    pub fn use_model(&self, slot: Slot) -> CommandResult<ModelUse> {
        self.ensure_installed(slot)?;
        let key = slot.key();
        let cold = !self.core.is_loaded(&key);
        let started = Instant::now();
        let lease = self.core.acquire(&key)?;
        let wait = started.elapsed();
        self.note_recent(slot);
        Ok(ModelUse {
            lease,
            slot,
            cold,
            wait,
            granted: Instant::now(),
        })
    }

    /// Records how a request went (shown as "last warm request" in the cost panel) and ends
    /// its lease.
    pub fn finish_use(&self, used: ModelUse) -> RequestTimings {
        let timings = RequestTimings {
            wait_us: micros(used.wait),
            cold: used.cold,
            inference_us: micros(used.granted.elapsed()),
        };
        self.timings.lock().insert(used.slot, timings);
        drop(used.lease);
        timings
    }

    /// Starts loading `task`'s model(s) now because the user showed intent (started
    /// recording, opened an image). Returns at once.
    pub fn warm(&self, task: Task) -> CommandResult<()> {
        self.ensure_installed(task.slot())?;
        self.core.warm(&task.slot().key())?;
        if task == Task::Transcription && self.ensure_installed(Slot::Vad).is_ok() {
            self.core.warm(&Slot::Vad.key())?;
        }
        Ok(())
    }

    fn note_recent(&self, slot: Slot) {
        if slot == Slot::Vad || self.settings.get().recently_used.first() == Some(&slot) {
            return;
        }
        let result = self.settings.update(|s| {
            s.recently_used.retain(|&x| x != slot);
            s.recently_used.insert(0, slot);
        });
        if let Err(error) = result {
            tracing::warn!(%error, "could not record recently used model");
        }
    }

    /// Errors with [`CommandError::ModelNotInstalled`] when the slot's weights file is missing.
    /// An active user model whose file vanished or fails its check (checked again before each
    /// load, not while it is loaded) hands its task back to the base model first, with a
    /// notice, as at start-up.
    pub fn ensure_installed(&self, slot: Slot) -> CommandResult<()> {
        if let Some(task) = slot.task() {
            if let Some(id) = self.settings.get().active_user_models.get(task).cloned() {
                let loaded = self.core.is_loaded(&slot.key());
                // A loaded model passed the check when it loaded; only its file's presence
                // is looked at then.
                let problem = if loaded && self.user_models.weights_path(&id, task).is_file() {
                    None
                } else {
                    user_model_problem(&self.user_models, &id, task)
                };
                if let Some(notice) = problem {
                    let notice = fall_back_to_base(&self.settings, task, notice);
                    self.notices.lock().push(notice);
                    self.apply_spec(slot)?;
                    self.settings_changed();
                }
            }
        }
        let spec = spec_for(&self.paths, &self.user_models, &self.settings.get(), slot);
        match spec.path.as_deref() {
            Some(path) if path.exists() => Ok(()),
            path => {
                let path = path.map(|p| p.display().to_string()).unwrap_or_default();
                let name = crate::views::display_name(&spec.id, |id| self.user_name(id));
                Err(CommandError::ModelNotInstalled {
                    model_id: spec.id.to_string(),
                    message: format!(
                        "{name} is not installed: its file {path} is missing. Download it (here or on the Models page), import a model file on the Models page, or run the README's setup command."
                    ),
                    expected_path: path,
                })
            }
        }
    }

    /// Chooses the base model of `task` (e.g. the segmentation size), makes it active (a
    /// user model stops being active) and starts loading it. Nothing changes on error.
    pub fn set_model(&self, task: Task, model_id: &str) -> CommandResult<ModelStatusView> {
        let entry = catalog::entry(model_id)
            .filter(|e| e.slot == task.slot())
            .ok_or_else(|| {
                CommandError::unknown_model(
                    model_id,
                    format!("{model_id:?} is not a {} model", task.label()),
                )
            })?;
        let path = self.paths.model_file(entry.file_name);
        if !path.exists() {
            return Err(CommandError::ModelNotInstalled {
                model_id: model_id.into(),
                expected_path: path.display().to_string(),
                message: format!(
                    "{} is not installed: {} is missing",
                    entry.display_name,
                    path.display()
                ),
            });
        }
        // A damaged file or an incomplete model folder is refused before it becomes active.
        if task == Task::Transcription {
            speech::inspect_any(&path)?;
        }
        self.settings.update(|s| {
            s.models.set(task, model_id);
            s.active_user_models.set(task, None);
        })?;
        self.apply_spec(task.slot())?;
        self.core.warm(&task.slot().key())?;
        self.settings_changed();
        self.model_view(task.slot())
    }

    /// Validates user model `id` and loads it into its task's slot, where it becomes the
    /// active model (persisted). A wrong, corrupt or vanished file is an error and the
    /// previous model stays active.
    pub fn load_user_model(&self, id: &str) -> CommandResult<ModelStatusView> {
        let id = UserModelId::new(id)?;
        let meta = self.user_models.get(&id).ok_or_else(|| {
            CommandError::unknown_model(
                id.as_str(),
                format!(
                    "there is no user model {:?} in {}",
                    id.as_str(),
                    self.paths.models_dir.join("user").display()
                ),
            )
        })?;
        let path = self.user_models.weights_path(&id, meta.task);
        validate_weights(&path, meta.task)?;
        let slot = meta.task.slot();
        let key = slot.key();
        let previous = self.current_spec(slot);
        let spec = ModelSpec::with_path(id.model_id(), path);
        self.core.set_spec(&key, spec)?;
        match self.core.acquire(&key) {
            Ok(lease) => drop(lease),
            Err(error) => {
                self.core.set_spec(&key, previous)?;
                return Err(error.into());
            }
        }
        self.settings
            .update(|s| s.active_user_models.set(meta.task, Some(id.clone())))?;
        self.note_recent(slot);
        self.settings_changed();
        self.model_view(slot)
    }

    /// Makes `task` use its base model again (loaded lazily, on next use).
    pub fn reset_to_base_model(&self, task: Task) -> CommandResult<ModelStatusView> {
        self.settings
            .update(|s| s.active_user_models.set(task, None))?;
        self.apply_spec(task.slot())?;
        self.settings_changed();
        self.model_view(task.slot())
    }

    /// Validates a user's weights file (Whisper GGML or SAM safetensors), copies it into the
    /// models folder and describes it. It is not made active.
    pub fn import_model(
        &self,
        source: &Path,
        display_name: Option<&str>,
    ) -> CommandResult<ModelInfo> {
        if !source.is_file() {
            return Err(CommandError::FileNotFound {
                path: source.display().to_string(),
                message: format!("{} does not exist or is not a file", source.display()),
            });
        }
        let task = detect_task(source)?;
        let name = display_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                source.file_stem().map_or_else(
                    || "Custom model".into(),
                    |s| s.to_string_lossy().into_owned(),
                )
            });
        let meta = self.user_models.import(source, task, &name)?;
        Ok(self.user_info(&meta))
    }

    /// Saves a fine-tuned Segment Anything model (see [`UserModels::add_fine_tune`]). It is
    /// not made active (see [`Self::load_user_model`]).
    pub fn add_fine_tune(
        &self,
        display_name: &str,
        record: TrainingRecord,
        write_weights: impl FnOnce(&mut dyn std::io::Write) -> Result<u64, engines::EngineError>,
    ) -> CommandResult<UserModelMeta> {
        self.user_models
            .add_fine_tune(display_name, record, write_weights)
    }

    /// Deletes an installed model's files (a catalog model's file or folder, or a user
    /// model). Refused while the model is loaded, loading or leased; the core guarantees no
    /// load of it starts while the files go. A deleted active base model shows as "not
    /// installed" (its task asks for it again); a deleted active user model hands its task
    /// back to the base model.
    pub fn delete_model(&self, id: &str) -> CommandResult<DeletedModel> {
        if let Some(user) = id.strip_prefix("user:") {
            return self.delete_user_model(user);
        }
        let entry = catalog::known(id)?;
        let path = self.paths.models_dir.join(entry.file_name);
        if !path.exists() && self.paths.bundled_file(entry.file_name).is_some() {
            return Err(CommandError::InvalidInput {
                message: format!(
                    "{} comes with Dormouse and cannot be deleted",
                    entry.display_name
                ),
            });
        }
        let freed_bytes = disk_bytes(&path).ok_or_else(|| CommandError::FileNotFound {
            path: path.display().to_string(),
            message: format!(
                "{} is not installed: {} does not exist",
                entry.display_name,
                path.display()
            ),
        })?;
        let remove = || remove_model_path(&path);
        let removed = if *self.current_spec(entry.slot).id == *entry.id {
            self.core
                .while_unloaded(&entry.slot.key(), remove)
                .map_err(|e| in_use(entry.display_name, e))?
        } else {
            remove()
        };
        removed.map_err(|e| {
            CommandError::internal(format!("could not delete {}: {e}", path.display()))
        })?;
        tracing::info!(id, path = %path.display(), freed_bytes, "model deleted");
        Ok(DeletedModel {
            id: id.into(),
            display_name: entry.display_name.into(),
            freed_bytes,
        })
    }

    fn delete_user_model(&self, raw: &str) -> CommandResult<DeletedModel> {
        let uid = UserModelId::new(raw)?;
        let meta = self.user_models.get(&uid).ok_or_else(|| {
            CommandError::unknown_model(
                format!("user:{raw}"),
                format!("there is no user model {raw:?}"),
            )
        })?;
        let slot = meta.task.slot();
        let active = self.settings.get().active_user_models.get(meta.task) == Some(&uid);
        let remove = || self.user_models.remove(&uid, meta.task);
        if active {
            self.core
                .while_unloaded(&slot.key(), remove)
                .map_err(|e| in_use(&meta.display_name, e))??;
            self.settings
                .update(|s| s.active_user_models.set(meta.task, None))?;
            self.apply_spec(slot)?;
            self.settings_changed();
        } else {
            remove()?;
        }
        Ok(DeletedModel {
            id: uid.model_id(),
            display_name: meta.display_name,
            freed_bytes: meta.file_bytes,
        })
    }

    /// Adds a quiet notice (shown in the settings view).
    pub fn add_notice(&self, kind: NoticeKind, message: String) {
        self.notices.lock().push(Notice { kind, message });
    }

    /// Applies new memory settings at once and saves them; the user's choice replaces an
    /// environment override of the idle timeout for the rest of the session.
    pub fn update_memory(&self, memory: MemorySettings) -> CommandResult<SettingsView> {
        memory.validate()?;
        let mut env = self.env.lock().clone();
        env.inactivity_timeout_secs = None;
        let mut next = self.settings.get();
        next.memory = memory.clone();
        self.core.update_config(env.apply(&next))?;
        if let Err(error) = self.settings.update(|s| s.memory = memory) {
            // Keep the core and the file in agreement.
            let _ = self
                .core
                .update_config(self.env.lock().apply(&self.settings.get()));
            return Err(error);
        }
        *self.env.lock() = env;
        self.settings_changed();
        Ok(self.settings_view())
    }

    /// Changes the UI preferences.
    pub fn update_settings(&self, patch: SettingsPatch) -> CommandResult<SettingsView> {
        self.settings.update(|s| {
            if let Some(v) = patch.preload_on_startup {
                s.preload_on_startup = v;
            }
            if let Some(v) = patch.show_memory_usage {
                s.show_memory_usage = v;
            }
        })?;
        // The preload list lives in the core's config: keep it current for the next start.
        let _ = self
            .core
            .update_config(self.env.lock().apply(&self.settings.get()));
        self.settings_changed();
        Ok(self.settings_view())
    }

    /// Unloads `slot` (or every model): leased ones when their request ends.
    pub fn unload(&self, slot: Option<Slot>) -> CommandResult<UnloadSummary> {
        let report = match slot {
            Some(slot) => self.core.unload(&slot.key())?,
            None => self.core.unload_all(),
        };
        Ok(self.views().unload_summary(&report))
    }

    /// Stops the idle checker and unloads everything (on quit).
    pub fn shutdown(&self) -> UnloadSummary {
        let report = self.core.shutdown(DEFAULT_SHUTDOWN_GRACE);
        self.views().unload_summary(&report)
    }

    /// The status snapshot as the UI sees it. Never loads anything.
    pub fn status(&self) -> StatusView {
        let mut view = self.views().status(&self.core.status());
        for model in &mut view.models {
            self.add_timings(model);
        }
        view
    }

    /// One model's view, from a core event.
    pub fn model_event_view(&self, status: &model_manager::ModelStatus) -> Option<ModelStatusView> {
        let mut view = self.views().model(status)?;
        self.add_timings(&mut view);
        Some(view)
    }

    fn add_timings(&self, view: &mut ModelStatusView) {
        view.last_request = self.last_request(view.slot);
    }

    /// The last request's timings per slot (the measured warm-request cost).
    pub fn last_request(&self, slot: Slot) -> Option<RequestTimings> {
        self.timings.lock().get(&slot).copied()
    }

    /// The model id `slot` holds or will load next (e.g. `whisper-base`, `user:<id>`).
    pub fn model_id(&self, slot: Slot) -> String {
        self.core
            .status()
            .model(&slot.key())
            .map(|m| m.model_id.to_string())
            .unwrap_or_default()
    }

    fn model_view(&self, slot: Slot) -> CommandResult<ModelStatusView> {
        self.status()
            .models
            .into_iter()
            .find(|m| m.slot == slot)
            .ok_or_else(|| CommandError::internal(format!("{slot:?} has no status")))
    }

    /// Catalog and on-disk facts about `id` (a catalog id or `user:<id>`). Never loads, never
    /// counts as activity.
    pub fn info(&self, id: &str) -> CommandResult<ModelInfo> {
        if let Some(user) = id.strip_prefix("user:") {
            let uid = UserModelId::new(user)?;
            let meta = self.user_models.get(&uid).ok_or_else(|| {
                CommandError::unknown_model(id, format!("there is no user model {user:?}"))
            })?;
            return Ok(self.user_info(&meta));
        }
        let entry = catalog::known(id)?;
        Ok(self.base_info(entry))
    }

    /// Every base model and user model, with which is active.
    pub fn list(&self) -> Vec<ModelInfo> {
        let mut all: Vec<ModelInfo> = catalog::CATALOG.iter().map(|e| self.base_info(e)).collect();
        all.extend(self.user_models.list().iter().map(|m| self.user_info(m)));
        all
    }

    fn measured(&self, slot: Slot, model_id: &str) -> Option<u64> {
        let status = self.core.status();
        let m = status.model(&slot.key())?;
        (&*m.model_id == model_id)
            .then(|| {
                m.resident_bytes
                    .or(m.last_unload.as_ref().map(|u| u.resident_bytes))
            })
            .flatten()
    }

    fn base_info(&self, e: &catalog::CatalogEntry) -> ModelInfo {
        let path = self.paths.model_file(e.file_name);
        let file_bytes = disk_bytes(&path);
        let measured = self.measured(e.slot, e.id);
        ModelInfo {
            id: e.id.into(),
            slot: e.slot,
            display_name: e.display_name.into(),
            engine: e.engine,
            is_user_model: false,
            path: path.display().to_string(),
            installed: file_bytes.is_some(),
            file_bytes,
            memory_bytes: measured.or(Some(u64::from(e.approx_memory_mib) << 20)),
            memory_measured: measured.is_some(),
            languages: e.languages.into(),
            licence: e.licence.into(),
            good_for: e.good_for.into(),
            active: *self.current_spec(e.slot).id == *e.id,
            partial_bytes: e
                .download
                .and_then(|_| std::fs::metadata(downloads::partial_path(&path)).ok())
                .map(|m| m.len())
                .filter(|&n| n > 0),
            download: e.download.map(|d| DownloadOffer {
                url: d.url.into(),
                bytes: d.bytes,
                publisher: d.publisher.into(),
                archive: d.archive,
            }),
            training: None,
        }
    }

    fn user_info(&self, meta: &UserModelMeta) -> ModelInfo {
        let slot = meta.task.slot();
        let model_id = meta.id.model_id();
        let measured = self.measured(slot, &model_id);
        ModelInfo {
            slot,
            display_name: meta.display_name.clone(),
            engine: match meta.task {
                Task::Transcription => Engine::WhisperCpp,
                Task::Segmentation => Engine::Candle,
            },
            is_user_model: true,
            path: self
                .user_models
                .weights_path(&meta.id, meta.task)
                .display()
                .to_string(),
            installed: true,
            file_bytes: Some(meta.file_bytes),
            memory_bytes: measured.or(Some(meta.file_bytes)),
            memory_measured: measured.is_some(),
            languages: String::new(),
            licence: "yours".into(),
            good_for: match &meta.training {
                Some(t) => format!(
                    "Your own {} model, trained on {} example{}",
                    meta.task.label(),
                    t.pairs,
                    if t.pairs == 1 { "" } else { "s" }
                ),
                None => format!("Your own {} model", meta.task.label()),
            },
            training: meta.training.clone(),
            active: *self.current_spec(slot).id == *model_id,
            download: None,
            partial_bytes: None,
            id: model_id,
        }
    }

    /// The settings with the environment overrides and notices.
    pub fn settings_view(&self) -> SettingsView {
        SettingsView {
            settings: self.settings.get(),
            env_overrides: self.env.lock().clone(),
            notices: self.notices.lock().clone(),
            settings_path: self.settings.path().display().to_string(),
            models_dir: self.paths.models_dir.display().to_string(),
        }
    }

    fn settings_changed(&self) {
        if let Some(hook) = self.on_settings.get() {
            hook(&self.settings_view());
        }
    }

    fn current_spec(&self, slot: Slot) -> ModelSpec {
        spec_for(&self.paths, &self.user_models, &self.settings.get(), slot)
    }

    fn apply_spec(&self, slot: Slot) -> CommandResult<()> {
        Ok(self.core.set_spec(&slot.key(), self.current_spec(slot))?)
    }

    fn user_name(&self, id: &str) -> Option<String> {
        let id = UserModelId::new(id).ok()?;
        self.user_models.get(&id).map(|m| m.display_name)
    }

    fn views(&self) -> Views<impl Fn(&str) -> Option<String> + '_> {
        Views {
            user_name: move |id: &str| self.user_name(id),
        }
    }
}

/// The spec a slot loads under `settings`: the active user model, else the chosen base model.
fn spec_for(paths: &AppPaths, users: &UserModels, settings: &Settings, slot: Slot) -> ModelSpec {
    let task = match slot {
        Slot::Transcription => Some(Task::Transcription),
        Slot::Segmentation => Some(Task::Segmentation),
        Slot::Vad => None,
    };
    if let Some(task) = task {
        if let Some(id) = settings.active_user_models.get(task) {
            return ModelSpec::with_path(id.model_id(), users.weights_path(id, task));
        }
    }
    let entry = task
        .and_then(|t| catalog::entry(settings.models.get(t)))
        .unwrap_or_else(|| catalog::default_for(slot));
    ModelSpec::with_path(entry.id, paths.model_file(entry.file_name))
}

/// Why user model `id` cannot serve `task`, as the notice to show, or `None` when it can:
/// its files are there and its weights pass the check an import makes.
fn user_model_problem(users: &UserModels, id: &UserModelId, task: Task) -> Option<Notice> {
    let path = users.weights_path(id, task);
    let Some(meta) = users.get(id).filter(|m| m.task == task) else {
        return Some(Notice {
            kind: NoticeKind::UserModelMissing,
            message: format!(
                "Your custom {} model \"{}\" was not found in {}; Dormouse uses the base model again.",
                task.label(),
                id.as_str(),
                path.display()
            ),
        });
    };
    let error = validate_weights(&path, task).err()?;
    Some(Notice {
        kind: NoticeKind::UserModelUnusable,
        message: format!(
            "Your custom {} model \"{}\" cannot be used ({}); Dormouse uses the base model again. Its file is still in {}.",
            task.label(),
            meta.display_name,
            error.message(),
            path.display()
        ),
    })
}

/// Makes `task` use its base model again because of `notice`, saving that if the settings
/// file can be written and keeping it for this session if not (never an error: the app must
/// start and serve requests either way). Returns the notice, with the saving problem added.
fn fall_back_to_base(settings: &SettingsStore, task: Task, mut notice: Notice) -> Notice {
    tracing::warn!(task = task.label(), reason = %notice.message, "active user model unusable; using the base model");
    if let Some(error) = settings.update_or_keep_unsaved(|s| s.active_user_models.set(task, None)) {
        notice.message.push_str(&format!(
            " This could not be saved ({}), so it applies until Dormouse quits.",
            error.message()
        ));
    }
    notice
}

/// Checks a weights file is a model for `task` before anything loads it.
fn validate_weights(path: &Path, task: Task) -> CommandResult<()> {
    match task {
        Task::Transcription => speech::inspect(path).map(drop)?,
        Task::Segmentation => sam_weights::inspect(path).map(drop)?,
    }
    Ok(())
}

/// Which task a user's weights file is for: a Whisper GGML file or SAM safetensors.
fn detect_task(path: &Path) -> CommandResult<Task> {
    let whisper = speech::inspect(path);
    if whisper.is_ok() {
        return Ok(Task::Transcription);
    }
    let sam = sam_weights::inspect(path);
    if sam.is_ok() {
        return Ok(Task::Segmentation);
    }
    let reason =
        |r: Result<_, engines::EngineError>| r.err().map(|e| e.to_string()).unwrap_or_default();
    Err(CommandError::InvalidModel {
        message: format!(
            "{} is neither a Whisper GGML model nor Segment Anything weights. As Whisper: {}. As SAM: {}.",
            path.display(),
            reason(whisper.map(drop)),
            reason(sam.map(drop))
        ),
    })
}

/// The "unload it first" refusal for a model in use.
fn in_use(name: &str, error: model_manager::ManagerError) -> CommandError {
    match error {
        model_manager::ManagerError::InUse { state, leases, .. } => {
            CommandError::InUse {
                message: if leases > 0 {
                    format!("{name} is in use right now; delete it when the current request has finished")
                } else {
                    format!(
                        "{name} is {}; unload it first (the Unload button), then delete it",
                        match state {
                            ModelState::Loading => "loading",
                            ModelState::Unloading => "being unloaded",
                            _ => "loaded",
                        }
                    )
                },
            }
        }
        other => other.into(),
    }
}

/// Bytes a model file or folder takes on disk; `None` when it is not there.
fn disk_bytes(path: &Path) -> Option<u64> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return Some(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).ok()?.filter_map(Result::ok) {
        total += disk_bytes(&entry.path()).unwrap_or(0);
    }
    Some(total)
}

fn remove_model_path(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}
