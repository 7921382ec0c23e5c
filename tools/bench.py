#!/usr/bin/env python
"""Time an hcc bundle against onnxruntime on the same model, interleaved in one process.

    python tools/bench.py MODEL.onnx [--input-shape NAME=DIMS ...] [--threads 1] [--repeat N] [--bundle DIR]

Compiles MODEL.onnx with hcc (into --bundle DIR, or a temporary folder; an existing bundle in DIR is reused
unless --recompile), makes deterministic random inputs, checks that hcc and onnxruntime agree (the bundle's
golden tolerances), then alternates one hcc run and one onnxruntime run per iteration after a warm-up, so that
both see the same machine state (frequency, cache, noisy neighbours). Prints the median, p10 and p90 of each in
milliseconds and the hcc/onnxruntime ratio of the medians (below 1: hcc is faster).

Both sides are timed through their Python `run` call with the same feeds, so each figure includes its own
call overhead. Both use --threads threads (default 1): onnxruntime's CPUExecutionProvider as intra_op_num_threads,
hcc as `hcc.runtime.load(bundle, threads=N)` (the bundle's own thread pool). At more than one thread onnxruntime's
workers block between runs instead of spin-waiting (unless --ort-spinning): spinning, they take a core from the hcc run
that follows in the interleaved loop.
"""
from __future__ import annotations

import os

# numpy's OpenBLAS threads spin after a BLAS call and would take a core from the runtimes being timed (seen in
# perf as blas_thread_server); this process only uses numpy for inputs and comparisons.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def _ort_session(model, threads: int, spinning: bool = False):
    """At >1 thread onnxruntime's idle workers spin-wait unless `spinning` is off, and they spin through the next hcc
    run of the interleaved loop (measured: a 2-thread hcc ResNet-18 or MobileNetV2 ~2x slower next to them, while
    blocking changes onnxruntime's own time by -10%..+3% on those models when each runs alone)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _compare(names, actual, expected: dict, rtol: float, atol: float) -> list[str]:
    problems = []
    for name, got in zip(names, actual):
        ref = expected[name]
        if got.shape != ref.shape:
            problems.append(f"{name}: shape {got.shape} != onnxruntime {ref.shape}")
            continue
        if ref.dtype.kind in "biu":
            bad = int(np.count_nonzero(got != ref))
            detail = ""
        else:
            close = np.isclose(got, ref, rtol=rtol, atol=atol)
            bad = int(close.size - np.count_nonzero(close))
            detail = f", max abs err {float(np.max(np.abs(got.astype(np.float64) - ref))) if got.size else 0.0:.3g}"
        if bad:
            problems.append(f"{name}: {bad}/{ref.size} elements differ (rtol={rtol} atol={atol}{detail})")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="ONNX model file")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS",
                        help="concrete shape for an input, e.g. x=1x3x224x224 (repeatable)")
    parser.add_argument("--threads", type=int, default=1, help="threads of both runtimes (default 1)")
    parser.add_argument("--ort-spinning", action="store_true",
                        help="keep onnxruntime's intra-op spin-waiting at >1 thread (default off, as in bench_suite.py)")
    parser.add_argument("--repeat", type=int, default=50, help="timed iterations of each runtime (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed iterations of each runtime first (default 5)")
    parser.add_argument("--bundle", help="bundle folder: reused if it already holds a bundle, else compiled into")
    parser.add_argument("--recompile", action="store_true", help="compile even if --bundle already holds a bundle")
    parser.add_argument("--target-cpu", default=None, help="hcc --target-cpu (default: hcc's default)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    parser.add_argument("--json", action="store_true", help="also print one JSON line with the numbers")
    args = parser.parse_args(argv)

    import hcc
    from hcc.artifacts.golden import random_inputs, run_onnxruntime
    from hcc.artifacts.manifest import MANIFEST_FILE
    from hcc.errors import HccError
    from hcc.frontend.loader import load_model, parse_shape_options
    from hcc.runtime import load

    try:
        shapes = parse_shape_options(args.input_shape)
        loaded = load_model(args.model, shapes or None)
        tmp = None
        if args.bundle:
            bundle = Path(args.bundle)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="hcc-bench-")
            bundle = Path(tmp.name) / "bundle"
        if args.recompile or not (bundle / MANIFEST_FILE).exists():
            options = {"input_shapes": shapes or None}
            if args.target_cpu:
                options["target_cpu"] = args.target_cpu
            t0 = time.perf_counter()
            hcc.compile(args.model, bundle, **options)
            print(f"compiled {args.model} -> {bundle} in {time.perf_counter() - t0:.2f} s")
        else:
            print(f"using the existing bundle {bundle}")

        session = load(bundle, threads=args.threads)
        feeds = random_inputs(loaded.model, loaded.inputs, args.seed)
        ort_session = _ort_session(loaded.model, args.threads, args.ort_spinning)
        out_names = list(session.manifest.outputs)
        golden = session.manifest.golden
        rtol, atol = (golden.rtol, golden.atol) if golden else (1e-3, 1e-4)

        expected = run_onnxruntime(loaded.model, feeds, threads=args.threads)
        problems = _compare(out_names, session.run(None, feeds), expected, rtol, atol)
        if problems:
            print("MISMATCH between hcc and onnxruntime:\n  " + "\n  ".join(problems))
        else:
            print(f"outputs agree with onnxruntime (rtol={rtol} atol={atol})")

        def run_hcc():
            session.run(None, feeds)

        def run_ort():
            ort_session.run(out_names, feeds)

        for _ in range(args.warmup):
            run_hcc()
            run_ort()
        times = {"hcc": [], "ort": []}
        clock = time.perf_counter
        for i in range(args.repeat):
            # Alternate which one goes first so neither always runs on the other's warm cache.
            order = (("hcc", run_hcc), ("ort", run_ort)) if i % 2 == 0 else (("ort", run_ort), ("hcc", run_hcc))
            for key, fn in order:
                t0 = clock()
                fn()
                times[key].append((clock() - t0) * 1e3)
    except HccError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    stats = {k: {"median": _percentile(v, 50), "p10": _percentile(v, 10), "p90": _percentile(v, 90)} for k, v in times.items()}
    ratio = stats["hcc"]["median"] / stats["ort"]["median"]
    print(f"model {args.model}: {args.repeat} interleaved iterations after {args.warmup} warm-up, {args.threads} thread(s)")
    print(f"{'':12}{'median ms':>12}{'p10 ms':>10}{'p90 ms':>10}")
    for key, label in (("hcc", "hcc"), ("ort", "onnxruntime")):
        s = stats[key]
        print(f"{label:12}{s['median']:12.3f}{s['p10']:10.3f}{s['p90']:10.3f}")
    print(f"hcc/onnxruntime (medians): {ratio:.2f}x" + ("  (hcc faster)" if ratio < 1 else "  (hcc slower)"))
    if args.json:
        print(json.dumps({"model": args.model, "threads": args.threads, "repeat": args.repeat, "agree": not problems, **stats, "ratio": ratio}))
    return 0 if not problems else 2


if __name__ == "__main__":
    sys.exit(main())
