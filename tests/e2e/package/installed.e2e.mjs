// End-to-end: the installed .deb (/usr/bin/dormouse) on a machine where Dormouse has never
// run (empty config, data and cache folders; scripts/package-test.sh sets them up). The app
// must start, download Whisper base from the catalog (pointed at this spec's server on
// 127.0.0.1 by DORMOUSE_CATALOG_OVERRIDES) and transcribe with nothing but what the
// package ships: ONNX Runtime and Silero VAD from /usr/lib/Dormouse.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";

const fixtures = process.env.DORMOUSE_FIXTURES;
const port = Number(process.env.E2E_DOWNLOAD_PORT);
const resources = process.env.E2E_PACKAGE_RESOURCES;
const BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.";

function words(text) {
  return text.toLowerCase().replace(/[^a-z' ]/g, " ").split(/\s+/).filter(Boolean);
}
function wordErrorRate(reference, hypothesis) {
  const r = words(reference);
  const h = words(hypothesis);
  const d = Array.from({ length: r.length + 1 }, (_, i) => [i, ...Array(h.length).fill(0)]);
  for (let j = 1; j <= h.length; j++) d[0][j] = j;
  for (let i = 1; i <= r.length; i++)
    for (let j = 1; j <= h.length; j++)
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (r[i - 1] === h[j - 1] ? 0 : 1));
  return d[r.length][h.length] / r.length;
}

/** Serves the fixture Whisper base model as the catalog's "whisper-base" download. */
function startServer() {
  const whisper = fs.readFileSync(path.join(fixtures, "ggml-base.bin"));
  const server = http.createServer((req, res) => {
    if (req.url !== "/ggml-base.bin") return res.writeHead(404).end();
    res.writeHead(200, { "Content-Length": whisper.length });
    res.end(whisper);
  });
  return new Promise((resolve) => server.listen(port, "127.0.0.1", () => resolve(server)));
}

const invoke = (command, args = {}) =>
  browser.executeAsync(
    (command, args, done) => window.__TAURI_INTERNALS__.invoke(command, args).then(
      (value) => done({ ok: true, value }),
      (error) => done({ ok: false, error }),
    ),
    command,
    args,
  );

const appPid = () => execFileSync("pgrep", ["-n", "-x", "dormouse"]).toString().trim();

/** The installed app's resident memory, from the kernel (kB in /proc/<pid>/status). */
function procRssMiB() {
  const pid = appPid();
  const kb = Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))[1]);
  return kb / 1024;
}

const openAudio = async (file) => (await $('[data-testid="audio-file"]')).addValue(file);
const badgeState = async () => (await $('[data-testid="status-badge"]')).getAttribute("data-model-state");

describe("The installed package", () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(() => server?.close());

  it("starts and answers get_model_status", async () => {
    await browser.waitUntil(async () => (await badgeState()) === "unloaded", { timeoutMsg: "the badge never showed the status" });
    const status = await invoke("get_model_status");
    assert.ok(status.ok, JSON.stringify(status.error));
    const slots = status.value.models.map((m) => m.slot).sort();
    assert.deepEqual(slots, ["segmentation", "transcription", "vad"]);
    const vad = status.value.models.find((m) => m.slot === "vad");
    assert.equal(vad.model_path, path.join(resources, "silero_vad.onnx"), "Silero VAD must come from the package");
    await browser.pause(3000);
    console.log(`installed app (debug build), idle RSS with no model loaded: ${procRssMiB().toFixed(1)} MiB`);
  });

  it("downloads Whisper base where it is needed, then transcribes with the package's VAD and ONNX Runtime", async () => {
    // By query, not by element handle: the page re-renders these nodes as the state changes.
    await openAudio(path.join(fixtures, "beckett.wav"));
    const offer = () =>
      browser.execute(() => {
        const button = [...document.querySelectorAll("button")].find((b) => b.textContent?.includes("Download Whisper base"));
        button?.click();
        return button !== undefined;
      });
    await browser.waitUntil(offer, { timeout: 30_000, timeoutMsg: "a fresh install did not offer to download Whisper base" });
    await browser.waitUntil(() => browser.execute(() => document.body.textContent?.includes("Downloaded and verified") ?? false), {
      timeout: 120_000,
      timeoutMsg: "the download did not finish",
    });
    await openAudio(path.join(fixtures, "beckett.wav"));
    const transcript = () => browser.execute(() => document.querySelector('[data-testid="transcript"]')?.textContent ?? null);
    await browser.waitUntil(async () => (await transcript()) !== null, { timeout: 180_000, timeoutMsg: "no transcript" });
    const text = await transcript();
    assert.ok(wordErrorRate(BECKETT, text) <= 0.1, `transcript too far off: ${text}`);
    const status = await invoke("get_model_status");
    const vad = status.value.models.find((m) => m.slot === "vad");
    assert.ok(vad.state === "loaded" || vad.last_unload, "the VAD from the package was used");
  });

  it("unloads Whisper and reports what it freed, as the kernel sees it", async () => {
    await browser.waitUntil(async () => (await badgeState()) === "loaded", { timeout: 10_000, timeoutMsg: "nothing stayed loaded" });
    const before = procRssMiB();
    const result = await invoke("manually_unload_model", { slot: null });
    assert.ok(result.ok, JSON.stringify(result.error));
    await browser.pause(500);
    const after = procRssMiB();
    const whisper = result.value.unloaded.find((u) => u.slot === "transcription");
    assert.ok(whisper, `Whisper was not among the unloaded: ${JSON.stringify(result.value)}`);
    const reported = (whisper.bytes_freed ?? 0) / (1024 * 1024);
    console.log(
      `unload of ${result.value.unloaded.map((u) => u.display_name).join(", ")}: the app measured ${(result.value.total_freed_bytes / 1048576).toFixed(1)} MiB freed ` +
        `(Whisper ${reported.toFixed(1)} MiB); /proc VmRSS ${before.toFixed(1)} → ${after.toFixed(1)} MiB (${(before - after).toFixed(1)} MiB)`,
    );
    assert.ok(result.value.total_freed_bytes > 50 * 1048576, "an unload of Whisper base frees more than 50 MiB");
  });

  it("quits cleanly when the system ends it (SIGTERM), with a model loaded", async () => {
    await openAudio(path.join(fixtures, "beckett.wav"));
    await browser.waitUntil(async () => (await badgeState()) === "loaded", { timeout: 120_000, timeoutMsg: "Whisper did not load again" });
    const pid = Number(appPid());
    process.kill(pid, "SIGTERM");
    const start = Date.now();
    while (fs.existsSync(`/proc/${pid}`) && Date.now() - start < 20_000) await new Promise((r) => setTimeout(r, 100));
    assert.ok(!fs.existsSync(`/proc/${pid}`), "the app was still running 20 s after SIGTERM");
    console.log(`quit on SIGTERM in ${Date.now() - start} ms`);
  });
});
