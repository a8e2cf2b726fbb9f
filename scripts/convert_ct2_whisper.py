#!/usr/bin/env python3
"""Converts a CTranslate2 Whisper model (model.bin + config) into whisper.cpp's GGML format.

    convert_ct2_whisper.py MODEL.BIN MEL_FILTERS.NPZ TOKENS.TIKTOKEN OUT.BIN

CTranslate2 fuses the self-attention Q/K/V projections (and the cross-attention K/V); GGML
files hold them apart, named as in OpenAI's PyTorch checkpoints, which whisper.cpp expects.
OpenAI's key projections have no bias: CTranslate2 stores zeros there, checked and dropped.
2-D weights are written as float16 (ftype 1), vectors, conv biases and positional embeddings
as float32, as whisper.cpp's own converter does.
"""
import base64
import os
import re
import struct
import sys

import numpy as np

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ct2(path):
    """Returns {name: array} from a CTranslate2 model.bin (format version 6)."""
    with open(path, "rb") as f:
        def u(fmt):
            size = struct.calcsize(fmt)
            return struct.unpack("<" + fmt, f.read(size))[0]

        def string():
            return f.read(u("H")).rstrip(b"\0").decode()

        version = u("I")
        if version != 6:
            sys.exit(f"unsupported CTranslate2 format version {version}")
        spec = string()
        if spec != "WhisperSpec":
            sys.exit(f"not a Whisper model: {spec}")
        u("I")  # revision
        variables = {}
        for _ in range(u("I")):
            name = string()
            shape = [u("I") for _ in range(u("B"))]
            dtype = DTYPES.get(u("B"))
            data = f.read(u("I"))
            if dtype is None:
                sys.exit(f"{name}: unsupported dtype")
            variables[name] = np.frombuffer(data, dtype=dtype).reshape(shape)
        return variables


def layers(v, side):
    """Indices of the numbered layers of `side` (not `layer_norm`)."""
    return sorted({int(m.group(1)) for k in v for m in [re.match(side + r"/layer_(\d+)/", k)] if m})


def ggml_tensors(v):
    """Yields (ggml name, array) in OpenAI naming."""
    def ln(src, dst):
        yield dst + ".weight", v[src + "/gamma"]
        yield dst + ".bias", v[src + "/beta"]

    def linear(src, dst, bias=True):
        yield dst + ".weight", v[src + "/weight"]
        if bias:
            yield dst + ".bias", v[src + "/bias"]

    def split(src, dsts):
        """A fused projection split into equal parts; `None` parts are skipped, their bias
        must be zero (OpenAI's key projections have none)."""
        w, b = v[src + "/weight"], v[src + "/bias"]
        n = len(dsts)
        for part, (dst, keep_bias) in zip(range(n), dsts):
            rows = slice(part * w.shape[0] // n, (part + 1) * w.shape[0] // n)
            yield dst + ".weight", w[rows]
            if keep_bias:
                yield dst + ".bias", b[rows]
            elif np.abs(b[rows].astype(np.float32)).max() != 0:
                sys.exit(f"{src}: the key bias is not zero; cannot drop it")


    yield "encoder.positional_embedding", v["encoder/position_encodings/encodings"]
    yield from linear("encoder/conv1", "encoder.conv1")
    yield from linear("encoder/conv2", "encoder.conv2")
    for i in layers(v, "encoder"):
        s, d = f"encoder/layer_{i}", f"encoder.blocks.{i}"
        yield from ln(s + "/self_attention/layer_norm", d + ".attn_ln")
        yield from split(s + "/self_attention/linear_0", [(d + ".attn.query", True), (d + ".attn.key", False), (d + ".attn.value", True)])
        yield from linear(s + "/self_attention/linear_1", d + ".attn.out")
        yield from ln(s + "/ffn/layer_norm", d + ".mlp_ln")
        yield from linear(s + "/ffn/linear_0", d + ".mlp.0")
        yield from linear(s + "/ffn/linear_1", d + ".mlp.2")
    yield from ln("encoder/layer_norm", "encoder.ln_post")

    yield "decoder.positional_embedding", v["decoder/position_encodings/encodings"]
    yield "decoder.token_embedding.weight", v["decoder/embeddings/weight"]
    for i in layers(v, "decoder"):
        s, d = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        yield from ln(s + "/self_attention/layer_norm", d + ".attn_ln")
        yield from split(s + "/self_attention/linear_0", [(d + ".attn.query", True), (d + ".attn.key", False), (d + ".attn.value", True)])
        yield from linear(s + "/self_attention/linear_1", d + ".attn.out")
        yield from ln(s + "/attention/layer_norm", d + ".cross_attn_ln")
        yield from linear(s + "/attention/linear_0", d + ".cross_attn.query")
        yield from split(s + "/attention/linear_1", [(d + ".cross_attn.key", False), (d + ".cross_attn.value", True)])
        yield from linear(s + "/attention/linear_2", d + ".cross_attn.out")
        yield from ln(s + "/ffn/layer_norm", d + ".mlp_ln")
        yield from linear(s + "/ffn/linear_0", d + ".mlp.0")
        yield from linear(s + "/ffn/linear_1", d + ".mlp.2")
    yield from ln("decoder/layer_norm", "decoder.ln")


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    model_bin, mel_npz, tiktoken, out = sys.argv[1:]
    v = read_ct2(model_bin)
    n_vocab, n_text_state = v["decoder/embeddings/weight"].shape
    n_audio_ctx, n_audio_state = v["encoder/position_encodings/encodings"].shape
    n_text_ctx = v["decoder/position_encodings/encodings"].shape[0]
    n_mels = v["encoder/conv1/weight"].shape[1]
    heads = lambda side: int(v[side + "/num_heads"])
    count = lambda side: len(layers(v, side))
    filters = np.load(mel_npz)[f"mel_{n_mels}"].astype(np.float32)
    with open(tiktoken, "rb") as f:
        tokens = [base64.b64decode(t) for t, _ in (line.split() for line in f.read().splitlines() if line)]

    with open(out + ".part", "wb") as f:
        f.write(struct.pack("i", 0x67676D6C))
        hparams = [n_vocab, n_audio_ctx, n_audio_state, heads("encoder"), count("encoder"),
                   n_text_ctx, n_text_state, heads("decoder"), count("decoder"), n_mels, 1]
        f.write(struct.pack("11i", *hparams))
        f.write(struct.pack("ii", *filters.shape))
        f.write(filters.tobytes())
        f.write(struct.pack("i", len(tokens)))
        for token in tokens:
            f.write(struct.pack("i", len(token)))
            f.write(token)
        written = 0
        for name, data in ggml_tensors(v):
            if name in ("encoder.conv1.bias", "encoder.conv2.bias"):
                data = data.reshape(data.shape[0], 1)
            small = data.ndim < 2 or name.endswith((".conv1.bias", ".conv2.bias", "positional_embedding"))
            data = np.ascontiguousarray(data.astype(np.float32 if small else np.float16))
            encoded = name.encode()
            f.write(struct.pack("iii", data.ndim, len(encoded), 0 if small else 1))
            f.write(struct.pack(f"{data.ndim}i", *reversed(data.shape)))
            f.write(encoded)
            f.write(data.tobytes())
            written += 1
    os.replace(out + ".part", out)
    print(f"{out}: {written} tensors, vocab {n_vocab}, {count('encoder')}+{count('decoder')} layers", file=sys.stderr)


if __name__ == "__main__":
    main()
