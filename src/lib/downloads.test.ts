import { describe, expect, it } from "vitest";
import { downloadDoneMessage, downloadFraction, downloadLine } from "./format";
import { download } from "./test/harness";

describe("download wording", () => {
  it("shows bytes, speed and time left, and where a resumed download picked up", () => {
    expect(downloadLine(download())).toBe("43 MB of 78 MB · 5.2 MB/s · 7s left");
    expect(downloadLine(download({ resumed_from: 20_000_000, attempt: 2 }))).toBe("43 MB of 78 MB · 5.2 MB/s · 7s left · resumed at 20 MB");
    expect(downloadLine(download({ total_bytes: null, eta_secs: null, bytes_per_sec: 0 }))).toBe("43 MB");
    expect(downloadFraction(download())).toBeCloseTo(43 / 78);
    expect(downloadFraction(download({ total_bytes: null }))).toBeNull();
  });

  it("says when the connection dropped and what happens next", () => {
    expect(downloadLine(download({ phase: "retrying", retry_in_ms: 2000 }))).toBe("Connection lost at 43 MB — retrying in 2s (attempt 2 of 6)");
    expect(downloadLine(download({ phase: "connecting", resumed_from: 43_000_000, attempt: 2 }))).toBe("Reconnecting to resume at 43 MB (attempt 2 of 6)…");
    expect(downloadLine(download({ phase: "verifying" }))).toBe("Checking the file's SHA-256…");
  });

  it("words the end of a download", () => {
    const failed = download({ phase: "failed", error: { kind: "checksum_mismatch", message: "the downloaded file is corrupt", detail: "full" } });
    expect(downloadLine(failed)).toBe("the downloaded file is corrupt");
    expect(downloadDoneMessage(failed)).toEqual({ text: "Download of whisper-small failed: the downloaded file is corrupt", ok: false });
    expect(downloadDoneMessage(download({ phase: "finished" }))).toEqual({ text: "whisper-small downloaded and verified", ok: true });
  });
});
