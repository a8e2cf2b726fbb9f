// Helpers shared by the end-to-end specs (not a spec itself: wdio runs specs/*.e2e.mjs).
import path from "node:path";

const fixtures = process.env.DORMOUSE_FIXTURES;

/** Calls a command from the page, as the front end does; resolves to its answer or { error }. */
export const invoke = (command, args = {}) =>
  browser.executeAsync(
    (command, args, done) => window.__TAURI_INTERNALS__.invoke(command, args).then(done, (e) => done({ error: e })),
    command,
    args,
  );

/** The status badge's state: unloaded, loading, loaded or failed. */
export const badgeState = async () => (await $('[data-testid="status-badge"]')).getAttribute("data-model-state");

/** Transcribes Beckett (which loads Whisper and the VAD) and waits until the badge shows them loaded. */
export async function loadWhisper() {
  await (await $('[data-testid="audio-file"]')).addValue(path.join(fixtures, "beckett.wav"));
  // A new file replaces the last transcript: wait for it to go, then for the new one.
  const shown = () => browser.execute(() => document.querySelector('[data-testid="transcript"]') !== null);
  await browser.waitUntil(async () => !(await shown()), { timeout: 10_000, timeoutMsg: "the old transcript stayed" });
  await browser.waitUntil(shown, { timeout: 120_000, timeoutMsg: "no transcript" });
  await browser.waitUntil(async () => (await badgeState()) === "loaded", { timeoutMsg: "Whisper is not loaded" });
}
