#!/usr/bin/env python3
"""Quantizes a whisper.cpp GGML model's 2-D weights to q8_0, as whisper.cpp's own `quantize`
tool does (same block layout, same rounding), for the benchmark's "quantized model" lever.

    quantize_ggml_whisper.py IN.BIN OUT.BIN

q8_0 stores each run of 32 weights as one float16 scale d = max|w| / 127 and 32 int8 values
round(w / d). Tensors whisper.cpp keeps in float32 (vectors, conv biases, positional
embeddings) and the 3-D convolution weights (float16) are copied unchanged. The header's
ftype becomes 7 (GGML_FTYPE_MOSTLY_Q8_0) + 1000 x 2 (the quantization format version).
"""
import os
import struct
import sys

import numpy as np

GGML_TYPE_F32, GGML_TYPE_F16, GGML_TYPE_Q8_0 = 0, 1, 8
FTYPE_MOSTLY_Q8_0 = 7
QNT_VERSION, QNT_VERSION_FACTOR = 2, 1000
BLOCK = 32
Q8_0 = np.dtype([("d", "<f2"), ("qs", "i1", BLOCK)])


def q8_0(weights):
    """whisper.cpp's quantize_row_q8_0_ref on every row of a float32 array."""
    blocks = weights.reshape(-1, BLOCK).astype(np.float32)
    amax = np.abs(blocks).max(axis=1)
    d = amax / 127.0
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d > 0)
    scaled = blocks * inv[:, None]
    out = np.empty(len(blocks), dtype=Q8_0)
    out["d"] = d.astype(np.float16)
    # roundf: halves away from zero (numpy's round goes to even).
    out["qs"] = (np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)).astype(np.int8)
    return out.tobytes()


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, target = sys.argv[1:]
    with open(source, "rb") as f:
        data = f.read()
    pos = 0

    def take(n):
        nonlocal pos
        if pos + n > len(data):
            sys.exit(f"{source}: truncated at byte {pos}")
        chunk = data[pos:pos + n]
        pos += n
        return chunk

    magic, *hparams = struct.unpack("12i", take(48))
    if magic != 0x67676D6C:
        sys.exit(f"{source}: not a GGML file")
    if hparams[-1] % QNT_VERSION_FACTOR != GGML_TYPE_F16:
        sys.exit(f"{source}: ftype {hparams[-1]}, expected a float16 model (1)")
    out = [struct.pack("12i", magic, *hparams[:-1], FTYPE_MOSTLY_Q8_0 + QNT_VERSION * QNT_VERSION_FACTOR)]
    n_mel, n_fft = struct.unpack("ii", take(8))
    out.append(struct.pack("ii", n_mel, n_fft) + take(4 * n_mel * n_fft))
    (n_tokens,) = struct.unpack("i", take(4))
    out.append(struct.pack("i", n_tokens))
    for _ in range(n_tokens):
        (n,) = struct.unpack("i", take(4))
        out.append(struct.pack("i", n) + take(n))
    quantized = kept = 0
    while pos < len(data):
        n_dims, name_len, ttype = struct.unpack("iii", take(12))
        ne = struct.unpack(f"{n_dims}i", take(4 * n_dims))
        name = take(name_len)
        count = int(np.prod(ne))
        size = {GGML_TYPE_F32: 4, GGML_TYPE_F16: 2}.get(ttype)
        if size is None:
            sys.exit(f"{source}: tensor {name.decode()} has type {ttype}, expected f32 or f16")
        raw = take(count * size)
        if n_dims == 2 and ttype == GGML_TYPE_F16 and ne[0] % BLOCK == 0:
            weights = np.frombuffer(raw, dtype=np.float16)
            out.append(struct.pack("iii", n_dims, name_len, GGML_TYPE_Q8_0))
            out.append(struct.pack(f"{n_dims}i", *ne) + name + q8_0(weights))
            quantized += 1
        else:
            out.append(struct.pack("iii", n_dims, name_len, ttype))
            out.append(struct.pack(f"{n_dims}i", *ne) + name + raw)
            kept += 1
    with open(target + ".part", "wb") as f:
        for chunk in out:
            f.write(chunk)
    os.replace(target + ".part", target)
    print(f"{target}: {quantized} tensors quantized to q8_0, {kept} kept", file=sys.stderr)


if __name__ == "__main__":
    main()
