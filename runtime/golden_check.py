"""`hcc test`: run a bundle on golden inputs and compare every output within tolerances (numpy only)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from hcc.errors import HccError
from hcc.runtime.bundle import safe_path
from hcc.runtime.session import Session


@dataclass
class OutputComparison:
    name: str
    passed: bool
    max_abs: float
    max_rel: float
    mismatched: int
    total: int
    note: str = ""


@dataclass
class GoldenReport:
    rtol: float
    atol: float
    source: str
    outputs: list[OutputComparison] = field(default_factory=list)
    time_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def lines(self) -> list[str]:
        out = [f"note: {n}" for n in self.notes] + [f"golden: {self.source}; rtol={self.rtol:g} atol={self.atol:g}"]
        for o in self.outputs:
            status = "PASS" if o.passed else "FAIL"
            detail = o.note or f"max abs err {o.max_abs:.3g}, max rel err {o.max_rel:.3g}, {o.mismatched}/{o.total} elements outside tolerance"
            out.append(f"  {status} {o.name}: {detail}")
        passed = sum(o.passed for o in self.outputs)
        out.append(f"{passed} passed, {len(self.outputs) - passed} failed ({self.time_s * 1e3:.3f} ms)")
        return out


def read_input_arrays(path: str, label: str = "") -> dict[str, np.ndarray]:
    """Arrays of an npz keyed by input name; a golden file's `input:<name>` keys work too (its outputs are skipped)."""
    where = f"{label} {path}".strip()
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k.removeprefix("input:"): data[k] for k in data.files if not k.startswith("output:")}
    except FileNotFoundError:
        raise HccError(f"{where}: no such file") from None
    except Exception as exc:
        raise HccError(f"{where}: not a readable .npz file ({exc})") from None


def compare(name: str, actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> OutputComparison:
    if actual.shape != expected.shape:
        return OutputComparison(name, False, float("inf"), float("inf"), actual.size, expected.size, f"shape {list(actual.shape)} != expected {list(expected.shape)}")
    if expected.dtype.kind in "biu":
        bad = int(np.count_nonzero(actual != expected))
        return OutputComparison(name, bad == 0, float(bad > 0), float(bad > 0), bad, expected.size)
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    nan_mismatch = np.isnan(a) != np.isnan(e)
    diff = np.where(np.isnan(a) & np.isnan(e), 0.0, np.abs(a - e))
    bad = (diff > atol + rtol * np.abs(e)) | nan_mismatch
    rel = diff / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
    max_abs = float(np.nanmax(diff)) if diff.size else 0.0
    max_rel = float(np.nanmax(rel)) if rel.size else 0.0
    return OutputComparison(name, not bool(bad.any()), max_abs, max_rel, int(bad.sum()), expected.size)


def check_golden(bundle_dir: str | os.PathLike, golden_path: str | None = None, rtol: float | None = None, atol: float | None = None) -> GoldenReport:
    session = Session(bundle_dir)
    manifest = session.manifest
    if golden_path is None:
        if manifest.golden is None:
            raise HccError(f"{bundle_dir}: the bundle has no golden data; pass --golden FILE")
        golden_path = str(safe_path(session.bundle, manifest.golden.file))
        source = manifest.golden.source
    else:
        source = golden_path
    default_rtol, default_atol = (manifest.golden.rtol, manifest.golden.atol) if manifest.golden else (1e-3, 1e-4)
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    try:
        with np.load(golden_path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise HccError(f"{golden_path}: no such file") from None
    except Exception as exc:
        raise HccError(f"{golden_path}: not a readable golden .npz ({exc})") from None
    feeds = {k.removeprefix("input:"): v for k, v in arrays.items() if k.startswith("input:")}
    expected = {k.removeprefix("output:"): v for k, v in arrays.items() if k.startswith("output:")}
    if not expected:
        raise HccError(f"{golden_path}: no 'output:<name>' arrays in the golden file")
    unknown = sorted(set(expected) - set(manifest.outputs))
    if unknown:
        raise HccError(f"{golden_path}: golden outputs {unknown} are not outputs of the bundle ({manifest.outputs})")
    outputs = session.run(None, feeds)
    report = GoldenReport(rtol, atol, source, time_s=session.last_profile.total, notes=list(session.notes))
    for name, actual in zip(manifest.outputs, outputs):
        if name in expected:
            report.outputs.append(compare(name, actual, expected[name], rtol, atol))
    return report
