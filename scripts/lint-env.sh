# Sourced by the scripts that build for tests (build-app.sh, test.sh, cross-check.sh): the
# workspace's own crates are compiled by clippy-driver, so one compile both builds them and
# lints them with warnings as errors (what `cargo clippy --all-targets -- -D warnings` did in a
# second, check-only pass over the whole dependency tree). Dependencies still go through
# plain rustc. Every cargo command that shares the build must see the same two variables,
# or cargo recompiles the workspace's crates.
RUSTC_WORKSPACE_WRAPPER="$(rustup which clippy-driver 2>/dev/null || command -v clippy-driver)"
export RUSTC_WORKSPACE_WRAPPER
# cargo-clippy hands its lint flags to clippy-driver this way (flags joined by this marker).
export CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"
