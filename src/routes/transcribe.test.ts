import { describe, expect, it } from "vitest";
import { fireEvent, screen } from "@testing-library/svelte";
import Page from "./+page.svelte";
import { emit } from "@tauri-apps/api/event";
import { download, mockBackend, model, pushStatus, renderWithStores, settle } from "$lib/test/harness";

const transcript = {
  text: "Ever tried. Ever failed.",
  segments: [],
  audio_seconds: 9.96,
  speech_seconds: 8.2,
  model_id: "whisper-base",
  skipped_silence: true,
  decode_us: 12_000,
  timings: { wait_us: 161_000, cold: true, inference_us: 1_738_000 },
  warnings: [],
};

function pick(input: HTMLInputElement, bytes: number[]) {
  const file = new File([new Uint8Array(bytes)], "clip.wav", { type: "audio/wav" });
  Object.defineProperty(input, "files", { value: [file] });
  return fireEvent.change(input);
}

describe("Transcribe page", () => {
  it("warms the model, sends the file as raw bytes and shows text and timings", async () => {
    const calls = mockBackend({ handler: (cmd) => (cmd === "transcribe_audio" ? transcript : undefined) });
    await renderWithStores(Page);
    await pick(screen.getByTestId("audio-file") as HTMLInputElement, [82, 73, 70, 70]);
    await settle();
    expect(calls.map((c) => c.cmd)).toEqual(expect.arrayContaining(["warm_model", "transcribe_audio"]));
    const sent = calls.find((c) => c.cmd === "transcribe_audio")?.args;
    expect(sent).toBeInstanceOf(Uint8Array);
    expect(Array.from(sent as Uint8Array)).toEqual([82, 73, 70, 70]);
    expect((await screen.findByTestId("transcript")).textContent).toBe("Ever tried. Ever failed.");
    expect(screen.getByTestId("timings").textContent).toContain("Model load 161 ms");
  });

  it("shows the loading animation only while the model really loads", async () => {
    mockBackend();
    await renderWithStores(Page);
    expect(screen.queryByTestId("model-loading")).toBeNull();
    await pushStatus(model({ slot: "transcription", state: "loading", load_progress: 0.5 }));
    await settle();
    expect(screen.getByTestId("model-loading").textContent).toContain("Loading Whisper base");
    await pushStatus(model({ slot: "transcription", state: "loaded", resident_bytes: 1 }));
    await settle();
    expect(screen.queryByTestId("model-loading")).toBeNull();
  });

  it("shows a readable error for a corrupt file", async () => {
    mockBackend({
      handler: (cmd) => {
        if (cmd === "transcribe_audio") throw { kind: "invalid_input", message: "the recording could not be decoded: unsupported format" };
        return undefined;
      },
    });
    await renderWithStores(Page);
    await pick(screen.getByTestId("audio-file") as HTMLInputElement, [1, 2, 3]);
    expect((await screen.findByRole("alert")).textContent).toContain("could not be decoded");
  });

  it("offers to download a missing model right where it is needed", async () => {
    const missing = { kind: "model_not_installed", model_id: "whisper-base", expected_path: "/m/ggml-base.bin", message: "Whisper base is not installed: its file /m/ggml-base.bin is missing." };
    const calls = mockBackend({
      handler: (cmd) => {
        if (cmd === "warm_model" || cmd === "transcribe_audio") throw missing;
        if (cmd === "download_model") return download({ model_id: "whisper-base", phase: "connecting", bytes: 0 });
        return undefined;
      },
    });
    await renderWithStores(Page);
    await pick(screen.getByTestId("audio-file") as HTMLInputElement, [82, 73, 70, 70]);
    expect((await screen.findByRole("alert")).textContent).toContain("is not installed");
    await fireEvent.click(await screen.findByRole("button", { name: "Download Whisper base" }));
    await settle();
    expect(calls).toContainEqual({ cmd: "download_model", args: { modelId: "whisper-base" } });
    await emit("download-progress", download({ model_id: "whisper-base", bytes: 74_000_000, total_bytes: 147_951_465 }));
    await settle();
    expect(screen.getByTestId("get-model").textContent).toContain("74 MB of 148 MB");
    await emit("download-progress", download({ model_id: "whisper-base", phase: "finished", bytes: 147_951_465, total_bytes: 147_951_465 }));
    await settle();
    expect(screen.getByTestId("get-model").textContent).toContain("Downloaded and verified");
  });
});
