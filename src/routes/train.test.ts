import { describe, expect, it } from "vitest";
import { fireEvent, screen } from "@testing-library/svelte";
import { emit } from "@tauri-apps/api/event";
import Page from "./train/+page.svelte";
import { mockBackend, renderWithStores, settle, trainingView } from "$lib/test/harness";
import type { TrainingExample } from "$lib/types";

function example(n: number): TrainingExample {
  return { id: `ex-${n}`, name: `leaf-${n}.png`, width: 256, height: 192, mask_pixels: 4000, added_at_ms: n };
}

function pick(input: HTMLInputElement, names: string[]) {
  const files = names.map((name) => new File([new Uint8Array([1, 2, 3])], name, { type: "image/png" }));
  Object.defineProperty(input, "files", { value: files, configurable: true });
  return fireEvent.change(input);
}

const outcome = {
  model: {
    id: "user:leaves", slot: "segmentation" as const, display_name: "Leaves", engine: "candle" as const, is_user_model: true,
    path: "/m/user/leaves.safetensors", installed: true, file_bytes: 40e6, memory_bytes: 40e6, memory_measured: false,
    languages: "", licence: "yours", good_for: "", active: true, download: null, partial_bytes: null, training: null,
  },
  record: { base_model: "sam-tiny", pairs: 3, validation_pairs: 0, steps: 60, learning_rate: 0.001, iou_before: 0.41, iou_after: 0.87, validation_iou: null, duration_ms: 80_000 },
};

describe("Train page", () => {
  URL.createObjectURL = () => "blob:thumb";
  URL.revokeObjectURL = () => {};

  it("pairs picked files by name, adds each pair as raw bytes and shows what was refused", async () => {
    let examples: TrainingExample[] = [];
    const calls = mockBackend({
      handler: (cmd, args) => {
        if (cmd === "list_training_examples") return examples;
        if (cmd === "training_thumbnail") return new Uint8Array([137, 80]).buffer;
        if (cmd === "add_training_example") {
          if (examples.length === 1) throw { kind: "invalid_dataset", message: "leaf-2.png: the mask is 10×10 but the image is 256×192" };
          examples = [...examples, example(examples.length + 1)];
          return examples.at(-1);
        }
        void args;
        return undefined;
      },
    });
    await renderWithStores(Page);
    expect(screen.getByText(/No examples yet/)).toBeTruthy();
    expect((screen.getByTestId("start-training") as HTMLButtonElement).disabled).toBe(true);
    await pick(screen.getByTestId("training-files") as HTMLInputElement, ["leaf-1.png", "leaf-1.mask.png", "leaf-2.png", "leaf-2_mask.png", "leaf-3.png"]);
    await settle();
    expect(calls.filter((c) => c.cmd === "add_training_example")).toHaveLength(2);
    expect(calls.find((c) => c.cmd === "add_training_example")?.args).toBeInstanceOf(Uint8Array);
    expect(screen.getByRole("alert").textContent).toContain("the mask is 10×10");
    expect(screen.getByTestId("waiting").textContent).toBe("leaf-3.png is waiting for its mask");
    expect(document.querySelectorAll("li[data-example]")).toHaveLength(1);
    // The mask picked later completes the waiting pair.
    examples = [];
    await pick(screen.getByTestId("training-files") as HTMLInputElement, ["leaf-3.mask.png"]);
    await settle();
    expect(screen.queryByTestId("waiting")).toBeNull();
    expect(calls.filter((c) => c.cmd === "add_training_example")).toHaveLength(3);
  });

  it("trains with a live progress line and chart, then shows the new model as active", async () => {
    const calls = mockBackend({
      handler: (cmd) => {
        if (cmd === "list_training_examples") return [example(1), example(2), example(3)];
        if (cmd === "training_thumbnail") return new Uint8Array([137, 80]).buffer;
        if (cmd === "start_training") return trainingView();
        if (cmd === "cancel_training") return true;
        return undefined;
      },
    });
    await renderWithStores(Page);
    await settle();
    const start = screen.getByTestId("start-training") as HTMLButtonElement;
    expect(start.textContent).toContain("Train on 3 examples");
    await fireEvent.click(start);
    await settle();
    expect(calls.find((c) => c.cmd === "start_training")?.args).toEqual({
      request: { display_name: "Custom model", example_ids: null, steps: 60, learning_rate: null },
    });
    expect(screen.getByTestId("training-progress").textContent).toContain("Loading the base model");
    await emit("training-progress", trainingView({ phase: "training", embedded: 3, step: 1, last: { step: 1, loss: 1.6, validation_iou: null }, eta_ms: 59_000 }));
    await emit("training-progress", trainingView({ phase: "training", embedded: 3, step: 6, last: { step: 6, loss: 1.2, validation_iou: 0.3 }, eta_ms: 54_000 }));
    await emit("training-progress", trainingView({ phase: "training", embedded: 3, step: 12, last: { step: 12, loss: 0.9, validation_iou: 0.6 }, eta_ms: 48_000 }));
    await settle();
    expect(screen.getByTestId("training-progress").textContent).toContain("Step 12 of 60 · loss 0.900 · 48s left");
    expect(document.querySelector("polyline.loss")?.getAttribute("points")?.split(" ")).toHaveLength(3);
    expect(document.querySelectorAll("circle.iou-dot")).toHaveLength(2);
    expect(document.querySelector("figcaption")?.textContent?.replace(/\s+/g, " ")).toContain("IoU 0.60");
    // Cancel is offered while it runs.
    await fireEvent.click(screen.getByTestId("cancel-training"));
    expect(calls.some((c) => c.cmd === "cancel_training")).toBe(true);
    await emit("training-progress", trainingView({ phase: "done", embedded: 3, step: 60, eta_ms: 0, outcome }));
    await settle();
    const result = screen.getByTestId("training-result");
    expect(result.textContent).toContain("Custom model");
    expect(result.textContent).toContain("IoU on your examples 0.41 → 0.87, now active");
    expect(screen.getByTestId("start-training")).toBeTruthy();
  });

  it("says when training was cancelled and when it could not start", async () => {
    mockBackend({
      handler: (cmd) => {
        if (cmd === "list_training_examples") return [example(1), example(2)];
        if (cmd === "training_thumbnail") return new Uint8Array([137, 80]).buffer;
        if (cmd === "start_training") throw { kind: "model_not_installed", model_id: "sam-tiny", expected_path: "/m/mobile_sam.safetensors", message: "SAM tiny is not installed" };
        return undefined;
      },
    });
    await renderWithStores(Page);
    await settle();
    await fireEvent.click(screen.getByTestId("start-training"));
    await settle();
    expect(screen.getByRole("alert").textContent).toContain("SAM tiny is not installed");
    await emit("training-progress", trainingView({ job_id: 4, phase: "cancelled", step: 7 }));
    await settle();
    expect(screen.getByTestId("training-progress").textContent).toContain("Training cancelled; nothing was changed");
  });
});
