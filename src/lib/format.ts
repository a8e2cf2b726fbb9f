// How Dormouse words sizes, durations and model states for people. Pure functions: tested
// on their own and used by every component.
import type { DownloadView, ModelStatusView, StrategyChoice, TrainingRecord, TrainingView, UnloadedView, UnloadSummary } from "./types";

/** "142 MB" (decimal megabytes, as file managers show them). */
export function megabytes(bytes: number): string {
  const mb = bytes / 1e6;
  return mb >= 10 ? `${Math.round(mb)} MB` : `${mb.toFixed(1)} MB`;
}

/** "45s", "1m02s", "1h03m". */
export function clock(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m${String(s).padStart(2, "0")}s`;
  return `${s}s`;
}

/** A duration measured in microseconds, for the cost panel: "412 ms", "2.4 s". */
export function micros(us: number): string {
  if (us < 1000) return `${(us / 1000).toFixed(2)} ms`;
  if (us < 10_000_000) return `${Math.round(us / 1000)} ms`;
  return `${(us / 1e6).toFixed(1)} s`;
}

/** "idle 1m02s · unloads in 3m58s", "in use", "kept loaded" — for a loaded model. */
export function idleLine(model: ModelStatusView, now: number): string | null {
  if (model.state !== "loaded") return null;
  if (model.leases > 0) return "in use";
  const idle = model.last_used_ms !== null ? `idle ${clock(now - model.last_used_ms)}` : "idle";
  if (model.expires_at_ms === null) return `${idle} · kept loaded`;
  const left = model.expires_at_ms - now;
  return left > 0 ? `${idle} · unloads in ${clock(left)}` : `${idle} · unloading`;
}

/** The word for a model's state. */
export function stateLabel(model: ModelStatusView): string {
  switch (model.state) {
    case "unloaded":
      return "Unloaded";
    case "loading":
      return model.load_progress !== null ? `Loading ${Math.round(model.load_progress * 100)}%` : "Loading";
    case "loaded":
      return "Loaded";
    case "unloading":
      return "Unloading";
    case "failed":
      return "Failed";
  }
}

/** The toast after "Unload models". */
export function unloadMessage(summary: UnloadSummary): string {
  const names = summary.unloaded.map((u) => u.display_name);
  const deferred = summary.deferred.length;
  if (names.length === 0 && deferred === 0 && summary.cancelled_loads.length === 0) {
    return "No models were loaded";
  }
  const parts: string[] = [];
  if (names.length > 0) parts.push(`Models unloaded: ${names.join(", ")} (freed ${megabytes(summary.total_freed_bytes)})`);
  if (summary.cancelled_loads.length > 0) parts.push(`cancelled ${summary.cancelled_loads.length} load(s)`);
  if (deferred > 0) parts.push(`${deferred} in use will unload when done`);
  return parts.join("; ");
}

/**
 * The toast for a model the app unloaded because the system asked for it: low on memory, or
 * about to sleep (`null` for any other unload, which the user asked for or the settings
 * announced).
 */
export function systemUnloadMessage(unloaded: UnloadedView): string | null {
  const freed = megabytes(unloaded.bytes_freed ?? unloaded.resident_bytes);
  switch (unloaded.reason) {
    case "memory_pressure":
      return `Unloaded ${unloaded.display_name}: the system was low on memory, freed ${freed}`;
    case "system_sleep":
      return `Unloaded ${unloaded.display_name} before the computer slept, freed ${freed}`;
    default:
      return null;
  }
}

/** The model row's note on why a model is no longer loaded, when the system caused it. */
export function systemUnloadNote(unloaded: UnloadedView | null): string | null {
  switch (unloaded?.reason) {
    case "memory_pressure":
      return "Unloaded because the system was low on memory";
    case "system_sleep":
      return "Unloaded before the computer slept";
    default:
      return null;
  }
}

/** What each memory strategy does, in one line. */
export const STRATEGY_HELP: Record<StrategyChoice, { label: string; help: string }> = {
  auto: { label: "Auto (5 min)", help: "Models stay warm while you work and unload after 5 minutes without use." },
  always_loaded: { label: "Always loaded", help: "Fastest answers: models stay in memory until you unload them." },
  immediate: { label: "Unload immediately", help: "Least memory: each model unloads as soon as its request finishes." },
  custom: { label: "Custom", help: "Choose how long an unused model stays loaded (1–60 minutes)." },
};

/** "5.2 MB/s". */
export function speed(bytesPerSec: number): string {
  return `${megabytes(bytesPerSec)}/s`;
}

/** A download's progress in one line: "43 MB of 78 MB · 5.2 MB/s · 7s left",
 * "Connection dropped — retrying in 2s (attempt 2 of 6)", "Checking the file…". */
export function downloadLine(view: DownloadView): string {
  const done = view.total_bytes !== null ? `${megabytes(view.bytes)} of ${megabytes(view.total_bytes)}` : megabytes(view.bytes);
  switch (view.phase) {
    case "connecting":
      return view.resumed_from !== null
        ? `Reconnecting to resume at ${megabytes(view.resumed_from)} (attempt ${view.attempt} of ${view.max_attempts})…`
        : "Connecting…";
    case "downloading": {
      const parts = [done];
      if (view.bytes_per_sec !== null && view.bytes_per_sec > 0) parts.push(speed(view.bytes_per_sec));
      if (view.eta_secs !== null) parts.push(`${clock(view.eta_secs * 1000)} left`);
      const line = parts.join(" · ");
      return view.resumed_from !== null ? `${line} · resumed at ${megabytes(view.resumed_from)}` : line;
    }
    case "retrying": {
      const wait = view.retry_in_ms !== null ? ` in ${clock(view.retry_in_ms)}` : "";
      return `Connection lost at ${megabytes(view.bytes)} — retrying${wait} (attempt ${view.attempt + 1} of ${view.max_attempts})`;
    }
    case "verifying":
      return "Checking the file's SHA-256…";
    case "unpacking":
      return "Unpacking…";
    case "finished":
      return `Downloaded ${megabytes(view.bytes)}`;
    case "cancelled":
      return "Download cancelled";
    case "failed":
      return view.error?.message ?? "The download failed";
  }
}

/** The fraction done, 0–1 (null while the size is unknown). */
export function downloadFraction(view: DownloadView): number | null {
  if (view.total_bytes === null || view.total_bytes === 0) return null;
  return Math.min(1, view.bytes / view.total_bytes);
}

/** The toast when a download ends. */
export function downloadDoneMessage(view: DownloadView): { text: string; ok: boolean } {
  switch (view.phase) {
    case "finished":
      return { text: `${view.model_id} downloaded and verified`, ok: true };
    case "cancelled":
      return { text: `Download of ${view.model_id} cancelled`, ok: false };
    default:
      return { text: `Download of ${view.model_id} failed: ${view.error?.message ?? "unknown error"}`, ok: false };
  }
}

/** A training job in one line: "Embedding your images (2 of 5)…",
 * "Step 12 of 60 · loss 0.84 · IoU 0.62 · 40s left", "Saving the model…". */
export function trainingLine(view: TrainingView): string {
  switch (view.phase) {
    case "preparing":
      return view.embedded > 0 ? `Embedding your images (${view.embedded} of ${view.pairs})…` : "Loading the base model…";
    case "training": {
      const parts = [`Step ${view.step} of ${view.steps}`];
      if (view.last?.loss != null) parts.push(`loss ${view.last.loss.toFixed(3)}`);
      if (view.eta_ms !== null) parts.push(`${clock(view.eta_ms)} left`);
      return parts.join(" · ");
    }
    case "saving":
      return "Saving the model…";
    case "done":
      return view.outcome ? `${iouChange(view.outcome.record)}, now active` : "Done";
    case "cancelled":
      return "Training cancelled; nothing was changed";
    case "failed":
      return `Training failed: ${view.error?.message ?? "unknown error"}`;
  }
}

/** "IoU on your examples 0.41 → 0.87". */
export function iouChange(record: TrainingRecord): string {
  const two = (v: number | null) => (v === null ? "–" : v.toFixed(2));
  return `IoU on your examples ${two(record.iou_before)} → ${two(record.iou_after)}`;
}

/** The fraction done, 0–1, counting embedding as the first tenth. */
export function trainingFraction(view: TrainingView): number {
  if (view.phase === "done") return 1;
  const embedding = view.pairs > 0 ? view.embedded / view.pairs : 0;
  return Math.min(1, 0.1 * embedding + 0.9 * (view.steps > 0 ? view.step / view.steps : 0));
}
