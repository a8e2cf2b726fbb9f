//! Deleting an installed model's files (a catalog model's file or folder, or a user model),
//! refused while the core has the model loaded, loading or leased.

use std::path::Path;

use model_manager::ModelState;
use serde::{Deserialize, Serialize};
use specta::Type;

use super::info::disk_bytes;
use super::ModelLibrary;
use crate::catalog;
use crate::error::{CommandError, CommandResult};
use crate::user_models::UserModelId;

/// What [`ModelLibrary::delete_model`] removed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
pub struct DeletedModel {
    /// The model's id.
    pub id: String,
    /// Its name.
    pub display_name: String,
    /// Disk space given back.
    pub freed_bytes: u64,
}

impl ModelLibrary {
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
        let active = self
            .settings
            .read(|s| s.active_user_models.get(meta.task) == Some(&uid));
        let remove = || self.user_models.remove(&uid, meta.task);
        if active {
            self.core
                .while_unloaded(&slot.key(), remove)
                .map_err(|e| in_use(&meta.display_name, e))??;
            self.settings
                .update(|s| s.active_user_models.set(meta.task, None))?;
            self.apply_spec(slot)?;
            self.settings.notify_changed();
        } else {
            remove()?;
        }
        Ok(DeletedModel {
            id: uid.model_id(),
            display_name: meta.display_name,
            freed_bytes: meta.file_bytes,
        })
    }
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

fn remove_model_path(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}
