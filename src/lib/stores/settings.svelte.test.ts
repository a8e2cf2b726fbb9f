import { describe, expect, it } from "vitest";
import { emit } from "@tauri-apps/api/event";
import { mockBackend, settingsView, settle } from "../test/harness";
import { SettingsStore } from "./settings.svelte";
import type { Notice } from "../types";

describe("settings notices", () => {
  it("reports each notice once, from start-up and when one arrives later", async () => {
    const atStart: Notice = { kind: "settings_reset", message: "Your settings file was unusable." };
    mockBackend({ settings: settingsView({ notices: [atStart] }) });
    const store = new SettingsStore();
    const seen: Notice[] = [];
    store.onNotice = (n) => seen.push(n);
    await store.start();
    expect(seen).toEqual([atStart]);

    const later: Notice = { kind: "user_model_missing", message: "Your custom segmentation model was not found." };
    await emit("settings-changed", settingsView({ notices: [atStart, later] }));
    await settle();
    await emit("settings-changed", settingsView({ notices: [atStart, later] }));
    await settle();
    expect(seen).toEqual([atStart, later]);
    expect(store.view?.notices).toHaveLength(2);
    store.stop();
  });
});
