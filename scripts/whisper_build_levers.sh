#!/usr/bin/env bash
# Whisper's build-time levers, measured on whisper.cpp itself: the vendored source of the
# whisper-rs-sys crate the engine links, built as its build script builds it (Release, static,
# no OpenMP) with whisper.cpp's own defaults ("default"), then with OpenBLAS for the matrix
# products (GGML_BLAS), with OpenMP threads instead of ggml's own pool, with ggml's llamafile
# kernels (GGML_LLAMAFILE), and as Dormouse builds it ("patched": llamafile kernels and
# src-tauri/crates/engines/cmake/whisper_patch.cmake, both set in .cargo/config.toml).
# scripts/whisper_levers/harness.c runs whisper_full with the engine's settings (beam 3,
# language en, flash attention, no context, default threads) on Beckett: one warm-up, then 5
# runs; two rounds, the builds interleaved. Prints each median, the words and whisper.cpp's
# per-call timings. LEVERS="default patched" picks builds. Needs cmake, sox and
# libopenblas-dev (installed here when missing), and the fixtures (scripts/fixtures.sh).
# ~15 min, most of it the five builds.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! dpkg -s libopenblas-dev >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libopenblas-dev >/dev/null
fi
fixtures="${DORMOUSE_FIXTURES:-$HOME/.cache/dormouse/fixtures}"
[ -f "$fixtures/ggml-base.bin" ] || bash scripts/fixtures.sh
manifest="$(cargo metadata --format-version 1 --locked \
    | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="whisper-rs-sys"))')"
src="$(dirname "$manifest")/whisper.cpp"
out="target/whisper-levers"
mkdir -p "$out"
sox "$fixtures/beckett.wav" -r 16000 -c 1 -e floating-point -b 32 -t raw "$out/beckett.f32"

common=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_METAL=OFF
        -DWHISPER_BUILD_TESTS=OFF -DWHISPER_BUILD_EXAMPLES=OFF)
levers="${LEVERS:-default openblas openmp llamafile}"
build() {
    local name="$1" link="$2"; shift 2
    [[ " $levers " == *" $name "* ]] || return 0
    if [ ! -x "$out/harness-$name" ]; then
        echo "building whisper.cpp: $name"
        cmake -S "$src" -B "$out/$name" "${common[@]}" "$@" >"$out/$name.log" 2>&1
        cmake --build "$out/$name" -j"$(nproc)" >>"$out/$name.log" 2>&1
        # shellcheck disable=SC2046
        g++ -O2 -x c scripts/whisper_levers/harness.c -x none -I"$src/include" -I"$src/ggml/include" \
            -o "$out/harness-$name" -Wl,--start-group $(find "$out/$name" -name '*.a' | sort) \
            -Wl,--end-group $link -lpthread -lm
    fi
}
build default "" -DGGML_OPENMP=OFF
build openblas "-lopenblas" -DGGML_OPENMP=OFF -DGGML_BLAS=ON -DGGML_BLAS_VENDOR=OpenBLAS \
    -DBLAS_INCLUDE_DIRS=/usr/include/x86_64-linux-gnu/openblas-pthread
build openmp "-fopenmp" -DGGML_OPENMP=ON
build llamafile "" -DGGML_OPENMP=OFF -DGGML_LLAMAFILE=ON
build patched "" -DGGML_OPENMP=OFF -DGGML_LLAMAFILE=ON \
    -DCMAKE_PROJECT_INCLUDE="$PWD/src-tauri/crates/engines/cmake/whisper_patch.cmake"

for round in 1 2; do
    for name in $levers; do
        printf '%-9s round %s: ' "$name" "$round"
        "$out/harness-$name" "$fixtures/ggml-base.bin" "$out/beckett.f32" en 1 5
    done
done
