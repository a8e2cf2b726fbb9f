// The settings as shown in the UI: one `get_settings`, then `SettingsChanged` events.
import { commands, events } from "../bindings";
import type { MemorySettings, Notice, SettingsPatch, SettingsView } from "../types";

export class SettingsStore {
  view = $state<SettingsView | null>(null);
  error = $state<string | null>(null);
  /** Called once for each notice (from start-up, or one added later, e.g. a custom model
   * that stopped being usable and was replaced by the base model). */
  onNotice: ((notice: Notice) => void) | null = null;
  #shown = new Set<string>();
  #unlisten: Array<() => void> = [];

  async start(): Promise<void> {
    this.#unlisten.push(await events.settingsChanged.listen((e) => this.#take(e.payload)));
    const view = await commands.getSettings();
    if (this.view === null) this.#take(view);
  }

  #take(view: SettingsView): void {
    this.view = view;
    for (const notice of view.notices) {
      const key = `${notice.kind}:${notice.message}`;
      if (this.#shown.has(key)) continue;
      this.#shown.add(key);
      this.onNotice?.(notice);
    }
  }

  /** Applies a memory strategy now; returns an error message or null. */
  async updateModelConfig(memory: MemorySettings): Promise<string | null> {
    const result = await commands.updateModelConfig(memory);
    if (result.status === "error") return (this.error = result.error.message);
    this.#take(result.data);
    this.error = null;
    return null;
  }

  async setPrefs(patch: SettingsPatch): Promise<string | null> {
    const result = await commands.updateSettings(patch);
    if (result.status === "error") return (this.error = result.error.message);
    this.#take(result.data);
    this.error = null;
    return null;
  }

  get showMemory(): boolean {
    return this.view?.settings.show_memory_usage ?? true;
  }

  stop(): void {
    for (const unlisten of this.#unlisten.splice(0)) unlisten();
  }
}
