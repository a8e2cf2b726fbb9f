import { describe, expect, it, vi } from "vitest";
import { fireEvent, screen } from "@testing-library/svelte";
import Page from "./models/+page.svelte";
import { emit } from "@tauri-apps/api/event";
import { download, mockBackend, renderWithStores, settle } from "$lib/test/harness";
import type { ModelInfo } from "$lib/types";

vi.mock("@tauri-apps/plugin-dialog", () => ({ open: vi.fn(async () => "/home/u/leaf.safetensors") }));

function info(over: Partial<ModelInfo> & Pick<ModelInfo, "id" | "slot" | "display_name">): ModelInfo {
  return {
    engine: "candle", is_user_model: false, path: `/m/${over.id}`, installed: true, file_bytes: 40e6, memory_bytes: 47e6,
    memory_measured: false, languages: "", licence: "Apache-2.0", good_for: "", active: false, download: null, partial_bytes: null, training: null, ...over,
  };
}

const list = [
  info({ id: "whisper-base", slot: "transcription", display_name: "Whisper base", engine: "whisper_cpp", active: true }),
  info({ id: "sam-tiny", slot: "segmentation", display_name: "SAM tiny (MobileSAM)" }),
  info({ id: "sam-vit-b", slot: "segmentation", display_name: "SAM ViT-B", installed: false, file_bytes: null }),
  info({ id: "user:leaf", slot: "segmentation", display_name: "Leaf cells", is_user_model: true, active: true }),
];

describe("Models page", () => {
  it("shows the active user model as a custom model and resets to base", async () => {
    const calls = mockBackend({
      handler: (cmd) => {
        if (cmd === "list_models") return list;
        if (cmd === "reset_to_base_model") return {};
        return undefined;
      },
    });
    await renderWithStores(Page);
    await settle();
    expect(calls.filter((c) => c.cmd === "list_models")).toHaveLength(1);
    const row = document.querySelector('tr[data-model="user:leaf"]');
    expect(row?.textContent).toContain("Custom model");
    expect(row?.textContent).toContain("Active");
    expect(document.querySelector('tr[data-model="sam-vit-b"]')?.textContent).toContain("not installed");
    await fireEvent.click(screen.getByRole("button", { name: "Reset to base model" }));
    await settle();
    expect(calls).toContainEqual({ cmd: "reset_to_base_model", args: { task: "segmentation" } });
  });

  it("imports the file the user picked and shows a refusal readably", async () => {
    const calls = mockBackend({
      handler: (cmd) => {
        if (cmd === "list_models") return list;
        if (cmd === "import_model") throw { kind: "invalid_model", message: "leaf.safetensors is neither a Whisper GGML model nor Segment Anything weights." };
        return undefined;
      },
    });
    await renderWithStores(Page);
    await fireEvent.click(screen.getByRole("button", { name: "Import a model file…" }));
    expect((await screen.findByRole("alert")).textContent).toContain("neither a Whisper GGML model");
    expect(calls).toContainEqual({ cmd: "import_model", args: { path: "/home/u/leaf.safetensors", displayName: null } });
  });

  it("downloads a model with live progress, cancels, and shows a corrupt download with Retry", async () => {
    const offer = { url: "https://example.test/ggml-small.bin", bytes: 487_601_967, publisher: "ggerganov/whisper.cpp", archive: false };
    const small = info({ id: "whisper-small", slot: "transcription", display_name: "Whisper small", installed: false, file_bytes: null, download: offer });
    const calls = mockBackend({
      handler: (cmd) => {
        if (cmd === "list_models") return [...list, small];
        if (cmd === "download_model") return download({ phase: "connecting", bytes: 0 });
        if (cmd === "cancel_download") return true;
        return undefined;
      },
    });
    await renderWithStores(Page);
    await settle();
    const row = () => document.querySelector('tr[data-model="whisper-small"]') as HTMLElement;
    expect(row().textContent).toContain("488 MBto download");
    await fireEvent.click(screen.getByRole("button", { name: "Download" }));
    await settle();
    expect(calls).toContainEqual({ cmd: "download_model", args: { modelId: "whisper-small" } });
    await emit("download-progress", download({ bytes: 100_000_000, total_bytes: 487_601_967 }));
    await settle();
    expect(row().querySelector('[role="progressbar"]')?.getAttribute("aria-valuenow")).toBe("21");
    expect(row().textContent).toContain("100 MB of 488 MB · 5.2 MB/s");
    await fireEvent.click(screen.getByRole("button", { name: "Cancel" }));
    expect(calls).toContainEqual({ cmd: "cancel_download", args: { modelId: "whisper-small" } });
    await emit("download-progress", download({ phase: "failed", error: { kind: "checksum_mismatch", message: "the downloaded file is corrupt: its SHA-256 is 12…", detail: "its SHA-256 is 1234" } }));
    await settle();
    expect(row().textContent).toContain("Corrupt download.");
    expect(row().textContent).toContain("its SHA-256 is 12");
    expect(row().querySelector('[role="progressbar"]')).toBeNull();
    expect(screen.getByRole("button", { name: "Retry" })).toBeTruthy();
  });

  it("deletes after a confirming second click and shows a refusal while loaded", async () => {
    const offer = { url: "https://example.test/ggml-base.bin", bytes: 147_951_465, publisher: "ggerganov/whisper.cpp", archive: false };
    const base = info({ id: "whisper-base", slot: "transcription", display_name: "Whisper base", engine: "whisper_cpp", active: true, download: offer });
    const calls = mockBackend({
      handler: (cmd) => {
        if (cmd === "list_models") return [base];
        if (cmd === "delete_model") throw { kind: "in_use", message: "Whisper base is loaded; unload it first (the Unload button), then delete it" };
        return undefined;
      },
    });
    await renderWithStores(Page);
    await settle();
    await fireEvent.click(screen.getByRole("button", { name: "Delete Whisper base" }));
    expect(calls.some((c) => c.cmd === "delete_model")).toBe(false);
    await fireEvent.click(screen.getByRole("button", { name: "Confirm deleting Whisper base" }));
    expect((await screen.findByRole("alert")).textContent).toContain("unload it first");
    expect(calls).toContainEqual({ cmd: "delete_model", args: { modelId: "whisper-base" } });
  });
});
