#!/usr/bin/env python3
"""Builds small ONNX speech models in the real file layouts of transcribe-rs's Parakeet,
GigaAM and SenseVoice engines, for tests of Dormouse's ONNX speech path through real ONNX Runtime.

No Parakeet, GigaAM or SenseVoice weights exist in the package registries, so these models do not
recognise speech: they are "tone recognisers" with hand-set weights. Each token of a small
vocabulary owns a pure tone; a tone sounding in the audio makes the model emit that token,
silence makes it emit the blank. The audio front ends are the real ones: Parakeet's
preprocessor is NeMo's 128-mel `nemo128.onnx` from the PyPI wheel onnx-asr==0.12.0 (the
file Parakeet exports ship); GigaAM's 64-mel features and SenseVoice's FBANK + low frame
rate features are computed by transcribe-rs itself.
What runs is therefore the engines' whole pipeline: the preprocessor, the encoder, the
stateful TDT decoder loop (Parakeet) or CTC decoding (GigaAM, SenseVoice with its four
leading tags), vocabularies, timestamps.
NeMo's preprocessor normalises each mel band over the whole clip, so for the Parakeet model
a token's tone must sound for well under a fifth of the clip to stand out.

    make_onnx_speech_fixtures.py NEMO128_ONNX DEST

writes DEST/parakeet-synthetic/{nemo128.onnx, encoder-model.onnx, decoder_joint-model.onnx,
vocab.txt}, DEST/gigaam-synthetic/{model.onnx, vocab.txt}, DEST/sensevoice-synthetic/
{model.onnx (its settings in the ONNX metadata), tokens.txt} and, in each, tones.json: the
tone (Hz) of every token, so a test can synthesise audio with a known transcript. Also
DEST/parakeet-tones.wav (16-bit 16 kHz) and DEST/parakeet-tones.txt: a recording of tones
and the transcript the Parakeet model gives for it (the app's tests send it as a file).
"""

import json
import math
import os
import shutil
import sys
import wave

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

WORDS = ["ever", "tried", "failed", "no", "matter", "try", "again", "fail", "better"]
SAMPLE_RATE = 16000


def slaney_mel(hz):
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / (200.0 / 3.0)
    log = 15.0 + np.log(np.maximum(hz, 1e-9) / 1000.0) / (math.log(6.4) / 27.0)
    return np.where(hz < 1000.0, linear, log)


def slaney_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * (200.0 / 3.0)
    log = 1000.0 * np.exp((mel - 15.0) * (math.log(6.4) / 27.0))
    return np.where(mel < 15.0, linear, log)


def htk_mel(hz):
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def htk_hz(mel):
    return 700.0 * (np.exp(np.asarray(mel, dtype=np.float64) / 1127.0) - 1.0)


def centres(n_mels, to_mel, to_hz):
    """Centre frequency of each triangular mel filter between 0 and 8 kHz."""
    points = np.linspace(to_mel(0.0), to_mel(SAMPLE_RATE / 2), n_mels + 2)
    return to_hz(points[1:-1])


def groups(n_mels, bins, width):
    """(n_mels, tokens) matrix averaging the `width` filters around each token's bin."""
    matrix = np.zeros((n_mels, len(bins)), dtype=np.float32)
    for k, b in enumerate(bins):
        lo, hi = max(0, b - width // 2), min(n_mels, b + width // 2 + 1)
        matrix[lo:hi, k] = 1.0 / (hi - lo)
    return matrix


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def save(graph, path):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.producer_name = "dormouse-synthetic"
    onnx.checker.check_model(model)
    onnx.save(model, path)


def vocab_file(path, words):
    with open(path, "w", encoding="utf-8") as f:
        for i, w in enumerate(words):
            f.write(f"\u2581{w} {i}\n")
        f.write(f"<blk> {len(words)}\n")


def parakeet(nemo128, dest):
    os.makedirs(dest, exist_ok=True)
    shutil.copyfile(nemo128, os.path.join(dest, "nemo128.onnx"))
    k = len(WORDS)
    # Tokens own filters 24, 32, ..., 88 of NeMo's 128 Slaney mel filters.
    bins = [24 + 8 * i for i in range(k)]
    tones = centres(128, slaney_mel, slaney_hz)[bins]
    # Encoder: the features (per-filter normalised over time by the preprocessor) averaged
    # over 8 frames (Parakeet's 80 ms subsampling), then one score per token: how far its
    # filters stand above the threshold.
    encoder = helper.make_graph(
        [
            helper.make_node("AveragePool", ["audio_signal"], ["pooled"], kernel_shape=[8], strides=[8]),
            helper.make_node("Transpose", ["pooled"], ["frames"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["frames", "groups"], ["level"]),
            helper.make_node("Sub", ["level", "threshold"], ["above"]),
            helper.make_node("Mul", ["above", "gain"], ["scores"]),
            helper.make_node("Transpose", ["scores"], ["outputs"], perm=[0, 2, 1]),
            helper.make_node("Div", ["length", "eight"], ["encoded_lengths"]),
        ],
        "tone_encoder",
        [
            helper.make_tensor_value_info("audio_signal", TensorProto.FLOAT, ["batch", 128, "T"]),
            helper.make_tensor_value_info("length", TensorProto.INT64, ["batch"]),
        ],
        [
            helper.make_tensor_value_info("outputs", TensorProto.FLOAT, ["batch", k, "T8"]),
            helper.make_tensor_value_info("encoded_lengths", TensorProto.INT64, ["batch"]),
        ],
        [
            const("groups", groups(128, bins, 3)),
            const("threshold", np.float32(2.0)),
            const("gain", np.float32(4.0)),
            const("eight", np.int64(8)),
        ],
    )
    save(encoder, os.path.join(dest, "encoder-model.onnx"))
    # Decoder + joint: logits = [token scores, 0 for the blank], with the previously emitted
    # token pushed down, so a tone lasting several frames is one token (the TDT loop feeds
    # the last token back as `targets`). The LSTM states pass through.
    suppress = np.eye(k + 1, dtype=np.float32) * 100.0
    suppress[k, k] = 0.0  # the blank (the first target) is never suppressed
    decoder = helper.make_graph(
        [
            helper.make_node("Reshape", ["encoder_outputs", "row"], ["scores"]),
            helper.make_node("Concat", ["scores", "blank"], ["raw"], axis=1),
            helper.make_node("Gather", ["suppress", "targets"], ["penalty3"], axis=0),
            helper.make_node("Reshape", ["penalty3", "vrow"], ["penalty"]),
            helper.make_node("Sub", ["raw", "penalty"], ["logits"]),
            helper.make_node("Reshape", ["logits", "out_shape"], ["outputs"]),
            helper.make_node("Identity", ["input_states_1"], ["output_states_1"]),
            helper.make_node("Identity", ["input_states_2"], ["output_states_2"]),
            helper.make_node("Identity", ["target_length"], ["prednet_lengths"]),
        ],
        "tone_decoder_joint",
        [
            helper.make_tensor_value_info("encoder_outputs", TensorProto.FLOAT, [1, k, 1]),
            helper.make_tensor_value_info("targets", TensorProto.INT32, [1, 1]),
            helper.make_tensor_value_info("target_length", TensorProto.INT32, [1]),
            helper.make_tensor_value_info("input_states_1", TensorProto.FLOAT, [2, "batch", 8]),
            helper.make_tensor_value_info("input_states_2", TensorProto.FLOAT, [2, "batch", 8]),
        ],
        [
            helper.make_tensor_value_info("outputs", TensorProto.FLOAT, [1, 1, 1, k + 1]),
            helper.make_tensor_value_info("prednet_lengths", TensorProto.INT32, [1]),
            helper.make_tensor_value_info("output_states_1", TensorProto.FLOAT, [2, "batch", 8]),
            helper.make_tensor_value_info("output_states_2", TensorProto.FLOAT, [2, "batch", 8]),
        ],
        [
            const("row", np.array([1, k], dtype=np.int64)),
            const("vrow", np.array([1, k + 1], dtype=np.int64)),
            const("blank", np.zeros((1, 1), dtype=np.float32)),
            const("suppress", suppress),
            const("out_shape", np.array([1, 1, 1, k + 1], dtype=np.int64)),
        ],
    )
    save(decoder, os.path.join(dest, "decoder_joint-model.onnx"))
    vocab_file(os.path.join(dest, "vocab.txt"), WORDS)
    write_tones(dest, tones)
    return tones


def gigaam(dest):
    os.makedirs(dest, exist_ok=True)
    k = len(WORDS)
    # Tokens own filters 12, 16, ..., 44 of the 64 HTK mel filters transcribe-rs computes.
    bins = [12 + 4 * i for i in range(k)]
    tones = centres(64, htk_mel, htk_hz)[bins]
    # CTC model: per frame (10 ms, subsampled ×4 like GigaAM), how far each token's filters
    # stand above the frame's median-ish level (its mean log energy); the blank scores 0.
    model = helper.make_graph(
        [
            helper.make_node("AveragePool", ["features", ], ["pooled"], kernel_shape=[4], strides=[4]),
            helper.make_node("Transpose", ["pooled"], ["frames"], perm=[0, 2, 1]),
            helper.make_node("ReduceMean", ["frames"], ["mean"], axes=[2], keepdims=1),
            helper.make_node("Sub", ["frames", "mean"], ["relative"]),
            helper.make_node("MatMul", ["relative", "groups"], ["level"]),
            helper.make_node("Sub", ["level", "threshold"], ["scores"]),
            helper.make_node("Shape", ["scores"], ["scores_shape"]),
            helper.make_node("Slice", ["scores_shape", "zero", "two", "zero"], ["bt"]),
            helper.make_node("Concat", ["bt", "one"], ["blank_shape"], axis=0),
            helper.make_node("ConstantOfShape", ["blank_shape"], ["blank"],
                             value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
            helper.make_node("Concat", ["scores", "blank"], ["logits"], axis=2),
            helper.make_node("LogSoftmax", ["logits"], ["log_probs"], axis=2),
            helper.make_node("Div", ["feature_lengths", "four"], ["log_probs_lengths"]),
        ],
        "tone_ctc",
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 64, "T"]),
            helper.make_tensor_value_info("feature_lengths", TensorProto.INT64, ["batch"]),
        ],
        [
            helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch", "T4", k + 1]),
            helper.make_tensor_value_info("log_probs_lengths", TensorProto.INT64, ["batch"]),
        ],
        [
            const("groups", groups(64, bins, 3)),
            const("threshold", np.float32(4.0)),
            const("zero", np.array([0], dtype=np.int64)),
            const("two", np.array([2], dtype=np.int64)),
            const("one", np.array([1], dtype=np.int64)),
            const("four", np.int64(4)),
        ],
    )
    save(model, os.path.join(dest, "model.onnx"))
    vocab_file(os.path.join(dest, "vocab.txt"), WORDS)
    write_tones(dest, tones)


def tone_recording(path, tones, words):
    """0.5 s of quiet, then each word's tone for 0.4 s and 0.3 s of quiet, over faint noise."""
    rate = SAMPLE_RATE
    parts = [np.zeros(rate // 2)]
    for w in words:
        t = np.arange(rate * 2 // 5) / rate
        parts += [0.3 * np.sin(2 * np.pi * tones[WORDS.index(w)] * t), np.zeros(rate * 3 // 10)]
    audio = np.concatenate(parts) + np.random.default_rng(7).uniform(-0.005, 0.005, sum(map(len, parts)))
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())


def sense_voice(dest):
    os.makedirs(dest, exist_ok=True)
    k = len(WORDS)
    # Tokens own filters 15, 20, ..., 55 of the 80 HTK mel filters (20 Hz to 8 kHz) of the
    # FBANK features transcribe-rs computes; of each low-frame-rate window (7 frames of 80
    # filters) the model looks at the first frame.
    bins = [15 + 5 * i for i in range(k)]
    points = np.linspace(htk_mel(20.0), htk_mel(SAMPLE_RATE / 2), 82)
    tones = htk_hz(points[1:-1])[bins]
    # Ids: the words, the blank, then the four tags SenseVoice emits before the text
    # (language, emotion, event, text normalisation), which transcribe-rs drops.
    blank = k
    tags = ["<|en|>", "<|NEUTRAL|>", "<|Speech|>", "<|woitn|>"]
    vocab = k + 1 + len(tags)
    prefix = np.full((1, len(tags), vocab), -10.0, dtype=np.float32)
    for i in range(len(tags)):
        prefix[0, i, k + 1 + i] = 10.0
    graph = helper.make_graph(
        [
            helper.make_node("Slice", ["x", "zero", "eighty", "two"], ["frame"]),
            helper.make_node("ReduceMean", ["frame"], ["mean"], axes=[2], keepdims=1),
            helper.make_node("Sub", ["frame", "mean"], ["relative"]),
            helper.make_node("MatMul", ["relative", "groups"], ["level"]),
            helper.make_node("Sub", ["level", "threshold"], ["scores"]),
            helper.make_node("Shape", ["scores"], ["scores_shape"]),
            helper.make_node("Slice", ["scores_shape", "zero", "two", "zero"], ["bt"]),
            helper.make_node("Concat", ["bt", "one"], ["blank_shape"], axis=0),
            helper.make_node("Concat", ["bt", "four"], ["tags_shape"], axis=0),
            helper.make_node("ConstantOfShape", ["blank_shape"], ["blank"],
                             value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
            helper.make_node("ConstantOfShape", ["tags_shape"], ["no_tags"],
                             value=helper.make_tensor("w", TensorProto.FLOAT, [1], [-10.0])),
            helper.make_node("Concat", ["scores", "blank", "no_tags"], ["text"], axis=2),
            helper.make_node("Concat", ["prefix", "text"], ["logits"], axis=1),
        ],
        "tone_sense_voice",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T", 560]),
            helper.make_tensor_value_info("x_length", TensorProto.INT32, [1]),
            helper.make_tensor_value_info("language", TensorProto.INT32, [1]),
            helper.make_tensor_value_info("text_norm", TensorProto.INT32, [1]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "T4", vocab])],
        [
            const("groups", groups(80, bins, 3)),
            const("threshold", np.float32(4.0)),
            const("prefix", prefix),
            const("zero", np.array([0], dtype=np.int64)),
            const("two", np.array([2], dtype=np.int64)),
            const("eighty", np.array([80], dtype=np.int64)),
            const("one", np.array([1], dtype=np.int64)),
            const("four", np.array([4], dtype=np.int64)),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model.producer_name = "dormouse-synthetic"
    helper.set_model_props(model, {
        "vocab_size": str(vocab), "blank_id": str(blank),
        "lfr_window_size": "7", "lfr_window_shift": "6", "normalize_samples": "0",
        "lang_auto": "0", "lang_en": "4", "with_itn": "14", "without_itn": "15",
        "comment": "synthetic tone recogniser",
    })
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(dest, "model.onnx"))
    with open(os.path.join(dest, "tokens.txt"), "w", encoding="utf-8") as f:
        for i, w in enumerate(WORDS):
            f.write(f"\u2581{w} {i}\n")
        f.write(f"<blk> {blank}\n")
        for i, t in enumerate(tags):
            f.write(f"{t} {k + 1 + i}\n")
    write_tones(dest, tones)


def write_tones(dest, tones):
    with open(os.path.join(dest, "tones.json"), "w", encoding="utf-8") as f:
        json.dump({w: round(float(hz), 2) for w, hz in zip(WORDS, tones)}, f, indent=1)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    nemo128, dest = sys.argv[1:3]
    tones = parakeet(nemo128, os.path.join(dest, "parakeet-synthetic"))
    sample = ["ever", "tried", "no", "matter", "fail", "better"]
    tone_recording(os.path.join(dest, "parakeet-tones.wav"), tones, sample)
    with open(os.path.join(dest, "parakeet-tones.txt"), "w", encoding="utf-8") as f:
        f.write(" ".join(sample))
    gigaam(os.path.join(dest, "gigaam-synthetic"))
    sense_voice(os.path.join(dest, "sensevoice-synthetic"))


if __name__ == "__main__":
    main()
