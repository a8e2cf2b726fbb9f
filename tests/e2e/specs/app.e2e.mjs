// End-to-end: the real app, real models, a real WebKitGTK window. Runs with
// MODEL_INACTIVITY_TIMEOUT=3 (see scripts/e2e.sh), so idle unloading is observable.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";

const fixtures = process.env.DORMOUSE_FIXTURES;
const shots = process.env.E2E_SCREENSHOTS;
const scratch = process.env.E2E_SCRATCH;
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

const badge = () => $('[data-testid="status-badge"]');
const badgeState = async () => (await badge()).getAttribute("data-model-state");

const PAGES = { Transcribe: "/", Segment: "/segment", Models: "/models", Settings: "/settings" };
async function go(label) {
  await (await $(`nav a[href="${PAGES[label]}"]`)).click();
  await browser.waitUntil(async () => (await (await $("h1")).getText()) === label, { timeoutMsg: `no ${label} page` });
}

/** Records every state the badge shows, so fast transitions are not missed. */
async function recordBadge() {
  await browser.execute(() => {
    const el = document.querySelector('[data-testid="status-badge"]');
    window.__badge = [el.getAttribute("data-model-state")];
    new MutationObserver(() => {
      const state = el.getAttribute("data-model-state");
      if (window.__badge.at(-1) !== state) window.__badge.push(state);
    }).observe(el, { attributes: true, attributeFilter: ["data-model-state"] });
  });
}
const badgeHistory = () => browser.execute(() => window.__badge);

async function toastSaying(pattern) {
  let seen = [];
  await browser.waitUntil(
    async () => {
      seen = await browser.execute(() => [...document.querySelectorAll("[data-sonner-toast]")].map((t) => t.textContent ?? ""));
      return seen.some((t) => pattern.test(t));
    },
    { timeout: 10_000, timeoutMsg: `no toast matching ${pattern}` },
  ).catch(async (e) => {
    const html = await browser.execute(() => document.querySelector("[data-sonner-toaster]")?.outerHTML ?? "(no toaster)");
    throw new Error(`${e.message}; toasts seen: ${JSON.stringify(seen)}; toaster: ${html.slice(0, 600)}`);
  });
  return seen.find((t) => pattern.test(t));
}

async function dismissToasts() {
  await browser.execute(() => document.querySelectorAll("[data-sonner-toast]").forEach((t) => t.remove()));
}

async function openAudio(file) {
  await (await $('[data-testid="audio-file"]')).addValue(file);
}

describe("Dormouse", () => {
  afterEach(async function () {
    if (this.currentTest?.state === "failed" && process.env.E2E_FAILURES) {
      fs.mkdirSync(process.env.E2E_FAILURES, { recursive: true });
      await browser.saveScreenshot(path.join(process.env.E2E_FAILURES, `${this.currentTest.title.replace(/\W+/g, "-")}.png`));
    }
  });

  before(async () => {
    await browser.waitUntil(async () => (await badgeState()) === "unloaded", { timeoutMsg: "the badge never showed the initial status" });
  });

  it("says no models were loaded when there is nothing to unload", async () => {
    await (await $('[data-testid="unload-all"]')).click();
    await toastSaying(/No models were loaded/);
    await dismissToasts();
  });

  it("transcribes Beckett, loading on demand and unloading by itself after the timeout", async () => {
    await go("Transcribe");
    assert.equal(await badgeState(), "unloaded");
    await recordBadge();
    await openAudio(path.join(fixtures, "beckett.wav"));
    const transcript = await $('[data-testid="transcript"]');
    await transcript.waitForExist({ timeout: 120_000 });
    const text = await transcript.getText();
    assert.ok(wordErrorRate(BECKETT, text) <= 0.1, `transcript too far off: ${text}`);
    assert.equal(await badgeState(), "loaded");
    const history = await badgeHistory();
    assert.deepEqual(history.slice(0, 3), ["unloaded", "loading", "loaded"], `badge went ${history.join(" → ")}`);
    if (shots) await browser.saveScreenshot(path.join(shots, "transcribe.png"));
    // Nobody clicks: MODEL_INACTIVITY_TIMEOUT=3 unloads everything on its own.
    await browser.waitUntil(async () => (await badgeState()) === "unloaded", { timeout: 20_000, timeoutMsg: "models were not unloaded after the idle timeout" });
    assert.equal((await badgeHistory()).at(-1), "unloaded");
  });

  it("unload models says what it freed", async () => {
    // Load, then unload before the 3 s idle timeout does it for us (retried if the timer wins).
    let toast = null;
    for (let attempt = 0; attempt < 3 && toast === null; attempt++) {
      await openAudio(path.join(fixtures, "beckett.wav"));
      // By query, not by element handle: the old transcript node is replaced, not reused.
      const shown = () => browser.execute(() => document.querySelector('[data-testid="transcript"]') !== null);
      await browser.waitUntil(async () => !(await shown()), { timeout: 10_000, timeoutMsg: "the old transcript stayed" });
      await browser.waitUntil(shown, { timeout: 120_000, timeoutMsg: "no transcript" });
      await (await $('[data-testid="unload-all"]')).click();
      toast = await toastSaying(/Models unloaded: |No models were loaded/);
      if (!toast.includes("Models unloaded: ")) toast = null;
      await dismissToasts();
    }
    assert.ok(toast, "the idle timer unloaded the models before the button could, three times");
    assert.match(toast, /Models unloaded: Whisper base(, Silero VAD)? \(freed \d+(\.\d)? MB\)/);
    await browser.waitUntil(async () => (await badgeState()) === "unloaded");
  });

  it("shows a readable error for a corrupt audio file", async () => {
    const corrupt = path.join(scratch, "corrupt.wav");
    fs.writeFileSync(corrupt, Buffer.from("RIFF\u0010\u0000\u0000\u0000WAVEthis is not audio at all"));
    await openAudio(corrupt);
    const alert = await $('[data-testid="transcribe-error"]');
    await alert.waitForExist({ timeout: 30_000 });
    assert.match(await alert.getText(), /could not be decoded/);
  });

  it("shows the segment page", async () => {
    // WebKitWebDriver leaves this page's image input empty (files.length 0 after sending
    // a path), so segmentation itself is covered by the Rust command tests.
    await go("Segment");
    await (await $('[data-testid="image-file"]')).waitForExist();
    if (shots) await browser.saveScreenshot(path.join(shots, "segment.png"));
  });

  it("lists the models", async () => {
    await go("Models");
    await (await $('tr[data-model="whisper-base"]')).waitForExist();
    if (shots) await browser.saveScreenshot(path.join(shots, "models.png"));
  });

  it("keeps a settings change across a restart", async () => {
    await go("Settings");
    const each = await $("label*=Each model on its own");
    await each.click();
    await browser.waitUntil(async () => (await (await each.$("input")).isSelected()));
    if (shots) await browser.saveScreenshot(path.join(shots, "settings.png"));
    await browser.reloadSession();
    await browser.waitUntil(async () => (await badgeState()) !== null, { timeoutMsg: "the restarted app did not come up" });
    await go("Settings");
    const restored = await (await $("label*=Each model on its own")).$("input");
    await browser.waitUntil(async () => await restored.isSelected(), { timeoutMsg: "the timer setting did not survive the restart" });
  });
});
