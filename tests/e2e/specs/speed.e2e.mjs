// End-to-end: how fast the real app answers, asked from its page over the IPC the front end
// uses (the time is taken in the page, so it includes the IPC and the JSON both ways):
// transcribing Beckett cold (nothing loaded) and warm, with the language given and detected,
// without and with silence trimming; segmenting a new image at once, after 2 s of "thinking"
// (the embedding is computed when the image opens), and re-prompts; the get_model_status
// round trip. Printed, not asserted: docs/benchmarks.md sets these beside the engine benches'
// figures (timing is measured by benchmarks, not tests).
import fs from "node:fs";
import path from "node:path";
import zlib from "node:zlib";
import { invoke } from "../helpers.mjs";

const fixtures = process.env.DORMOUSE_FIXTURES;
const scratch = process.env.E2E_SCRATCH;
const RUNS = 5;

/** Writes a w×h RGB PNG: a yellow rectangle on a blue-grey ground, tinted by `shade`. */
function writePng(file, w, h, shade) {
  const rows = Buffer.alloc((w * 3 + 1) * h);
  for (let y = 0; y < h; y++) {
    const row = y * (w * 3 + 1);
    for (let x = 0; x < w; x++) {
      const inside = x >= w / 4 && x < (3 * w) / 4 && y >= h / 4 && y < (3 * h) / 4;
      rows.set(inside ? [230, 200, 40 + shade] : [20 + shade, 30, (y + x) % 256], row + 1 + x * 3);
    }
  }
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const body = Buffer.concat([Buffer.from(type), data]);
    const out = Buffer.alloc(body.length + 8);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc(body), body.length + 4);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(w, 0);
  header.writeUInt32BE(h, 4);
  header.set([8, 2, 0, 0, 0], 8);
  fs.writeFileSync(
    file,
    Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk("IHDR", header),
      chunk("IDAT", zlib.deflateSync(rows)),
      chunk("IEND", Buffer.alloc(0)),
    ]),
  );
}

/** Runs a command from the page; resolves to { ms, result } (ms measured in the page). */
const timed = (command, args) =>
  browser.executeAsync(
    (command, args, done) => {
      const t = performance.now();
      window.__TAURI_INTERNALS__.invoke(command, args).then(
        (result) => done({ ms: performance.now() - t, result }),
        (error) => done({ ms: performance.now() - t, error }),
      );
    },
    command,
    args,
  );

async function ok(command, args) {
  const out = await timed(command, args);
  if (out.error) throw new Error(`${command}: ${JSON.stringify(out.error)}`);
  return out;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ms = (x) => `${Math.round(x)} ms`;

describe("How fast the app answers (printed, not asserted)", () => {
  before(async () => {
    await (await $('[data-testid="status-badge"]')).waitForExist({ timeout: 60_000 });
    // Keep models loaded between the runs (the e2e run's idle timeout is 3 s).
    await invoke("update_model_config", { memory: { strategy: "always_loaded" } });
    // The downloads spec leaves its Whisper tiny active; the engine benches run Whisper base.
    const chosen = await invoke("set_model", { task: "transcription", modelId: "whisper-base" });
    if (chosen?.error) throw new Error(`Whisper base not chosen: ${JSON.stringify(chosen)}`);
  });
  after(async () => {
    await invoke("update_model_config", { memory: { strategy: "auto" } });
    await invoke("manually_unload_model", { slot: null });
  });

  it("transcribes Beckett cold and warm", async () => {
    const beckett = path.join(fixtures, "beckett.wav");
    const settings = (language, skipSilence) => ({ language, translate: false, skip_silence: skipSilence });
    await invoke("manually_unload_model", { slot: null });
    const rows = [];
    const cold = await ok("transcribe", { path: beckett, settings: settings("en", false) });
    rows.push(`| Beckett, cold (load included), language en, no VAD | ${ms(cold.ms)} | load wait ${ms(cold.result.timings.wait_us / 1000)}, inference ${ms(cold.result.timings.inference_us / 1000)} | ${JSON.stringify(cold.result.text)} |`);
    for (const [label, language, skip] of [
      ["warm, language en, no VAD", "en", false],
      ["warm, language detected, no VAD", null, false],
      ["warm, language en, silence trimmed (the app's default)", "en", true],
    ]) {
      const times = [];
      const inference = [];
      let text = "";
      for (let i = 0; i < RUNS; i++) {
        const run = await ok("transcribe", { path: beckett, settings: settings(language, skip) });
        times.push(run.ms);
        inference.push(run.result.timings.inference_us / 1000);
        text = run.result.text;
      }
      rows.push(`| Beckett, ${label}, median of ${RUNS} | ${ms(median(times))} | inference ${ms(median(inference))} | ${JSON.stringify(text)} |`);
    }
    console.log(["app speed, transcription:", "| request | in the page | in the app | text |", "|---|---|---|---|", ...rows].join("\n"));
  });

  it("segments a new image at once, after 2 s of thinking, and re-prompts", async () => {
    const images = [0, 1, 2].map((shade) => {
      const file = path.join(scratch, `speed-${shade}.png`);
      writePng(file, 1024, 768, shade * 10);
      return file;
    });
    const click = (image_id) => ({ request: { image_id, points: [{ x: 512, y: 384, foreground: true }], bbox: null } });
    await invoke("manually_unload_model", { slot: null });
    const rows = [];
    // Cold: the model loads and the image is embedded as it opens; the click waits for both.
    // What the app itself measured: the engine's call (inference) and the whole command.
    const inApp = (r) => `inference ${ms(r.timings.inference_us / 1000)}, command ${ms(r.total_us / 1000)}, embedding reused: ${r.embedding_cached}`;
    let opened = await ok("open_image_file", { path: images[0] });
    let first = await ok("segment", click(opened.result.image_id));
    rows.push(`| click at once on a new image, model cold | ${ms(opened.ms + first.ms)} (open ${ms(opened.ms)}, click ${ms(first.ms)}) | ${inApp(first.result)} |`);
    opened = await ok("open_image_file", { path: images[1] });
    first = await ok("segment", click(opened.result.image_id));
    rows.push(`| click at once on a new image, model warm | ${ms(opened.ms + first.ms)} (open ${ms(opened.ms)}, click ${ms(first.ms)}) | ${inApp(first.result)} |`);
    opened = await ok("open_image_file", { path: images[2] });
    await browser.pause(2000);
    first = await ok("segment", click(opened.result.image_id));
    rows.push(`| click 2 s after opening a new image | ${ms(first.ms)} | ${inApp(first.result)} |`);
    const again = [];
    const againInference = [];
    const againCommand = [];
    for (let i = 0; i < 7; i++) {
      const request = { request: { image_id: opened.result.image_id, points: [{ x: 300 + 50 * i, y: 300, foreground: true }], bbox: [256, 192, 768, 576] } };
      const run = await ok("segment", request);
      again.push(run.ms);
      againInference.push(run.result.timings.inference_us / 1000);
      againCommand.push(run.result.total_us / 1000);
    }
    rows.push(`| re-prompt (click + box), median of 7 | ${ms(median(again))} | inference ${ms(median(againInference))}, command ${ms(median(againCommand))} |`);
    console.log(["app speed, segmentation (MobileSAM, 1024×768):", "| request | in the page | in the app |", "|---|---|---|", ...rows].join("\n"));
  });

  it("measures the get_model_status round trip", async () => {
    const times = await browser.executeAsync((done) => {
      const invoke = window.__TAURI_INTERNALS__.invoke;
      (async () => {
        const out = [];
        for (let i = 0; i < 200; i++) {
          const t = performance.now();
          await invoke("get_model_status");
          out.push(performance.now() - t);
        }
        done(out.sort((a, b) => a - b));
      })();
    });
    const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))].toFixed(2);
    console.log(`app speed, get_model_status round trip over 200 calls: median ${at(0.5)} ms, p95 ${at(0.95)} ms, max ${at(1)} ms`);
  });
});
