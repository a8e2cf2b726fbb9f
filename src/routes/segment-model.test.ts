import { describe, expect, it } from "vitest";
import { fireEvent, screen } from "@testing-library/svelte";
import SegmentPage from "./segment/+page.svelte";
import { mockBackend, model, renderWithStores, settle } from "$lib/test/harness";

function backend(custom: boolean) {
  return mockBackend({
    models: [
      model({ slot: "transcription" }),
      custom
        ? model({ slot: "segmentation", model_id: "user:leaf-cells", display_name: "Leaf cells", is_user_model: true })
        : model({ slot: "segmentation" }),
      model({ slot: "vad" }),
    ],
    handler: (cmd) => (cmd === "set_model" ? model({ slot: "segmentation", model_id: "sam-vit-b" }) : undefined),
  });
}

describe("Segment page model picker", () => {
  it("shows an active custom model in green and asks before switching away from it", async () => {
    const calls = backend(true);
    await renderWithStores(SegmentPage);
    await settle();
    expect(screen.getByTestId("custom-model").textContent).toBe("Custom model");
    const select = screen.getByTestId("segment-model") as HTMLSelectElement;
    expect(select.value).toBe("custom");
    expect(select.selectedOptions[0]?.textContent).toBe("Leaf cells");

    await fireEvent.change(select, { target: { value: "sam-vit-b" } });
    await settle();
    expect(calls.some((c) => c.cmd === "set_model")).toBe(false);
    expect(select.value).toBe("custom");
    expect(screen.getByTestId("confirm-size").textContent).toContain("SAM ViT-B instead of your custom model “Leaf cells”");

    await fireEvent.click(screen.getByTestId("keep-custom"));
    await settle();
    expect(screen.queryByTestId("confirm-size")).toBeNull();
    expect(calls.some((c) => c.cmd === "set_model")).toBe(false);

    await fireEvent.change(select, { target: { value: "sam-vit-b" } });
    await settle();
    await fireEvent.click(screen.getByTestId("confirm-switch"));
    await settle();
    const set = calls.find((c) => c.cmd === "set_model");
    expect(set?.args).toMatchObject({ task: "segmentation", modelId: "sam-vit-b" });
  });

  it("switches sizes at once when no custom model is active", async () => {
    const calls = backend(false);
    await renderWithStores(SegmentPage);
    await settle();
    expect(screen.queryByTestId("custom-model")).toBeNull();
    await fireEvent.change(screen.getByTestId("segment-model"), { target: { value: "sam-vit-b" } });
    await settle();
    expect(calls.some((c) => c.cmd === "set_model")).toBe(true);
  });
});
