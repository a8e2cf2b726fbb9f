#!/usr/bin/env bash
# Fuzzes every parser of untrusted input (cargo fuzz, nightly): audio decoding, images and
# masks, the GGML and safetensors headers, the ONNX speech folder inspection, the settings
# file (and the environment overrides) and archive unpacking. Seeds come from the fixtures (scripts/fixtures.sh) and small files made here.
#   bash scripts/fuzz.sh [seconds per target, default 20] [target ...]
# Prints each target's executions and exits non-zero if any crashed (the crashing input is
# in fuzz/artifacts/<target>/; turn it into a regression test).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(audio image weights_headers onnx_folder settings archive)
fixtures="${DORMOUSE_FIXTURES:-$HOME/.cache/dormouse/fixtures}"
# The nightly build must not inherit the stable clippy wrapper scripts/lint-env.sh exports.
unset RUSTC_WORKSPACE_WRAPPER CLIPPY_ARGS

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# Only the targets asked for (the settings target links the app crate and so the Tauri tree).
# fuzz/Cargo.toml optimises only the parsers' crates and libFuzzer: the cold build is CI's.
for target in "${targets[@]}"; do
    cargo +nightly fuzz build "$target"
done

seed() { mkdir -p "fuzz/corpus/$1"; }
seed audio; seed image; seed weights_headers; seed onnx_folder; seed settings; seed archive
for f in beckett.wav beckett.flac beckett.mp3 beckett.ogg espeak.wav; do
    [ -f "$fixtures/$f" ] && head -c 65536 "$fixtures/$f" > "fuzz/corpus/audio/$f"
done
[ -f "$fixtures/ggml-base.bin" ] && head -c 4096 "$fixtures/ggml-base.bin" > fuzz/corpus/weights_headers/ggml-base-head.bin
[ -f "$fixtures/parakeet-synthetic/vocab.txt" ] \
    && { printf '\x0f'; head -c 4096 "$fixtures/parakeet-synthetic/vocab.txt"; } > fuzz/corpus/onnx_folder/parakeet
python3 - <<'PY'
import io, json, struct, tarfile, zlib
def png(w, h, rgb):
    raw = b"".join(b"\x00" + bytes(rgb) * w for _ in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
open("fuzz/corpus/image/4x3.png", "wb").write(png(4, 3, (200, 40, 10)))
header = json.dumps({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}}).encode()
open("fuzz/corpus/weights_headers/tiny.safetensors", "wb").write(struct.pack("<Q", len(header)) + header + b"\0" * 16)
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    for name, data in [("model/encoder.onnx", b"weights"), ("model/vocab.txt", b"a\nb\n")]:
        info = tarfile.TarInfo(name); info.size = len(data); tar.addfile(info, io.BytesIO(data))
open("fuzz/corpus/archive/model.tar.gz", "wb").write(buf.getvalue())
settings = {"schema_version": 1, "memory": {"strategy": "custom", "custom_timeout_secs": 300,
    "timer_scope": "each_on_its_own", "pinned": ["transcription"], "memory_budget_mib": 2048},
    "preload_on_startup": True, "show_memory_usage": True,
    "models": {"transcription": "whisper-base", "segmentation": "sam-tiny"},
    "active_user_models": {"transcription": None, "segmentation": "green-disks"},
    "recently_used": ["segmentation", "transcription"]}
open("fuzz/corpus/settings/full.json", "w").write(json.dumps(settings, indent=2))
open("fuzz/corpus/settings/empty.json", "w").write('{"schema_version": 1}')
open("fuzz/corpus/settings/env", "wb").write(b"\x00" + b"300\n5\n600")
PY

failed=0
for target in "${targets[@]}"; do
    log="fuzz/artifacts/$target.log"
    mkdir -p "fuzz/artifacts/$target"
    if cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
        echo "fuzz $target: ${seconds} s, ${runs} executions, no crash"
    else
        failed=1
        echo "fuzz $target: CRASHED; input in fuzz/artifacts/$target/, log in $log" >&2
        # What failed, before the backtrace that follows it (a CI log keeps only its tail).
        grep -m 8 -E 'panicked at|^==[0-9]+==ERROR|^SUMMARY|out-of-memory|timeout after' "$log" >&2 || true
        tail -40 "$log" >&2
        # The input itself, when small, in hex, so a CI machine's crash can be rebuilt elsewhere
        # (`xxd -r -p`, or Python's bytes.fromhex).
        for input in "fuzz/artifacts/$target"/*; do
            [ -f "$input" ] || continue
            size=$(stat -c %s "$input")
            echo "input $input ($size bytes)" >&2
            if [ "$size" -le 4096 ]; then od -An -v -tx1 "$input" | tr -d ' ' >&2; fi
        done
    fi
done
exit "$failed"
