// The settings as shown in the UI: one `get_settings`, then `SettingsChanged` events.
import { commands, events } from "../bindings";
import type { MemorySettings, SettingsPatch, SettingsView } from "../types";

export class SettingsStore {
  view = $state<SettingsView | null>(null);
  error = $state<string | null>(null);
  #unlisten: Array<() => void> = [];

  async start(): Promise<void> {
    this.#unlisten.push(await events.settingsChanged.listen((e) => (this.view = e.payload)));
    const view = await commands.getSettings();
    this.view ??= view;
  }

  /** Applies a memory strategy now; returns an error message or null. */
  async setMemory(memory: MemorySettings): Promise<string | null> {
    const result = await commands.updateModelConfig(memory);
    if (result.status === "error") return (this.error = result.error.message);
    this.view = result.data;
    this.error = null;
    return null;
  }

  async setPrefs(patch: SettingsPatch): Promise<string | null> {
    const result = await commands.updateSettings(patch);
    if (result.status === "error") return (this.error = result.error.message);
    this.view = result.data;
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
