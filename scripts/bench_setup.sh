#!/usr/bin/env bash
# Sets up what the engine benchmarks compare against: faster-whisper 1.0.2 (CPU) in a venv at
# ~/.cache/dormouse/bench-venv, plus the fixtures. Not needed for the tests.
set -euo pipefail
venv="$HOME/.cache/dormouse/bench-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c "import faster_whisper, requests" 2>/dev/null \
    || "$venv/bin/pip" install --quiet faster-whisper==1.0.2 requests
bash "$(dirname "$0")/fixtures.sh"
# The same Whisper base weights quantized to q8_0 (the benchmark's quantized-model lever).
dest="${DORMOUSE_FIXTURES:-$HOME/.cache/dormouse/fixtures}"
if [ ! -s "$dest/ggml-base-q8_0.bin" ] || [ "$dest/ggml-base-q8_0.bin" -ot "$(dirname "$0")/quantize_ggml_whisper.py" ]; then
    python3 "$(dirname "$0")/quantize_ggml_whisper.py" "$dest/ggml-base.bin" "$dest/ggml-base-q8_0.bin"
fi
