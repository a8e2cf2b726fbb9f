import { describe, expect, it } from "vitest";
import { fireEvent, screen } from "@testing-library/svelte";
import SettingsPanel from "./SettingsPanel.svelte";
import WithToaster from "../test/WithToaster.svelte";
import { mockBackend, renderWithStores, settingsView, settle } from "../test/harness";
import type { MemorySettings } from "../types";

function backend(over: Parameters<typeof settingsView>[0] = {}) {
  let view = settingsView(over);
  const calls = mockBackend({
    settings: view,
    handler: (cmd, args) => {
      if (cmd === "update_model_config") {
        view = { ...view, settings: { ...view.settings, memory: (args as { memory: MemorySettings }).memory } };
        return view;
      }
      if (cmd === "update_settings") return view;
      return undefined;
    },
  });
  return calls;
}

describe("SettingsPanel", () => {
  it("applies a strategy at once", async () => {
    const calls = backend();
    await renderWithStores(SettingsPanel);
    await fireEvent.click(screen.getByLabelText(/Always loaded/));
    await settle();
    const update = calls.find((c) => c.cmd === "update_model_config");
    expect((update?.args as { memory: MemorySettings }).memory.strategy).toBe("always_loaded");
  });

  it("takes a custom timeout in minutes and refuses out-of-range ones", async () => {
    const calls = backend();
    await renderWithStores(WithToaster, { component: SettingsPanel });
    await fireEvent.click(screen.getByLabelText(/Custom/));
    await settle();
    const input = screen.getByTestId("custom-minutes") as HTMLInputElement;
    await fireEvent.change(input, { target: { value: "5" } });
    await settle();
    const last = calls.filter((c) => c.cmd === "update_model_config").at(-1);
    expect((last?.args as { memory: MemorySettings }).memory).toMatchObject({ strategy: "custom", custom_timeout_secs: 300 });
    const before = calls.length;
    await fireEvent.change(input, { target: { value: "0" } });
    expect(await screen.findByText("Choose a whole number of minutes from 1 to 60.")).toBeTruthy();
    expect(calls.length).toBe(before);
  });

  it("unloads before sleep by default and takes an on-battery timeout in minutes", async () => {
    const calls = backend();
    await renderWithStores(WithToaster, { component: SettingsPanel });
    const sleep = screen.getByTestId("unload-before-sleep") as HTMLInputElement;
    expect(sleep.checked).toBe(true);
    await fireEvent.click(sleep);
    await settle();
    const memory = () => (calls.filter((c) => c.cmd === "update_model_config").at(-1)?.args as { memory: MemorySettings }).memory;
    expect(memory().unload_before_sleep).toBe(false);

    expect(screen.queryByTestId("battery-minutes")).toBeNull();
    await fireEvent.click(screen.getByTestId("battery-timeout"));
    await settle();
    expect(memory().battery_timeout_secs).toBe(60);
    const minutes = screen.getByTestId("battery-minutes") as HTMLInputElement;
    expect(minutes.value).toBe("1");
    await fireEvent.change(minutes, { target: { value: "3" } });
    await settle();
    expect(memory().battery_timeout_secs).toBe(180);
    const before = calls.length;
    await fireEvent.change(minutes, { target: { value: "0" } });
    expect(await screen.findByText(/from 1 to 1440 for the on-battery timeout/)).toBeTruthy();
    expect(calls.length).toBe(before);
    await fireEvent.click(screen.getByTestId("battery-timeout"));
    await settle();
    expect(memory().battery_timeout_secs).toBeNull();
  });

  it("says which system signals this computer does not give", async () => {
    backend({ signals: { memory_pressure: false, sleep: false, power_source: false }, settings: { ...settingsView().settings, memory: { ...settingsView().settings.memory, battery_timeout_secs: 60 } } });
    await renderWithStores(SettingsPanel);
    for (const id of ["no-pressure-signal", "no-sleep-signal", "no-power-signal"]) expect(screen.getByTestId(id)).toBeTruthy();
  });

  it("says nothing about signals this computer gives", async () => {
    backend({ settings: { ...settingsView().settings, memory: { ...settingsView().settings.memory, battery_timeout_secs: 60 } } });
    await renderWithStores(SettingsPanel);
    for (const id of ["no-pressure-signal", "no-sleep-signal", "no-power-signal"]) expect(screen.queryByTestId(id)).toBeNull();
  });

  it("shows environment overrides as such", async () => {
    backend({ env_overrides: { inactivity_timeout_secs: 3, check_interval_secs: null, load_timeout_secs: null, error: null } });
    await renderWithStores(SettingsPanel);
    expect(screen.getByTestId("env-override").textContent).toContain("MODEL_INACTIVITY_TIMEOUT=3");
  });

  it("saves preferences", async () => {
    const calls = backend();
    await renderWithStores(SettingsPanel);
    await fireEvent.click(screen.getByTestId("preload"));
    await settle();
    expect(calls).toContainEqual({ cmd: "update_settings", args: { patch: { preload_on_startup: true, show_memory_usage: null } } });
  });
});
