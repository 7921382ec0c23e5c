#!/usr/bin/env python
"""Run a bundle's GPU subgraphs on a real GPU: check them against onnxruntime and time them.

    python tools/gpu_check.py BUNDLE_OR_MODEL [--model MODEL.onnx] [--input-shape NAME=DIMS ...]
                              [--precision fp32|fp16] [--arch sm_90] [--repeat 50] [--warmup 5] [--threads N]
                              [--out PREFIX] [--sync] [--allow-fallback]

BUNDLE_OR_MODEL is an hcc bundle folder, or an ONNX model that is first compiled with every node on one GPU
subgraph (`gpu:<arch>`, the arch of the GPU found, else sm_90; --precision picks fp32 or fp16 kernels; --bundle DIR
keeps the bundle). For a bundle, --model gives the ONNX model for the onnxruntime comparisons and timings; without
it the bundle's golden outputs (onnxruntime, stored at compile time) are the reference and onnxruntime is not timed.

What it does, on a machine with an NVIDIA GPU (Ampere or newer) and its driver (libcuda.so.1, or $HCC_LIBCUDA):
 1. loads the bundle with the hcc runtime; a GPU subgraph that falls back to its CPU artifact is reported, and the
    check fails (exit 3) unless --allow-fallback;
 2. runs it on the bundle's golden inputs and compares every output with onnxruntime (tolerance by precision);
 3. times, after --warmup untimed runs, --repeat runs of: hcc end to end (host<->device copies included); each GPU
    subgraph alone (synchronize + perf_counter around its launches, and CUDA events); onnxruntime on the CPU
    (--threads intra-op threads); onnxruntime's CUDAExecutionProvider when the installed onnxruntime has it;
 4. prints a table (median, p10, p90 in ms) and writes PREFIX.json and PREFIX.md (default: ./gpu_check.*).
--sync sets HCC_CUDA_SYNC=1 (synchronize after every kernel, so a faulting kernel is named exactly).

Exit status: 0 all outputs agree, 1 error, 2 mismatch, 3 a GPU subgraph ran on the CPU fallback.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hcc.devices import DEVICE_KINDS, golden_tolerance, parse_device

GPU = DEVICE_KINDS["gpu"]
DEFAULT_ARCH = parse_device(GPU.default_device).target


def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    return {"median": float(np.median(a)), "p10": float(np.percentile(a, 10)), "p90": float(np.percentile(a, 90)), "n": len(ms)}


def _time(fn, warmup: int, repeat: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def _compare(names, actual, expected: dict, rtol: float, atol: float, scaled: bool) -> list[dict]:
    rows = []
    for name, got in zip(names, actual):
        ref = expected.get(name)
        row = {"output": name, "shape": list(got.shape), "dtype": str(got.dtype)}
        if ref is None:
            row.update(ok=None, note="no reference")
        elif got.shape != ref.shape or got.dtype != ref.dtype:
            row.update(ok=False, note=f"shape/dtype {list(got.shape)} {got.dtype} vs onnxruntime {list(ref.shape)} {ref.dtype}")
        elif ref.dtype.kind in "biu":
            bad = int(np.count_nonzero(got != ref))
            row.update(ok=bad == 0, mismatches=bad)
        else:
            diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
            scale = max(1.0, float(np.abs(ref).max())) if scaled and ref.size else 1.0
            close = np.isclose(got, ref, rtol=rtol, atol=atol * scale)
            row.update(ok=bool(close.all()), max_abs_err=float(diff.max()) if diff.size else 0.0,
                       max_rel_err=float((diff / np.maximum(np.abs(ref), 1e-30)).max()) if diff.size else 0.0,
                       mismatches=int(close.size - np.count_nonzero(close)), rtol=rtol, atol=atol * scale)
        rows.append(row)
    return rows


def _ort_session(model_path: str, providers: list[str], threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(model_path, options, providers=providers)


def _gpu_arch() -> str | None:
    try:
        from hcc.runtime.devices.cuda import CudaDevice

        major, minor = CudaDevice("gpu", 0).compute_capability
        return f"sm_{major}{minor}"
    except Exception:
        return None


def _compile(model: str, bundle: Path, shapes, precision: str, arch: str) -> None:
    from hcc.driver import compile_groups
    from hcc.frontend.loader import load_model
    from hcc.options import CompileOptions

    loaded = load_model(model, shapes or None)
    nodes = [n.name for n in loaded.model.graph.node]
    t0 = time.perf_counter()
    options = CompileOptions.from_keywords(input_shapes=shapes or None, gpu_precision=precision, keep_ir=True)
    compile_groups(model, bundle, [{"id": "sg0", "device": f"gpu:{arch}", "nodes": nodes, "device_index": 0}], options)
    print(f"compiled {model} -> {bundle} ({len(nodes)} nodes on gpu:{arch}, {precision}) in {time.perf_counter() - t0:.1f} s")


def _markdown(report: dict) -> str:
    lines = [f"# hcc GPU check: {report['bundle']}", "", f"- device: {report['device']}", f"- host: {report['host']}",
             f"- verdict: **{report['verdict']}**", ""]
    if report["notes"]:
        lines += ["Runtime notes:", ""] + [f"- {n}" for n in report["notes"]] + [""]
    lines += ["## Correctness (vs onnxruntime)", "", "| output | shape | ok | max abs err | max rel err | mismatches |", "|---|---|---|---|---|---|"]
    for r in report["correctness"]:
        lines.append(f"| {r['output']} | {r['shape']} | {r.get('ok')} | {r.get('max_abs_err', '')} | {r.get('max_rel_err', '')} "
                     f"| {r.get('mismatches', '')} |")
    lines += ["", "## Timings (ms)", "", "| what | median | p10 | p90 | runs |", "|---|---|---|---|---|"]
    for name, s in report["timings"].items():
        lines.append(f"| {name} | {s['median']:.4f} | {s['p10']:.4f} | {s['p90']:.4f} | {s['n']} |")
    lines += ["", "## GPU subgraphs", ""]
    for sg in report["gpu_subgraphs"]:
        lines.append(f"- {sg['id']} on {sg['device']} ({sg['precision']}): {sg['kernels']} kernels, {sg['launches']} launches, "
                     f"arena {sg['arena_bytes']} B, max registers {sg['max_registers']}, spilling kernels {sg['spilling_kernels'] or 'none'}")
    return "\n".join(lines) + "\n"


@dataclass
class _GpuRun:
    """What the loaded bundle says about its GPU subgraphs: the later steps all read it."""

    gpu_sgs: list
    notes: list[str]
    fell_back: list[str]  # ids of the GPU subgraphs that run on their CPU fallback
    device_name: str
    precision: str


@dataclass
class _Reference:
    """The inputs, the outputs they are checked against, and where those come from."""

    feeds: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]
    reference: str
    ort_cpu: object  # onnxruntime CPU session when a model is given, else None


def _parser() -> argparse.ArgumentParser:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="bundle folder or ONNX model")
    parser.add_argument("--model", help="the ONNX model of a bundle (for onnxruntime comparisons and timings)")
    parser.add_argument("--bundle", help="where to compile a model (default: a temporary folder)")
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS")
    parser.add_argument("--precision", choices=sorted(GPU.precisions), default=GPU.default_precision, help="GPU precision when compiling a model")
    parser.add_argument("--arch", help="sm_XX to compile for (default: the GPU's, else sm_90)")
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="onnxruntime CPU intra-op threads")
    parser.add_argument("--out", default="gpu_check", help="output prefix for PREFIX.json and PREFIX.md")
    parser.add_argument("--sync", action="store_true", help="synchronize after every kernel (HCC_CUDA_SYNC=1)")
    parser.add_argument("--allow-fallback", action="store_true", help="do not fail when a GPU subgraph runs on the CPU")
    return parser


def _describe(session, gpu_sgs: list) -> _GpuRun:
    """Step 1: the session's and its devices' notes, which GPU subgraphs fell back to the CPU, the GPU's name and
    the precision the kernels were compiled for."""
    notes = list(session.notes)
    for device in session.devices.values():
        notes += [n for n in getattr(device, "notes", []) if n not in notes]
    fell_back = [sg.id for sg in gpu_sgs if session.instance_of(sg) == "cpu#fallback"]
    gpu_devices = [d for d in session.devices.values() if getattr(d, "kind", "") == "gpu"]
    device_name = ", ".join(d.name for d in gpu_devices) or "no GPU (CPU fallback)"
    precision = next((a.meta.get("precision", "fp32") for sg in gpu_sgs for a in sg.artifacts if a.kind in GPU.artifact_kinds), "fp32")
    return _GpuRun(gpu_sgs, notes, fell_back, device_name, precision)


def _reference(bundle: Path, model_path: str | None, threads: int) -> _Reference:
    """Step 2's reference: the bundle's golden inputs, and onnxruntime's CPU outputs on them when the model is known
    (else the golden outputs stored at compile time)."""
    golden_path = bundle / "golden" / "golden.npz"
    with np.load(golden_path) as g:
        feeds = {k[len("input:"):]: g[k] for k in g.files if k.startswith("input:")}
        expected = {k[len("output:"):]: g[k] for k in g.files if k.startswith("output:")}
    reference = "golden outputs stored in the bundle (onnxruntime at compile time)"
    ort_cpu = None
    if model_path:
        ort_cpu = _ort_session(model_path, ["CPUExecutionProvider"], threads)
        names = [o.name for o in ort_cpu.get_outputs()]
        expected = dict(zip(names, ort_cpu.run(names, feeds)))
        reference = "onnxruntime CPUExecutionProvider on the bundle's golden inputs"
    return _Reference(feeds, expected, reference, ort_cpu)


def _time_hcc(session, run: _GpuRun, feeds: dict, warmup: int, repeat: int) -> dict[str, dict]:
    """Step 3, hcc: end to end, and each GPU subgraph alone (synchronize + perf_counter from the session's profile)."""
    timings: dict[str, dict] = {}
    per_sg: dict[str, list[float]] = {sg.id: [] for sg in run.gpu_sgs}

    def run_hcc():
        session.run(None, feeds)
        for sg in run.gpu_sgs:
            per_sg[sg.id].append(session.last_profile.subgraphs.get(sg.id, float("nan")) * 1e3)

    timings["hcc end to end (incl. host<->device copies)"] = _stats(_time(run_hcc, warmup, repeat))
    for sg in run.gpu_sgs:
        label = f"hcc {sg.id} on its CPU fallback" if sg.id in run.fell_back else f"hcc {sg.id} on {sg.device} (synchronize + perf_counter)"
        timings[label] = _stats(per_sg[sg.id][warmup:])
    return timings


def _time_cuda_events(session, run: _GpuRun, feeds: dict, warmup: int, repeat: int, timings: dict[str, dict]) -> None:
    """Step 3, CUDA events around each GPU subgraph's launches (device-resident inputs, as in the session): its
    executable's run is wrapped for the timed runs, then restored."""
    executables = getattr(session, "_executables", {})
    for sg in run.gpu_sgs:
        device = session.devices.get(session.instance_of(sg))
        timer = getattr(device, "event_timer", lambda: None)()
        exe = executables.get(sg.id)
        if timer is None or exe is None or sg.id in run.fell_back:
            continue
        events: list[float] = []
        original = exe.run

        def timed_run(inputs, outs, _orig=original, _events=events, _timer=timer):
            _events.append(_timer(lambda: _orig(inputs, outs)))

        exe.run = timed_run
        try:
            _time(lambda: session.run(None, feeds), warmup, repeat)
        finally:
            exe.run = original
        timings[f"hcc {sg.id} on {sg.device} (CUDA events)"] = _stats(events[warmup:])


def _time_onnxruntime(model_path: str, ref: _Reference, args: argparse.Namespace, timings: dict[str, dict], notes: list[str]) -> None:
    """Step 3, onnxruntime: on the CPU, and with its CUDAExecutionProvider when the installed onnxruntime has it
    (noting whether that agrees with the CPU)."""
    ort_cpu, feeds = ref.ort_cpu, ref.feeds
    names = [o.name for o in ort_cpu.get_outputs()]
    timings[f"onnxruntime CPU ({args.threads} threads)"] = _stats(_time(lambda: ort_cpu.run(names, feeds), args.warmup, args.repeat))
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        ort_gpu = _ort_session(model_path, ["CUDAExecutionProvider", "CPUExecutionProvider"], args.threads)
        got = ort_gpu.run(names, feeds)
        timings["onnxruntime CUDAExecutionProvider"] = _stats(_time(lambda: ort_gpu.run(names, feeds), args.warmup, args.repeat))
        agree = all(np.allclose(a, ref.expected[n], rtol=1e-2, atol=1e-3) for n, a in zip(names, got))
        notes.append(f"onnxruntime CUDA EP agrees with CPU: {agree}")
    else:
        notes.append("onnxruntime CUDAExecutionProvider not available (install onnxruntime-gpu to time it)")


def _subgraph_info(bundle: Path, run: _GpuRun) -> list[dict]:
    """Each GPU subgraph's kernel table, summarized: kernels, launches, arena, registers, spills, where it ran."""
    sg_info = []
    for sg in run.gpu_sgs:
        artifact = next(a for a in sg.artifacts if a.kind in GPU.artifact_kinds)
        table = json.loads((bundle / artifact.file).read_text())
        regs = [r.get("registers", 0) for k in table["kernels"].values() for r in k.get("resources", {}).values()]
        sg_info.append({"id": sg.id, "device": sg.device, "precision": table.get("precision", "fp32"), "kernels": len(table["kernels"]),
                        "launches": len(table["steps"]), "arena_bytes": table.get("arena_bytes", 0), "max_registers": max(regs, default=0),
                        "spilling_kernels": table.get("spilling_kernels", []),
                        "ran_on": "CPU fallback" if sg.id in run.fell_back else run.device_name})
    return sg_info


def _print_report(report: dict) -> None:
    """Step 4: the report as a table on stdout."""
    print(f"device: {report['device']}")
    for n in report["notes"]:
        print(f"note: {n}")
    print(f"reference: {report['reference']}")
    for r in report["correctness"]:
        detail = f"max abs err {r['max_abs_err']:.3g}, max rel err {r['max_rel_err']:.3g}" if "max_abs_err" in r else r.get("note", "")
        print(f"  {r['output']:30} {'ok' if r.get('ok') else 'MISMATCH' if r.get('ok') is False else '?':9} {detail}")
    timings = report["timings"]
    width = max(len(k) for k in timings) + 2
    print(f"{'':{width}}{'median ms':>12}{'p10':>10}{'p90':>10}")
    for name, s in timings.items():
        print(f"{name:{width}}{s['median']:12.4f}{s['p10']:10.4f}{s['p90']:10.4f}")
    for sg in report["gpu_subgraphs"]:
        print(f"{sg['id']}: {sg['kernels']} kernels, arena {sg['arena_bytes']} B, max registers {sg['max_registers']}, ran on {sg['ran_on']}")
    print(f"verdict: {report['verdict']}")


def main(argv: list[str] | None = None) -> int:
    """The steps the module docstring numbers; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.sync:
        os.environ["HCC_CUDA_SYNC"] = "1"

    from hcc.errors import HccError
    from hcc.frontend.loader import parse_shape_options
    from hcc.runtime import load

    tmp = None
    try:
        # a model is compiled first, into --bundle or a temporary folder
        target = Path(args.target)
        model_path = args.model
        if target.is_file():
            model_path = str(target)
            if args.bundle:
                bundle = Path(args.bundle)
            else:
                tmp = tempfile.TemporaryDirectory(prefix="hcc-gpu-check-")
                bundle = Path(tmp.name) / "bundle"
            _compile(model_path, bundle, parse_shape_options(args.input_shape), args.precision, args.arch or _gpu_arch() or DEFAULT_ARCH)
        else:
            bundle = target

        session = load(bundle)  # 1.
        manifest = session.manifest
        gpu_sgs = [sg for sg in manifest.subgraphs if parse_device(sg.device).kind == "gpu"]
        if not gpu_sgs:
            print(f"error: {bundle} has no GPU subgraph", file=sys.stderr)
            return 1
        run = _describe(session, gpu_sgs)
        rtol, atol = golden_tolerance(run.precision)

        ref = _reference(bundle, model_path, args.threads)  # 2.
        outputs = session.run(None, ref.feeds)
        correctness = _compare(manifest.outputs, outputs, ref.expected, rtol, atol, scaled=run.precision != "fp32")

        timings = _time_hcc(session, run, ref.feeds, args.warmup, args.repeat)  # 3.
        _time_cuda_events(session, run, ref.feeds, args.warmup, args.repeat, timings)
        if ref.ort_cpu is not None:
            _time_onnxruntime(model_path, ref, args, timings, run.notes)
        sg_info = _subgraph_info(bundle, run)
    except HccError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if tmp is not None:
            tmp.cleanup()

    agree = all(r.get("ok") is not False for r in correctness)  # 4.
    verdict = "PASS" if agree and not run.fell_back else ("MISMATCH" if not agree else "CPU FALLBACK (no GPU run)")
    report = {"bundle": str(bundle), "device": run.device_name, "host": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs)",
              "reference": ref.reference, "precision": run.precision, "verdict": verdict, "notes": run.notes, "correctness": correctness,
              "timings": timings, "gpu_subgraphs": sg_info, "repeat": args.repeat, "warmup": args.warmup}
    _print_report(report)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.json").write_text(json.dumps(report, indent=2) + "\n")
    Path(f"{out}.md").write_text(_markdown(report))
    print(f"wrote {out}.json and {out}.md")
    if not agree:
        return 2
    if run.fell_back and not args.allow_fallback:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
