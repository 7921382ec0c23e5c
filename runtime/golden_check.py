"""`hcc test`: run a bundle on golden inputs and compare every output within tolerances (numpy only)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from hcc.artifacts.manifest import Manifest
from hcc.errors import HccError
from hcc.runtime.bundle import safe_path
from hcc.runtime.npz import MAX_NPZ_BYTES, read_npz
from hcc.runtime.session import Session
from hcc.runtime.validate import tensor_bytes


@dataclass
class OutputComparison:
    name: str
    passed: bool
    max_abs: float
    max_rel: float
    mismatched: int
    total: int
    note: str = ""
    inconclusive: str = ""  # why the tolerance cannot tell a right output from a wrong one (then never PASS)
    rtol: float = 0.0
    atol: float = 0.0

    @property
    def status(self) -> str:
        return "FAIL" if not self.passed else "INCONCLUSIVE" if self.inconclusive else "PASS"


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
        """Every output within tolerance and every tolerance able to fail."""
        return all(o.status == "PASS" for o in self.outputs)

    @property
    def failed(self) -> bool:
        return any(not o.passed for o in self.outputs)

    def lines(self) -> list[str]:
        out = [f"note: {n}" for n in self.notes] + [f"golden: {self.source}; rtol={self.rtol:g} atol={self.atol:g}"]
        for o in self.outputs:
            detail = o.note or f"max abs err {o.max_abs:.3g}, max rel err {o.max_rel:.3g}, {o.mismatched}/{o.total} elements outside tolerance"
            if (o.rtol, o.atol) != (self.rtol, self.atol):
                detail += f" (rtol={o.rtol:g} atol={o.atol:g})"
            if o.inconclusive:
                detail += f"; {o.inconclusive}"
            out.append(f"  {o.status} {o.name}: {detail}")
        counts = {s: sum(o.status == s for o in self.outputs) for s in ("PASS", "FAIL", "INCONCLUSIVE")}
        summary = f"{counts['PASS']} passed, {counts['FAIL']} failed"
        if counts["INCONCLUSIVE"]:
            summary += f", {counts['INCONCLUSIVE']} inconclusive"
        out.append(f"{summary} ({self.time_s * 1e3:.3f} ms)")
        return out


def check_tolerance(value: float, what: str) -> float:
    """A tolerance must be a finite number >= 0: NaN would make every comparison pass, a negative one every fail."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise HccError(f"{what} {value!r}: a tolerance must be a finite number >= 0") from None
    if not np.isfinite(number) or number < 0:
        raise HccError(f"{what} {value!r}: a tolerance must be a finite number >= 0")
    return number


def inconclusive_reason(expected: np.ndarray, rtol: float, atol: float) -> str:
    """Why (rtol, atol) cannot fail on this output, or "": all zeros would pass, or (for an output that varies) a
    constant at the middle of its range would pass. Integer outputs are compared exactly and always conclusive."""
    if expected.dtype.kind not in "fc":
        return ""
    e = np.abs(expected[np.isfinite(expected)].astype(np.float64))
    if e.size == 0:  # (the BERT models' random attention masks once made every golden output NaN)
        return "every expected element is NaN or infinite: only their positions are compared" if expected.size else ""
    allowed = atol + rtol * e
    if np.all(e <= allowed):
        return f"an all-zero output would pass (|expected| <= {float(e.max()):.3g})"
    finite = expected[np.isfinite(expected)].astype(np.float64)
    low, high = float(finite.min()), float(finite.max())
    if high > low and np.all(np.abs(finite - (low + high) / 2) <= atol + rtol * np.abs(finite)):
        return f"a constant output would pass (the output's range is [{low:.3g}, {high:.3g}])"
    return ""


def read_input_arrays(path: str, label: str = "", limit_bytes: int = MAX_NPZ_BYTES) -> dict[str, np.ndarray]:
    """Arrays of an npz keyed by input name; a golden file's `input:<name>` keys work too (its outputs are skipped).
    `limit_bytes` bounds what the file may declare (runtime/npz.py)."""
    arrays = read_npz(path, f"{label} {path}".strip(), limit_bytes, wanted=lambda key: not key.startswith("output:"))
    return {k.removeprefix("input:"): v for k, v in arrays.items()}


def io_bytes_bound(manifest: Manifest, kinds: tuple[str, ...] = ("input",)) -> int:
    """What the arrays of an input (or, with outputs, golden) file of this model may declare: their bytes twice over
    (another dtype, a stray copy), plus 1 MiB."""
    return 2 * sum(tensor_bytes(t) for t in manifest.tensors if t.kind in kinds) + (1 << 20)


def compare(name: str, actual: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> OutputComparison:
    rtol, atol = check_tolerance(rtol, f"{name}: rtol"), check_tolerance(atol, f"{name}: atol")
    if actual.shape != expected.shape:
        return OutputComparison(name, False, float("inf"), float("inf"), actual.size, expected.size,
                                f"shape {list(actual.shape)} != expected {list(expected.shape)}", rtol=rtol, atol=atol)
    if expected.dtype.kind in "biu":
        bad = int(np.count_nonzero(actual != expected))
        return OutputComparison(name, bad == 0, float(bad > 0), float(bad > 0), bad, expected.size, rtol=rtol, atol=atol)
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    nan_mismatch = np.isnan(a) != np.isnan(e)
    diff = np.where(np.isnan(a) & np.isnan(e), 0.0, np.abs(a - e))
    bad = (diff > atol + rtol * np.abs(e)) | nan_mismatch
    rel = diff / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
    max_abs = float(np.nanmax(diff)) if diff.size else 0.0
    max_rel = float(np.nanmax(rel)) if rel.size else 0.0
    return OutputComparison(name, not bool(bad.any()), max_abs, max_rel, int(bad.sum()), expected.size,
                            inconclusive=inconclusive_reason(expected, rtol, atol), rtol=rtol, atol=atol)


def check_golden(bundle_dir: str | os.PathLike, golden_path: str | None = None, rtol: float | None = None, atol: float | None = None,
                 trust=None) -> GoldenReport:
    session = Session(bundle_dir, trust=trust)
    manifest = session.manifest
    if golden_path is None:
        if manifest.golden is None:
            raise HccError(f"{bundle_dir}: the bundle has no golden data; pass --golden FILE")
        golden_path = str(safe_path(session.bundle, manifest.golden.file))
        source = manifest.golden.source
    else:
        source = golden_path
    if rtol is not None:
        rtol = check_tolerance(rtol, "--rtol")
    if atol is not None:
        atol = check_tolerance(atol, "--atol")
    golden = manifest.golden
    if golden is not None:
        check_tolerance(golden.rtol, f"{bundle_dir}: manifest golden.rtol")
        check_tolerance(golden.atol, f"{bundle_dir}: manifest golden.atol")
    default_rtol, default_atol = (golden.rtol, golden.atol) if golden else (1e-3, 1e-4)
    arrays = read_npz(golden_path, golden_path, io_bytes_bound(manifest, ("input", "output")))
    feeds = {k.removeprefix("input:"): v for k, v in arrays.items() if k.startswith("input:")}
    expected = {k.removeprefix("output:"): v for k, v in arrays.items() if k.startswith("output:")}
    if not expected:
        raise HccError(f"{golden_path}: no 'output:<name>' arrays in the golden file")
    unknown = sorted(set(expected) - set(manifest.outputs))
    if unknown:
        raise HccError(f"{golden_path}: golden outputs {unknown} are not outputs of the bundle ({manifest.outputs})")
    outputs = session.run_tensors(None, feeds)  # a ZipMap output as its score matrix, as the golden file holds it
    report = GoldenReport(default_rtol if rtol is None else rtol, default_atol if atol is None else atol, source,
                          time_s=session.last_profile.total, notes=list(session.notes))
    for name, actual in zip(manifest.outputs, outputs):
        if name in expected:
            own_rtol, own_atol = golden.tolerance(name) if golden else (default_rtol, default_atol)
            report.outputs.append(compare(name, actual, expected[name], own_rtol if rtol is None else rtol, own_atol if atol is None else atol))
    return report
