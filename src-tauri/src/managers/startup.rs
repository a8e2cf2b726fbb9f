//! Start-up: opening the settings, checking the active user models (a broken one hands its
//! task back to the base model with a notice; the app never refuses to start), building the
//! lifecycle core with the real engines, and the three owners that share it.

use std::sync::Arc;

use engines::segmentation::SamLoader;
use engines::speech::SpeechLoader;
use engines::vad::VadLoader;
use model_manager::{ModelLoader, ModelManager};

use crate::catalog::{Slot, Task};
use crate::managers::library::{self, ModelLibrary};
use crate::managers::settings::{
    self, EnvOverrides, Notice, NoticeKind, SettingsManager, SettingsStore, SettingsWarning,
};
use crate::managers::slots::SlotManager;
use crate::paths::AppPaths;
use crate::user_models::UserModels;

/// The owners of the settings, the models on disk and the slots, sharing one core.
pub struct Started {
    /// The settings.
    pub settings: Arc<SettingsManager>,
    /// The models on disk.
    pub library: Arc<ModelLibrary>,
    /// Which model fills each slot, and the requests' leases.
    pub slots: Arc<SlotManager>,
}

/// Opens the settings, restores the active user models (clearing any whose file vanished or
/// fails its check, with a notice), and starts the lifecycle core with every slot registered
/// (nothing is loaded unless preload is on).
pub fn start(paths: AppPaths, lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Started> {
    std::fs::create_dir_all(&paths.models_dir)?;
    let (store, warning) = SettingsStore::open(paths.settings_file());
    let env = EnvOverrides::read(&lookup);
    let user_models = UserModels::new(&paths.models_dir);
    let user_dir = paths.models_dir.join("user");
    crate::debris::sweep_unfinished_adds(&user_dir);
    crate::debris::sweep(&user_dir, crate::debris::is_write_debris);
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
        let Some(id) = store.read(|s| s.active_user_models.get(task).cloned()) else {
            continue;
        };
        if let Some(notice) = library::user_model_problem(&user_models, &id, task) {
            notices.push(settings::fall_back_to_base(&store, task, notice));
        }
    }
    let mut builder = ModelManager::builder().config(store.read(|s| env.apply(s)));
    for slot in Slot::ALL {
        let loader: Arc<dyn ModelLoader> = match slot {
            Slot::Transcription => Arc::new(SpeechLoader),
            Slot::Segmentation => Arc::new(SamLoader),
            Slot::Vad => Arc::new(VadLoader),
        };
        let spec = store.read(|s| library::spec_for(&paths, &user_models, s, slot));
        builder = builder.register(slot.key(), loader, spec);
    }
    let core = Arc::new(builder.build()?);
    let settings = Arc::new(SettingsManager::new(
        core.clone(),
        store,
        env,
        notices,
        paths.models_dir.clone(),
    ));
    let library = Arc::new(ModelLibrary::new(core.clone(), settings.clone(), paths));
    let slots = Arc::new(SlotManager::new(core, settings.clone(), library.clone()));
    Ok(Started {
        settings,
        library,
        slots,
    })
}
