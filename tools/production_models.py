#!/usr/bin/env python
"""Production ONNX models shipped inside PyPI packages, as benchmark-suite entries (no test has seen them).

    python tools/bench_suite.py --production --out docs/benchmarks/cpu-production.md      # `make bench-production`

The wheels are fetched with pip at pinned versions into out/production-models (`pip download --no-deps`; nothing is
installed) and their .onnx files read from the archives:
- silero-vad: Silero VAD's voice-activity LSTM models (STFT front end as a 1-D Conv, If on the sample rate);
- rapidocr-onnxruntime: PaddleOCR's PP-OCRv4 text detector and recogniser and the PP-OCR angle classifier, converted
  by paddle2onnx (opsets 11-12, dynamic dims written as -1 or named, shape arithmetic through Shape nodes).
Each model is compiled for the input shapes it is used with (as --input-shape) and gets valid inputs (audio-like
samples and a 16 kHz sample rate for Silero, image-like planes for PP-OCR), which are also its golden inputs.
"""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / "out" / "production-models"
WHEELS = {"silero-vad": "6.2.3", "rapidocr-onnxruntime": "1.4.4"}
SILERO = "silero_vad/data/"
PPOCR = "rapidocr_onnxruntime/models/"
# name: (package, file inside the wheel, input shapes)
MODELS: dict[str, tuple[str, str, dict[str, list[int]]]] = {
    "silero_vad": ("silero-vad", SILERO + "silero_vad.onnx", {"input": [1, 512], "state": [2, 1, 128]}),
    "silero_vad_16k_op15": ("silero-vad", SILERO + "silero_vad_16k_op15.onnx", {"input": [1, 512], "state": [2, 1, 128]}),
    "silero_vad_op18_ifless": ("silero-vad", SILERO + "silero_vad_op18_ifless.onnx", {"input": [1, 512], "state": [2, 1, 128]}),
    "silero_vad_half": ("silero-vad", SILERO + "silero_vad_half.onnx", {"input": [1, 512], "state": [2, 1, 128]}),
    "silero_vad_16k_sequence": ("silero-vad", SILERO + "silero_vad_16k_sequence.onnx",
                                {"input": [4, 576], "h": [1, 1, 128], "c": [1, 1, 128]}),
    "silero_vad_openvino_16k": ("silero-vad", SILERO + "silero_vad_openvino_16k.onnx", {"input": [1, 576], "state": [2, 1, 128]}),
    "ppocr_v4_det": ("rapidocr-onnxruntime", PPOCR + "ch_PP-OCRv4_det_infer.onnx", {"x": [1, 3, 320, 320]}),
    "ppocr_v4_rec": ("rapidocr-onnxruntime", PPOCR + "ch_PP-OCRv4_rec_infer.onnx", {"x": [1, 3, 48, 320]}),
    "ppocr_cls": ("rapidocr-onnxruntime", PPOCR + "ch_ppocr_mobile_v2.0_cls_infer.onnx", {"x": [1, 3, 48, 192]}),
}


def fetch(dest: Path = DEFAULT_DIR) -> Path:
    """The pinned wheels' .onnx files under dest/<package>/ (downloaded once)."""
    for package, version in WHEELS.items():
        folder = dest / package
        if folder.is_dir() and any(folder.rglob("*.onnx")):
            continue
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--disable-pip-version-check",
                        f"{package}=={version}", "-d", str(folder)], check=True)
        for wheel in folder.glob("*.whl"):
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.namelist():
                    if member.endswith(".onnx"):
                        archive.extract(member, folder)
    return dest


def with_static_inputs(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> onnx.ModelProto:
    """The model with each named graph input's dims set to the given ones (for counting its FLOPs)."""
    for value in model.graph.input:
        if value.name in shapes:
            dims = value.type.tensor_type.shape.dim
            del dims[:]
            for d in shapes[value.name]:
                dims.add().dim_value = d
    return model


def feeds(model: onnx.ModelProto, seed: int, shapes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """Audio-like float samples (and state), a 16 kHz int64 sample rate, image-like planes in [-1, 1]; `shapes`
    for the inputs with dynamic dims (the others as declared)."""
    rng = np.random.default_rng(seed)
    initializers = {init.name for init in model.graph.initializer}
    out: dict[str, np.ndarray] = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        shape = shapes.get(value.name) or [d.dim_value for d in value.type.tensor_type.shape.dim]
        if value.type.tensor_type.elem_type == onnx.TensorProto.INT64:
            out[value.name] = np.full(shape, 16000, np.int64)  # Silero's `sr`
        elif value.name == "x":
            out[value.name] = rng.uniform(-1, 1, shape).astype(np.float32)
        else:
            out[value.name] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
    return out


def suite(bench_models, dest: Path = DEFAULT_DIR) -> list:
    """bench_models.SuiteModel entries for every model (fetching the wheels first)."""
    root = fetch(dest)
    entries = []
    for name, (package, member, shapes) in MODELS.items():
        path = root / package / member

        def build(path=path) -> onnx.ModelProto:  # as shipped (onnxruntime infers its If branches with dynamic dims)
            return onnx.load(path)

        def make_feeds(model: onnx.ModelProto, seed: int, shapes=shapes) -> dict[str, np.ndarray]:
            return feeds(model, seed, shapes)
        summary = f"{package}=={WHEELS[package]}: {member.split('/')[-1]}, " + ", ".join(
            f"{k} {'x'.join(map(str, v))}" for k, v in shapes.items())
        entries.append(bench_models.SuiteModel(name, "production", summary, build, make_feeds, input_shapes=shapes))
    return entries


if __name__ == "__main__":
    print(fetch())
