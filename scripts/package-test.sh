#!/usr/bin/env bash
# Packages the app as .deb and .rpm from the build the end-to-end tests use (no second
# compile: `tauri bundle` wraps target/debug/dormouse), with ONNX Runtime and Silero VAD as
# resources (scripts/bundle_resources.py), then tests the .deb as a new user gets it:
# installs it with dpkg, launches the installed /usr/bin/dormouse under Xvfb with empty
# config, data and cache folders, and drives it (tests/e2e/package/): it starts and answers
# get_model_status, downloads Whisper base from a local mirror (DORMOUSE_CATALOG_OVERRIDES),
# transcribes Beckett with the package's VAD and ONNX Runtime, and quits cleanly on SIGTERM. Then
# removes the package. Prints the packages' sizes and the installed app's memory.
# Needs root (dpkg), the build (scripts/build-app.sh), tauri-driver and the fixtures.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tauri-driver >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/tauri-driver" ] || cargo install tauri-driver --locked
[ -x target/debug/dormouse ] || bash scripts/build-app.sh
resources="$(python3 scripts/bundle_resources.py)"
echo "package resources: $resources"
rm -rf target/debug/bundle
npx tauri bundle --debug --bundles deb,rpm --no-binary-patching --config src-tauri/tauri.bundle.conf.json
deb="$(ls target/debug/bundle/deb/*.deb)"
rpm="$(ls target/debug/bundle/rpm/*.rpm)"
for package in "$deb" "$rpm"; do
    echo "package: $package, $(du -k "$package" | cut -f1) KiB"
done
shipped="$(dpkg-deb --contents "$deb" | awk '{print $6}' \
    | grep -E 'usr/bin/dormouse$|Dormouse/onnxruntime/libonnxruntime|Dormouse/silero_vad.onnx$' | sort)"
echo "$shipped"
[ "$(printf '%s\n' "$shipped" | grep -c .)" -eq 3 ] || { echo "the .deb lacks the app, ONNX Runtime or Silero VAD" >&2; exit 1; }

if dpkg-query -W -f='${Status}' dormouse 2>/dev/null | grep -q "install ok installed"; then
    echo "a dormouse package is installed on this machine: this test would replace it and then remove it." >&2
    echo "Remove it first (sudo dpkg -r dormouse), or skip this step." >&2
    exit 1
fi
fixtures="$(bash scripts/fixtures.sh | tail -n 1)"
scratch="$(mktemp -d)"
sudo_cmd=()
[ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
installed=""
cleanup() {
    if [ -n "$installed" ]; then "${sudo_cmd[@]}" dpkg -r dormouse >/dev/null || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT
"${sudo_cmd[@]}" dpkg -i "$deb"
installed=1
echo "installed: $(dpkg-query -W -f='${Package} ${Version}, ${Installed-Size} KiB installed' dormouse)"
[ -x /usr/bin/dormouse ] && [ -f /usr/lib/Dormouse/silero_vad.onnx ]

# A machine where Dormouse never ran: empty folders, and no fixture ONNX Runtime to find.
export XDG_CONFIG_HOME="$scratch/config" XDG_DATA_HOME="$scratch/data" XDG_CACHE_HOME="$scratch/cache"
port=47832
printf '{"whisper-base": {"url": "http://127.0.0.1:%s/ggml-base.bin", "sha256": "%s"}}\n' \
    "$port" "$(sha256sum "$fixtures/ggml-base.bin" | cut -d' ' -f1)" > "$scratch/overrides.json"
export DORMOUSE_CATALOG_OVERRIDES="$scratch/overrides.json" E2E_DOWNLOAD_PORT="$port"
export DORMOUSE_FIXTURES="$fixtures" E2E_PACKAGE_RESOURCES=/usr/lib/Dormouse
export DORMOUSE_APP=/usr/bin/dormouse E2E_SPECS="$PWD/tests/e2e/package/*.e2e.mjs"
export TAURI_DRIVER="${TAURI_DRIVER:-$(command -v tauri-driver || echo "$HOME/.cargo/bin/tauri-driver")}"
xvfb-run -a -s "-screen 0 1280x900x24" npx wdio run tests/e2e/wdio.conf.mjs 2>&1 | tee "$scratch/wdio.log" || true
grep -q "Spec Files:.*1 passed" "$scratch/wdio.log" || { echo "the installed package's spec failed" >&2; exit 1; }

# The spec ended the app with SIGTERM: it must have quit cleanly, unloading what it held,
# with ONNX Runtime from the package.
logs="$scratch/data/app.dormouse.desktop/logs"
for _ in $(seq 1 20); do pgrep -x dormouse >/dev/null || break; sleep 0.5; done
if pgrep -x dormouse >/dev/null; then echo "the installed app did not quit" >&2; exit 1; fi
grep -h "ONNX Runtime ready" "$logs"/* | tail -n 1
grep -q "ONNX Runtime ready.*path=/usr/lib/Dormouse/onnxruntime/" "$logs"/* \
    || { echo "ONNX Runtime did not come from the package" >&2; exit 1; }
grep -q "models unloaded on quit" "$logs"/* || { cat "$logs"/*; echo "the app did not quit cleanly" >&2; exit 1; }
if grep -E "panicked| ERROR " "$logs"/*; then echo "the installed app logged errors" >&2; exit 1; fi
"${sudo_cmd[@]}" dpkg -r dormouse >/dev/null
installed=""
[ ! -e /usr/bin/dormouse ] || { echo "dpkg -r left /usr/bin/dormouse" >&2; exit 1; }
echo "package test passed: installed, downloaded, transcribed, quit, removed"
