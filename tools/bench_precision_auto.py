"""`--cpu-precision auto` under an accuracy budget vs hcc fp32 vs onnxruntime fp32: issue 13's targets, measured.

    python tools/bench_precision_auto.py [--cases resnet18:top1=0.99,bert_h768:max_abs=1e-2] [--seconds 8] [--out FILE.md]

For each case (a suite model of tools/bench_models.py and a budget) the model is compiled at fp32 and with
`--cpu-precision auto --accuracy BUDGET` (default calibration: the golden inputs and 3 more); the chosen precision per
GEMM/convolution is read back from the bundle's plan. Both bundles and onnxruntime (CPU provider) then run interleaved
in one process, one run each in turn, at 1 thread and at all cores; medians and ratios are printed. The budget is
checked once more on 4 inputs made here with seeds the compile never used (the suite's valid inputs), against
onnxruntime fp32. Needs a CPU with AMX bf16 tiles or AVX512-BF16 (without tiles the candidates are bf16 and fp32
only). Compare ratios from one run only: these machines are noisy.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_precision  # noqa: E402
import bench_suite  # noqa: E402

import bench_models  # noqa: E402

DEFAULT_CASES = "resnet18:top1=0.99,bert_h768:max_abs=1e-2"  # the two targets
CHECK_SEEDS = (901, 902, 903, 904)  # inputs the compile never saw (it uses the golden seed and its own held-out seeds)


@dataclass
class Case:
    model: str
    budget: str
    chosen: dict[str, int]  # precision -> ops
    flops_share: dict[str, float]  # precision -> share of the candidate ops' FLOPs
    plan_held_out: str  # the compile's own held-out check, as its plan records it
    check: str  # this tool's check on CHECK_SEEDS against onnxruntime
    check_ok: bool
    ms: dict[int, dict[str, float]]  # threads -> {"fp32", "auto", "ort"} median ms

    def lines(self) -> list[str]:
        mix = ", ".join(f"{n} {p} ({self.flops_share[p]:.0%} of FLOPs)" for p, n in sorted(self.chosen.items()))
        rows = []
        for threads, ms in self.ms.items():
            rows.append(f"| {self.model} | {self.budget} | {threads} | {ms['fp32']:.3g} | {ms['auto']:.3g} | {ms['ort']:.3g} | "
                        f"**{ms['fp32'] / ms['auto']:.2f}** | {ms['auto'] / ms['ort']:.2f} | {mix or 'all fp32'} | {self.check}"
                        f"{'' if self.check_ok else ' (OVER BUDGET)'} |")
        return rows


def _errors_text(errors: dict, budget) -> str:
    metrics = budget.metrics()
    parts = []
    for name, e in errors.items():
        values = {"max_abs": e.max_abs, "rel": e.max_rel, "cosine": e.cosine, "top1": e.top1}
        parts.append(f"{name}: " + ", ".join(f"{m} {values[m]:.3g}" for m in metrics if values.get(m) is not None))
    return "; ".join(parts)


def _time(sessions: dict, feeds: dict, seconds: float) -> dict[str, float]:
    for session in sessions.values():  # one untimed run each first
        session.run(None, feeds)
    return bench_precision.interleaved_medians(sessions, feeds, seconds)


def measure(spec: bench_models.SuiteModel, budget_text: str, thread_counts: list[int], seconds: float, folder: Path) -> Case:
    import hcc
    import hcc.runtime as rt
    from hcc.planner.precision import AccuracyBudget, compare, output_errors_from_json

    budget = AccuracyBudget.parse(budget_text)
    model = spec.build()
    path = folder / f"{spec.name}.onnx"
    onnx.save(model, path)
    golden = spec.make_feeds(model, 0)
    np.savez(folder / f"{spec.name}.golden.npz", **golden)
    fp32, auto = folder / f"{spec.name}.fp32", folder / f"{spec.name}.auto"
    hcc.compile(path, fp32, golden_inputs=folder / f"{spec.name}.golden.npz")
    hcc.compile(path, auto, cpu_precision="auto", accuracy=budget_text, golden_inputs=folder / f"{spec.name}.golden.npz")
    plan = json.loads((auto / "plan" / "precision.json").read_text())
    total = max(plan["total_flops"], 1)
    chosen: dict[str, int] = {}
    share: dict[str, float] = {}
    for c in plan["choices"]:
        if c["precision"] != "fp32":
            chosen[c["precision"]] = chosen.get(c["precision"], 0) + 1
            share[c["precision"]] = share.get(c["precision"], 0.0) + c["flops"] / total
    plan_held = _errors_text(output_errors_from_json(plan["held_out"]) or {}, budget)
    ms = {}
    check_text, check_ok = "", True
    for threads in thread_counts:  # onnxruntime's workers block between runs (spinning ones took cores from hcc's runs)
        sessions = {"fp32": rt.load(fp32, threads=threads), "auto": rt.load(auto, threads=threads),
                    "ort": bench_suite.ort_session(model.SerializeToString(), threads)}
        if not check_text:
            samples = [spec.make_feeds(model, seed) for seed in CHECK_SEEDS]
            names = [o.name for o in model.graph.output]
            reference = [dict(zip(names, sessions["ort"].run(None, s))) for s in samples]
            actual = [dict(zip(names, sessions["auto"].run(None, s))) for s in samples]
            errors = compare(reference, actual)
            check_text, check_ok = _errors_text(errors, budget), not budget.violations(errors)
        ms[threads] = _time(sessions, golden, seconds)
    return Case(spec.name, budget_text, chosen, share, plan_held, check_text, check_ok, ms)


def report(cases: list[Case], command: str) -> str:
    lines = ["# `--cpu-precision auto` under a budget vs hcc fp32 vs onnxruntime fp32", "", "```", command, "```", "",
             bench_precision.environment_line(),
             "- medians of interleaved runs in one process; speed-up = hcc fp32 ms / hcc auto ms in the same run",
             f"- check: the budget's metrics on {len(CHECK_SEEDS)} inputs the compile never saw (seeds {', '.join(map(str, CHECK_SEEDS))}), "
             "hcc auto against onnxruntime fp32", "",
             "| model | budget | threads | hcc fp32 ms | hcc auto ms | ort fp32 ms | auto speed-up over hcc fp32 | hcc auto / ort "
             "| chosen (GEMM/conv ops) | check on unseen inputs |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for case in cases:
        lines += case.lines()
    lines += ["", "The compile's own held-out check (its plan, plan/precision.json):"]
    lines += [f"- {c.model} ({c.budget}): {c.plan_held_out}" for c in cases]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=DEFAULT_CASES, help=f"comma-separated MODEL:BUDGET (default {DEFAULT_CASES})")
    p.add_argument("--threads", default=f"1,{os.cpu_count() or 1}", help="thread counts to time (default 1 and all cores)")
    p.add_argument("--seconds", type=float, default=8.0, help="timing seconds per model and thread count (default 8)")
    p.add_argument("--out", help="also write the markdown report here")
    args = p.parse_args(argv)
    from hcc.runtime.devices.cpu import cpu_low_precisions

    if not cpu_low_precisions():
        print("bench_precision_auto: this CPU has neither AMX bf16 tiles nor AVX512-BF16; --cpu-precision auto is refused here",
              file=sys.stderr)
        return 1
    cases = []
    threads = sorted({int(t) for t in args.threads.split(",")})
    with tempfile.TemporaryDirectory(prefix="hcc-bench-auto-") as tmp:
        for number, item in enumerate(args.cases.split(",")):
            name, _, budget = item.partition(":")
            (spec,) = bench_models.by_name([name])
            print(f"{name}: compiling fp32 and auto under {budget} ...", file=sys.stderr, flush=True)
            folder = Path(tmp) / f"case{number}"  # one model may come with several budgets
            folder.mkdir()
            cases.append(measure(spec, budget, threads, args.seconds, folder))
            print("\n".join(cases[-1].lines()), flush=True)
    bench_precision.emit(report(cases, bench_precision.command_line(argv)), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
