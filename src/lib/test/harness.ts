// Component-test harness: Tauri's IPC mocked (commands and events), the app stores started
// against it, and a helper to render a component inside them.
import { mockIPC } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import { render } from "@testing-library/svelte";
import type { Component } from "svelte";
import { createStores, STORES_KEY, type AppStores } from "../stores/app";
import type { DownloadView, ModelStatusView, SettingsView, TrainingView } from "../types";

export type Handler = (cmd: string, args: unknown) => unknown;

export function model(over: Partial<ModelStatusView> & Pick<ModelStatusView, "slot">): ModelStatusView {
  const names = { transcription: "Whisper base", segmentation: "SAM tiny (MobileSAM)", vad: "Silero VAD" } as const;
  return {
    model_id: over.slot === "transcription" ? "whisper-base" : over.slot === "segmentation" ? "sam-tiny" : "silero-vad",
    display_name: names[over.slot],
    is_user_model: false,
    model_path: null,
    state: "unloaded",
    resident_bytes: null,
    expected_bytes: null,
    loaded_at_ms: null,
    last_used_ms: null,
    expires_at_ms: null,
    load_progress: null,
    last_error: null,
    leases: 0,
    pinned: false,
    last_load_us: null,
    load_count: 0,
    last_unload: null,
    last_request: null,
    ...over,
  };
}

export function settingsView(over: Partial<SettingsView> = {}): SettingsView {
  return {
    settings: {
      schema_version: 1,
      memory: { strategy: "auto", custom_timeout_secs: 300, timer_scope: "all_together", pinned: [], memory_budget_mib: null, respond_to_memory_pressure: true, unload_before_sleep: true, battery_timeout_secs: null },
      preload_on_startup: false,
      show_memory_usage: true,
      models: { transcription: "whisper-base", segmentation: "sam-tiny" },
      active_user_models: { transcription: null, segmentation: null },
      recently_used: [],
    },
    env_overrides: { inactivity_timeout_secs: null, check_interval_secs: null, load_timeout_secs: null, error: null },
    notices: [],
    settings_path: "/home/u/.config/app.dormouse.desktop/settings.json",
    models_dir: "/home/u/.local/share/app.dormouse.desktop/models",
    signals: { memory_pressure: true, sleep: true, power_source: true },
    ...over,
  };
}

/** Mocks IPC: `get_model_status` and `get_settings` answer from the given state unless
 * `handler` answers first (return `undefined` to fall through). Records every call. */
export function mockBackend(opts: { models?: ModelStatusView[]; settings?: SettingsView; handler?: Handler } = {}) {
  const calls: Array<{ cmd: string; args: unknown }> = [];
  const models = opts.models ?? [model({ slot: "transcription" }), model({ slot: "segmentation" }), model({ slot: "vad" })];
  const settings = opts.settings ?? settingsView();
  mockIPC(
    (cmd, args) => {
      calls.push({ cmd, args });
      const answer = opts.handler?.(cmd, args);
      if (answer !== undefined) return answer;
      if (cmd === "get_model_status") return { models, total_resident_bytes: 0, pressure: "normal", taken_at_ms: Date.now() };
      if (cmd === "get_settings") return settings;
      if (cmd === "list_downloads") return [];
      if (cmd === "list_training_examples") return [];
      if (cmd === "training_status") return null;
      return null;
    },
    { shouldMockEvents: true },
  );
  return calls;
}

/** Starts the stores against the mocked backend and renders `component` inside them. */
export async function renderWithStores(component: Component<any>, props: Record<string, unknown> = {}) {
  const stores: AppStores = createStores();
  await Promise.all([stores.status.start(), stores.settings.start(), stores.downloads.start(), stores.training.start()]);
  const result = render(component, { props, context: new Map([[STORES_KEY, stores]]) });
  return { ...result, stores };
}

/** Pushes a status event as the Rust forwarder would. */
export function pushStatus(view: ModelStatusView): Promise<void> {
  return emit("model-status-changed", view);
}

/** Lets pending promises and Svelte updates run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
}

/** A download status as the Rust side sends it. */
export function download(over: Partial<DownloadView> = {}): DownloadView {
  return {
    model_id: "whisper-small", phase: "downloading", bytes: 43_000_000, total_bytes: 78_000_000,
    bytes_per_sec: 5_200_000, eta_secs: 7, attempt: 1, max_attempts: 6, resumed_from: null,
    retry_in_ms: null, error: null, ...over,
  };
}

/** A training job's status as the Rust side sends it. */
export function trainingView(over: Partial<TrainingView> = {}): TrainingView {
  return {
    job_id: 1, phase: "preparing", display_name: "Custom model", pairs: 3, embedded: 0, step: 0, steps: 60,
    last: null, validation_held_out: false, elapsed_ms: 0, eta_ms: null, history: [], outcome: null, error: null, ...over,
  };
}
