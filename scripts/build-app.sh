#!/usr/bin/env bash
# Builds the desktop app with its front end embedded (needs build/ from `npm run build`),
# together with every test target, example and benchmark, in one feature set, linted as it
# compiles (scripts/lint-env.sh). The launch smoke test, the end-to-end tests, the .deb/.rpm
# packages and `cargo test` (scripts/test.sh runs it with the same features and environment)
# then share this one build instead of compiling the dependency tree once per feature set.
# The app is target/debug/dormouse.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f build/index.html ] || { echo "build/ is missing: run npm run build first" >&2; exit 1; }
. scripts/lint-env.sh
cargo build --workspace --all-targets --features dormouse/custom-protocol --locked
