"""FPGA backend entry point (see hcc.backends for the contract): linalg -> HLS C++ project + bit-accurate csim .so.

Pipeline: parse the lowered linalg function (ir.parse) -> rewrite (transforms.run: BatchNorm folding, epilogues,
Softmax) -> sample data (calibration inputs, or the golden-style random inputs, pushed through onnxruntime to this
subgraph's boundary) -> resolve per-tensor fixed-point types (precision.resolve) -> run the numpy fixed-point
reference on the samples -> print the C++ (emit) -> compile the csim shared object with g++ and check it against the
reference bit for bit -> estimates, precision report, testbench data, Vitis build script.

Reads `options.fpga` (hcc.options.FpgaOptions: precision, config, calibration file, part, clock, reuse factor,
strategy, the planner's design points), `options.golden` (the inputs or seed calibration falls back on) and `files`
(the lifted ONNX model: op types and calibration; its weights npz: constants baked into the firmware).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from hcc.artifacts.manifest import ArtifactRecord
from hcc.backends.fpga import config as fconfig
from hcc.backends.fpga import emit as femit
from hcc.backends.fpga import estimate as festimate
from hcc.backends.fpga import fixed_point as fx
from hcc.backends.fpga import ir, lint, project, toolchain, transforms
from hcc.backends.fpga.precision import resolve
from hcc.devices import (
    DEVICE_KINDS,
    FPGA_DEFAULT_CLOCK_NS,
    FPGA_DEFAULT_PART,
    FPGA_PARTS,
    FPGA_SUPPORTED_OPS,
    NATIVE_ABI,
)
from hcc.errors import HccError
from hcc.options import CompileOptions, FpgaOptions, ModelFiles
from hcc.runtime.devices.fpga_csim import CSIM_HINT, CSIM_LIBRARY
from hcc.runtime.devices.native import entry_function, load_library

SLACK_RTOL, SLACK_ATOL = 1e-5, 1e-6  # float32 rounding of onnxruntime itself, added to the fixed-point error bound


def target_of(device: str, fpga: FpgaOptions) -> tuple[str, float]:
    """(part, clock period in ns): the options' values, else the known part's (hcc.devices), else the defaults."""
    known = FPGA_PARTS.get(device)
    part = fpga.part or (known.part if known else FPGA_DEFAULT_PART)
    clock_ns = fpga.clock_ns or (1e9 / known.clock_hz if known else None)
    return part, round(float(clock_ns or FPGA_DEFAULT_CLOCK_NS), 3)


def _op_types(spec, files: ModelFiles) -> dict[str, str]:
    model_path = files.model
    if model_path and Path(model_path).exists():
        import onnx

        model = onnx.load(model_path, load_external_data=False)
        from hcc.frontend.names import node_names

        return {name: n.op_type for name, n in zip(node_names(model), model.graph.node)}
    return {}


def _check_ops(spec, op_types: dict[str, str]) -> None:
    for name in spec.nodes:
        t = op_types.get(name)
        if t and t not in FPGA_SUPPORTED_OPS:
            raise HccError(f"FPGA backend: ONNX node '{name}' ({t}) is not supported on {spec.device}",
                           hint=f"supported on the FPGA: {', '.join(sorted(FPGA_SUPPORTED_OPS))}; place '{name}' on the CPU or GPU")


def _load_weights(files: ModelFiles) -> dict[str, np.ndarray]:
    path = files.weights
    if not path or not Path(path).exists():
        return {}
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _npz_samples(path: str, names: list[str]) -> list[dict[str, np.ndarray]] | None:
    with np.load(path, allow_pickle=False) as data:
        arrays = {k.removeprefix("input:"): data[k] for k in data.files if not k.startswith("output:")}
    return [arrays] if all(n in arrays for n in names) else None


def sample_data(spec, prog: ir.Program, options: CompileOptions, files: ModelFiles, weights: dict[str, np.ndarray]):
    """[(subgraph input values by tensor name, onnxruntime outputs by tensor name or None)] for calibration and
    the testbench: calibration inputs when given, else the golden inputs (the user's, or the random ones of the
    golden seed), run through the model."""
    import onnx

    act_inputs = [b.tensor for b in prog.inputs]
    model_path = files.model
    if not model_path or not Path(model_path).exists():
        rng = np.random.default_rng(0)
        return [({b.tensor: rng.standard_normal(b.shape).astype(np.float32) for b in prog.inputs}, None)], "random normal inputs (seed 0)"
    from hcc.artifacts.golden import random_inputs, run_onnxruntime

    model = onnx.load(model_path)
    graph_inputs = [i for i in model.graph.input if i.name not in weights]

    class _Info:
        def __init__(self, v):
            self.name = v.name
            self.shape = [d.dim_value for d in v.type.tensor_type.shape.dim]
            self.dtype = str(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))

    infos = [_Info(v) for v in graph_inputs]
    feeds_list, source = None, ""
    for path, label in ((options.fpga.calibration_file, "calibration file"), (options.golden.inputs, "golden inputs")):
        if path:
            feeds_list = _calibration_feeds(path, infos, label)
            source = f"{label} {Path(path).name} ({len(feeds_list)} sample(s))"
            break
    if feeds_list is None:
        seed = options.golden.seed
        feeds_list = [random_inputs(model, infos, seed)]
        source = f"random inputs (seed {seed}, as the bundle's golden data)"
    wanted = list(dict.fromkeys(act_inputs + list(spec.outputs)))
    existing = {o.name for o in model.graph.output}
    for name in wanted:
        if name not in existing:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    samples = []
    for feeds in feeds_list:
        full = dict(feeds)
        for i in model.graph.input:
            if i.name in weights:
                full[i.name] = weights[i.name]
        outs = run_onnxruntime(model, full)
        values = {n: (feeds[n] if n in feeds else outs[n]) for n in act_inputs}
        samples.append((values, {n: outs[n] for n in spec.outputs if n in outs}))
    return samples, source


def _calibration_feeds(path: str, infos, label: str) -> list[dict[str, np.ndarray]]:
    from hcc.runtime.golden_check import read_input_arrays

    arrays = read_input_arrays(path, label)
    missing = [i.name for i in infos if i.name not in arrays]
    if missing:
        raise HccError(f"{label} {path}: missing model input(s) {missing}")
    counts = set()
    for i in infos:
        a = arrays[i.name]
        if list(a.shape) == i.shape:
            counts.add(1)
        elif a.ndim == len(i.shape) + 1 and list(a.shape[1:]) == i.shape:
            counts.add(a.shape[0])
        else:
            raise HccError(f"{label} {path}: input '{i.name}' has shape {list(a.shape)}; expected {i.shape} or [N, {', '.join(map(str, i.shape))}]")
    if len(counts) != 1:
        raise HccError(f"{label} {path}: inputs hold different numbers of samples")
    n = counts.pop()
    feeds = []
    for k in range(n):
        feeds.append({i.name: (arrays[i.name] if list(arrays[i.name].shape) == i.shape else arrays[i.name][k]).astype(i.dtype) for i in infos})
    return feeds


def build(linalg_text: str, spec, options: CompileOptions, files: ModelFiles):
    """Everything up to (and including) the reference run; no files. Returns a dict of intermediate results."""
    cfg = fconfig.from_options(options.fpga)
    op_types = _op_types(spec, files)
    _check_ops(spec, op_types)
    weights = _load_weights(files)
    prog = ir.parse(linalg_text, spec.id, list(spec.inputs), weights)
    try:
        transforms.run(prog, op_types)
    except ir.Unsupported as exc:
        raise HccError(f"FPGA backend: subgraph {spec.id} ({', '.join(spec.nodes[:4])}{'...' if len(spec.nodes) > 4 else ''}) "
                       f"cannot be mapped to HLS C++ ({exc})",
                       hint="place the offending nodes on the CPU or GPU") from None
    for i, buf in enumerate(prog.outputs):
        buf.tensor = spec.outputs[i] if i < len(spec.outputs) else buf.id
    samples, source = sample_data(spec, prog, options, files, weights)
    # observed ranges (float reference of the transformed program) for auto precision
    observed = {}
    for buf in prog.inputs:
        vals = np.concatenate([np.asarray(s[0][buf.tensor], dtype=np.float64).ravel() for s in samples])
        observed[buf.id] = (float(vals.min()), float(vals.max()))
    if cfg.auto_mode == "observed":
        observed.update(_float_ranges(prog, samples))
    resolver = resolve(prog, cfg, op_types, observed)
    evals = []
    for values, ort in samples:
        ev = fx.Evaluator(prog, cfg.table_size)
        vals = ev.run({b.id: values[b.tensor] for b in prog.inputs})
        evals.append((vals, ev.stats, ort))
    return {"cfg": cfg, "op_types": op_types, "prog": prog, "samples": samples, "source": source, "resolver": resolver, "evals": evals}


def _float_ranges(prog: ir.Program, samples) -> dict:
    """Per-buffer (min, max) of the float64 program on the samples (auto_mode observed)."""
    from hcc.backends.fpga.interp import run_float

    ranges: dict[str, tuple[float, float]] = {}
    for values, _ in samples:
        env = {b.id: np.asarray(values[b.tensor], dtype=np.float64).ravel() for b in prog.inputs}
        for op in prog.ops:
            if op.kind in ("pad", "concat", "softmax"):
                out = _float_special(op, env)
            else:
                acts = [env[o.buf.id] if o.kind == "act" else None for o in op.ins]
                init = env[op.init.buf.id] if op.init is not None and op.init.kind == "act" else None
                out = run_float(op, acts, init).ravel()
            env[op.out.buf.id] = out
            finite = out[np.isfinite(out)]
            lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
            plo, phi = ranges.get(op.out.buf.id, (lo, hi))
            ranges[op.out.buf.id] = (min(lo, plo), max(hi, phi))
    return ranges


def _float_special(op, env) -> np.ndarray:
    if op.kind == "pad":
        src = env[op.ins[0].buf.id].reshape(op.ins[0].shape)
        return np.pad(src, list(zip(op.attrs["low"], op.attrs["high"])), constant_values=op.attrs["value"]).ravel()
    if op.kind == "concat":
        return np.concatenate([env[o.buf.id].reshape(o.shape) for o in op.ins], axis=op.attrs["axis"]).ravel()
    x = env[op.ins[0].buf.id].reshape(op.dims)
    e = np.exp(x - x.max(axis=op.attrs["axis"], keepdims=True))
    return (e / e.sum(axis=op.attrs["axis"], keepdims=True)).ravel()


class CsimLibrary:
    """ctypes view of a compiled csim .so (the same calls the runtime driver makes)."""

    def __init__(self, path: Path, entry: str, n_args: int):
        self.lib = load_library(path, CSIM_LIBRARY, hint=CSIM_HINT)
        self.fn = entry_function(self.lib, entry, n_args, path)

    def __call__(self, inputs: list[np.ndarray], out_shapes: list[tuple]) -> list[np.ndarray]:
        ins = [np.ascontiguousarray(a, dtype=np.float32) for a in inputs]
        outs = [np.empty(s, dtype=np.float32) for s in out_shapes]
        self.fn(*[a.ctypes.data for a in ins], *[o.ctypes.data for o in outs])
        return outs


def compile_subgraph(linalg_text: str, spec, bundle: Path, options: CompileOptions, files: ModelFiles | None = None) -> list[ArtifactRecord]:
    """The HLS project, the csim .so (checked bit for bit against the numpy reference) and their estimates."""
    t0 = time.perf_counter()
    files = files or ModelFiles()
    part, clock_ns = target_of(spec.device, options.fpga)
    state = build(linalg_text, spec, options, files)
    prog, cfg, resolver = state["prog"], state["cfg"], state["resolver"]
    sg = spec.id
    root = Path(bundle) / "fpga" / sg
    rel = f"fpga/{sg}"
    proj = femit.emit(prog, cfg.table_size, part, clock_ns)
    entry = f"{sg}_csim"
    files = dict(proj.files)
    files[f"csim/{sg}_bridge.cpp"] = project.bridge(prog, entry)
    files[f"tb/{sg}_test.cpp"] = project.testbench(prog)
    files["build_prj.tcl"] = project.build_tcl(prog, part, clock_ns)
    # testbench data: inputs, the fixed-point reference, the float model
    in_rows, exp_rows, flt_rows = [], [], []
    for (values, ort), (vals, _stats, _) in zip(state["samples"], state["evals"]):
        in_rows.append([np.asarray(values[b.tensor], dtype=np.float32) for b in prog.inputs])
        exp_rows.append([vals[b.id].fixed for b in prog.outputs])
        flt_rows.append([np.asarray(ort[b.tensor]) if ort and b.tensor in ort else vals[b.id].flt for b in prog.outputs])
    files["tb/tb_input_features.dat"] = project.data_lines(in_rows, exact=False)
    files["tb/tb_output_predictions.dat"] = project.data_lines(exp_rows, exact=True)
    files["tb/tb_output_float.dat"] = project.data_lines(flt_rows, exact=False)
    problems = lint.lint_project({k: v for k, v in files.items() if k.startswith("firmware/")}, sg)
    if problems:
        raise HccError("internal: the generated HLS C++ failed hcc's lint:\n" + "\n".join(problems[:20]))
    for path, text in files.items():
        dest = root / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text)
    so = root / "csim" / f"lib{sg}_csim.so"
    t1 = time.perf_counter()
    toolchain.compile_cpp([root / "csim" / f"{sg}_bridge.cpp"], so, shared=True, include=[root / "firmware"])
    t2 = time.perf_counter()
    # self-check: the .so against the numpy reference, bit for bit, on every sample
    lib = CsimLibrary(so, entry, len(prog.args) + len(prog.outputs))
    mismatches = 0
    report_outputs = {}
    for (values, ort), (vals, _stats, _) in zip(state["samples"], state["evals"]):
        args = [np.asarray(values[t], np.float32) if b is not None else np.zeros(1, np.float32) for t, b in prog.args]
        got = lib(args, [b.shape for b in prog.outputs])
        for b, g in zip(prog.outputs, got):
            want = vals[b.id].fixed.astype(np.float32).reshape(b.shape)
            mismatches += int(np.count_nonzero(g != want))
            entry_ = report_outputs.setdefault(b.tensor, {"type": b.type.cpp(), "max_error_bound": 0.0, "max_abs_error_vs_onnxruntime": None,
                                                           "max_abs_error_float_reference_vs_onnxruntime": None})
            bound = vals[b.id].err
            entry_["max_error_bound"] = max(entry_["max_error_bound"], float(bound.max()) if bound.size else 0.0)
            if ort and b.tensor in ort:
                ref = np.asarray(ort[b.tensor], dtype=np.float64).ravel()
                dev = float(np.max(np.abs(g.astype(np.float64).ravel() - ref))) if ref.size else 0.0
                fdev = float(np.max(np.abs(vals[b.id].flt - ref))) if ref.size else 0.0
                entry_["max_abs_error_vs_onnxruntime"] = max(entry_["max_abs_error_vs_onnxruntime"] or 0.0, dev)
                entry_["max_abs_error_float_reference_vs_onnxruntime"] = max(entry_["max_abs_error_float_reference_vs_onnxruntime"] or 0.0, fdev)
    if mismatches:
        raise HccError(f"internal: the FPGA C simulation of {sg} differs from hcc's fixed-point reference in {mismatches} value(s); "
                       "please report this")
    dataflow = femit.Emitter(prog, cfg.table_size, part, clock_ns).dataflow_ok()
    est = festimate.estimate_program(prog, part, clock_ns, dataflow)
    overflow = {op.id: st.get("overflow", 0) for _vals, stats, _ in state["evals"] for op in prog.ops for st in [stats.get(op.id, {})]
                if st.get("overflow")}
    precision_report = _precision_report(prog, cfg, resolver, state, report_outputs, overflow, part, clock_ns)
    (root / "precision.json").write_text(json.dumps(precision_report, indent=2) + "\n")
    (root / "estimate.json").write_text(json.dumps(est, indent=2) + "\n")
    atol = max((o["max_error_bound"] for o in report_outputs.values()), default=0.0)
    meta = {
        "top": sg,
        "project": rel,
        "firmware": sorted(f"{rel}/{p}" for p in files if p.startswith("firmware/")),
        "testbench": f"{rel}/tb/{sg}_test.cpp",
        "tb_data": [f"{rel}/tb/tb_input_features.dat", f"{rel}/tb/tb_output_predictions.dat", f"{rel}/tb/tb_output_float.dat"],
        "build_script": f"{rel}/build_prj.tcl",
        "precision": f"{rel}/precision.json",
        "estimate_file": f"{rel}/estimate.json",
        "estimate": est["total"],
        "part": part,
        "clock_ns": clock_ns,
        "precision_default": str(cfg.model.get("precision", fconfig.DEFAULT_PRECISION)),
        "baked_inputs": [t for t, b in prog.args if b is None],
        "tolerance": {"atol": atol + SLACK_ATOL, "rtol": SLACK_RTOL,
                      "rule": "per element |csim - float model| <= fixed-point error bound (precision.json) + 1e-5*|y| + 1e-6; "
                              "atol is the bound's maximum on the calibration samples"},
        "toolchain": {"cxx": toolchain.version(), "ap_types": str(toolchain.ap_types_dir())},
        "timings_s": {"codegen": round(t1 - t0, 3), "gxx": round(t2 - t1, 3)},
    }
    return [ArtifactRecord(kind=DEVICE_KINDS["fpga"].artifact_kinds[0], file=f"{rel}/csim/lib{sg}_csim.so", entry=entry, abi=NATIVE_ABI, meta=meta)]


def _precision_report(prog, cfg, resolver, state, outputs, overflow, part, clock_ns) -> dict:
    tensors = {}
    for b in prog.buffers:
        tensors[b.id] = {"type": b.type.cpp(), "shape": list(b.shape), "kind": b.kind, "onnx": b.tensor or ", ".join(b.nodes),
                         "range": [round(x, 6) for x in b.bound] if b.bound else None}
    ops = []
    for op in prog.ops:
        entry = {"op": op.id, "kind": op.kind, "nodes": op.nodes, "output": op.out.buf.id,
                 "types": {k.replace("table:", "table_"): v.cpp() for k, v in op.types.items() if isinstance(v, fx.FixedType)},
                 "constants": [{"role": o.role, "type": o.type.cpp(), "shape": list(o.shape)} for o in op.ins if o.kind == "const"]}
        if op.init is not None and op.init.kind == "const" and op.init.type is not None:
            entry["constants"].append({"role": "bias (initial accumulator)", "type": op.init.type.cpp(), "shape": list(op.init.shape)})
        if op.kind == "mac":
            from hcc.backends.fpga.precision import mac_block

            entry.update({"reuse_factor": op.reuse_factor, "strategy": op.strategy, "multiplications_per_iteration": mac_block(op)})
        if op.epilogue is not None:
            entry["epilogue"] = repr(op.epilogue)
        ops.append(entry)
    return {
        "subgraph": prog.name, "part": part, "clock_ns": clock_ns,
        "config": {"source": cfg.source, "model": cfg.model, "op_type": cfg.op_type, "node": cfg.node, "tensor": cfg.tensor,
                   "max_width": cfg.max_width, "auto_mode": cfg.auto_mode, "table_size": cfg.table_size},
        "calibration": state["source"],
        "inputs": {b.tensor: {"buffer": b.id, "type": b.type.cpp(), "range": list(b.bound) if b.bound else None} for b in prog.inputs},
        "outputs": outputs,
        "tensors": tensors,
        "ops": ops,
        "notes": resolver.notes,
        "overflow_events_on_samples": overflow,
        "tolerance_rule": ("|fixed - float| <= bound, computed per element alongside the fixed-point reference: input and constant "
                           "quantization errors propagated through every op (|w| e_x + |x| e_w per product, max/min/ReLU 1-Lipschitz, "
                           "lookup tables: slope * e_x + table error) plus the exact rounding error of every cast; "
                           "compare with onnxruntime adding 1e-5*|y| + 1e-6 for its own float32 rounding"),
    }


def toolchain_versions() -> dict:
    return {"cxx": toolchain.version(), "ap_types": os.fspath(toolchain.ap_types_dir())}


__all__ = ["compile_subgraph", "build", "CsimLibrary"]
