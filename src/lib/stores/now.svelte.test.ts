import { describe, expect, it, vi } from "vitest";
import { flushSync } from "svelte";
import { Now } from "./models.svelte";

describe("Now", () => {
  it("ticks only while something reads it, and stops when the last reader goes", () => {
    vi.useFakeTimers();
    try {
      const now = new Now();
      expect(vi.getTimerCount()).toBe(0);
      now.value; // read outside any effect: no ticker
      expect(vi.getTimerCount()).toBe(0);
      const seen: number[] = [];
      const stop = $effect.root(() => {
        $effect(() => {
          seen.push(now.value);
        });
      });
      flushSync();
      expect(vi.getTimerCount()).toBe(1);
      for (let second = 0; second < 3; second++) {
        vi.advanceTimersByTime(1000);
        flushSync();
      }
      expect(seen.length).toBe(4);
      stop();
      flushSync();
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });
});
