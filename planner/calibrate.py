"""Calibrate the host CPU's cost model by measurement (`hcc devices --calibrate`).

Why: published peak figures say little about the code hcc actually generates, so for the host we do what onnx-mlir
does offline, but on the user's machine: compile single-op models with the real CPU backend, time them, and fit
`t = a*work + b` per op class (work = FLOPs for compute-bound classes, bytes for memory-bound ones; see
cost_model.WORK_METRIC). The fits, with their r^2 and worst relative error, go into a JSON profile that
device_catalog.host_cpu_spec loads for the host CPU.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx import helper as h

from hcc.errors import HccError
from hcc.planner.cost_model import WORK_METRIC, analyze_model
from hcc.planner.device_catalog import default_profile_path
from hcc.runtime.devices.discovery import describe_host_cpu

PROFILE_FORMAT = "hcc-cpu-profile"


@dataclass
class ClassFit:
    """t = a*work + b for one op class, and how well it fits the measurements."""

    op_class: str
    a: float  # s per unit of work
    b: float  # s
    work: str  # "flops" | "bytes"
    r2: float
    max_rel_err: float
    points: list[tuple[str, float, float]] = field(default_factory=list)  # (benchmark, work, measured s)


@dataclass
class CalibrationReport:
    profile_path: Path
    host: str
    fits: dict[str, ClassFit]
    duration_s: float
    skipped: list[str] = field(default_factory=list)  # benchmarks that did not compile in time

    def format(self) -> str:
        lines = [f"calibrated {self.host} in {self.duration_s:.1f} s -> {self.profile_path}",
                 f"{'class':<14} {'work':<6} {'a (per unit)':>13} {'b':>10} {'r2':>6} {'max rel err':>12} {'points':>6}  rate"]
        for cls, fit in sorted(self.fits.items()):
            rate = f"{1 / fit.a / 1e9:.2f} G{'FLOP' if fit.work == 'flops' else 'B'}/s" if fit.a > 0 else "-"
            lines.append(f"{cls:<14} {fit.work:<6} {fit.a:>13.3e} {fit.b * 1e6:>8.1f}us {fit.r2:>6.3f} {fit.max_rel_err:>11.1%} "
                         f"{len(fit.points):>6}  {rate}")
        lines.extend(f"skipped {s}" for s in self.skipped)
        return "\n".join(lines)


def fit_linear(work: list[float] | np.ndarray, seconds: list[float] | np.ndarray) -> tuple[float, float, float, float]:
    """Fit t = a*w + b with a, b >= 0, minimising *relative* error (sizes span decades, so plain least squares
    would fit only the largest). Returns (a, b, r2 on the raw times, max relative error)."""
    from scipy.optimize import nnls

    w = np.asarray(work, dtype=float)
    t = np.asarray(seconds, dtype=float)
    if w.size < 2 or w.size != t.size or np.any(t <= 0):
        raise HccError("calibration needs at least two positive timings per op class")
    matrix = np.stack([w / t, 1.0 / t], axis=1)
    (a, b), _ = nnls(matrix, np.ones_like(t))
    pred = a * w + b
    ss_res = float(np.sum((t - pred) ** 2))
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return float(a), float(b), r2, float(np.max(np.abs(pred - t) / t))


# ---------------------------------------------------------------------------------------------------- benchmarks

def _model(nodes, inputs, output, inits=(), opset: int = 17) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "calib", [h.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                         [h.make_tensor_value_info(output, TensorProto.FLOAT, None)], list(inits))
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _weight(name: str, shape, seed: int = 0) -> onnx.TensorProto:
    return numpy_helper.from_array((np.random.default_rng(seed).standard_normal(shape) * 0.1).astype(np.float32), name)


def benchmarks(quick: bool) -> list[tuple[str, str, onnx.ModelProto]]:
    """(op class, benchmark name, single-op model); sizes span about two decades of work per class."""
    out = []
    for n in ((64, 256, 512) if quick else (32, 64, 128, 256, 384, 512, 768)):
        out.append(("matmul", f"MatMul {n}x{n}x{n}",
                    _model([h.make_node("MatMul", ["x", "w"], ["y"])], [("x", [n, n])], "y", [_weight("w", (n, n))])))
    if not quick:
        out.append(("matmul", "Gemm 256x1024x256", _model([h.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1)], [("x", [256, 1024])], "y",
                                                          [_weight("w", (256, 1024)), _weight("b", (256,))])))
    for c, hw in (((4, 8), (8, 16)) if quick else ((4, 8), (8, 16), (16, 16), (16, 32), (32, 32), (32, 56))):
        out.append(("conv", f"Conv {c}x{hw}x{hw} k3", _model([h.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])],
                                                            [("x", [1, c, hw, hw])], "y", [_weight("w", (c, c, 3, 3)), _weight("b", (c,))])))
    for n in ((1 << 12, 1 << 16, 1 << 20) if quick else (1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22)):
        out.append(("elementwise", f"Add {n}", _model([h.make_node("Add", ["x", "z"], ["y"])], [("x", [n]), ("z", [n])], "y")))
        if not quick:
            out.append(("elementwise", f"Sigmoid {n}", _model([h.make_node("Sigmoid", ["x"], ["y"])], [("x", [n])], "y")))
    for rows in ((16, 1024) if quick else (16, 64, 256, 1024, 2048)):
        out.append(("softmax", f"Softmax {rows}x512", _model([h.make_node("Softmax", ["x"], ["y"], axis=-1)], [("x", [rows, 512])], "y")))
        out.append(("reduction", f"ReduceSum {rows}x512",
                    _model([h.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)], [("x", [rows, 512])], "y",
                           [numpy_helper.from_array(np.array([-1], np.int64), "axes")])))
    for c, hw in (((8, 16), (16, 32)) if quick else ((8, 16), (16, 16), (16, 32), (32, 56), (64, 56))):
        out.append(("pool", f"MaxPool {c}x{hw}x{hw}",
                    _model([h.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
                           [("x", [1, c, hw, hw])], "y")))
    if not quick:
        for rows in (16, 128, 1024):
            out.append(("normalization", f"LayerNorm {rows}x512", _model(
                [h.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1)], [("x", [rows, 512])], "y",
                [_weight("g", (512,)), _weight("b", (512,))])))
            out.append(("data", f"Transpose {rows}x512", _model([h.make_node("Transpose", ["x"], ["y"], perm=[1, 0])], [("x", [rows, 512])], "y")))
    return out


def time_bundle(bundle: Path, feeds: dict[str, np.ndarray], min_time: float, max_reps: int = 200) -> float:
    """Median seconds of one run: the runtime's per-subgraph time when it reports one, else wall time."""
    from hcc.runtime import load

    session = load(bundle)
    session.run(None, feeds)  # warm-up: page in code and weights
    samples: list[float] = []
    spent = 0.0
    while (len(samples) < 5 or spent < min_time) and len(samples) < max_reps:
        t0 = time.perf_counter()
        session.run(None, feeds)
        wall = time.perf_counter() - t0
        spent += wall
        profile = getattr(session, "last_profile", None)
        sub = sum(profile.subgraphs.values()) if profile is not None and getattr(profile, "subgraphs", None) else 0.0
        samples.append(sub if sub > 0 else wall)
    return statistics.median(samples)


def _compile(model_path: Path, bundle: Path, timeout_s: float) -> str | None:
    """Compile in a child process group so a slow compile can be abandoned; returns an error text or None."""
    code = "import sys, hcc\ntry:\n    hcc.compile(sys.argv[1], sys.argv[2], keep_ir=False)\nexcept hcc.HccError as e:\n    sys.exit(str(e))\n"
    proc = subprocess.Popen([sys.executable, "-c", code, str(model_path), str(bundle)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return f"compile took over {timeout_s:.0f} s"
    return None if proc.returncode == 0 else (err.strip().splitlines() or ["compile failed"])[-1]


def calibrate_cpu(profile_path: str | os.PathLike | None = None, quick: bool = False,
                  progress: Callable[[str], None] | None = None, compile_timeout_s: float = 120.0) -> CalibrationReport:
    """Measure the host CPU and write its profile (default: $HCC_CACHE_DIR or ~/.cache/hcc/cpu-profile.json).
    A benchmark whose compile fails or exceeds `compile_timeout_s` is skipped (and reported)."""
    started = time.perf_counter()
    if quick:
        compile_timeout_s = min(compile_timeout_s, 20.0)
    say = progress or (lambda _m: None)
    path = Path(profile_path) if profile_path is not None else default_profile_path()
    points: dict[str, list[tuple[str, float, float]]] = {}
    skipped: list[str] = []
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="hcc-calibrate-") as tmp:
        for i, (cls, name, model) in enumerate(benchmarks(quick)):
            model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
            node = analyze_model(model).nodes[0]
            model_path = Path(tmp) / f"b{i}.onnx"
            onnx.save(model, model_path)
            bundle = Path(tmp) / f"b{i}.bundle"
            error = _compile(model_path, bundle, compile_timeout_s)
            if error:
                say(f"  skipped {name}: {error}")
                skipped.append(f"{name}: {error}")
                continue
            feeds = {v.name: rng.standard_normal([d.dim_value for d in v.type.tensor_type.shape.dim]).astype(np.float32)
                     for v in model.graph.input if v.name not in {w.name for w in model.graph.initializer}}
            seconds = time_bundle(bundle, feeds, 0.05 if quick else 0.2)
            points.setdefault(cls, []).append((name, node.work(), seconds))
            say(f"  {name:<24} {seconds * 1e6:10.1f} us")
    fits = {}
    for cls, pts in sorted(points.items()):
        if len(pts) < 2:
            continue
        a, b, r2, err = fit_linear([p[1] for p in pts], [p[2] for p in pts])
        fits[cls] = ClassFit(cls, a, b, WORK_METRIC[cls], r2, err, pts)
    if not fits:
        raise HccError("calibration measured nothing: every benchmark failed to compile")
    host = describe_host_cpu()
    write_profile(path, fits, host.model_name, {"cores": host.physical_cores, "threads": host.logical_cpus, "mhz": host.mhz, "flags": host.flags})
    return CalibrationReport(path, host.model_name, fits, time.perf_counter() - started, skipped)


def write_profile(path: str | os.PathLike, fits: dict[str, ClassFit], host_name: str, host_facts: dict) -> None:
    """The JSON profile device_catalog.apply_cpu_profile reads (written atomically)."""
    from hcc import __version__

    data = {
        "format": PROFILE_FORMAT, "version": 1, "hcc_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": {"model_name": host_name, **host_facts},
        "classes": {cls: {"a": f.a, "b": f.b, "work": f.work, "r2": f.r2, "max_rel_err": f.max_rel_err,
                          "points": [[n, w, t] for n, w, t in f.points]} for cls, f in sorted(fits.items())},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
