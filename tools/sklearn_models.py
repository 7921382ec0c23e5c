#!/usr/bin/env python
"""scikit-learn pipelines converted by skl2onnx, as benchmark-suite entries (no test has seen them).

    make bench-sklearn        # exports with tools/export_sklearn_models.py, then tools/bench_suite.py --sklearn DIR

Each `NAME.onnx` of DIR (written by tools/export_sklearn_models.py in its own venv) is compiled for, checked on and
timed with the 64 data rows of `NAME.npy` (`NAME_nozipmap.onnx` shares NAME's rows). Outputs are compared as the
golden data holds them: labels exactly, a ZipMap's maps as their score matrix (frontend/zipmap.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / "out" / "sklearn-models"


def rows_for(path: Path) -> np.ndarray:
    return np.load(path.with_name(path.stem.removesuffix("_nozipmap") + ".npy"))


def suite(bench_models, folder: Path = DEFAULT_DIR) -> list:
    """bench_models.SuiteModel entries for every .onnx file of `folder`."""
    files = sorted(folder.glob("*.onnx"))
    if not files:
        raise ValueError(f"--sklearn {folder}: no .onnx files (make bench-sklearn exports them)")
    entries = []
    for path in files:
        rows = rows_for(path)
        name = onnx.load(path, load_external_data=False).graph.input[0].name

        def build(path=path) -> onnx.ModelProto:
            return onnx.load(path)

        def make_feeds(model: onnx.ModelProto, seed: int, rows=rows, name=name) -> dict[str, np.ndarray]:
            return {name: rows}
        summary = f"skl2onnx: {path.stem}, {name} {'x'.join(map(str, rows.shape))}"
        entries.append(bench_models.SuiteModel(path.stem, "scikit-learn", summary, build, make_feeds, input_shapes={name: list(rows.shape)}))
    return entries
