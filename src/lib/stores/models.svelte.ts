// The live model status: one `get_model_status`, then events only (no polling). Also the
// one place the front end unloads models, so every unload is toasted the same way.
import { createSubscriber } from "svelte/reactivity";
import { commands, events } from "../bindings";
import type { ModelStatusView, Slot, UnloadSummary } from "../types";

export class ModelStatusStore {
  models = $state<ModelStatusView[]>([]);
  ready = $state(false);
  error = $state<string | null>(null);
  #unlisten: Array<() => void> = [];

  async start(): Promise<void> {
    this.#unlisten.push(await events.modelStatusChanged.listen((e) => this.apply(e.payload)));
    this.#unlisten.push(
      await events.modelLoadProgress.listen((e) => {
        const model = this.find(e.payload.slot);
        if (model && model.state === "loading") model.load_progress = e.payload.progress;
      }),
    );
    try {
      const status = await commands.getModelStatus();
      for (const model of status.models) this.apply(model, true);
      this.ready = true;
    } catch (e) {
      this.error = String(e);
    }
  }

  /** A status event; the initial snapshot never overwrites a newer event. */
  apply(model: ModelStatusView, fromSnapshot = false): void {
    const i = this.models.findIndex((m) => m.slot === model.slot);
    if (i < 0) this.models.push(model);
    else if (!fromSnapshot) this.models[i] = model;
  }

  find(slot: Slot): ModelStatusView | undefined {
    return this.models.find((m) => m.slot === slot);
  }

  get loaded(): ModelStatusView[] {
    return this.models.filter((m) => m.state === "loaded");
  }

  get loading(): ModelStatusView[] {
    return this.models.filter((m) => m.state === "loading");
  }

  get totalBytes(): number {
    return this.loaded.reduce((sum, m) => sum + (m.resident_bytes ?? 0), 0);
  }

  /** Unloads one model or all; resolves to the summary or an error message. */
  async unload(slot: Slot | null): Promise<{ ok: true; summary: UnloadSummary } | { ok: false; message: string }> {
    const result = await commands.manuallyUnloadModel(slot);
    return result.status === "ok" ? { ok: true, summary: result.data } : { ok: false, message: result.error.message };
  }

  stop(): void {
    for (const unlisten of this.#unlisten.splice(0)) unlisten();
  }
}

/**
 * A ticking "now" for countdowns (display only; nothing is fetched). It ticks only while
 * something on screen reads it (the open status popover), so an idle window has no timer.
 */
export class Now {
  #subscribe = createSubscriber((update) => {
    const timer = setInterval(update, 1000);
    return () => clearInterval(timer);
  });
  get value(): number {
    this.#subscribe();
    return Date.now();
  }
}
