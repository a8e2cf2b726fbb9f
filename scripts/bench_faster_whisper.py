#!/usr/bin/env python3
"""Times faster-whisper (CTranslate2) on the same audio and weights as the whisper.cpp bench.

    bench_faster_whisper.py MODEL_DIR AUDIO.WAV COMPUTE_TYPE THREADS RUNS

Prints one JSON object: load seconds, median transcription seconds, and the text.
Beam size 3 and no VAD, like the whisper.cpp run it is compared with.
"""
import json
import statistics
import sys
import time

from faster_whisper import WhisperModel

model_dir, audio, compute_type, threads, runs = sys.argv[1:6]
t0 = time.perf_counter()
model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=int(threads))
load = time.perf_counter() - t0
times, text = [], ""
for _ in range(int(runs)):
    t0 = time.perf_counter()
    segments, _ = model.transcribe(audio, language="en", beam_size=3, vad_filter=False)
    text = " ".join(s.text.strip() for s in segments)  # the generator does the work
    times.append(time.perf_counter() - t0)
print(json.dumps({"compute_type": compute_type, "load_s": load, "transcribe_s": statistics.median(times), "text": text}))
