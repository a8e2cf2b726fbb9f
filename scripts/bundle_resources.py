#!/usr/bin/env python3
"""Puts what Dormouse's packages ship besides the app into src-tauri/resources/ (ignored by
git), for `tauri bundle` / `tauri build` with src-tauri/tauri.bundle.conf.json:

  onnxruntime/<library>         ONNX Runtime 1.24.2 for this machine's system, from the PyPI
                                wheel onnxruntime==1.24.2 (libonnxruntime.so.1.24.2,
                                libonnxruntime.1.24.2.dylib or onnxruntime.dll)
  onnxruntime/LICENSE, ThirdPartyNotices.txt   its licence and notices, from the same wheel
  silero_vad.onnx               Silero VAD v4, from the PyPI wheel faster-whisper==1.0.2
  silero_vad.LICENSE.txt        its licence (MIT)

Runs on Linux, macOS and Windows (Python 3.8+ with pip). Wheels are cached in
<user cache>/dormouse/wheels; files already in place are kept. Prints the resources folder.
"""
import os
import pathlib
import shutil
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = pathlib.Path(os.environ.get("DORMOUSE_RESOURCES_DIR", ROOT / "src-tauri" / "resources"))
ORT = "onnxruntime==1.24.2"
VAD = "faster-whisper==1.0.2"

SILERO_LICENSE = """Silero VAD v4 (silero_vad.onnx), as shipped in faster-whisper 1.0.2.

MIT License

Copyright (c) 2020-present Silero Team

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def cache_dir() -> pathlib.Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or pathlib.Path.home() / "AppData" / "Local"
    elif sys.platform == "darwin":
        base = pathlib.Path.home() / "Library" / "Caches"
    else:
        base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "dormouse" / "wheels"


def wheel(requirement: str) -> zipfile.ZipFile:
    """The wheel of `requirement` for this machine, downloaded once."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    name, version = requirement.split("==")
    prefix = f"{name.replace('-', '_')}-{version}-"
    found = sorted(p for p in cache.glob(prefix + "*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", requirement, "-d", str(cache)],
            check=True, stdout=sys.stderr,
        )
        found = sorted(p for p in cache.glob(prefix + "*.whl"))
    if not found:
        sys.exit(f"pip did not download a wheel of {requirement} for this system")
    return zipfile.ZipFile(found[-1])


def extract(archive: zipfile.ZipFile, member: str, dest: pathlib.Path) -> None:
    if dest.is_file() and dest.stat().st_size == archive.getinfo(member).file_size:
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with archive.open(member) as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(partial, dest)


def is_runtime_library(member: str) -> bool:
    if not member.startswith("onnxruntime/capi/"):
        return False
    name = member.rsplit("/", 1)[1]
    if "providers" in name or "pybind" in name:
        return False
    return name.startswith("libonnxruntime.") or name == "onnxruntime.dll"


def main() -> None:
    ort = wheel(ORT)
    libraries = [m for m in ort.namelist() if is_runtime_library(m)]
    if len(libraries) != 1:
        sys.exit(f"expected one ONNX Runtime library in {ort.filename}, found {libraries}")
    extract(ort, libraries[0], OUT / "onnxruntime" / libraries[0].rsplit("/", 1)[1])
    extract(ort, "onnxruntime/LICENSE", OUT / "onnxruntime" / "LICENSE")
    extract(ort, "onnxruntime/ThirdPartyNotices.txt", OUT / "onnxruntime" / "ThirdPartyNotices.txt")
    extract(wheel(VAD), "faster_whisper/assets/silero_vad.onnx", OUT / "silero_vad.onnx")
    (OUT / "silero_vad.LICENSE.txt").write_text(SILERO_LICENSE, encoding="utf-8")
    print(OUT)


if __name__ == "__main__":
    main()
