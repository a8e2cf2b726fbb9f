import { describe, expect, it } from "vitest";
import { clock, idleLine, megabytes, micros, systemUnloadMessage, unloadMessage } from "./format";
import { model } from "./test/harness";

describe("format", () => {
  it("words durations and sizes", () => {
    expect(clock(62_000)).toBe("1m02s");
    expect(clock(45_400)).toBe("45s");
    expect(clock(3_780_000)).toBe("1h03m");
    expect(megabytes(312_400_000)).toBe("312 MB");
    expect(megabytes(3_200_000)).toBe("3.2 MB");
    expect(micros(412_000)).toBe("412 ms");
    expect(micros(24_000_000)).toBe("24.0 s");
  });

  it("shows idle time and the unload countdown from expires-at", () => {
    const now = 1_000_000;
    const loaded = model({ slot: "transcription", state: "loaded", last_used_ms: now - 62_000, expires_at_ms: now + 238_000 });
    expect(idleLine(loaded, now)).toBe("idle 1m02s · unloads in 3m58s");
    expect(idleLine({ ...loaded, expires_at_ms: null }, now)).toBe("idle 1m02s · kept loaded");
    expect(idleLine({ ...loaded, leases: 1 }, now)).toBe("in use");
    expect(idleLine({ ...loaded, state: "unloaded" }, now)).toBeNull();
  });

  it("says what an unload freed, or that nothing was loaded", () => {
    const at = { reason: "manual", at_ms: 0, resident_bytes: 0, bytes_freed: null } as const;
    expect(
      unloadMessage({
        unloaded: [
          { ...at, slot: "transcription", model_id: "whisper-base", display_name: "Whisper base" },
          { ...at, slot: "segmentation", model_id: "sam-tiny", display_name: "SAM tiny" },
        ],
        deferred: [],
        cancelled_loads: [],
        total_freed_bytes: 312_000_000,
      }),
    ).toBe("Models unloaded: Whisper base, SAM tiny (freed 312 MB)");
    expect(unloadMessage({ unloaded: [], deferred: [], cancelled_loads: [], total_freed_bytes: 0 })).toBe("No models were loaded");
  });

  it("toasts an unload the system caused (memory pressure, sleep), and only those", () => {
    const unloaded = { slot: "transcription", model_id: "whisper-base", display_name: "Whisper base", resident_bytes: 205_000_000, at_ms: 0 } as const;
    expect(systemUnloadMessage({ ...unloaded, reason: "memory_pressure", bytes_freed: 201_000_000 })).toBe(
      "Unloaded Whisper base: the system was low on memory, freed 201 MB",
    );
    expect(systemUnloadMessage({ ...unloaded, reason: "memory_pressure", bytes_freed: null })).toBe(
      "Unloaded Whisper base: the system was low on memory, freed 205 MB",
    );
    expect(systemUnloadMessage({ ...unloaded, reason: "system_sleep", bytes_freed: 199_000_000 })).toBe(
      "Unloaded Whisper base before the computer slept, freed 199 MB",
    );
    for (const reason of ["idle_timeout", "manual", "immediate", "evicted_for_memory", "shutdown"] as const) {
      expect(systemUnloadMessage({ ...unloaded, reason, bytes_freed: 1 })).toBeNull();
    }
  });
});
