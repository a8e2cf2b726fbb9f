// WebdriverIO drives the real Dormouse binary (front end embedded) in a real WebKitGTK
// window through tauri-driver. scripts/e2e.sh sets the environment (throw-away folders,
// models, MODEL_INACTIVITY_TIMEOUT=3) and runs this under Xvfb; scripts/package-test.sh
// runs tests/e2e/package/ against the installed package.
import { spawn } from "node:child_process";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
let driver;

export const config = {
  runner: "local",
  hostname: "127.0.0.1",
  port: 4444,
  // E2E_SPECS and DORMOUSE_APP let scripts/package-test.sh run the installed package's spec
  // against /usr/bin/dormouse; by default, every spec against the build.
  specs: [process.env.E2E_SPECS ?? path.join(root, "tests/e2e/specs/*.e2e.mjs")],
  maxInstances: 1,
  capabilities: [{ maxInstances: 1, "tauri:options": { application: process.env.DORMOUSE_APP ?? path.join(root, "target/debug/dormouse") } }],
  logLevel: "warn",
  reporters: ["spec"],
  framework: "mocha",
  mochaOpts: { ui: "bdd", timeout: 180_000 },
  waitforTimeout: 30_000,
  beforeSession: () => {
    const bin = process.env.TAURI_DRIVER ?? path.join(os.homedir(), ".cargo", "bin", "tauri-driver");
    driver = spawn(bin, [], { stdio: [null, process.stdout, process.stderr] });
  },
  afterSession: () => driver?.kill(),
};
