"""Mixed-precision report: per-op measured sensitivity and the plan an accuracy budget allows (planner/precision.py).

    python tools/precision_report.py MODEL.onnx [--input-shape NAME=1x3x224x224] [--accuracy max_abs=1e-2]
        [--calib N] [--held-out N] [--precisions bf16,fp16,int8] [--margin 0.5] [--extend] [--fill NAME=VALUE]
        [--json OUT]

The model is loaded as `hcc compile` loads it (hcc.frontend.loader.load_model: shapes fixed, batch norm folded, ...),
and its inputs are made as hcc makes golden inputs (hcc.artifacts.golden.random_inputs): calibration seeds 0..N-1,
held-out seeds 1000000.. (never seen by the choice). `--fill NAME=VALUE` sets an input to a constant instead (e.g.
`attention_mask=1`: random integers >= 1 make a BERT additive mask +inf and its outputs NaN). Prints one row per
candidate op (its share of the candidate FLOPs, the end-to-end error with only that op lowered, per precision) and
the chosen plan with its error on the calibration and the held-out inputs. `--extend` grows the conservative choice
op by op, keeping each step only if an end-to-end run on the calibration inputs stays within the margin. The
analysis alone: `hcc compile --cpu-precision auto --accuracy ...` runs it (bf16 only) and compiles the choice.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hcc.artifacts.golden import random_inputs
from hcc.errors import HccError
from hcc.frontend.loader import load_model, parse_shape_options
from hcc.planner.precision import DEFAULT_MARGIN, PRECISIONS, AccuracyBudget, OutputError, PrecisionPlan, choose, measure_sensitivity

HELD_OUT_SEED = 1_000_000


def _fmt_err(e: OutputError) -> str:
    top1 = "" if e.top1 is None else f" top1={e.top1:.4f} (certain {e.top1_certain:.4f})"
    return f"max_abs={e.max_abs:.3g} rel={e.max_rel:.3g} cosine={e.cosine:.7f}{top1}"


def sensitivity_table(plan: PrecisionPlan, budget: AccuracyBudget, precisions: list[str]) -> list[str]:
    """One row per op: FLOPs share, the worst output's max_abs per precision (+ top1 / cosine when budgeted), choice."""
    total = max(plan.total_flops, 1)
    extra = [m for m in ("top1", "cosine") if getattr(budget, m) is not None]
    width = max([2] + [len(s.node) for s in plan.sensitivities])
    head = f"| {'op':<{width}} | {'type':<8} | {'MFLOP':>9} | {'share':>6} |"
    head += "".join(f" {p} max_abs |" for p in precisions)
    head += "".join(f" {p} {m} |" for m in extra for p in precisions) + " chosen |"
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]
    chosen = {c.node: c.precision for c in plan.choices}
    for s in plan.sensitivities:
        row = f"| {s.node:<{width}} | {s.op_type:<8} | {s.flops / 1e6:>9.2f} | {100 * s.flops / total:>5.1f}% |"
        for p in precisions:  # '-': the precision does not apply to this op (bf16x3: GEMMs only)
            row += f" {max(e.max_abs for e in s.errors[p].values()):>{len(p) + 8}.2e} |" if p in s.errors else f" {'-':>{len(p) + 8}} |"
        for m in extra:
            for p in precisions:
                values = [getattr(e, m) for e in s.errors.get(p, {}).values() if getattr(e, m) is not None]
                row += f" {min(values) if values else float('nan'):>{len(p) + len(m) + 1}.{6 if m == 'cosine' else 4}f} |"
        lines.append(row + f" {chosen[s.node]:>6} |")
    return lines


def plan_summary(plan: PrecisionPlan, calib: int, held_out: int) -> list[str]:
    """Chosen precisions by FLOPs share, then predicted / calibration / held-out errors per output."""
    total = max(plan.total_flops, 1)
    shares = {}
    for c in plan.choices:
        shares[c.precision] = shares.get(c.precision, 0) + c.flops
    lines = [f"budget {plan.budget} (choice fills {plan.margin:g} of it on calibration; held-out checked against all of it)",
             "candidate FLOPs by chosen precision: " + ", ".join(f"{p} {100 * f / total:.1f}%" for p, f in sorted(shares.items())),
             f"nominal compute left: {100 * (1 - sum(c.flops_saved for c in plan.choices) / total):.1f}% of fp32 (nominal speed-ups, "
             "not measured kernels)",
             f"end-to-end runs: {plan.confirm_runs}; put back to fp32 after the confirming run: {', '.join(plan.reverted) or 'none'}"]
    if plan.extended:
        lines.append(f"added by measured growth (--extend): {', '.join(plan.extended)}")
    composed = "predicted (composed, the choice before growth)" if plan.extended else "predicted (composed)"
    rows = [(composed, plan.predicted, None), (f"calibration ({calib} inputs)", plan.calibration, plan.calibration_ok),
            (f"held-out ({held_out} inputs)", plan.held_out, plan.held_out_ok)]
    for label, errors, ok in rows:
        if errors is None:
            continue
        verdict = "" if ok is None else ("  within budget" if ok else "  OVER BUDGET")
        lines.append(f"{label}:{verdict}")
        lines.extend(f"  {name}: {_fmt_err(e)}" for name, e in errors.items())
    return lines


def _inputs(loaded, seed: int, fills: list[str]) -> dict:
    """hcc's random golden inputs for `seed`, with the --fill inputs set to their constant."""
    feeds = random_inputs(loaded.model, loaded.inputs, seed=seed)
    for item in fills:
        name, sep, value = item.partition("=")
        if not sep or name not in feeds:
            raise HccError(f"--fill '{item}': expected NAME=VALUE with NAME one of {', '.join(feeds)}")
        feeds[name] = feeds[name].copy()
        feeds[name][...] = float(value) if feeds[name].dtype.kind == "f" else int(value)
    return feeds


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS")
    parser.add_argument("--accuracy", action="append", default=[], metavar="METRIC=VALUE")
    parser.add_argument("--calib", type=int, default=8)
    parser.add_argument("--held-out", type=int, default=8)
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN)
    parser.add_argument("--extend", action="store_true")
    parser.add_argument("--fill", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--fpga-widths", action="store_true",
                        help="instead: each MAC layer's error at 8/12/16/18-bit ap_fixed words (planner/fixed_precision.py), the "
                        "whole model taken as one FPGA subgraph, and the widths the budget allows")
    args = parser.parse_args(argv)
    if args.fpga_widths:
        return _fpga_widths(args)
    try:
        budget = AccuracyBudget.parse(args.accuracy or ["max_abs=1e-2"])
        precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
        if not precisions or set(precisions) - set(PRECISIONS) or args.calib < 1 or args.held_out < 0:
            raise HccError(f"--precisions takes some of {','.join(PRECISIONS)}; --calib >= 1, --held-out >= 0")
        loaded = load_model(str(args.model), parse_shape_options(args.input_shape))
        calib = [_inputs(loaded, i, args.fill) for i in range(args.calib)]
        held = [_inputs(loaded, HELD_OUT_SEED + i, args.fill) for i in range(args.held_out)]
        start = time.perf_counter()
        progress = lambda s, i, n: print(f"  [{i}/{n}] {s.node} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)  # noqa: E731
        sens = measure_sensitivity(loaded.model, calib, precisions, progress=progress)
        measured = time.perf_counter() - start
        plan = choose(sens, budget, loaded.model, calib, held or None, margin=args.margin, extend=args.extend)
    except HccError as exc:
        print(f"precision_report: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.model.name}: {len(sens)} candidate ops, {plan.total_flops / 1e9:.3f} GFLOP; {args.calib} calibration, "
          f"{args.held_out} held-out inputs; sensitivity {measured:.0f} s, choice + checks {time.perf_counter() - start - measured:.0f} s")
    print("\n".join(sensitivity_table(plan, budget, list(precisions))))
    print()
    print("\n".join(plan_summary(plan, args.calib, args.held_out)))
    if args.json:
        args.json.write_text(plan.to_json())
    return 0 if plan.calibration_ok and plan.held_out_ok is not False else 2


def _fpga_widths(args) -> int:
    """`--fpga-widths`: the FPGA width table and choice (the model as one FPGA subgraph)."""
    from hcc.planner import fixed_precision as fxp

    try:
        budget = AccuracyBudget.parse(args.accuracy or ["max_abs=1e-2"])
        loaded = load_model(str(args.model), parse_shape_options(args.input_shape))
        calib = [_inputs(loaded, i, args.fill) for i in range(args.calib)]
        held = [_inputs(loaded, HELD_OUT_SEED + i, args.fill) for i in range(args.held_out)]
        start = time.perf_counter()
        sens = fxp.measure_widths(loaded.model, calib)
        measured = time.perf_counter() - start
        region = [{n.name for n in loaded.model.graph.node}]
        plan = fxp.choose_widths(sens, budget, loaded.model, calib, held or None, args.margin, region)
    except HccError as exc:
        print(f"precision_report: error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.model.name}: {len(sens)} MAC layers; {args.calib} calibration, {args.held_out} held-out inputs; sensitivity "
          f"{measured:.0f} s, choice + checks {time.perf_counter() - start - measured:.0f} s")
    width = max([len(s.node) for s in sens] + [5])
    print(f"| {'layer':<{width}} | type     | MACs/iter | " + " | ".join(f"{w:>2}-bit max_abs" for w in fxp.FIXED_WIDTHS) + " | chosen |")
    print(f"|{'-' * (width + 2)}|----------|-----------|" + "|".join("-" * 16 for _ in fxp.FIXED_WIDTHS) + "|--------|")
    chosen = plan.widths()
    for s in sens:
        cells = " | ".join(f"{max(e.max_abs for e in s.errors[str(w)].values()):>14.3g}" for w in fxp.FIXED_WIDTHS)
        print(f"| {s.node:<{width}} | {s.op_type:<8} | {s.mac_block:>9} | {cells} | {chosen[s.node]:>4} b |")
    print()
    worst = lambda errors: ", ".join(f"{k} max_abs {e.max_abs:.3g}" for k, e in (errors or {}).items()) or "-"  # noqa: E731
    print(f"budget {plan.budget} (choice fills {plan.margin:g} of it on calibration; held-out checked against all of it)")
    print(f"inputs on entry: {', '.join(f'{k} {v}' for k, v in plan.inputs.items()) or '-'}")
    print(f"widened after the confirming run: {', '.join(plan.widened) or 'none'}")
    print(f"calibration ({args.calib} inputs): {'within' if plan.calibration_ok else 'OVER'} budget: {worst(plan.calibration)}")
    if plan.held_out is not None:
        print(f"held-out ({args.held_out} inputs): {'within' if plan.held_out_ok else 'OVER'} budget: {worst(plan.held_out)}")
    for note in plan.notes[1:]:
        print(f"note: {note}")
    if args.json:
        args.json.write_text(plan.to_json())
    return 0 if plan.calibration_ok and plan.held_out_ok is not False else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
