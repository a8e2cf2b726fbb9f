import { describe, expect, it, vi } from "vitest";
import { fireEvent, screen } from "@testing-library/svelte";
import Page from "./models/+page.svelte";
import { mockBackend, renderWithStores, settle } from "$lib/test/harness";
import type { ModelInfo } from "$lib/types";

vi.mock("@tauri-apps/plugin-dialog", () => ({ open: vi.fn(async () => "/home/u/leaf.safetensors") }));

function info(over: Partial<ModelInfo> & Pick<ModelInfo, "id" | "slot" | "display_name">): ModelInfo {
  return {
    engine: "candle", is_user_model: false, path: `/m/${over.id}`, installed: true, file_bytes: 40e6, memory_bytes: 47e6,
    memory_measured: false, languages: "", licence: "Apache-2.0", good_for: "", active: false, ...over,
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
});
