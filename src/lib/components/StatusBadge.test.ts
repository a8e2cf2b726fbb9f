import { describe, expect, it, vi } from "vitest";
import { fireEvent, screen } from "@testing-library/svelte";
import StatusBadge from "./StatusBadge.svelte";
import { mockBackend, model, pushStatus, renderWithStores, settle, settingsView } from "../test/harness";

describe("StatusBadge", () => {
  it("follows status events: unloaded, loading with progress, loaded with memory", async () => {
    mockBackend();
    await renderWithStores(StatusBadge);
    const badge = screen.getByTestId("status-badge");
    expect(badge.dataset.modelState).toBe("unloaded");
    expect(badge.textContent).toContain("Unloaded");

    await pushStatus(model({ slot: "transcription", state: "loading", load_progress: 0.4 }));
    await settle();
    expect(badge.dataset.modelState).toBe("loading");
    expect(badge.textContent).toContain("Loading 40% Whisper base");

    await pushStatus(model({ slot: "transcription", state: "loaded", resident_bytes: 142_000_000 }));
    await settle();
    expect(badge.dataset.modelState).toBe("loaded");
    expect(badge.textContent).toContain("Loaded: Whisper base · 142 MB");

    await pushStatus(model({ slot: "transcription", state: "unloaded" }));
    await settle();
    expect(badge.dataset.modelState).toBe("unloaded");
  });

  it("hides memory when the user turned it off and shows failures", async () => {
    const base = settingsView();
    mockBackend({
      settings: { ...base, settings: { ...base.settings, show_memory_usage: false } },
      models: [model({ slot: "transcription", state: "loaded", resident_bytes: 142_000_000 }), model({ slot: "vad" })],
    });
    await renderWithStores(StatusBadge);
    expect(screen.getByTestId("status-badge").textContent).not.toContain("MB");
    await pushStatus(model({ slot: "transcription", state: "failed", last_error: "bad file" }));
    await settle();
    expect(screen.getByTestId("status-badge").dataset.modelState).toBe("failed");
  });

  it("lists every model with its own unload button", async () => {
    const calls = mockBackend({
      models: [model({ slot: "transcription", state: "loaded", resident_bytes: 1e8 }), model({ slot: "segmentation" })],
      handler: (cmd) =>
        cmd === "manually_unload_model" ? { unloaded: [], deferred: [], cancelled_loads: [], total_freed_bytes: 0 } : undefined,
    });
    await renderWithStores(StatusBadge);
    await fireEvent.click(screen.getByTestId("status-badge"));
    await settle();
    // floating-ui cannot measure in jsdom, so the open popover stays visibility:hidden here.
    const button = (label: string) => {
      const found = document.querySelector<HTMLButtonElement>(`button[aria-label="${label}"]`);
      if (!found) throw new Error(`no button ${label}`);
      return found;
    };
    const unloadWhisper = button("Unload Whisper base");
    expect(button("Unload SAM tiny (MobileSAM)").disabled).toBe(true);
    await fireEvent.click(unloadWhisper);
    await settle();
    expect(calls).toContainEqual({ cmd: "manually_unload_model", args: { slot: "transcription" } });
  });

  it("says a model was unloaded because the system was low on memory or about to sleep", async () => {
    const pressure = { slot: "transcription", model_id: "whisper-base", display_name: "Whisper base", resident_bytes: 2e8, bytes_freed: 2e8, at_ms: 1 } as const;
    mockBackend({
      models: [
        model({ slot: "transcription", last_unload: { ...pressure, reason: "memory_pressure" } }),
        model({ slot: "segmentation", last_unload: { ...pressure, slot: "segmentation", reason: "idle_timeout" } }),
        model({ slot: "vad", last_unload: { ...pressure, slot: "vad", reason: "system_sleep" } }),
      ],
    });
    await renderWithStores(StatusBadge);
    await fireEvent.click(screen.getByTestId("status-badge"));
    await settle();
    const said = [...document.querySelectorAll<HTMLElement>('[data-testid="system-unload"]')];
    expect(said.map((e) => [e.closest("li")?.dataset.slot, e.textContent])).toEqual([
      ["transcription", "Unloaded because the system was low on memory"],
      ["vad", "Unloaded before the computer slept"],
    ]);
  });

  it("runs no timer while nothing shows a countdown, and ticks once the popover shows one", async () => {
    const setInterval = vi.spyOn(globalThis, "setInterval");
    const ticks = () => setInterval.mock.calls.filter(([, ms]) => ms === 1000).length;
    const expires = Date.now() + 240_000;
    mockBackend({ models: [model({ slot: "transcription", state: "loaded", resident_bytes: 1e8, expires_at_ms: expires, last_used_ms: Date.now() })] });
    await renderWithStores(StatusBadge);
    await settle();
    expect(screen.getByTestId("status-badge").dataset.modelState).toBe("loaded");
    expect(ticks()).toBe(0);

    await fireEvent.click(screen.getByTestId("status-badge"));
    await settle();
    expect(document.querySelector(".idle")?.textContent).toMatch(/unloads in/);
    expect(ticks()).toBe(1);

    setInterval.mockRestore();
  });
});
