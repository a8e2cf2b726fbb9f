#!/usr/bin/env bash
# The README's run command: sets up a fresh Debian/Ubuntu machine (system packages only when
# missing, npm packages, the base models) and launches Dormouse with its front end embedded.
# Without a display (no DISPLAY / WAYLAND_DISPLAY) it runs under Xvfb.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -d node_modules ] && [ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund
bash scripts/install-models.sh >/dev/null
npm run build
cargo build -p dormouse --features custom-protocol --locked
app=target/debug/dormouse
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ]; then
    exec xvfb-run -a "$app" "$@"
fi
exec "$app" "$@"
