import { describe, expect, it } from "vitest";
import { fireEvent, screen } from "@testing-library/svelte";
import UnloadButton from "./UnloadButton.svelte";
import WithToaster from "../test/WithToaster.svelte";
import { mockBackend, renderWithStores, settle } from "../test/harness";

const freed = {
  unloaded: [
    { slot: "transcription", model_id: "whisper-base", display_name: "Whisper base", resident_bytes: 190e6, bytes_freed: 187e6, reason: "manual", at_ms: 1 },
    { slot: "segmentation", model_id: "sam-tiny", display_name: "SAM tiny", resident_bytes: 125e6, bytes_freed: 125e6, reason: "manual", at_ms: 1 },
  ],
  deferred: [],
  cancelled_loads: [],
  total_freed_bytes: 312e6,
};

describe("UnloadButton", () => {
  it("toasts what was freed", async () => {
    const calls = mockBackend({ handler: (cmd) => (cmd === "manually_unload_model" ? freed : undefined) });
    await renderWithStores(WithToaster, { component: UnloadButton });
    await fireEvent.click(screen.getByTestId("unload-all"));
    await settle();
    expect(await screen.findByText("Models unloaded: Whisper base, SAM tiny (freed 312 MB)")).toBeTruthy();
    expect(calls).toContainEqual({ cmd: "manually_unload_model", args: { slot: null } });
  });

  it("says so when nothing was loaded", async () => {
    mockBackend({
      handler: (cmd) =>
        cmd === "manually_unload_model" ? { unloaded: [], deferred: [], cancelled_loads: [], total_freed_bytes: 0 } : undefined,
    });
    await renderWithStores(WithToaster, { component: UnloadButton });
    await fireEvent.click(screen.getByTestId("unload-all"));
    expect(await screen.findByText("No models were loaded")).toBeTruthy();
  });
});
