import { describe, expect, it } from "vitest";
import { isMask, pairFiles } from "./training";
import { iouChange, trainingFraction, trainingLine } from "./format";
import { trainingView } from "./test/harness";

const f = (name: string) => ({ name });

describe("pairing training files", () => {
  it("pairs images with masks named after them, whatever the separator and case", () => {
    const { pairs, waiting, rejected } = pairFiles([
      f("leaf.png"), f("leaf.mask.png"), f("Cell_2.JPG"), f("cell_2_mask.png"), f("part-3.png"), f("part-3 mask.jpeg"),
      f("lonely.png"), f("orphan-mask.png"), f("notes.txt"),
    ]);
    expect(pairs.map((p) => [p.image.name, p.mask.name])).toEqual([
      ["leaf.png", "leaf.mask.png"], ["Cell_2.JPG", "cell_2_mask.png"], ["part-3.png", "part-3 mask.jpeg"],
    ]);
    expect(waiting.map((w) => w.name)).toEqual(["lonely.png", "orphan-mask.png"]);
    expect(rejected.map((r) => r.name)).toEqual(["notes.txt"]);
    expect(isMask("masked.png")).toBe(false);
    expect(isMask("a.mask.png")).toBe(true);
  });
});

describe("training wording", () => {
  it("says where a job is", () => {
    expect(trainingLine(trainingView())).toBe("Loading the base model…");
    expect(trainingLine(trainingView({ embedded: 2, pairs: 5 }))).toBe("Embedding your images (2 of 5)…");
    expect(trainingLine(trainingView({ phase: "training", step: 12, last: { step: 12, loss: 0.8421, validation_iou: null }, eta_ms: 40_000 })))
      .toBe("Step 12 of 60 · loss 0.842 · 40s left");
    expect(trainingLine(trainingView({ phase: "cancelled" }))).toBe("Training cancelled; nothing was changed");
    expect(trainingLine(trainingView({ phase: "failed", error: { kind: "internal", message: "disk full" } }))).toBe("Training failed: disk full");
    const record = { base_model: "sam-tiny", pairs: 5, validation_pairs: 1, steps: 60, learning_rate: 0.001, iou_before: 0.412, iou_after: 0.871, validation_iou: null, duration_ms: 90_000 };
    expect(iouChange(record)).toBe("IoU on your examples 0.41 → 0.87");
    expect(trainingFraction(trainingView({ phase: "training", embedded: 3, pairs: 3, step: 30, steps: 60 }))).toBeCloseTo(0.55);
  });
});
