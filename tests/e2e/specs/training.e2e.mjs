// End-to-end: training a custom segmentation model in the real app. scripts/e2e.sh writes a
// synthetic training set (green disks with exact masks) into the scratch folder; this spec
// adds the pairs on the Train page (file by file, paired by name), runs a short training,
// watches the progress and chart, and sees the new model become the active one.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";

const shots = process.env.E2E_SCREENSHOTS;
const set = path.join(process.env.E2E_SCRATCH, "training-set");

async function go(href, title) {
  await (await $(`nav a[href="${href}"]`)).click();
  await browser.waitUntil(async () => (await (await $("h1")).getText()) === title, { timeoutMsg: `no ${title} page` });
}

describe("Custom model training", () => {
  it("trains on the user's examples and makes the custom model active", async () => {
    await go("/train", "Train a custom model");
    const files = fs.readdirSync(set).filter((f) => f.endsWith(".png")).sort().map((f) => path.join(set, f));
    assert.equal(files.length, 4, `two pairs in ${set}`);
    for (const file of files) await (await $('[data-testid="training-files"]')).addValue(file);
    await browser.waitUntil(async () => (await $$("li[data-example]")).length === 2, {
      timeout: 30_000,
      timeoutMsg: "the two pairs were not added",
    });
    const steps = await $('input[type="number"]');
    await steps.setValue("8");
    const start = await $('[data-testid="start-training"]');
    assert.match(await start.getText(), /Train on 2 examples/);
    await start.click();
    const progress = await $('[data-testid="training-progress"]');
    await browser.waitUntil(async () => /Step \d+ of 8/.test(await progress.getText()), {
      timeout: 120_000,
      timeoutMsg: "no training step was shown",
    });
    await (await $("polyline.loss")).waitForExist({ timeout: 60_000 });
    // Screenshots show the progress line and the chart (below the examples).
    const show = async (selector) => {
      await browser.execute((s) => {
        document.querySelectorAll("[data-sonner-toast]").forEach((t) => t.remove());
        document.querySelector(s)?.scrollIntoView({ block: "end" });
      }, selector);
      await browser.pause(300);
    };
    await show("figure.chart");
    if (shots) await browser.saveScreenshot(path.join(shots, "training-progress.png"));
    const result = await $('[data-testid="training-result"]');
    await result.waitForExist({ timeout: 180_000, timeoutMsg: "training did not finish" });
    const text = await result.getText();
    assert.match(text, /Custom model/);
    assert.match(text, /IoU on your examples \d\.\d\d → \d\.\d\d, now active/);
    await show('[data-testid="training-result"]');
    if (shots) await browser.saveScreenshot(path.join(shots, "training-done.png"));

    // The models page lists it, active, with its metrics; segmentation uses it.
    await go("/models", "Models");
    const row = await $('tr[data-model="user:custom-model"]');
    await row.waitForExist();
    assert.match(await row.getText(), /Active/);
    assert.match(await (await row.$('[data-testid="training-metrics"]')).getText(), /IoU on your examples/);
    const badge = await $('[data-testid="status-badge"]');
    await badge.click();
    await browser.waitUntil(async () => /Custom model/.test(await (await $('li[data-slot="segmentation"]')).getText()), {
      timeoutMsg: "the status popover does not show the custom model",
    });
    await browser.keys("Escape");
  });
});
