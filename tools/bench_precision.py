"""hcc fp32 vs hcc bf16 (--cpu-precision bf16: AMX tiles or AVX512-BF16) vs onnxruntime fp32 on the suite's models.

    python tools/bench_precision.py [--models resnet18,bert_h768] [--threads 1] [--seconds 6] [--out FILE.md]

Each model (tools/bench_models.py, with its valid inputs) is compiled twice, at `--cpu-precision fp32` and `bf16`;
the two bundles and an onnxruntime session (CPU provider, the same thread count) run interleaved in one process, one
run each in turn, for `--seconds`; medians and ratios are printed, with each precision's max abs error against
onnxruntime and the outputs' range (the error bf16 costs). Needs a CPU with AMX bf16 tiles or AVX512-BF16 (hcc refuses
a bf16 compile elsewhere; the report names which ran). Compare ratios from one run only: these machines are noisy.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_models  # noqa: E402

PRECISIONS = ("fp32", "bf16")


@dataclass
class Row:
    model: str
    ms: dict[str, float]  # "fp32", "bf16", "ort": median ms
    error: dict[str, float]  # max abs error against onnxruntime per hcc precision
    output_range: float

    def line(self) -> str:
        speedup = self.ms["fp32"] / self.ms["bf16"]
        return (f"| {self.model} | {self.ms['fp32']:.3g} | {self.ms['bf16']:.3g} | {self.ms['ort']:.3g} | **{speedup:.2f}** | "
                f"{self.ms['bf16'] / self.ms['ort']:.2f} | {self.ms['fp32'] / self.ms['ort']:.2f} | {self.error['fp32']:.2g} | "
                f"{self.error['bf16']:.2g} | {self.output_range:.3g} |")


def measure(spec: bench_models.SuiteModel, threads: int, seconds: float, folder: Path) -> Row:
    """Compile both precisions, then time them and onnxruntime interleaved."""
    import onnxruntime as ort

    import hcc
    import hcc.runtime as rt

    model = spec.build()
    path = folder / f"{spec.name}.onnx"
    onnx.save(model, path)
    feeds = spec.make_feeds(model, 0)
    sessions = {}
    for precision in PRECISIONS:
        hcc.compile(path, folder / f"{spec.name}.{precision}", cpu_precision=precision)
        sessions[precision] = rt.load(folder / f"{spec.name}.{precision}", threads=threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    sessions["ort"] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    reference = sessions["ort"].run(None, feeds)
    error = {p: max(float(np.abs(a - r).max()) for a, r in zip(sessions[p].run(None, feeds), reference)) for p in PRECISIONS}
    return Row(spec.name, interleaved_medians(sessions, feeds, seconds), error, max(float(np.ptp(r)) for r in reference))


def interleaved_medians(sessions: dict, feeds: dict, seconds: float) -> dict[str, float]:
    """Median ms per session, running them one after another in turn for `seconds` (and at least 5 times each)."""
    times: dict[str, list[float]] = {k: [] for k in sessions}
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or min(len(t) for t in times.values()) < 5:
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feeds)
            times[name].append(time.perf_counter() - start)
    return {k: float(np.median(v)) * 1e3 for k, v in times.items()}


def environment_line(threads: int | None = None) -> str:
    """The report's line on the host, hcc's commit, onnxruntime and the time (and the thread count, when one)."""
    import onnxruntime

    import hcc
    from hcc.runtime.devices.cpu import bf16_kernel_name, int8_kernel_name
    from hcc.runtime.devices.discovery import describe_host_cpu

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    counted = f"{threads} thread(s); " if threads is not None else ""
    return (f"- {describe_host_cpu().model_name or platform.machine()}, {os.cpu_count()} logical cores; bf16 products on "
            f"{bf16_kernel_name()}, int8 (auto) on {int8_kernel_name()}; hcc {hcc.__version__} at {commit}; "
            f"onnxruntime {onnxruntime.__version__}; {counted}{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def command_line(argv: list[str] | None) -> str:
    """How this tool was run, for the report."""
    return "python " + " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])])


def emit(text: str, out: str | None) -> None:
    """Print the report, and write it to `out` when given."""
    print(text)
    if out:
        Path(out).write_text(text)


def report(rows: list[Row], threads: int, command: str) -> str:
    from hcc.runtime.devices.cpu import bf16_kernel_name

    lines = [f"# hcc fp32 vs hcc bf16 ({bf16_kernel_name()}) vs onnxruntime fp32", "", "```", command, "```", "", environment_line(threads),
             "- medians of interleaved runs in one process; errors: max abs difference from onnxruntime fp32 over all outputs", "",
             "| model | hcc fp32 ms | hcc bf16 ms | ort fp32 ms | bf16 speed-up over hcc fp32 | hcc bf16 / ort | hcc fp32 / ort "
             "| fp32 max abs err | bf16 max abs err | output range |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [r.line() for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", help="comma-separated suite model names (default: the suite's default run)")
    p.add_argument("--threads", type=int, default=1, help="threads for hcc and onnxruntime (default 1)")
    p.add_argument("--seconds", type=float, default=6.0, help="timing seconds per model (default 6)")
    p.add_argument("--out", help="also write the markdown report here")
    args = p.parse_args(argv)
    from hcc.runtime.devices.cpu import cpu_low_precisions

    if not cpu_low_precisions():
        print("bench_precision: this CPU has neither AMX bf16 tiles nor AVX512-BF16; nothing to compare", file=sys.stderr)
        return 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="hcc-bench-precision-") as tmp:
        for spec in bench_models.by_name(args.models.split(",") if args.models else None):
            rows.append(measure(spec, args.threads, args.seconds, Path(tmp)))
            print(rows[-1].line(), flush=True)
    emit(report(rows, args.threads, command_line(argv)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
