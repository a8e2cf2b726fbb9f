//! [`TrainingManager`] owns custom-model training: the training set ([`TrainingSet`]), one
//! training job at a time on its own thread, its progress (pushed as
//! [`crate::events::TrainingProgress`]), cancelling, and the result. A job holds a lease on
//! the segmentation model for its whole run (so no idle timeout unloads what it uses, and the
//! model counts against the memory budget), fine-tunes its mask decoder, saves the new
//! weights atomically as a user model with its training record, and makes it the active
//! segmentation model. A cancelled or failed job leaves nothing on disk and changes nothing.
//!
//! Lock order: `starting` (held through a whole `start`) before `job`, then a job's `view`;
//! `job` and `view` are never held while calling the slot owner, the library or the event
//! sink.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use engines::segmentation::training::{self, Progress, TrainOptions, TrainingPair};
use engines::segmentation::SamModel;
use parking_lot::Mutex;

use crate::catalog::Slot;
use crate::error::{CommandError, CommandResult};
use crate::managers::library::ModelLibrary;
use crate::managers::slots::SlotManager;
use crate::training_set::{TrainingExample, TrainingSet};
use crate::user_models::TrainingRecord;

mod view;

pub use self::view::{
    TrainingOutcome, TrainingPhase, TrainingPoint, TrainingRequest, TrainingView,
};

type Sink = Box<dyn Fn(TrainingView) + Send + Sync>;

struct Job {
    cancel: Arc<AtomicBool>,
    view: Arc<Mutex<TrainingView>>,
    thread: Option<JoinHandle<()>>,
}

/// Owner of the training set and of training jobs; see the module docs.
pub struct TrainingManager {
    slots: Arc<SlotManager>,
    library: Arc<ModelLibrary>,
    set: TrainingSet,
    job: Mutex<Option<Job>>,
    /// Held for the whole of [`Self::start`], so two starts cannot both begin a job.
    starting: Mutex<()>,
    next_job: AtomicU32,
    sink: Arc<Sink>,
}

impl TrainingManager {
    /// A manager keeping its training set in the models folder; `sink` receives every
    /// status (wired to the `TrainingProgress` event).
    pub fn new(
        slots: Arc<SlotManager>,
        library: Arc<ModelLibrary>,
        sink: impl Fn(TrainingView) + Send + Sync + 'static,
    ) -> Self {
        let dir = library.paths().training_set_dir();
        crate::debris::sweep_unfinished_adds(&dir);
        crate::debris::sweep(&dir, crate::debris::is_write_debris);
        let set = TrainingSet::new(dir);
        Self {
            slots,
            library,
            set,
            job: Mutex::new(None),
            starting: Mutex::new(()),
            next_job: AtomicU32::new(1),
            sink: Arc::new(Box::new(sink)),
        }
    }

    /// The training set.
    pub fn training_set(&self) -> &TrainingSet {
        &self.set
    }

    /// Every example in the training set.
    pub fn examples(&self) -> Vec<TrainingExample> {
        self.set.list()
    }

    /// Adds an image + mask from the Segment page.
    pub fn add_pair(&self, pair: TrainingPair) -> CommandResult<TrainingExample> {
        self.set.add(pair)
    }

    /// The running or last job, with its full history.
    pub fn status(&self) -> Option<TrainingView> {
        self.job.lock().as_ref().map(|job| job.view.lock().clone())
    }

    /// The examples a training uses, checked against the upper limit before any image is
    /// decoded (too few, or unknown ids, are refused by the load that follows): the ones chosen, or the whole set (the newest [`training::MAX_PAIRS`] of a
    /// set an older version let grow larger).
    fn examples_to_use(&self, chosen: Option<&[String]>) -> CommandResult<Vec<String>> {
        let ids: Vec<String> = match chosen {
            Some(ids) => ids.to_vec(),
            None => {
                let all = self.set.list();
                let skip = all.len().saturating_sub(training::MAX_PAIRS);
                all.into_iter().skip(skip).map(|e| e.id).collect()
            }
        };
        if ids.len() > training::MAX_PAIRS {
            return Err(CommandError::InvalidDataset {
                message: format!(
                    "{} examples chosen; one training uses at most {}",
                    ids.len(),
                    training::MAX_PAIRS
                ),
            });
        }
        Ok(ids)
    }

    /// Validates the request and the examples, then starts training on its own thread and
    /// returns at once. Refused while another job runs; bad examples are refused here, before
    /// anything loads.
    pub fn start(&self, request: &TrainingRequest) -> CommandResult<TrainingView> {
        let _one_at_a_time = self.starting.lock();
        if self.running() {
            return Err(CommandError::InUse {
                message: "a training is already running; cancel it or wait for it to finish".into(),
            });
        }
        let defaults = TrainOptions::default();
        let options = TrainOptions {
            steps: request.steps.map_or(defaults.steps, |s| s as usize),
            learning_rate: request.learning_rate.unwrap_or(defaults.learning_rate),
            ..defaults
        };
        options.validate()?;
        // The previous job has published its end; let its thread finish (its lease ends).
        let finished = self.job.lock().as_mut().and_then(|job| job.thread.take());
        if let Some(handle) = finished {
            let _ = handle.join();
        }
        if request.example_ids.as_ref().is_some_and(Vec::is_empty) {
            return Err(CommandError::InvalidDataset {
                message: "no examples chosen; pick at least 2 image + mask pairs".into(),
            });
        }
        let ids = self.examples_to_use(request.example_ids.as_deref())?;
        let pairs = self.set.load(&ids)?;
        training::check_dataset(&pairs)?;
        self.slots.ensure_installed(Slot::Segmentation)?;
        let display_name = request
            .display_name
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or("Custom model")
            .to_owned();
        let job_id = self.next_job.fetch_add(1, Ordering::Relaxed);
        let view = TrainingView {
            job_id,
            phase: TrainingPhase::Preparing,
            display_name,
            pairs: pairs.len() as u32,
            embedded: 0,
            step: 0,
            steps: options.steps as u32,
            last: None,
            validation_held_out: pairs.len() >= training::VALIDATION_FROM,
            elapsed_ms: 0,
            eta_ms: None,
            history: Vec::new(),
            outcome: None,
            error: None,
        };
        let shared = Arc::new(Mutex::new(view.clone()));
        let cancel = Arc::new(AtomicBool::new(false));
        let run = Run {
            slots: self.slots.clone(),
            library: self.library.clone(),
            view: shared.clone(),
            cancel: cancel.clone(),
            sink: self.sink.clone(),
            started: Instant::now(),
        };
        // Published before the thread can publish anything, and the job is in place before
        // it runs, so a cancel right after this call is heard.
        (self.sink)(view.clone());
        *self.job.lock() = Some(Job {
            cancel,
            view: shared.clone(),
            thread: None,
        });
        let spawned = std::thread::Builder::new()
            .name("dormouse-training".into())
            .spawn(move || run.run(pairs, options));
        match spawned {
            Ok(thread) => {
                if let Some(job) = self.job.lock().as_mut() {
                    job.thread = Some(thread);
                }
                Ok(view)
            }
            Err(e) => {
                let error = CommandError::internal(format!("could not start training: {e}"));
                shared.lock().phase = TrainingPhase::Failed;
                shared.lock().error = Some(error.clone());
                Err(error)
            }
        }
    }

    /// Whether a job is running: its last published phase is not a final one (its thread may
    /// still be ending, which `start` waits for).
    fn running(&self) -> bool {
        self.job.lock().as_ref().is_some_and(|job| {
            !matches!(
                job.view.lock().phase,
                TrainingPhase::Done | TrainingPhase::Failed | TrainingPhase::Cancelled
            )
        })
    }

    /// Asks the running job to stop; it ends as `cancelled` with nothing written. Returns
    /// whether a job was running.
    pub fn cancel(&self) -> bool {
        let running = self.running();
        if let Some(job) = self.job.lock().as_ref() {
            job.cancel.store(true, Ordering::Relaxed);
        }
        running
    }

    /// Cancels a running job and waits for it (on quit).
    pub fn shutdown(&self) {
        let job = self.job.lock().as_mut().and_then(|job| {
            job.cancel.store(true, Ordering::Relaxed);
            job.thread.take()
        });
        if let Some(handle) = job {
            let _ = handle.join();
        }
    }
}

/// One job's thread.
struct Run {
    slots: Arc<SlotManager>,
    library: Arc<ModelLibrary>,
    view: Arc<Mutex<TrainingView>>,
    cancel: Arc<AtomicBool>,
    sink: Arc<Sink>,
    started: Instant,
}

impl Run {
    fn publish(&self, change: impl FnOnce(&mut TrainingView)) {
        let snapshot = {
            let mut view = self.view.lock();
            change(&mut view);
            view.elapsed_ms = self.started.elapsed().as_millis() as u64;
            let mut event = view.clone();
            event.history = Vec::new();
            event
        };
        (self.sink)(snapshot);
    }

    fn run(self, pairs: Vec<TrainingPair>, options: TrainOptions) {
        // A panic inside the engine must still end the job (as failed), or no training
        // could ever start again.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.train(&pairs, &options)
        }))
        .unwrap_or_else(|_| {
            Err(CommandError::internal(
                "training stopped unexpectedly (see the log)",
            ))
        });
        match result {
            Ok(outcome) => self.publish(|v| {
                v.phase = TrainingPhase::Done;
                v.eta_ms = Some(0);
                v.outcome = Some(outcome);
            }),
            Err(error) => {
                let cancelled = matches!(error, CommandError::Cancelled { .. });
                if cancelled {
                    tracing::info!("training cancelled; nothing was written");
                } else {
                    tracing::warn!(%error, "training failed");
                }
                self.publish(|v| {
                    v.phase = if cancelled {
                        TrainingPhase::Cancelled
                    } else {
                        TrainingPhase::Failed
                    };
                    v.eta_ms = None;
                    v.error = (!cancelled).then_some(error);
                });
            }
        }
    }

    fn train(
        &self,
        pairs: &[TrainingPair],
        options: &TrainOptions,
    ) -> CommandResult<TrainingOutcome> {
        // The lease keeps the model loaded (no idle unload) for the whole run, and the base
        // weights are those of the model it holds: a size switch meanwhile cannot mix them.
        let used = self.slots.use_model(Slot::Segmentation)?;
        let base_model = used.model_id().to_owned();
        let sam = used
            .lease
            .downcast::<SamModel>()
            .ok_or_else(|| CommandError::internal("the segmentation slot holds no SAM model"))?;
        let base_path = sam.source().to_path_buf();
        let steps_started = Mutex::new(None::<Instant>);
        let tuned = training::fine_tune(sam, &base_path, pairs, options, &mut |progress| {
            match progress {
                Progress::Embedding { done, .. } => {
                    self.publish(|v| v.embedded = done as u32);
                }
                Progress::Step(report) => {
                    let first = *steps_started.lock().get_or_insert_with(Instant::now);
                    let per_step = first.elapsed().as_secs_f64() / report.step.max(1) as f64;
                    let point = TrainingPoint {
                        step: report.step as u32,
                        loss: report.loss,
                        validation_iou: report.validation_iou,
                    };
                    self.publish(|v| {
                        v.phase = TrainingPhase::Training;
                        v.step = point.step;
                        v.last = Some(point);
                        v.history.push(point);
                        v.validation_held_out = report.validation_held_out;
                        v.eta_ms = Some(
                            Duration::from_secs_f64(per_step * (report.steps - report.step) as f64)
                                .as_millis() as u64,
                        );
                    });
                }
            }
            !self.cancel.load(Ordering::Relaxed)
        })?;
        if self.cancel.load(Ordering::Relaxed) {
            return Err(CommandError::Cancelled {
                message: "cancelled; nothing was changed".into(),
            });
        }
        self.publish(|v| v.phase = TrainingPhase::Saving);
        let record = TrainingRecord {
            base_model,
            pairs: pairs.len() as u32,
            validation_pairs: u32::from(tuned.validation.is_some()),
            steps: tuned.steps as u32,
            learning_rate: options.learning_rate,
            iou_before: tuned.iou_before,
            iou_after: tuned.iou_after,
            validation_iou: tuned.validation.map(|(a, b)| [a, b]),
            duration_ms: tuned.elapsed.as_millis() as u64,
        };
        let name = self.view.lock().display_name.clone();
        let meta = self.library.add_fine_tune(&name, record.clone(), |out| {
            tuned.write_weights(&base_path, out)
        })?;
        drop(tuned);
        used.finish();
        self.slots.load_user_model(meta.id.as_str())?;
        let model = self.library.info(&meta.id.model_id())?;
        tracing::info!(
            id = meta.id.as_str(),
            iou_before = record.iou_before,
            iou_after = record.iou_after,
            "custom model trained and active"
        );
        Ok(TrainingOutcome { model, record })
    }
}
