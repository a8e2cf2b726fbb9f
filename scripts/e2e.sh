#!/usr/bin/env bash
# End-to-end tests: the real app (front end embedded) in a real WebKitGTK window under Xvfb,
# driven by WebdriverIO through tauri-driver, with real models and MODEL_INACTIVITY_TIMEOUT=3,
# on a private session D-Bus with a StatusNotifier watcher (the tray is exported and clicked).
# Saves a screenshot of each page into docs/screenshots/.
# Needs: npm packages (npm ci), build/ (npm run build), webkit2gtk-driver and tauri-driver
# (installed here when absent), the fixtures (scripts/fixtures.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tauri-driver >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/tauri-driver" ] || cargo install tauri-driver --locked
[ -f build/index.html ] || npm run build
bash scripts/build-app.sh
fixtures="$(bash scripts/fixtures.sh | tail -n 1)"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export XDG_CONFIG_HOME="$scratch/config" XDG_DATA_HOME="$scratch/data"
DORMOUSE_MODELS_DIR="$(bash scripts/install-models.sh)"
target/debug/examples/random_sam_weights "$DORMOUSE_MODELS_DIR/mobile_sam.safetensors" >/dev/null
target/debug/examples/synthetic_training_set "$scratch/training-set" 2 >/dev/null
python3 - "$scratch/square.png" <<'PY'
import struct, sys, zlib
n = 256
rows = b"".join(b"\0" + b"".join(bytes((230, 200, 40) if 64 <= x < 192 and 64 <= y < 192 else (20, 30, 60)) for x in range(n)) for y in range(n))
chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", n, n, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
PY
# Two catalog models point at the downloads spec's server on 127.0.0.1: Whisper tiny is
# served the fixture Whisper model (its real digest), Whisper small bytes with a wrong one.
port=47831
printf '{"whisper-tiny": {"url": "http://127.0.0.1:%s/ggml-tiny.bin", "sha256": "%s"},
 "whisper-small": {"url": "http://127.0.0.1:%s/ggml-small.bin", "sha256": "%s"}}\n' \
    "$port" "$(sha256sum "$fixtures/ggml-base.bin" | cut -d' ' -f1)" "$port" "$(printf '0%.0s' {1..64})" \
    > "$scratch/overrides.json"
export DORMOUSE_CATALOG_OVERRIDES="$scratch/overrides.json" E2E_DOWNLOAD_PORT="$port"
mkdir -p docs/screenshots
export DORMOUSE_MODELS_DIR DORMOUSE_FIXTURES="$fixtures" E2E_SCRATCH="$scratch" E2E_SCREENSHOTS="$PWD/docs/screenshots"
export MODEL_INACTIVITY_TIMEOUT=3 MODEL_CHECK_INTERVAL=1
# A private session D-Bus with a StatusNotifier watcher on it (what a desktop's panel runs),
# so the tray exports its item and menu as on a desktop and system.e2e.mjs can click it.
export E2E_XVFB_ARGS="-screen 0 1280x900x24"
dbus-run-session -- bash -c '
    target/debug/examples/tray_probe watch > "$E2E_SCRATCH/tray-watcher.log" 2>&1 &
    watcher=$!
    trap "kill $watcher 2>/dev/null" EXIT
    target/debug/examples/tray_probe wait-watcher
    xvfb-run -a -s "$E2E_XVFB_ARGS" npx wdio run tests/e2e/wdio.conf.mjs
'
