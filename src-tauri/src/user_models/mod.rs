//! User models: the validated [`UserModelId`] (it can never name a path outside the models
//! folder), importing a user's weights file (validated first, then copied atomically into
//! `models/user/`), and listing what is there.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

mod id;
mod record;

pub use self::id::UserModelId;
pub use self::record::{TrainingRecord, UserModelMeta};
use crate::catalog::Task;
use crate::error::{CommandError, CommandResult};

/// The user models folder and what it holds.
#[derive(Clone, Debug)]
pub struct UserModels {
    dir: PathBuf,
}

impl UserModels {
    /// The folder `models/user`.
    pub fn new(models_dir: &Path) -> Self {
        Self {
            dir: models_dir.join("user"),
        }
    }

    /// Where the weights of `id` for `task` live.
    pub fn weights_path(&self, id: &UserModelId, task: Task) -> PathBuf {
        let ext = match task {
            Task::Transcription => "bin",
            Task::Segmentation => "safetensors",
        };
        self.dir.join(format!("{}.{ext}", id.as_str()))
    }

    fn meta_path(&self, id: &UserModelId) -> PathBuf {
        self.dir.join(format!("{}.json", id.as_str()))
    }

    /// The metadata of `id`, if the model (metadata and weights) is installed.
    pub fn get(&self, id: &UserModelId) -> Option<UserModelMeta> {
        let meta: UserModelMeta =
            serde_json::from_slice(&fs::read(self.meta_path(id)).ok()?).ok()?;
        (meta.id == *id && self.weights_path(id, meta.task).is_file()).then_some(meta)
    }

    /// Every installed user model, sorted by id. Entries with a missing weights file or
    /// unreadable metadata are skipped.
    pub fn list(&self) -> Vec<UserModelMeta> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<UserModelMeta> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id = UserModelId::new(name.strip_suffix(".json")?).ok()?;
                self.get(&id)
            })
            .collect();
        found.sort_by(|a, b| a.id.cmp(&b.id));
        found
    }

    /// Copies a validated weights file into the folder under a fresh id derived from
    /// `display_name`, writing both files atomically. `validate` ran before; the copy is
    /// checked against the original's size.
    pub fn import(
        &self,
        source: &Path,
        task: Task,
        display_name: &str,
    ) -> CommandResult<UserModelMeta> {
        let (_claim, id) = self.claim_new_id(display_name)?;
        let target = self.weights_path(&id, task);
        let bytes = copy_atomically(source, &target)?;
        let meta = UserModelMeta {
            id: id.clone(),
            task,
            display_name: display_name.to_owned(),
            source_file: source.display().to_string(),
            imported_at_ms: now_ms(),
            file_bytes: bytes,
            training: None,
        };
        self.record(&meta, &target)?;
        Ok(meta)
    }

    /// Saves a fine-tuned Segment Anything model under a fresh id derived from
    /// `display_name`: `write_weights` streams its safetensors (buffered) into the atomic
    /// temp file, which is checked as an import would check it before it is put in place
    /// (see [`Self::add_trained`]). The training manager saves through this, and the kill -9
    /// test interrupts exactly this.
    pub fn add_fine_tune(
        &self,
        display_name: &str,
        training: TrainingRecord,
        write_weights: impl FnOnce(&mut dyn Write) -> Result<u64, engines::EngineError>,
    ) -> CommandResult<UserModelMeta> {
        self.add_trained(
            Task::Segmentation,
            display_name,
            training,
            |file| {
                let mut out = BufWriter::with_capacity(1 << 20, file);
                let bytes = write_weights(&mut out)?;
                out.flush().map_err(|e| {
                    CommandError::internal(format!("cannot write the weights: {e}"))
                })?;
                Ok(bytes)
            },
            |written| {
                engines::segmentation::weights::inspect(written)?;
                Ok(())
            },
        )
    }

    /// Adds a model trained in Dormouse under a fresh id derived from `display_name`:
    /// `write` writes the weights into a temp file, `check` validates that complete file, and
    /// only then is it renamed into place (the atomic-file helper's `write_checked`) and its
    /// metadata written atomically. On any error nothing is left behind.
    pub fn add_trained(
        &self,
        task: Task,
        display_name: &str,
        training: TrainingRecord,
        write: impl FnOnce(&mut fs::File) -> CommandResult<u64>,
        check: impl FnOnce(&Path) -> CommandResult<()>,
    ) -> CommandResult<UserModelMeta> {
        let (_claim, id) = self.claim_new_id(display_name)?;
        let target = self.weights_path(&id, task);
        // The closures' own errors are kept whole; only I/O errors of the write itself are
        // described here.
        let failure = std::cell::RefCell::new(None);
        let mut bytes = 0;
        let written = crate::atomic_file::write_checked(
            &target,
            |file| match write(file) {
                Ok(n) => {
                    bytes = n;
                    Ok(())
                }
                Err(e) => {
                    *failure.borrow_mut() = Some(e);
                    Err(std::io::Error::other("the weights could not be written"))
                }
            },
            |temp| {
                check(temp).map_err(|e| {
                    *failure.borrow_mut() = Some(e);
                    std::io::Error::other("the written weights are not valid")
                })
            },
        );
        if let Err(e) = written {
            return Err(failure.into_inner().unwrap_or_else(|| {
                CommandError::internal(format!("cannot save {}: {e}", target.display()))
            }));
        }
        let meta = UserModelMeta {
            id,
            task,
            display_name: display_name.to_owned(),
            source_file: "trained in Dormouse".into(),
            imported_at_ms: now_ms(),
            file_bytes: bytes,
            training: Some(training),
        };
        self.record(&meta, &target)?;
        Ok(meta)
    }

    /// Writes `meta` atomically; on failure removes the model's weights (`target`) too.
    fn record(&self, meta: &UserModelMeta, target: &Path) -> CommandResult<()> {
        let json = serde_json::to_vec_pretty(meta).map_err(CommandError::internal)?;
        let written = crate::atomic_file::write_bytes(&self.meta_path(&meta.id), &json);
        if let Err(e) = written {
            let _ = fs::remove_file(target);
            return Err(CommandError::internal(format!(
                "cannot record the model {}: {e}",
                meta.id.as_str()
            )));
        }
        Ok(())
    }

    /// Deletes `id`'s metadata (so it stops being listed) and then its weights.
    pub fn remove(&self, id: &UserModelId, task: Task) -> CommandResult<()> {
        for path in [self.meta_path(id), self.weights_path(id, task)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(CommandError::internal(format!(
                        "could not delete {}: {e}",
                        path.display()
                    )))
                }
            }
        }
        Ok(())
    }

    /// Creates the folder if needed and claims a fresh id for a new model (the claim must live
    /// until the model's record is written).
    fn claim_new_id(
        &self,
        display_name: &str,
    ) -> CommandResult<(crate::id_reservation::ClaimedId, UserModelId)> {
        fs::create_dir_all(&self.dir).map_err(|e| {
            CommandError::internal(format!("cannot create {}: {e}", self.dir.display()))
        })?;
        let claim = self.claim_id(display_name)?;
        let id = UserModelId::new(claim.id())?;
        Ok((claim, id))
    }

    /// Claims a fresh id derived from `display_name` (`green-disks`, then `green-disks-2`,
    /// ...), so two imports or trainings at once never share an id or a temp file.
    fn claim_id(&self, display_name: &str) -> CommandResult<crate::id_reservation::ClaimedId> {
        let mut base: String = display_name
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        base = base.trim_matches('-').chars().take(40).collect();
        if base.is_empty() || UserModelId::new(&base).is_err() {
            base = "model".into();
        }
        crate::id_reservation::claim(
            &self.dir,
            |attempt| match attempt {
                0 => base.clone(),
                n => format!("{base}-{}", n + 1),
            },
            |candidate| {
                UserModelId::new(candidate).map_or(true, |id| {
                    self.meta_path(&id).exists()
                        || self.weights_path(&id, Task::Segmentation).exists()
                        || self.weights_path(&id, Task::Transcription).exists()
                })
            },
        )
        .map_err(|e| {
            CommandError::internal(format!(
                "could not pick an id in {}: {e}",
                self.dir.display()
            ))
        })
    }
}

/// Copies `source` into place atomically (see [`crate::atomic_file::copy`]).
fn copy_atomically(source: &Path, target: &Path) -> CommandResult<u64> {
    crate::atomic_file::copy(source, target).map_err(|e| {
        CommandError::internal(format!(
            "could not copy {} into the models folder: {e}",
            source.display()
        ))
    })
}

fn now_ms() -> u64 {
    crate::views::epoch_ms(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_the_folder() {
        for bad in [
            "",
            "../etc",
            "a/b",
            "..",
            ".hidden",
            "UPPER",
            "-x",
            "a b",
            "x\0y",
            &"a".repeat(65),
        ] {
            assert!(UserModelId::new(bad).is_err(), "{bad:?}");
        }
        for ok in ["cells", "leaf-v2", "a_1"] {
            assert_eq!(UserModelId::new(ok).expect("valid").as_str(), ok);
        }
        assert!(serde_json::from_str::<UserModelId>("\"../../x\"").is_err());
    }

    #[test]
    fn concurrent_imports_of_one_name_get_distinct_ids_and_intact_files() {
        let dir = tempfile::tempdir().expect("temp");
        let models = std::sync::Arc::new(UserModels::new(&dir.path().join("models")));
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let handles: Vec<_> = (0..8u8)
            .map(|n| {
                let (models, barrier) = (models.clone(), barrier.clone());
                let src = dir.path().join(format!("weights-{n}.bin"));
                fs::write(&src, vec![n; 256 * 1024]).expect("write");
                std::thread::spawn(move || {
                    barrier.wait();
                    let meta = models
                        .import(&src, Task::Transcription, "Same Name")
                        .expect("import");
                    (meta.id, n)
                })
            })
            .collect();
        let imported: Vec<(UserModelId, u8)> = handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect();
        let ids: std::collections::BTreeSet<&str> =
            imported.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids.len(), 8, "two imports shared an id: {ids:?}");
        for (id, n) in &imported {
            let bytes = fs::read(models.weights_path(id, Task::Transcription)).expect("weights");
            assert!(
                bytes.len() == 256 * 1024 && bytes.iter().all(|b| b == n),
                "{id:?} mixed up"
            );
        }
        assert_eq!(models.list().len(), 8);
    }

    #[test]
    fn import_copies_lists_and_dedupes_ids() {
        let dir = tempfile::tempdir().expect("temp");
        let src = dir.path().join("weights.bin");
        fs::write(&src, b"0123456789").expect("write");
        let models = UserModels::new(&dir.path().join("models"));
        let a = models
            .import(&src, Task::Transcription, "My Voice!")
            .expect("import");
        let b = models
            .import(&src, Task::Transcription, "My Voice!")
            .expect("import");
        assert_eq!(a.id.as_str(), "my-voice");
        assert_eq!(b.id.as_str(), "my-voice-2");
        assert_eq!(models.list().len(), 2);
        assert_eq!(
            fs::read(models.weights_path(&a.id, Task::Transcription)).expect("copy"),
            b"0123456789"
        );
        fs::remove_file(models.weights_path(&a.id, Task::Transcription)).expect("rm");
        assert!(
            models.get(&a.id).is_none(),
            "a model without weights is not installed"
        );
        assert_eq!(models.list().len(), 1);
    }

    fn record() -> TrainingRecord {
        TrainingRecord {
            base_model: "sam-tiny".into(),
            pairs: 2,
            validation_pairs: 0,
            steps: 1,
            learning_rate: 1e-4,
            iou_before: 0.1,
            iou_after: 0.2,
            validation_iou: None,
            duration_ms: 5,
        }
    }

    fn files_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|e| {
                e.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn a_trained_model_is_only_kept_when_written_and_checked_whole() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("temp");
        let models = UserModels::new(&dir.path().join("models"));
        let user = dir.path().join("models/user");
        // The check refuses what was written: its error comes back, nothing is left.
        let refused = models.add_trained(
            Task::Segmentation,
            "Leaves",
            record(),
            |file| {
                file.write_all(b"half a file")
                    .map(|()| 11)
                    .map_err(CommandError::internal)
            },
            |_| Err(CommandError::invalid_input("not a SAM model")),
        );
        let error = refused.expect_err("refused");
        assert!(error.message().contains("not a SAM model"), "{error:?}");
        assert!(models.list().is_empty());
        assert_eq!(files_in(&user), Vec::<String>::new(), "nothing left behind");
        // The writer fails: its error comes back, nothing is left.
        let failed = models.add_trained(
            Task::Segmentation,
            "Leaves",
            record(),
            |_| Err(CommandError::internal("disk full")),
            |_| Ok(()),
        );
        assert!(failed.expect_err("failed").message().contains("disk full"));
        assert_eq!(files_in(&user), Vec::<String>::new());
        // Written and checked: listed with its record; the check saw the complete file.
        let meta = models
            .add_trained(
                Task::Segmentation,
                "Leaves",
                record(),
                |file| {
                    file.write_all(b"weights")
                        .map(|()| 7)
                        .map_err(CommandError::internal)
                },
                |temp| {
                    assert_eq!(fs::read(temp).expect("temp"), b"weights");
                    Ok(())
                },
            )
            .expect("saved");
        assert_eq!(meta.id.as_str(), "leaves");
        assert_eq!(meta.file_bytes, 7);
        assert_eq!(models.list(), std::slice::from_ref(&meta));
        assert_eq!(
            models.get(&meta.id).and_then(|m| m.training),
            Some(record())
        );
        assert_eq!(
            fs::read(models.weights_path(&meta.id, Task::Segmentation)).expect("weights"),
            b"weights"
        );
    }
}
