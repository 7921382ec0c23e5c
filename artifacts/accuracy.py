"""Measured accuracy of a staged bundle against onnxruntime, for bundles whose arithmetic is lossy by design.

A fixed-point (FPGA) subgraph's worst-case error bound can exceed the output's whole range (a softmax in [0, 1]
got atol 1.07), and a golden check with such a tolerance cannot fail. So the compiler runs the finished bundle
(its bit-accurate emulation) on the golden inputs and on held-out inputs it never saw, compares with onnxruntime,
and derives each output's tolerance from the measured error: MARGIN x the larger of the two, never below the
fp32 floor. The figures (and the argmax agreement of class-score outputs) are stored in the manifest.

The bundle runs in a child process (`python -m hcc.artifacts.accuracy`): its native code never loads into the
compiler.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from hcc.artifacts.manifest import OutputAccuracy
from hcc.errors import HccError

HELD_OUT_SAMPLES = 4
MARGIN = 1.5  # measured error x MARGIN: room for float differences of the CPU parts on another host


def run_bundle_in_child(bundle: Path, samples: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Outputs of the bundle for each sample, computed in a child process."""
    with tempfile.TemporaryDirectory(prefix="hcc-accuracy-") as tmp:
        inputs, outputs = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inputs, **{f"{i}:{name}": value for i, sample in enumerate(samples) for name, value in sample.items()})
        proc = subprocess.run([sys.executable, "-m", "hcc.artifacts.accuracy", str(bundle), str(inputs), str(outputs)],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not outputs.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            raise HccError(f"measuring the bundle's accuracy failed (exit status {proc.returncode}):\n{tail}")
        with np.load(outputs, allow_pickle=False) as data:
            results: list[dict[str, np.ndarray]] = [{} for _ in samples]
            for key in data.files:
                index, _, name = key.partition(":")
                results[int(index)][name] = data[key]
    return results


def _max_abs(actual: np.ndarray, expected: np.ndarray) -> float:
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(e)
    diff = np.where(both_nan, 0.0, np.abs(a - e))
    return float(np.max(np.where(np.isnan(diff), np.inf, diff))) if diff.size else 0.0


def _argmax_agreement(actual: list[np.ndarray], expected: list[np.ndarray]) -> float | None:
    """Share of rows whose argmax along the last axis agrees: the classification figure of class-score outputs."""
    if not expected or expected[0].ndim < 1 or expected[0].shape[-1] < 2:
        return None
    same = total = 0
    for a, e in zip(actual, expected):
        agree = np.argmax(a, axis=-1) == np.argmax(e, axis=-1)
        same, total = same + int(np.count_nonzero(agree)), total + agree.size
    return same / total if total else None


def output_accuracies(golden: tuple[dict, dict], held_out: list[tuple[dict, dict]], floor: tuple[float, float]) -> dict[str, OutputAccuracy]:
    """Per float output: the measured errors and the tolerance they imply. Each argument pairs (bundle outputs,
    onnxruntime outputs) by output name; integer outputs are compared exactly and need no entry."""
    from hcc.runtime.golden_check import inconclusive_reason

    rtol, atol_floor = floor
    result = {}
    got, want = golden
    for name, expected in want.items():
        if expected.dtype.kind != "f":
            continue
        golden_err = _max_abs(got[name], expected)
        held = [_max_abs(out[name], ref[name]) for out, ref in held_out]
        held_err = max(held, default=0.0)
        atol = max(atol_floor, MARGIN * max(golden_err, held_err))
        agreement = _argmax_agreement([out[name] for out, _ in held_out], [ref[name] for _, ref in held_out])
        reason = inconclusive_reason(expected, rtol, atol) if np.isfinite(atol) else "the error is not finite"
        note = f"the measured error makes the golden check inconclusive: {reason}" if reason else ""
        result[name] = OutputAccuracy(rtol=rtol, atol=atol if np.isfinite(atol) else float(np.finfo(np.float64).max),
                                      golden_max_abs=golden_err, held_out_max_abs=held_err, held_out_samples=len(held),
                                      argmax_agreement=agreement, note=note)
    return result


def _main(argv: list[str]) -> int:
    from hcc.runtime.session import Session

    bundle, inputs, outputs = argv[1:4]
    session = Session(bundle)
    with np.load(inputs, allow_pickle=False) as data:
        samples: dict[int, dict[str, np.ndarray]] = {}
        for key in data.files:
            index, _, name = key.partition(":")
            samples.setdefault(int(index), {})[name] = data[key]
    results = {}
    for index in sorted(samples):
        for name, value in zip(session.manifest.outputs, session.run(None, samples[index])):
            results[f"{index}:{name}"] = value
    with open(outputs, "wb") as f:
        np.savez(f, **results)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
