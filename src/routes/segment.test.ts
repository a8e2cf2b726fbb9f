import { describe, expect, it } from "vitest";
import { fireEvent, screen } from "@testing-library/svelte";
import Page from "./segment/+page.svelte";
import { emit } from "@tauri-apps/api/event";
import { mockBackend, renderWithStores, settle } from "$lib/test/harness";

function pick(input: HTMLInputElement, bytes: number[]) {
  const file = new File([new Uint8Array(bytes)], "cells.png", { type: "image/png" });
  Object.defineProperty(input, "files", { value: [file], configurable: true });
  return fireEvent.change(input);
}

describe("Segment page", () => {
  it("opens the image as raw bytes, segments a click and fetches the mask", async () => {
    // jsdom has no object URLs.
    URL.createObjectURL = () => "blob:mask";
    URL.revokeObjectURL = () => {};
    const calls = mockBackend({
      handler: (cmd) => {
        if (cmd === "open_image") return { image_id: 7, width: 200, height: 100, preparing: false };
        if (cmd === "segment")
          return { mask_id: 3, width: 200, height: 100, score: 0.91, area: 5000, embedding_cached: false, model_id: "sam-tiny", total_us: 900_000, timings: { wait_us: 30_000, cold: true, inference_us: 850_000 } };
        if (cmd === "mask_png") return new Uint8Array([137, 80, 78, 71]).buffer;
        if (cmd === "add_segment_to_training_set") return { id: "ex-1", name: "Segment page, image 7", width: 200, height: 100, mask_pixels: 5000, added_at_ms: 1 };
        return undefined;
      },
    });
    await renderWithStores(Page);
    await pick(screen.getByTestId("image-file") as HTMLInputElement, [137, 80, 78, 71]);
    await settle();
    expect(calls.find((c) => c.cmd === "open_image")?.args).toBeInstanceOf(Uint8Array);
    const stage = document.querySelector<HTMLElement>(".stage");
    expect(stage).not.toBeNull();
    stage!.getBoundingClientRect = () => ({ left: 0, top: 0, width: 400, height: 200, right: 400, bottom: 200, x: 0, y: 0, toJSON: () => ({}) });
    await fireEvent.click(stage!, { clientX: 100, clientY: 50 });
    await settle();
    const request = calls.find((c) => c.cmd === "segment")?.args as { request: { image_id: number; points: unknown[] } };
    expect(request.request).toEqual({ image_id: 7, points: [{ x: 50, y: 25, foreground: true }], bbox: null });
    expect(calls).toContainEqual({ cmd: "mask_png", args: { maskId: 3 } });
    expect(screen.getByTestId("segment-result").textContent).toContain("Score 0.91");
    expect(screen.getByText("Export mask (PNG)")).toBeTruthy();
    // The mask just made goes into the training set.
    await fireEvent.click(screen.getByTestId("add-to-training"));
    await settle();
    expect(calls).toContainEqual({ cmd: "add_segment_to_training_set", args: { imageId: 7, maskId: 3 } });
  });

  it("says while the opened image is being prepared, and when it is ready", async () => {
    URL.createObjectURL = () => "blob:image";
    URL.revokeObjectURL = () => {};
    let next = 7;
    mockBackend({ handler: (cmd) => (cmd === "open_image" ? { image_id: next++, width: 20, height: 10, preparing: true } : undefined) });
    await renderWithStores(Page);
    // Image 7's embedding was cached already: its event can beat `open_image`'s answer.
    await emit("image-prepared", { image_id: 7, outcome: { kind: "ready", ms: 0 } });
    await pick(screen.getByTestId("image-file") as HTMLInputElement, [137, 80, 78, 71]);
    await settle();
    expect(screen.queryByTestId("preparing")).toBeNull();
    expect(screen.getByTestId("prepared").textContent).toBe("Image ready: click the object.");
    // Image 8 is embedded after it opens; an event for another image changes nothing.
    await pick(screen.getByTestId("image-file") as HTMLInputElement, [137, 80, 78, 71]);
    await settle();
    expect(screen.getByTestId("preparing").textContent).toContain("Preparing the image");
    await emit("image-prepared", { image_id: 7, outcome: { kind: "ready", ms: 5 } });
    await settle();
    expect(screen.getByTestId("preparing")).toBeTruthy();
    await emit("image-prepared", { image_id: 8, outcome: { kind: "ready", ms: 880 } });
    await settle();
    expect(screen.queryByTestId("preparing")).toBeNull();
    expect(screen.getByTestId("prepared").textContent).toContain("embedded in 880 ms");
    // A failure ahead of the click only drops the hint: the click reports any error.
    await pick(screen.getByTestId("image-file") as HTMLInputElement, [137, 80, 78, 71]);
    await settle();
    await emit("image-prepared", { image_id: 9, outcome: { kind: "failed", message: "out of memory" } });
    await settle();
    expect(screen.queryByTestId("preparing")).toBeNull();
    expect(screen.queryByTestId("prepared")).toBeNull();
    expect(screen.queryByRole("alert")).toBeNull();
  });

  it("shows why an image could not be opened", async () => {
    mockBackend({
      handler: (cmd) => {
        if (cmd === "open_image") throw { kind: "invalid_input", message: "the image could not be decoded: unknown format" };
        return undefined;
      },
    });
    await renderWithStores(Page);
    await pick(screen.getByTestId("image-file") as HTMLInputElement, [1, 2, 3]);
    expect((await screen.findByRole("alert")).textContent).toContain("could not be decoded");
  });
});
