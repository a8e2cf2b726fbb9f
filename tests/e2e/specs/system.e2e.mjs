// End-to-end: models unloaded from outside the window — the tray's menu (over the session
// D-Bus, as a desktop panel clicks it), `dormouse unload` from a shell, and the system's
// memory pressure (injected through the debug build's control socket) — and the window,
// the badge and the tray all say so. scripts/e2e.sh runs the app on a private session bus
// with a StatusNotifier watcher (`tray_probe watch`), so the tray is exported as on a
// desktop. The strategy is "always loaded" here, so no idle timeout races the unloads.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { badgeState, invoke, loadWhisper } from "../helpers.mjs";

const root = fileURLToPath(new URL("../../../", import.meta.url));
const APP = process.env.DORMOUSE_APP ?? path.join(root, "target/debug/dormouse");
const PROBE = path.join(root, "target/debug/examples/tray_probe");

/** Runs a command; its exit status and output (stdout then stderr). */
function run(file, ...args) {
  try {
    return { code: 0, out: execFileSync(file, args, { encoding: "utf8", timeout: 60_000 }) };
  } catch (e) {
    return { code: e.status, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}
const cli = (...args) => run(APP, ...args);

/** The tray menu's entries as the panel sees them: [{ id, enabled, label }]. */
function trayMenu() {
  const { code, out } = run(PROBE, "menu");
  assert.equal(code, 0, out);
  return out
    .trim()
    .split("\n")
    .map((line) => {
      const [id, enabled, label] = line.split("\t");
      return { id: Number(id), enabled: enabled === "true", label };
    });
}

async function toastSaying(pattern, timeout = 10_000) {
  let seen = [];
  await browser.waitUntil(
    async () => {
      seen = await browser.execute(() => [...document.querySelectorAll("[data-sonner-toast]")].map((t) => (t.textContent ?? "").trim()));
      return seen.some((t) => pattern.test(t));
    },
    { timeout, timeoutMsg: `no toast matching ${pattern}; seen ${JSON.stringify(seen)}` },
  );
  const text = seen.find((t) => pattern.test(t));
  // Let the toasts go on their own (4 s) before the next step: removing svelte-sonner's nodes
  // by hand left a toast in its list whose node was gone, and the next toast, inserted beside
  // it, never reached the page (seen once Whisper got fast enough for the next unload to come
  // within the first toast's 4 s).
  await browser.waitUntil(async () => (await browser.execute(() => document.querySelectorAll("[data-sonner-toast]").length)) === 0, {
    timeout: 15_000,
    timeoutMsg: "the toasts did not go",
  });
  return text;
}

describe("Unloads from outside the window", () => {
  before(async () => {
    await browser.waitUntil(async () => (await badgeState()) === "unloaded", { timeoutMsg: "the app did not come up" });
    await invoke("update_model_config", { memory: { strategy: "always_loaded" } });
    // The downloads spec leaves its Whisper tiny active; the lines below name Whisper base.
    const chosen = await invoke("set_model", { task: "transcription", modelId: "whisper-base" });
    assert.ok(!chosen?.error, `Whisper base chosen: ${JSON.stringify(chosen)}`);
  });
  after(async () => {
    await invoke("update_model_config", { memory: { strategy: "auto" } });
  });

  it("the tray's “Unload models”, clicked over D-Bus, unloads; the toast, the badge and the menu say so", async () => {
    await loadWhisper();
    await browser.waitUntil(() => trayMenu().some((e) => /^Whisper base — loaded · \d+ MB$/.test(e.label)), {
      timeoutMsg: `the tray never showed Whisper loaded: ${JSON.stringify(trayMenu())}`,
    });
    const unload = trayMenu().find((e) => e.label.startsWith("Unload models"));
    assert.ok(unload?.enabled, `“Unload models” is enabled while a model is loaded: ${JSON.stringify(trayMenu())}`);
    const clicked = run(PROBE, "click", "Unload models");
    assert.equal(clicked.code, 0, clicked.out);
    const toast = await toastSaying(/Models unloaded: /);
    assert.match(toast, /Models unloaded: Whisper base(, Silero VAD)? \(freed \d+(\.\d)? MB\)/);
    await browser.waitUntil(async () => (await badgeState()) === "unloaded", { timeoutMsg: "the badge still shows a model" });
    await browser.waitUntil(
      () => {
        const menu = trayMenu();
        return menu.some((e) => e.label === "Whisper base — not loaded") && menu.some((e) => /^Unload models \(last: freed \d+ MB\)$/.test(e.label));
      },
      { timeoutMsg: `the tray's lines did not change: ${JSON.stringify(trayMenu())}` },
    );
  });

  it("`dormouse unload all` from a shell unloads, prints what it freed, and the window toasts the same", async () => {
    const before = cli("status");
    assert.equal(before.code, 0, before.out);
    await loadWhisper();
    const status = cli("status");
    assert.equal(status.code, 0, status.out);
    assert.match(status.out, /Whisper base \(transcription\): loaded · \d+ MB · stays loaded/);
    const unload = cli("unload", "all");
    assert.equal(unload.code, 0, unload.out);
    assert.match(unload.out, /^Models unloaded: Whisper base(, Silero VAD)? \(freed \d+(\.\d)? MB\)\n$/);
    const toast = await toastSaying(/Models unloaded: /);
    assert.equal(toast, unload.out.trim(), "the window's toast says what the command printed");
    await browser.waitUntil(async () => (await badgeState()) === "unloaded", { timeoutMsg: "the badge still shows a model" });
    const again = cli("unload");
    assert.deepEqual([again.code, again.out.trim()], [0, "No models were loaded"]);
  });

  it("memory pressure unloads Whisper with its own toast, badge and tray line; the time to free it is printed", async () => {
    await loadWhisper();
    const signalled = Date.now();
    const injected = cli("debug-pressure", "critical");
    assert.equal(injected.code, 0, injected.out);
    // The core waits out its 5 s sustain window before it acts.
    // The VAD goes too, with a toast of its own.
    const toast = await toastSaying(/^Unloaded Whisper base: the system was low on memory/, 20_000);
    assert.match(toast, /^Unloaded Whisper base: the system was low on memory, freed \d+(\.\d)? MB$/);
    await browser.waitUntil(async () => (await badgeState()) === "unloaded", { timeoutMsg: "the badge still shows a model" });
    const model = (await invoke("get_model_status")).models.find((m) => m.slot === "transcription");
    assert.equal(model.last_unload.reason, "memory_pressure");
    console.log(
      `memory pressure: signal → Whisper freed in ${model.last_unload.at_ms - signalled} ms (5000 ms of it the sustain window), ` +
        `${(model.last_unload.bytes_freed ?? model.last_unload.resident_bytes) / 1e6} MB freed`,
    );
    await browser.waitUntil(() => trayMenu().some((e) => e.label === "Whisper base — not loaded (the system was low on memory)"), {
      timeoutMsg: `the tray does not say why: ${JSON.stringify(trayMenu())}`,
    });
    assert.equal(cli("debug-pressure", "normal").code, 0);
  });
});
