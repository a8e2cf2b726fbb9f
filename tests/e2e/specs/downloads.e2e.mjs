// End-to-end: downloading models from the Models page in the real app. scripts/e2e.sh points
// two catalog models at this spec's HTTP server on 127.0.0.1 (DORMOUSE_CATALOG_OVERRIDES):
// "Whisper tiny" is served a real Whisper model (the fixture), throttled, with the first
// connection dropped part-way so the app must resume it; "Whisper small" is served bytes
// whose SHA-256 is not the one the catalog expects. Screenshots of each state go to docs/.
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const fixtures = process.env.DORMOUSE_FIXTURES;
const shots = process.env.E2E_SCREENSHOTS;
const port = Number(process.env.E2E_DOWNLOAD_PORT);

/** Serves `file` at 20 MB/s with Range support; the first request is cut after `dropAt` bytes. */
function startServer() {
  const whisper = fs.readFileSync(path.join(fixtures, "ggml-base.bin"));
  const files = { "/ggml-tiny.bin": whisper, "/ggml-small.bin": whisper.subarray(0, 6_000_000) };
  const seen = [];
  const server = http.createServer((req, res) => {
    const body = files[req.url];
    seen.push({ url: req.url, range: req.headers.range ?? null });
    if (!body) return res.writeHead(404).end();
    const start = Number(/bytes=(\d+)-/.exec(req.headers.range ?? "")?.[1] ?? 0);
    const headers = { "Content-Length": body.length - start, "Accept-Ranges": "bytes" };
    if (start > 0) res.writeHead(206, { ...headers, "Content-Range": `bytes ${start}-${body.length - 1}/${body.length}` });
    else res.writeHead(200, headers);
    const first = seen.filter((s) => s.url === req.url).length === 1;
    const dropAt = req.url === "/ggml-tiny.bin" && first ? 50_000_000 : Infinity;
    let at = start;
    const step = 512 * 1024;
    const timer = setInterval(() => {
      if (at >= body.length) { clearInterval(timer); return res.end(); }
      if (at >= dropAt) { clearInterval(timer); return req.socket.destroy(); }
      const end = Math.min(at + step, body.length);
      res.write(body.subarray(at, end));
      at = end;
    }, 25);
    req.on("close", () => clearInterval(timer));
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve({ server, seen })));
}

const row = (id) => $(`tr[data-model="${id}"]`);
const downloadText = async (id) => {
  const el = await $(`[data-testid="download-${id}"] [data-testid="download-text"]`);
  return (await el.isExisting()) ? el.getText() : "";
};

describe("Downloads", () => {
  let served;
  before(async () => {
    served = await startServer();
    await (await $('nav a[href="/models"]')).click();
    await (await row("whisper-tiny")).waitForExist({ timeout: 30_000 });
  });
  after(() => served?.server.close());

  it("downloads a model with live progress, resumes after the connection drops, and installs it", async () => {
    await (await (await row("whisper-tiny")).$("button*=Download")).click();
    await browser.waitUntil(async () => / of \d+ MB · .*MB\/s/.test(await downloadText("whisper-tiny")), {
      timeout: 30_000, timeoutMsg: "no progress shown",
    });
    if (shots) await browser.saveScreenshot(path.join(shots, "download-progress.png"));
    await browser.waitUntil(async () => /resumed at|retrying|Reconnecting/.test(await downloadText("whisper-tiny")), {
      timeout: 60_000, interval: 100, timeoutMsg: "the dropped connection was never shown",
    });
    await browser.waitUntil(async () => /resumed at \d+ MB/.test(await downloadText("whisper-tiny")), {
      timeout: 60_000, interval: 100, timeoutMsg: "the resumed download was never shown",
    });
    if (shots) await browser.saveScreenshot(path.join(shots, "download-resumed.png"));
    await browser.waitUntil(async () => (await (await row("whisper-tiny")).getAttribute("data-installed")) === "true", {
      timeout: 120_000, timeoutMsg: "the model was never installed",
    });
    const ranges = served.seen.filter((s) => s.url === "/ggml-tiny.bin").map((s) => s.range);
    assert.equal(ranges[0], null);
    assert.match(ranges[1] ?? "", /^bytes=\d+-$/, `the second request resumes: ${JSON.stringify(ranges)}`);
    assert.equal(ranges.length, 2);
  });

  it("reports a corrupt download and keeps nothing", async () => {
    await (await (await row("whisper-small")).$("button*=Download")).click();
    await browser.waitUntil(async () => /Corrupt download/.test(await downloadText("whisper-small")), {
      timeout: 60_000, timeoutMsg: "the checksum failure was never shown",
    });
    assert.match(await downloadText("whisper-small"), /arrived corrupt and was deleted: its SHA-256 \([0-9a-f]{12}…\) is not the publisher's \(0{12}…\)/);
    const detail = await (await $('[data-testid="download-whisper-small"] [data-testid="download-text"]')).getAttribute("title");
    assert.match(detail, /its SHA-256 is [0-9a-f]{64}, the publisher's is 0{64}/);
    assert.equal(await (await row("whisper-small")).getAttribute("data-installed"), "false");
    assert.ok(await (await (await row("whisper-small")).$("button*=Retry")).isExisting());
    if (shots) await browser.saveScreenshot(path.join(shots, "download-checksum.png"));
  });

  it("uses the downloaded model", async () => {
    await (await (await row("whisper-tiny")).$("button=Use")).click();
    await browser.waitUntil(async () => (await (await row("whisper-tiny")).getText()).includes("Active"), {
      timeoutMsg: "the downloaded model did not become active",
    });
  });
});
