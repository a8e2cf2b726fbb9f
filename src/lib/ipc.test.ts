import { beforeEach, describe, expect, it, vi } from "vitest";

const invoke = vi.fn();
vi.mock("@tauri-apps/api/core", () => ({ invoke: (...args: unknown[]) => invoke(...args) }));

const { addTrainingExample, headerJson } = await import("./ipc");
const { TRAINING_EXAMPLE_HEADER } = await import("./bindings");

describe("headers that carry JSON", () => {
  beforeEach(() => invoke.mockReset());

  it("are pure ASCII and read back as the original text, whatever the name", () => {
    for (const name of ["café.png", "日本語 🐟.jpeg", "plain.png", 'quote " and \\ slash.png']) {
      const header = headerJson({ name, image_bytes: 3 });
      expect(/^[\x20-\x7e]*$/.test(header), header).toBe(true);
      expect(JSON.parse(header)).toEqual({ name, image_bytes: 3 });
    }
  });

  it("are what adding a training example sends", async () => {
    invoke.mockResolvedValue({ id: "ex-1" });
    await addTrainingExample("café.png", new Uint8Array([1, 2]), new Uint8Array([3]));
    const [, body, options] = invoke.mock.calls[0] as [string, Uint8Array, { headers: Record<string, string> }];
    expect(Array.from(body)).toEqual([1, 2, 3]);
    const header = options.headers[TRAINING_EXAMPLE_HEADER] ?? "";
    expect(/^[\x20-\x7e]*$/.test(header)).toBe(true);
    expect(JSON.parse(header)).toEqual({ name: "café.png", image_bytes: 2 });
  });
});
