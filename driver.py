"""The compile driver: frontend -> (worker: import, passes, backends) -> artifacts. `hcc.compile` calls this."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from hcc import __version__
from hcc.artifacts import bundle as bundle_writer
from hcc.artifacts import output_dir
from hcc.artifacts.golden import golden_outputs, onnxruntime_int8_saturates, random_inputs, save_golden
from hcc.artifacts.manifest import BOUNDARY_FORMAT_VERSION, ArtifactRecord, GoldenRecord, Manifest, SubgraphRecord, TensorRecord
from hcc.devices import MEASURED_PRECISIONS, TOLERANCES, parse_device
from hcc.errors import HccError
from hcc.frontend.bool_boundary import widen_bool_boundaries
from hcc.frontend.loader import load_model
from hcc.frontend.weights import lift_weights
from hcc.options import CPU_AUTO, GPU_AUTO, PRECISION_AUTO, CompileOptions, CpuOptions, FpgaOptions, GpuOptions, PlannerOptions
from hcc.runtime.golden_check import read_input_arrays
from hcc.worker import WorkerRequest

MLIR_TO_NUMPY = {"f32": "float32", "f64": "float64", "f16": "float16", "i64": "int64", "i32": "int32", "i16": "int16", "i8": "int8",
                 "ui8": "uint8", "i1": "bool"}

ProgressFn = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


def load_feeds(path: str, inputs) -> dict[str, np.ndarray]:
    """Read an npz of inputs keyed by input name (a golden file's `input:` keys work too)."""
    declared = sum(int(np.prod(i.shape)) * np.dtype(i.dtype).itemsize for i in inputs)
    arrays = read_input_arrays(path, limit_bytes=2 * declared + (1 << 20))  # a golden file's outputs are not read
    expected = {i.name for i in inputs}
    missing, extra = expected - arrays.keys(), arrays.keys() - expected
    if missing or extra:
        raise HccError(f"{path}: inputs do not match the model: missing {sorted(missing)}, unexpected {sorted(extra)}")
    return arrays


def _run_worker(request: dict, progress: ProgressFn, staging: Path) -> dict:
    """Run codegen in a child process. Its scratch files (and every temporary folder of the toolchains it runs:
    TMPDIR points there) live inside the staging folder, so a compile killed with SIGKILL leaves nothing in /tmp:
    the next compile next to it removes the abandoned staging folder, scratch included."""
    with tempfile.TemporaryDirectory(prefix=".worker-", dir=staging) as tmp:
        req, resp = Path(tmp) / "request.json", Path(tmp) / "response.json"
        req.write_text(json.dumps(request))
        stderr_path = Path(tmp) / "stderr.txt"
        with open(stderr_path, "w") as err:
            # its own process group: an interrupt kills the worker and every compiler it runs (llc, gcc), so none
            # writes into the staging folder after it is removed
            proc = subprocess.Popen([sys.executable, "-m", "hcc.worker", str(req), str(resp)], stdout=subprocess.PIPE, stderr=err, text=True,
                                    env={**os.environ, "TMPDIR": tmp}, start_new_session=True)
            assert proc.stdout is not None
            try:
                for line in proc.stdout:
                    progress(line.rstrip())
                rc = proc.wait()
            except BaseException:  # an interrupt: the worker must not outlive the compile (nor refill its staging folder)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
                raise
        if rc != 0 or not resp.exists():
            tail = "\n".join(stderr_path.read_text(errors="replace").strip().splitlines()[-12:])
            how = f"was killed by signal {-rc}" if rc < 0 else f"exited with status {rc}"
            raise HccError(f"code generation crashed: the compiler worker {how}. Last messages:\n{tail}")
        response = json.loads(resp.read_text())
    if not response.get("ok"):
        raise HccError(response["error"], hint=response.get("hint"))
    return response


def planner_cost_model(model: onnx.ModelProto, fpga: FpgaOptions | None, cpu: CpuOptions | None = None, gpu: GpuOptions | None = None):
    """The partitioner's cost model, told the FPGA precision / strategy / reuse factors the user's options fix, which
    GEMMs and convolutions compute in bf16 on the CPU (--cpu-precision bf16 / auto), and whether GPU subgraphs may
    run at fp16 (--gpu-precision fp16, or auto: every GPU subgraph is a candidate while placing)."""
    from hcc.backends.fpga.config import from_options
    from hcc.frontend.names import node_names
    from hcc.planner.cost_model import MAC_OPS, CostModel, fpga_node_configs

    if fpga is not None and fpga.accuracy is not None:
        raise HccError("an FPGA accuracy budget alone (fpga accuracy) is not a compile option: FPGA widths are chosen with the "
                       "placement by --precision auto --accuracy BUDGET (in a configuration file: precision = \"auto\" and "
                       "accuracy = BUDGET at the top level)")
    nodes = list(zip(node_names(model), (n.op_type for n in model.graph.node)))
    cpu_dtypes = {name: p for name, op in nodes if op in MAC_OPS and (p := _cpu_precision_of(cpu, name, op)) != "fp32"}
    gpu_precision = "fp16" if gpu is not None and gpu.precision in ("fp16", GPU_AUTO) else "fp32"
    if fpga is None or not fpga.given:
        return CostModel(cpu_dtypes=cpu_dtypes, gpu_precision=gpu_precision)
    return CostModel(fpga_node_configs=fpga_node_configs(from_options(fpga), nodes), cpu_dtypes=cpu_dtypes, gpu_precision=gpu_precision)


def _cpu_precision_of(cpu: CpuOptions | None, node: str, op_type: str) -> str:
    """The precision a CPU GEMM / convolution computes in under these options (bf16x3 applies to GEMMs only)."""
    from hcc.planner.precision import PRECISION_OPS

    precision = cpu.precision_of(node) if cpu is not None else None
    return precision if precision is not None and op_type in PRECISION_OPS.get(precision, (op_type,)) else "fp32"


def plan_model(loaded, planner: PlannerOptions, cost_model=None):
    """Run the partitioner (planner/plan.py): placement, subgraphs in execution order, predictions."""
    from hcc.planner.device_catalog import builtin_catalog, load_device_file
    from hcc.planner.placement import load_placement
    from hcc.planner.plan import make_plan

    catalog = builtin_catalog()
    if planner.device_file:
        catalog = load_device_file(planner.device_file, catalog)
    forced = list(load_placement(planner.placement_file)) if planner.placement_file else []
    forced += list(planner.overrides)
    return make_plan(loaded, planner.devices or "cpu", planner.objective, list(planner.budgets), forced or None, catalog=catalog,
                     cost_model=cost_model, time_limit_s=planner.time_limit_s)


def _planned_fpga_layers(plan, cost_model_configs: dict) -> dict:
    """Reuse factor and strategy the partitioner chose per FPGA MAC layer, where the user's config left them open."""
    placement = plan.placement
    layers = {}
    for name, rf in placement.reuse_factors.items():
        fixed = cost_model_configs.get(name)
        layer = {}
        if not (fixed and fixed.reuse_factor):
            layer["reuse_factor"] = rf
        if not (fixed and fixed.strategy) and name in placement.strategies:
            layer["strategy"] = placement.strategies[name]
        if layer:
            layers[name] = layer
    return layers


def _write_plan_report(bundle: Path, plan) -> None:
    from hcc.planner.plan import format_explanation, format_plan, plan_to_json

    (bundle / "plan").mkdir(exist_ok=True)
    (bundle / "plan" / "plan.json").write_text(json.dumps(plan_to_json(plan), indent=2) + "\n")
    (bundle / "plan" / "plan.txt").write_text(format_plan(plan) + "\n")
    (bundle / "plan" / "explain.txt").write_text(format_explanation(plan.placement) + "\n")


def _attach_boundary_casts(groups: list[dict], model: onnx.ModelProto) -> list[dict]:
    """Put the Cast nodes added by widen_bool_boundaries into the subgraph of the node they feed / are fed by."""
    group_of = {name: g for g in groups for name in g["nodes"]}
    consumers: dict[str, list[str]] = {}
    producer: dict[str, str] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.name)
        for name in node.output:
            producer[name] = node.name
    groups = [dict(g, nodes=list(g["nodes"])) for g in groups]
    by_id = {g["id"]: g for g in groups}
    for node in model.graph.node:
        if node.name in group_of or not node.name.endswith(("/hcc_to_bool", "/hcc_to_u8")):
            continue
        if node.name.endswith("/hcc_to_bool"):
            users = [u for u in consumers.get(node.output[0], []) if u in group_of]
            home = group_of[users[0]]["id"] if users else groups[0]["id"]
            by_id[home]["nodes"].insert(0, node.name)
        else:
            home = group_of[producer[node.input[0]]]["id"] if producer.get(node.input[0]) in group_of else groups[-1]["id"]
            by_id[home]["nodes"].append(node.name)
    return groups


def check_save_temps(folder: Path, bundle_dir: Path) -> None:
    """`--save-temps DIR` must be a folder hcc creates, or an empty one: hcc never writes among a user's files.
    Nor may it overlap the bundle folder (which is replaced as a whole)."""
    target, bundle = Path(os.path.abspath(folder)), Path(os.path.abspath(bundle_dir)).resolve()
    if target.is_symlink():
        raise HccError(f"--save-temps {folder}: is a symbolic link; give a new folder")
    resolved = target.resolve()
    if resolved == bundle or resolved.is_relative_to(bundle) or bundle.is_relative_to(resolved):
        raise HccError(f"--save-temps {folder}: overlaps the bundle folder -o {bundle_dir}; choose a folder outside it")
    if target.exists() and not target.is_dir():
        raise HccError(f"--save-temps {folder}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()):
        raise HccError(f"--save-temps {folder}: folder exists and is not empty; hcc writes only into a new or empty folder "
                       "(choose another, or empty it yourself)")


def make_save_temps(folder: Path, bundle_dir: Path) -> Path:
    """Create the `--save-temps` folder (checked again: a file may have appeared since); returns its absolute path."""
    check_save_temps(folder, bundle_dir)
    target = Path(os.path.abspath(folder))
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HccError(f"--save-temps {folder}: cannot create the folder ({exc.strerror or exc})") from None
    check_save_temps(folder, bundle_dir)
    return target


def _protected_files(model_path, options: CompileOptions) -> list[Path]:
    """Files the compile reads or writes besides the bundle: none may live inside the output folder."""
    planner, fpga = options.planner, options.fpga
    paths = [model_path, options.golden.inputs, planner.placement_file, planner.device_file, planner.save_placement]
    paths += [options.sign_key] if options.sign_key and os.path.exists(options.sign_key) else []
    paths += [fpga.config if isinstance(fpga.config, str) else None, fpga.calibration_file]
    return [Path(p) for p in paths if p]


def compile_model(model_path: str | os.PathLike, bundle_dir: str | os.PathLike, options: CompileOptions | None = None, *,
                  progress: ProgressFn = _quiet) -> Manifest:
    """Compile `model_path` into the bundle folder `bundle_dir` and return its manifest (options: hcc/options.py).

    Placement: with `options.planner` devices, overrides or a placement file, the partitioner (planner/plan.py) places
    every op under its budgets and objective; default: the whole model as one CPU subgraph.
    """
    return _compile(model_path, bundle_dir, options or CompileOptions(), progress, groups=None)


def compile_groups(model_path: str | os.PathLike, bundle_dir: str | os.PathLike, groups: list[dict], options: CompileOptions | None = None,
                   progress: ProgressFn = _quiet) -> Manifest:
    """Internal (tests and tools/gpu_check.py): compile with the subgraphs fixed by hand, bypassing the partitioner.
    `groups`: [{id, device, nodes, device_index}] in execution order."""
    return _compile(model_path, bundle_dir, options or CompileOptions(), progress, groups=groups)


def _check_before_work(model_path, bundle_dir: Path, options: CompileOptions, groups: list[dict] | None = None) -> list[Path]:
    """Refuse early, lose nothing: a bad key, an output folder hcc may not replace, a --save-temps folder with files,
    a precision this host cannot measure."""
    protected = _protected_files(model_path, options)
    if options.precision == PRECISION_AUTO and groups is not None and _heterogeneous(options, groups):
        raise HccError("--precision auto chooses each op's device with its precision: subgraphs fixed by hand on other devices "
                       "than the CPU cannot take it (use the per-device precision options)")
    if options.sign_key:
        from hcc.runtime.signing import read_key

        read_key(options.sign_key, "--sign")
    output_dir.check_output_dir(bundle_dir, protected)
    if options.debug.save_temps:
        check_save_temps(Path(options.debug.save_temps), bundle_dir)
    cpu_auto_only = options.precision == PRECISION_AUTO and not _heterogeneous(options, groups)
    if options.cpu.precision != "fp32" or cpu_auto_only:  # --precision auto on the CPU alone is --cpu-precision auto
        _check_cpu_precision(options.cpu.precision, cpu_auto_only)
    return protected


def _check_cpu_precision(precision: str, cpu_auto_only: bool) -> None:
    """Refuse a CPU precision whose kernels this compile host lacks: the compiler measures the error it costs here."""
    from hcc.runtime.devices.cpu import BF16_DOT_FLAGS, BF16_TILE_FLAGS, cpu_low_precisions

    available = cpu_low_precisions()
    flag = "--precision auto (CPU only)" if cpu_auto_only else f"--cpu-precision {precision}"
    if not available:
        raise HccError(f"{flag}: this CPU has neither AMX bf16 tiles ({', '.join(sorted(BF16_TILE_FLAGS))}) nor AVX512-BF16 "
                       f"dot products ({', '.join(sorted(BF16_DOT_FLAGS))}); the compiler measures the error bf16 costs on "
                       "the compile host, so compile on a CPU that has them (Intel Cooper Lake or Sapphire Rapids, AMD Zen 4 "
                       "or newer)")
    if precision == "bf16x3" and precision not in available:
        raise HccError(f"{flag}: split-bf16 GEMMs need AMX bf16 tiles ({', '.join(sorted(BF16_TILE_FLAGS))}); on "
                       "AVX512-BF16 dot products their three products would be slower than fp32 (use bf16, or auto)")
    if precision == "bf16" and precision not in available:
        raise HccError(f"{flag}: this CPU has neither AMX bf16 tiles ({', '.join(sorted(BF16_TILE_FLAGS))}) nor AVX512-BF16 "
                       f"dot products ({', '.join(sorted(BF16_DOT_FLAGS))}); its int8 kernels run under --cpu-precision auto")


def _golden_data(loaded, options: CompileOptions, started: float, progress: ProgressFn):
    """The golden inputs (the user's or random ones) and onnxruntime's outputs for them, on the model as written."""
    golden = options.golden
    feeds = load_feeds(golden.inputs, loaded.inputs) if golden.inputs else random_inputs(loaded.model, loaded.inputs, golden.seed)
    for info in loaded.inputs:
        if list(feeds[info.name].shape) != info.shape or str(feeds[info.name].dtype) != info.dtype:
            raise HccError(f"golden input '{info.name}' has shape {list(feeds[info.name].shape)} {feeds[info.name].dtype}, "
                           f"the model expects {info.shape} {info.dtype}")
    # the model as written, not as hcc rewrote it (types numpy lacks: their storage arrays, frontend/lowbit.py)
    expected = golden_outputs(loaded.path, feeds, element_types=loaded.element_types, boundary=loaded.boundary)
    progress(f"golden outputs from {expected.source.split(' (')[0]} ({time.perf_counter() - started:.2f}s)")
    if loaded.quantized and expected.source.startswith("onnxruntime") and onnxruntime_int8_saturates():
        progress("warning: onnxruntime's 8-bit kernels saturate on this CPU (no VNNI: int16 sums of product pairs), so its golden "
                 "outputs of this quantized model may differ from hcc's exact integer arithmetic; `hcc test` may report "
                 "differences that are onnxruntime's (a CPU with VNNI or AMX-INT8 gives exact golden outputs)")
    return feeds, expected


def _place(loaded, options: CompileOptions, progress: ProgressFn):
    """Run the partitioner: (plan, subgraph groups, options with the FPGA design points it chose)."""
    cost_model = planner_cost_model(loaded.model, options.fpga, options.cpu, options.gpu)
    plan = plan_model(loaded, options.planner, cost_model)
    return _placed_groups(plan, options, cost_model.fpga_node_configs, progress)


def _placed_groups(plan, options: CompileOptions, user_fpga_configs: dict, progress: ProgressFn):
    """(plan, the subgraph groups the worker compiles, options with the FPGA design points the plan chose where the
    user's configuration (`user_fpga_configs`, the cost model's) leaves them open); --save-placement written."""
    if plan.placement.reuse_factors:
        options = options.with_fpga(planned_layers=_planned_fpga_layers(plan, user_fpga_configs))
    instances = [(g, parse_device(g.device)) for g in plan.subgraphs]  # instance ids: "gpu:sm_90#1"
    groups = [{"id": g.id, "device": d.name, "nodes": list(g.nodes), "device_index": d.index} for g, d in instances]
    progress("placement: " + ", ".join(f"{g['id']}@{g['device']}#{g['device_index']} ({len(g['nodes'])} ops)" for g in groups))
    if options.planner.save_placement:
        from hcc.planner.placement import save_placement as write_placement

        write_placement(options.planner.save_placement, plan.placement)
        progress(f"wrote placement to {options.planner.save_placement}")
    return plan, groups, options


@contextmanager
def _staged_bundle(bundle_dir: Path, protected, sign_key, progress: ProgressFn):
    """A bundle is written into a staging folder beside -o and moved into place only when complete (signed first
    if asked), so a failure never leaves half a bundle nor touches what was there; any failure removes the staging."""
    staging = output_dir.make_staging_dir(bundle_dir)
    try:
        yield staging
        if sign_key:
            from hcc.runtime.signing import sign_bundle

            progress(f"signed the manifest with public key {sign_bundle(staging, sign_key)}")
        output_dir.move_into_place(staging, bundle_dir, protected)
    except OSError as exc:  # disk full, quota: name the bundle being written when the system names no file
        shutil.rmtree(staging, ignore_errors=True)
        where = exc.filename or f"-o {bundle_dir}"
        raise HccError(f"{where}: writing the bundle failed: {exc.strerror or exc}") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _compile(model_path, bundle_dir, options: CompileOptions, progress: ProgressFn, groups: list[dict] | None) -> Manifest:
    started = time.perf_counter()
    bundle_dir = Path(bundle_dir)
    protected = _check_before_work(model_path, bundle_dir, options, groups)
    from hcc.frontend.control_flow import runtime_control_flow
    from hcc.program import check_program_options, first_runtime_control_flow, run_time_reason

    with runtime_control_flow():  # an If / Loop decided at run time stays: it becomes a program step (program.py)
        loaded = load_model(os.fspath(model_path), options.input_shapes)
    progress(f"loaded {loaded.path}: {len(loaded.model.graph.node)} nodes, inputs " + ", ".join(f"{i.name}{i.shape}" for i in loaded.inputs))
    for note in loaded.notes:  # ops expanded into their ONNX function bodies, and other rewrites worth knowing
        progress(f"note: {note}")
    control = first_runtime_control_flow(loaded.model)
    if control is not None:
        if groups is not None:
            raise HccError(f"{loaded.path}: node '{control.name}' ({control.op_type}) {run_time_reason(control)}; subgraphs fixed by "
                           "hand cannot hold it")
        if options.precision == PRECISION_AUTO:
            raise HccError(f"{loaded.path}: node '{control.name}' ({control.op_type}) {run_time_reason(control)}, so hcc compiles "
                           "the model as a program of CPU pieces at fp32, which --precision auto cannot apply to",
                           hint="compile without --precision auto, or make the condition / trip count a constant")
        check_program_options(options, control, loaded.path)
    feeds, expected = _golden_data(loaded, options, started, progress)
    if control is not None:
        return _compile_as_program(loaded, bundle_dir, options, feeds, expected, protected, started, progress)
    precision_plan = plan = fpga_config = None
    joint = options.precision == PRECISION_AUTO and _heterogeneous(options, groups)
    if options.precision == PRECISION_AUTO:
        options = _precision_auto_options(options, joint, progress)
    if joint:
        plan, groups, precision_plan, options, fpga_config = _place_jointly(loaded, options, feeds, progress)
    else:
        if options.cpu.precision == CPU_AUTO:
            precision_plan, options = _choose_cpu_precision(loaded, options, feeds, progress)
        if groups is None and options.planner.active:
            plan, groups, options = _place(loaded, options, progress)
    if options.gpu.precision == GPU_AUTO:
        plan, precision_plan, options = _choose_gpu_precision(loaded, options, feeds, plan, groups, precision_plan, progress)
    if plan is not None:
        _set_plan_precisions(plan, options, precision_plan)

    lifted = lift_weights(loaded.model)
    lifted.model = widen_bool_boundaries(lifted.model, lifted.weights)
    with _staged_bundle(bundle_dir, protected, options.sign_key, progress) as staging:
        lifted_path, weights_path = staging / ".lifted.onnx", staging / ".weights.npz"
        onnx.save(lifted.model, lifted_path)
        if groups is not None and any(parse_device(g["device"]).kind != "cpu" for g in groups):
            np.savez(weights_path, **lifted.weights)  # backends that embed weights (FPGA headers) read them here
        if groups is None:
            groups = [{"id": "sg0", "device": "cpu", "nodes": [n.name for n in lifted.model.graph.node], "device_index": 0}]
        request = WorkerRequest(
            options=options, model=str(lifted_path), weights_file=str(weights_path), bundle_dir=str(staging),
            inputs=[i.name for i in loaded.inputs] + list(lifted.weights), outputs=[o.name for o in loaded.outputs],
            groups=_attach_boundary_casts(groups, lifted.model),
            # reproducers of failing passes: outside the staging folder (the worker's TMPDIR), which a failure removes
            repro_dir=tempfile.gettempdir(), save_temps=_save_temps_folder(options, bundle_dir, progress), weights=list(lifted.weights))
        response = _run_worker(request.to_dict(), progress, staging)
        lifted_path.unlink()
        weights_path.unlink(missing_ok=True)
        if plan is not None:
            _write_plan_report(staging, plan)
        if precision_plan is not None:
            (staging / "plan").mkdir(exist_ok=True)
            (staging / "plan" / "precision.json").write_text(precision_plan.to_json())
        if fpga_config is not None:  # --precision auto: the FPGA configuration the subgraphs were compiled with
            (staging / "plan" / "fpga_config.json").write_text(json.dumps(fpga_config, indent=1, sort_keys=True) + "\n")
        manifest = _assemble(loaded, lifted.weights, feeds, expected, response, staging, options, plan)
        if precision_plan is not None and precision_plan.fpga is not None:
            _label_fpga_subgraphs(manifest, precision_plan.fpga, staging)
        lossy = sorted({"fixed point" if _is_fixed_point(sg) else sg.precision for sg in manifest.subgraphs
                        if _is_fixed_point(sg) or sg.precision in MEASURED_PRECISIONS})
        emulated_fp16 = precision_plan.gpu if precision_plan is not None and precision_plan.gpu and precision_plan.gpu.lowered() else None
        if lossy:
            _measure_accuracy(staging, manifest, loaded, feeds, expected, options.golden.seed, progress, " and ".join(lossy),
                              floor=_golden_tolerance(manifest.subgraphs, emulated_fp16=emulated_fp16 is not None))
        if emulated_fp16 is not None:
            _emulated_fp16_tolerances(staging, manifest, emulated_fp16, expected, progress)
        if options.precision == PRECISION_AUTO and precision_plan is not None:
            _record_bundle_errors(staging, manifest, precision_plan, options.accuracy, progress)
    progress(f"wrote {bundle_dir} ({time.perf_counter() - started:.2f}s)")
    return manifest


def _compile_as_program(loaded, bundle_dir: Path, options: CompileOptions, feeds, expected, protected, started: float,
                        progress: ProgressFn) -> Manifest:
    """A model with a run-time If / Loop: its pieces compiled into sub-bundles and a program that runs them
    (program.py, docs/control-flow.md); golden data for the whole model, as for any bundle."""
    import onnxruntime

    from hcc.artifacts.manifest import PROGRAM_FORMAT_VERSION
    from hcc.program import compile_program

    with _staged_bundle(bundle_dir, protected, options.sign_key, progress) as staging:
        program, types, toolchain = compile_program(loaded, staging, options, progress)
        tensors = [TensorRecord(i.name, i.dtype, i.shape, "input", i.symbolic_shape, i.element_type) for i in loaded.inputs]
        for info, known in zip(loaded.outputs, types):
            golden = expected[info.name]
            if known.dtype != str(golden.dtype):
                raise HccError(f"output '{info.name}' is computed as {known.dtype}, but the model declares {golden.dtype}")
            if known.shape is not None and known.shape != list(golden.shape):
                raise HccError(f"internal: output '{info.name}' is computed with shape {known.shape}, onnxruntime gives {list(golden.shape)}")
            # a shape only known at run time: the one the golden inputs gave, the model's declaration says which dims vary
            tensors.append(TensorRecord(info.name, known.dtype, list(golden.shape), "output", info.symbolic_shape, info.element_type,
                                        info.zipmap_keys))
        (staging / "golden").mkdir(exist_ok=True)
        save_golden(staging / "golden" / "golden.npz", feeds, expected)
        rtol, atol = TOLERANCES["fp32"]
        source = f"{expected.source} on " + ("user inputs" if options.golden.inputs else f"random inputs (seed {options.golden.seed})")
        toolchain = dict(toolchain) or {"target_cpu": options.cpu.target_cpu}
        toolchain["onnxruntime"] = onnxruntime.__version__
        manifest = Manifest(
            model_name=loaded.name, model_sha256=loaded.sha256, compiler_version=__version__, toolchain=toolchain,
            inputs=[i.name for i in loaded.inputs], outputs=[o.name for o in loaded.outputs], tensors=tensors, weights=[],
            subgraphs=[], schedule=[], devices_required=["cpu"], files={},
            golden=GoldenRecord(file="golden/golden.npz", rtol=rtol, atol=atol, source=source),
            program=program, format_version=PROGRAM_FORMAT_VERSION, boundary=loaded.boundary)
        if loaded.boundary is not None:  # sequence / optional inputs or outputs (frontend/boundary.py)
            manifest.format_version = BOUNDARY_FORMAT_VERSION
        shutil.rmtree(staging / ".pieces", ignore_errors=True)
        bundle_writer.write_manifest(staging, manifest)
    progress(f"wrote {bundle_dir}: a program of {len(program.parts())} compiled pieces ({time.perf_counter() - started:.2f}s)")
    return manifest


CALIBRATION_SAMPLES = 4  # --cpu-precision auto: the golden inputs and 3 more random ones (seeds not used elsewhere)
HELD_OUT_PRECISION_SAMPLES = 4  # inputs the choice never saw, to verify it


def _choose_cpu_precision(loaded, options: CompileOptions, feeds, progress: ProgressFn):
    """--cpu-precision auto: measure each GEMM/convolution's end-to-end error at bf16, each GEMM's at bf16x3 and (AMX-INT8
    hosts) each GEMM of a weight at int8 (planner/precision.py), choose what the accuracy budget allows, verify on
    held-out inputs; returns (plan, options naming the chosen nodes, with the int8 ones' calibrated steps)."""
    from dataclasses import replace

    from hcc.options import Int8Gemm
    from hcc.planner import precision
    from hcc.runtime.devices.cpu import cpu_low_precisions, has_bf16_tiles

    calibration, held_out = _precision_samples(loaded, feeds, options.golden.seed)
    candidates = cpu_low_precisions()
    gemm_only = [f"GEMMs at {p}" if p == "bf16x3" else "GEMMs of a weight at int8" for p in ("bf16x3", "int8") if p in candidates]
    what = ", ".join((["each GEMM/convolution at bf16"] if "bf16" in candidates else []) + gemm_only)
    progress(f"precision: measuring {what} on {len(calibration)} calibration inputs")
    sensitivities = precision.measure_sensitivity(loaded.model, calibration, precisions=candidates,
                                                  applies=precision.cpu_kernel_applies)
    # with --gpu-precision auto too, the CPU's choice takes half the margin and leaves the rest to the GPU subgraphs
    margin = precision.DEFAULT_MARGIN / 2 if options.gpu.precision == GPU_AUTO else precision.DEFAULT_MARGIN
    # extend: past the conservative composition, grow the choice op by op while an end-to-end run stays in budget
    speedup = precision.CPU_KERNEL_SPEEDUP if has_bf16_tiles() else precision.CPU_DOT_KERNEL_SPEEDUP  # the host's kernels' ranking
    plan = precision.choose(sensitivities, options.cpu.accuracy, loaded.model, calibration, held_out, speedup=speedup,
                            margin=margin, extend=True)
    assignment = plan.assignment()

    def share(p: str) -> str:
        return f"{sum(c.flops for c in plan.choices if c.precision == p) / max(plan.total_flops, 1):.0%}"

    def worst(errors) -> str:
        return ", ".join(f"{name} max_abs {e.max_abs:.3g}" for name, e in (errors or {}).items())

    counts = {p: sorted(n for n, q in assignment.items() if q == p) for p in candidates}
    progress(f"precision: of {len(plan.choices)} GEMM/convolution ops, " + ", ".join(f"{len(counts[p])} in {p} ({share(p)} of their FLOPs)"
                                                                         for p in candidates)
             + f" under {plan.budget}: calibration {worst(plan.calibration)}; held-out {worst(plan.held_out)}"
             + ("" if plan.held_out_ok in (None, True) else " (over budget on held-out inputs)"))
    _predict_cpu_savings(plan, loaded.model)
    by_node = {s.node: s for s in sensitivities}
    inputs = {key: node.input[0] for key, node in zip(precision.node_keys(loaded.model), loaded.model.graph.node)}
    int8 = tuple(Int8Gemm(n, by_node[n].act_quant[inputs[n]].scale, by_node[n].act_quant[inputs[n]].signed) for n in counts.get("int8", []))
    return plan, replace(options, cpu=replace(options.cpu, bf16_nodes=tuple(counts.get("bf16", [])), bf16x3_nodes=tuple(counts.get("bf16x3", [])),
                                              int8_nodes=int8))


SAVING_NOTE = "time_saved_s: the cost model of the host CPU, "  # a precision plan's note (hcc inspect quotes it)


def _predict_cpu_savings(plan, model: onnx.ModelProto) -> None:
    """Each chosen op's predicted time saving on this host (the cost model at fp32 minus at its precision), kept in
    the plan for `hcc inspect`; the choice itself ranks by CPU_KERNEL_SPEEDUP (or CPU_DOT_KERNEL_SPEEDUP), not by this."""
    from hcc.planner.cost_model import CostModel, analyze_model
    from hcc.planner.device_catalog import host_cpu_spec

    info, spec, model_costs = analyze_model(model), host_cpu_spec(), CostModel()
    for choice in plan.choices:
        if choice.precision != "fp32" and choice.node in info.by_name:
            choice.time_saved_s = model_costs.saving(info.by_name[choice.node], spec, choice.precision)
    plan.notes.append(f"{SAVING_NOTE}{spec.source}" + ("" if spec.source.startswith("calibrated") else
                                                        "; `hcc devices --calibrate` fits it to this host"))


def _heterogeneous(options: CompileOptions, groups: list[dict] | None) -> bool:
    """Whether the compile may place ops on a device other than the CPU (then --precision auto is the joint choice;
    on the CPU alone it is --cpu-precision auto)."""
    if groups is not None:
        return any(parse_device(g["device"]).kind != "cpu" for g in groups)
    if not options.planner.active:
        return False
    from hcc.planner.device_catalog import parse_device_mix

    return any(i.kind != "cpu" for i in parse_device_mix(options.planner.devices or "cpu", _catalog(options.planner)))


def _precision_auto_options(options: CompileOptions, joint: bool, progress: ProgressFn) -> CompileOptions:
    """--precision auto as the per-device fields: on the CPU alone, --cpu-precision auto (the same choice, the same
    margin); with other devices, the joint choice's inputs (hcc plan --precision auto's): the CPU's bf16 candidates
    where this host has AMX bf16 tiles, --gpu-precision auto where the mix has a GPU, the FPGA budget."""
    from dataclasses import replace

    budget = options.accuracy
    if not joint:
        return replace(options, cpu=replace(options.cpu, precision=CPU_AUTO, accuracy=budget))
    from hcc.planner.device_catalog import parse_device_mix
    from hcc.runtime.devices.cpu import cpu_low_precisions

    mix = parse_device_mix(options.planner.devices or "cpu", _catalog(options.planner))
    cpu = options.cpu
    if cpu_low_precisions():
        cpu = replace(cpu, precision=CPU_AUTO, accuracy=budget)
    elif cpu.precision == CPU_AUTO:
        raise HccError("--cpu-precision auto: this CPU has neither AMX bf16 tiles nor AVX512-BF16; with --precision auto, leave "
                       "--cpu-precision out (the CPU then stays fp32)")
    else:
        progress("precision: this CPU has neither AMX bf16 tiles nor AVX512-BF16: the CPU's ops stay fp32; the other devices' "
                 "precisions are chosen")
    gpu = replace(options.gpu, precision=GPU_AUTO, accuracy=budget) if any(i.kind == "gpu" for i in mix) else options.gpu
    return replace(options, cpu=cpu, gpu=gpu, fpga=replace(options.fpga, accuracy=budget))


def _place_jointly(loaded, options: CompileOptions, feeds, progress: ProgressFn):
    """--precision auto with devices besides the CPU: the placement chooses each op's device and precision together
    (planner/joint_precision.plan_jointly, what `hcc plan --precision auto` runs: CPU fp32|bf16 per GEMM/convolution,
    FPGA MAC layers at 8/12/16/18/32-bit words, under one accuracy cap, confirmed and checked on held-out inputs).
    The FPGA widths reach the backend as per-layer types merged into the user's FPGA configuration (its own per-layer
    types, which the choice left alone, win). Returns (plan, groups, precision plan, options, the FPGA config table or
    None)."""
    from hcc.planner.joint_precision import fpga_config_with_widths, plan_jointly

    budget = options.fpga.accuracy
    options = options.with_fpga(accuracy=None)  # the cost model prices the user's FPGA types; the widths are options
    user_configs = planner_cost_model(loaded.model, options.fpga, options.cpu, options.gpu).fpga_node_configs
    plan, precision_plan, options = plan_jointly(loaded, options, feeds, budget, progress, cost_model=planner_cost_model,
                                                 place=plan_model, samples=_precision_samples, catalog=_catalog(options.planner))
    fpga_config = None
    fpga_nodes = {n for sg in plan.subgraphs if sg.kind == "fpga" for n in sg.nodes}
    if precision_plan.fpga is not None and fpga_nodes & set(precision_plan.fpga.widths()):
        fpga_config = fpga_config_with_widths(options.fpga.config, precision_plan.fpga, loaded.model)
        options = options.with_fpga(config=fpga_config)
        progress("precision: FPGA layers compiled at the chosen widths (weight types): " + ", ".join(
            f"{lw.node} {lw.width}b {lw.types['weight']}" for lw in precision_plan.fpga.layers if lw.node in fpga_nodes))
    plan, groups, options = _placed_groups(plan, options, user_configs, progress)
    return plan, groups, precision_plan, options, fpga_config


def _record_bundle_errors(staging: Path, manifest: Manifest, precision_plan, budget: str, progress: ProgressFn) -> None:
    """--precision auto: plan/precision.json also says what the compiled bundle measured (the manifest's golden outputs:
    the golden inputs, the choice's first calibration input, and held-out inputs the choice never saw), next to the
    choice's predicted (composed) and emulated errors; a max_abs budget the bundle exceeds is a warning."""
    from hcc.planner.precision import AccuracyBudget

    measured = {name: acc for name, acc in (manifest.golden.outputs if manifest.golden else {}).items() if acc.golden_max_abs is not None}
    if not measured:
        return
    limit = AccuracyBudget.parse(budget).max_abs
    precision_plan.notes.append("compiled bundle, measured against onnxruntime fp32 (manifest golden.outputs): " + "; ".join(
        f"{name} max_abs {acc.golden_max_abs:.3g} on the golden inputs, {acc.held_out_max_abs:.3g} on {acc.held_out_samples} held-out inputs"
        for name, acc in measured.items()))
    for name, acc in measured.items():
        if limit is not None and max(acc.golden_max_abs, acc.held_out_max_abs or 0.0) > limit:
            progress(f"warning: output '{name}': the compiled bundle's error {max(acc.golden_max_abs, acc.held_out_max_abs or 0.0):.3g} "
                     f"is over the budget {budget} that the emulated choice met")
    (staging / "plan" / "precision.json").write_text(precision_plan.to_json())
    bundle_writer.write_manifest(staging, manifest)


def _label_fpga_subgraphs(manifest: Manifest, widths, staging: Path) -> None:
    """--precision auto: an FPGA subgraph's precision in the manifest (what `hcc inspect` prints) is its MAC layers'
    chosen widths, then the type of its other layers (the backend's default)."""
    from hcc.planner.fixed_precision import label

    for sg in manifest.subgraphs:
        text, _ = label(widths, sg.nodes)
        if text and parse_device(sg.device).kind == "fpga":
            mine = [lw for lw in widths.layers if lw.node in set(sg.nodes)]
            layers = ", ".join(f"{lw.node} {lw.width}b" for lw in mine[:8]) + (", ..." if len(mine) > 8 else "")
            sg.precision = f"{text} per MAC layer ({layers}; --precision auto, plan/precision.json), other layers {sg.precision}"
    bundle_writer.write_manifest(staging, manifest)


def _precision_samples(loaded, feeds, seed: int) -> tuple[list[dict], list[dict]]:
    """Calibration inputs (the golden ones and more random ones) and held-out inputs for the precision choices."""
    calibration = [feeds] + [random_inputs(loaded.model, loaded.inputs, seed + 100 + i) for i in range(CALIBRATION_SAMPLES - 1)]
    held_out = [random_inputs(loaded.model, loaded.inputs, seed + 200 + i) for i in range(HELD_OUT_PRECISION_SAMPLES)]
    return calibration, held_out


def _choose_gpu_precision(loaded, options: CompileOptions, feeds, plan, groups: list[dict] | None, precision_plan, progress: ProgressFn):
    """--gpu-precision auto: per GPU subgraph, fp16 where its emulated end-to-end error (with the CPU's bf16 ops, if
    any) fits the accuracy budget (planner/subgraph_precision.py), else fp32 with the reason. Returns (plan re-priced
    when a subgraph stayed fp32, the precision plan with its `gpu` part, options naming the fp16 subgraphs)."""
    from dataclasses import replace

    from hcc.planner import precision
    from hcc.planner import subgraph_precision as sp
    from hcc.planner.plan import reprice

    budget = options.gpu.accuracy
    if options.cpu.accuracy is not None and options.cpu.accuracy != budget:
        raise HccError(f"the CPU and GPU accuracy budgets differ ({options.cpu.accuracy} and {budget}): a plan has one budget")
    gpu_groups = [g for g in groups or [] if parse_device(g["device"]).kind == "gpu"]
    if not gpu_groups:
        progress("precision: --gpu-precision auto: no GPU subgraph in the placement, nothing to choose")
        return plan, precision_plan, options
    user_fpga = replace(options.fpga, planned_layers={})  # what the user fixed, not the design points placement chose
    cost_model = planner_cost_model(loaded.model, user_fpga, options.cpu)  # GPU at fp32: both times per subgraph
    candidates = sp.gpu_candidates(loaded.model, gpu_groups, _catalog(options.planner), cost_model)
    calibration, held_out = _precision_samples(loaded, feeds, options.golden.seed)
    cpu_nodes = {n for g in groups or [] if parse_device(g["device"]).kind == "cpu" for n in g["nodes"]}
    ops = {n: p for n, p in (precision_plan.assignment() if precision_plan else {}).items() if n in cpu_nodes}
    progress(f"precision: each of {len(candidates)} GPU subgraph(s) alone at fp16 (onnxruntime emulation) on {len(calibration)} calibration inputs")
    widths = precision_plan.fpga if precision_plan is not None else None  # hcc plan --precision auto: FPGA layers' widths
    fpga_nodes = {n for g in groups or [] if parse_device(g["device"]).kind == "fpga" for n in g["nodes"]}
    fixed = widths.fixed() if widths and set(widths.widths()) <= fpga_nodes else None
    result = sp.choose_gpu_subgraphs(loaded.model, candidates, budget, calibration, held_out, ops, progress=progress, fixed=fixed)
    fp16 = result.lowered()

    def worst(errors) -> str:
        return ", ".join(f"{name} max_abs {e.max_abs:.3g}" for name, e in (errors or {}).items())

    progress(f"precision: {len(fp16)} of {len(candidates)} GPU subgraph(s) in fp16 ({', '.join(fp16) or 'none'}) under {budget}: "
             f"emulated whole plan: calibration {worst(result.calibration)}; held-out {worst(result.held_out)}"
             + ("" if result.held_out_ok in (None, True) else " (over budget on held-out inputs)"))
    for c in result.choices:
        if c.precision == "fp32":
            progress(f"precision: {c.id} stays fp32: {c.reason}")
    options = replace(options, gpu=replace(options.gpu, fp16_subgraphs=tuple(fp16)))
    if plan is not None and len(fp16) < len(candidates):  # placed with every GPU subgraph at fp16: price what was chosen
        final = planner_cost_model(loaded.model, user_fpga, options.cpu)
        final.gpu_dtypes = {n: "fp16" for c in candidates if c.id in fp16 for n in c.nodes}
        if widths is not None:  # the FPGA layers keep the widths chosen with the placement
            from hcc.backends.fpga.fixed_point import FixedType
            from hcc.devices import FPGA_DEFAULT_PRECISION
            from hcc.planner.fixed_precision import cost_configs

            bits = FixedType.parse(options.fpga.precision if options.fpga.precision not in (None, "auto") else FPGA_DEFAULT_PRECISION).width
            final.fpga_node_configs = cost_configs(widths, loaded.model, final.fpga_node_configs, bits)
        plan = reprice(loaded, plan, final)
        if plan.placement.reuse_factors:  # the FPGA design points the compiled projects use are the re-priced plan's
            options = options.with_fpga(planned_layers=_planned_fpga_layers(plan, final.fpga_node_configs))
        plan.notes.append("--gpu-precision auto: the placement priced every GPU subgraph at fp16; "
                          f"{', '.join(c.id for c in result.choices if c.precision == 'fp32')} stayed fp32 and the plan is re-priced "
                          "with the placement fixed (not solved again); the single-device figures are the placement's")
    if precision_plan is None:
        precision_plan = precision.PrecisionPlan(budget, precision.DEFAULT_MARGIN, [], {}, result.calibration, result.held_out,
                                                 result.calibration_ok, result.held_out_ok, [], 0, 0, [], notes=list(result.notes))
    else:
        precision_plan.notes.append("calibration/held_out: the CPU's per-op choice alone; gpu.calibration/gpu.held_out: the whole "
                                    "plan (the CPU's bf16 ops and the fp16 GPU subgraphs emulated together)")
    precision_plan.gpu = result
    return plan, precision_plan, options


def _catalog(planner: PlannerOptions):
    from hcc.planner.device_catalog import builtin_catalog, load_device_file

    catalog = builtin_catalog()
    return load_device_file(planner.device_file, catalog) if planner.device_file else catalog


def _set_plan_precisions(plan, options: CompileOptions, precision_plan) -> None:
    """Each subgraph's precision in the plan (report and JSON): CPU fp32 with its bf16 GEMMs/convolutions, GPU fp32 or
    fp16 (auto: with the reason and the emulated error), FPGA the default fixed-point type or (hcc plan --precision
    auto) the measured widths of its MAC layers."""
    from hcc.devices import FPGA_DEFAULT_PRECISION
    from hcc.planner.cost_model import MAC_OPS
    from hcc.planner.plan import fmt_time, set_precisions
    from hcc.planner.precision import CPU_LOW_PRECISIONS

    gpu = {c.id: c for c in (precision_plan.gpu.choices if precision_plan is not None and precision_plan.gpu else [])}
    per = {}
    for s in plan.subgraphs:
        if s.kind == "cpu":
            macs = [n for n in s.nodes if plan.placement.explanations[n].op_type in MAC_OPS]
            kinds = {n: _cpu_precision_of(options.cpu, n, plan.placement.explanations[n].op_type) for n in macs}
            low = [n for n in macs if kinds[n] != "fp32"]
            counts = {p: [n for n in low if kinds[n] == p] for p in CPU_LOW_PRECISIONS}
            label = "fp32+" + "+".join(f"{p} {len(counts[p])}/{len(macs)}" for p in CPU_LOW_PRECISIONS if counts[p])
            names = "; ".join(f"{p} GEMM/conv: " + ", ".join(counts[p][:4]) + (", ..." if len(counts[p]) > 4 else "")
                              for p in CPU_LOW_PRECISIONS if counts[p])
            per[s.id] = (label, names) if low else ("fp32", "")
            chosen = {c.node: c for c in (precision_plan.choices if precision_plan is not None else []) if c.node in low}
            if low and chosen and all(c.time_saved_s is not None for c in chosen.values()):  # the joint choice predicted them
                per[s.id] = (per[s.id][0], per[s.id][1] + f"; predicted {fmt_time(sum(c.time_saved_s for c in chosen.values()))} saved "
                             f"(cost model); their errors alone sum to {sum(c.budget_cost for c in chosen.values()):.2f} of the budget")
        elif s.kind == "gpu":
            c = gpu.get(s.id)
            note = ""
            if c is not None:
                errors = ", ".join(f"{name} max_abs {e.max_abs:.3g}" for name, e in c.errors.items())
                note = (f"{c.reason}; alone at fp16, emulated: {errors} (x{precision_plan.gpu.error_factor:g}: {c.budget_cost:.2f} of the budget); "
                        f"predicted {fmt_time(c.time_fp32_s)} at fp32, {fmt_time(c.time_low_s)} at fp16")
            per[s.id] = (options.gpu.precision_of(s.id), note)
        elif s.kind == "fpga":
            fixed = options.fpga.precision or FPGA_DEFAULT_PRECISION
            per[s.id] = (fixed if fixed != "auto" else "ap_fixed auto", "per-layer types from --fpga-config" if options.fpga.config else "")
            if precision_plan is not None and precision_plan.fpga is not None:
                from hcc.planner.fixed_precision import label

                text, note = label(precision_plan.fpga, s.nodes, s.id)
                if text:
                    per[s.id] = (text, note + f"; other layers {per[s.id][0]}")
    set_precisions(plan, per)


def plan_with_precision(loaded, options: CompileOptions, progress: ProgressFn = _quiet):
    """`hcc plan` with precisions, on random inputs from the golden seed. With an FPGA budget (`--precision auto`):
    device and precision chosen together (planner/joint_precision.py: the CPU's bf16 GEMMs/convolutions and the FPGA
    MAC layers' ap_fixed widths as placement options under an accuracy cap), then the GPU subgraphs' fp16 choice.
    Otherwise: the CPU's bf16 choice (--cpu-precision auto), placement, the GPU subgraphs' fp16 choice
    (--gpu-precision auto). Returns (plan, precision plan or None)."""
    fpga_budget = options.fpga.accuracy
    options = options.with_fpga(accuracy=None)  # the cost model prices the user's FPGA types; the widths are options
    auto = options.cpu.precision == CPU_AUTO or options.gpu.precision == GPU_AUTO or fpga_budget is not None
    feeds = random_inputs(loaded.model, loaded.inputs, options.golden.seed) if auto else None
    precision_plan = None
    if options.cpu.precision == CPU_AUTO and fpga_budget is None:
        precision_plan, options = _choose_cpu_precision(loaded, options, feeds, progress)
    if fpga_budget is not None:
        from hcc.planner.joint_precision import plan_jointly

        plan, precision_plan, options = plan_jointly(loaded, options, feeds, fpga_budget, progress, cost_model=planner_cost_model,
                                                     place=plan_model, samples=_precision_samples, catalog=_catalog(options.planner))
    else:
        plan = plan_model(loaded, options.planner, planner_cost_model(loaded.model, options.fpga, options.cpu, options.gpu))
    groups = [{"id": g.id, "device": parse_device(g.device).name, "nodes": list(g.nodes)} for g in plan.subgraphs]
    if options.gpu.precision == GPU_AUTO:
        plan, precision_plan, options = _choose_gpu_precision(loaded, options, feeds, plan, groups, precision_plan, progress)
    _set_plan_precisions(plan, options, precision_plan)
    return plan, precision_plan


def _save_temps_folder(options: CompileOptions, bundle_dir: Path, progress: ProgressFn) -> str | None:
    if not options.debug.save_temps:
        return None
    temps = make_save_temps(Path(options.debug.save_temps), bundle_dir)
    progress(f"keeping the input of every MLIR pass pipeline in {options.debug.save_temps}")
    return str(temps)


def _golden_tolerance(subgraphs: list[SubgraphRecord], emulated_fp16: bool = False) -> tuple[float, float]:
    """The loosest tolerance any float precision implies; fixed-point outputs get measured ones (below), and with
    `emulated_fp16` (--gpu-precision auto chose the fp16 subgraphs) fp16 ones from their emulated error, not the table."""
    rtol, atol = TOLERANCES["fp32"]
    for sg in subgraphs:
        if sg.precision in TOLERANCES and not (emulated_fp16 and sg.precision == "fp16"):
            rtol, atol = max(rtol, TOLERANCES[sg.precision][0]), max(atol, TOLERANCES[sg.precision][1])
    return rtol, atol


def _is_fixed_point(subgraph: SubgraphRecord) -> bool:
    return any("tolerance" in artifact.meta for artifact in subgraph.artifacts)


def _measure_accuracy(staging: Path, manifest: Manifest, loaded, feeds, expected, seed: int, progress: ProgressFn, what: str,
                      floor: tuple[float, float] | None = None) -> None:
    """Run the staged bundle on the golden and on held-out inputs against onnxruntime; store each output's measured
    error, argmax agreement and the tolerance they imply in the manifest (artifacts/accuracy.py says why). `what`:
    the lossy arithmetic that needs it (fixed point, bf16), for the messages; `floor`: the smallest tolerance (default:
    the table tolerance of the bundle's float precisions: fp16 GPU subgraphs run their fp32 CPU fallback here, so what
    this host measures says nothing of their error on a GPU)."""
    from hcc.artifacts import accuracy

    held_feeds = [random_inputs(loaded.model, loaded.inputs, seed + 1 + i) for i in range(accuracy.HELD_OUT_SAMPLES)]
    held_expected = [golden_outputs(loaded.path, f, element_types=loaded.element_types, boundary=loaded.boundary) for f in held_feeds]
    outputs = accuracy.run_bundle_in_child(staging, [feeds] + held_feeds)
    floor = floor or _golden_tolerance(manifest.subgraphs)
    measured = accuracy.output_accuracies((outputs[0], expected), list(zip(outputs[1:], held_expected)), floor)
    assert manifest.golden is not None
    manifest.golden.outputs = measured
    for name, acc in measured.items():
        agreement = f", argmax agreement {acc.argmax_agreement:.0%}" if acc.argmax_agreement is not None else ""
        progress(f"{what}: output '{name}': max abs error {acc.golden_max_abs:.3g} on the golden inputs, {acc.held_out_max_abs:.3g} on "
                 f"{acc.held_out_samples} held-out inputs{agreement}; golden atol {acc.atol:.3g}")
        if acc.note:
            progress(f"warning: output '{name}': {acc.note}; " + ("widen --fpga-precision" if "fixed" in what else "use --cpu-precision fp32"))
    bundle_writer.write_manifest(staging, manifest)


def _emulated_fp16_tolerances(staging: Path, manifest: Manifest, gpu, expected, progress: ProgressFn) -> None:
    """--gpu-precision auto: each float output's golden atol covers the fp16 GPU subgraphs' error as the choice
    emulated it (the whole plan, calibration and held-out inputs, the golden ones among them) times the kernels'
    factor (planner/subgraph_precision.py), plus what this host measured (the rest of the bundle), x accuracy.MARGIN.
    No GPU measured it: on this host those subgraphs run their fp32 CPU fallback."""
    from hcc.artifacts import accuracy
    from hcc.artifacts.manifest import OutputAccuracy
    from hcc.runtime.golden_check import inconclusive_reason

    assert manifest.golden is not None
    rtol, floor = TOLERANCES["fp32"]
    subgraphs = ", ".join(gpu.lowered())
    for name, e in (gpu.calibration or {}).items():
        emulated = max(e.max_abs, (gpu.held_out or {}).get(name, e).max_abs)
        known = manifest.golden.outputs.get(name)
        here = max(known.golden_max_abs or 0.0, known.held_out_max_abs or 0.0) if known else 0.0
        atol = max(floor, known.atol if known else 0.0, accuracy.MARGIN * (here + gpu.error_factor * emulated))
        how = (f"fp16 GPU subgraphs {subgraphs}: atol {accuracy.MARGIN:g} x ({'measured here ' + format(here, '.3g') + ' + ' if known else ''}"
               f"{gpu.error_factor:g} x their emulated error {emulated:.3g}); not measured on a GPU")
        reason = inconclusive_reason(expected[name], known.rtol if known else rtol, atol)
        note = "; ".join(n for n in (known.note if known else "", how, f"the golden check is inconclusive: {reason}" if reason else "") if n)
        if known:
            known.atol, known.note = atol, note
        else:
            manifest.golden.outputs[name] = OutputAccuracy(rtol=rtol, atol=atol, note=note)
        progress(f"fp16 (emulated): output '{name}': golden atol {atol:.3g} ({how})")
    bundle_writer.write_manifest(staging, manifest)


def _storage_dtype(element: str, declared: str) -> str | None:
    """numpy dtype of a lowered tensor; bools cross function boundaries as bytes (frontend/bool_boundary.py)."""
    if declared == "bool" and element in ("i8", "ui8", "i1"):
        return "bool"
    if declared == "uint8" and element in ("i8", "ui8"):  # MLIR integers are signless
        return "uint8"
    if (declared, element) in (("uint16", "i16"), ("uint32", "i32"), ("uint64", "i64")):  # frontend/unsigned.py
        return declared
    return MLIR_TO_NUMPY.get(element)


def subgraph_records(response: dict, tensors: list[TensorRecord], declared: dict, outputs: dict, options: CompileOptions,
                     source: str = "onnxruntime gives") -> list[SubgraphRecord]:
    """The worker's subgraphs as manifest records, appending the tensors they compute to `tensors`. `declared`: per
    computed tensor whose type is known, (numpy dtype, shape); `outputs`: the model outputs (name -> declared shape)."""
    by_name = {t.name: t for t in tensors}
    subgraphs = []
    for sg in response["subgraphs"]:  # in schedule order: every input is an argument or an earlier output
        for name, (shape, element) in zip(sg["inputs"], sg["input_types"]):
            record = by_name.get(name)
            if record is None or record.shape != shape or _storage_dtype(element, record.dtype) != record.dtype:
                raise HccError(f"internal: argument '{name}' of {sg['id']} lowered to {shape} {element}, expected {record}")
        for name, (shape, element) in zip(sg["outputs"], sg["output_types"]):
            known = declared.get(name)
            dtype = _storage_dtype(element, known[0] if known is not None else "")
            if dtype is None:
                raise HccError(f"tensor '{name}' has element type {element}, which the runtime cannot move")
            if known is not None and known[1] is not None and list(known[1]) != shape:
                raise HccError(f"internal: output '{name}' lowered to shape {shape}, {source} {list(known[1])}")
            if known is not None and known[0] != dtype:
                raise HccError(f"output '{name}' lowered to dtype {dtype}, but the model declares {known[0]}")
            kind = "output" if name in outputs else "intermediate"
            by_name[name] = TensorRecord(name, dtype, shape, kind, outputs.get(name))
            tensors.append(by_name[name])
        if len(sg["input_types"]) != len(sg["inputs"]) or len(sg["output_types"]) != len(sg["outputs"]):
            raise HccError(f"internal: subgraph {sg['id']} signature does not match its {len(sg['inputs'])} inputs / {len(sg['outputs'])} outputs")
        artifacts = [ArtifactRecord(**a) for a in sg["artifacts"]]
        precision = next((a.meta["precision_default"] for a in artifacts if "precision_default" in a.meta), None)
        precision = precision or (options.gpu.precision_of(sg["id"]) if parse_device(sg["device"]).kind == "gpu" else "fp32")
        subgraphs.append(
            SubgraphRecord(
                id=sg["id"], device=sg["device"], device_index=sg["device_index"], precision=precision, inputs=sg["inputs"], outputs=sg["outputs"],
                nodes=sg["nodes"],
                artifacts=artifacts,
                fallback=ArtifactRecord(**sg["fallback"]) if sg.get("fallback") else None,
            )
        )
    return subgraphs


def _assemble(loaded, weights, feeds, expected, response, staging: Path, options: CompileOptions, plan=None) -> Manifest:
    import onnxruntime

    tensors: list[TensorRecord] = [TensorRecord(i.name, i.dtype, i.shape, "input", i.symbolic_shape) for i in loaded.inputs]
    tensors += [TensorRecord(name, str(arr.dtype), list(arr.shape), "weight") for name, arr in weights.items()]
    declared = {name: (str(arr.dtype), list(arr.shape)) for name, arr in expected.items()}
    subgraphs = subgraph_records(response, tensors, declared, {o.name: o.symbolic_shape for o in loaded.outputs}, options)
    by_name = {t.name: t for t in tensors}

    for name, element_type in loaded.element_types.items():  # carried as storage (frontend/lowbit.py)
        if name in by_name:
            by_name[name].element_type = element_type
    for name, keys in loaded.zipmaps.items():  # zipped with its labels by the runtime (frontend/zipmap.py)
        if name in by_name:
            by_name[name].zipmap_keys = keys
    unproduced = [o.name for o in loaded.outputs if o.name not in by_name]
    if unproduced:
        raise HccError(f"model outputs {unproduced} are not computed by any node (constant or pass-through outputs are not supported)")
    weight_records = bundle_writer.write_weights(staging, weights)
    (staging / "golden").mkdir(exist_ok=True)
    save_golden(staging / "golden" / "golden.npz", feeds, expected)
    rtol, atol = _golden_tolerance(subgraphs, emulated_fp16=options.gpu.precision == GPU_AUTO)
    source = f"{expected.source} on " + ("user inputs" if options.golden.inputs else f"random inputs (seed {options.golden.seed})")
    toolchain = dict(response["toolchain"])
    toolchain.update({"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__, "target_cpu": options.cpu.target_cpu})
    toolchain.update(options.env.code_knobs())  # HCC_* knobs that change generated code, as this compile read them
    manifest = Manifest(
        model_name=loaded.name, model_sha256=loaded.sha256, compiler_version=__version__, toolchain=toolchain,
        inputs=[i.name for i in loaded.inputs], outputs=[o.name for o in loaded.outputs], tensors=tensors, weights=weight_records,
        subgraphs=subgraphs, schedule=[s.id for s in subgraphs], devices_required=sorted({s.device for s in subgraphs}), files={},
        golden=GoldenRecord(file="golden/golden.npz", rtol=rtol, atol=atol, source=source),
        plan_report="plan/plan.json" if plan is not None else None,
        boundary=loaded.boundary,  # sequence / optional inputs or outputs as flat tensors (frontend/boundary.py)
    )
    if loaded.boundary is not None:
        manifest.format_version = BOUNDARY_FORMAT_VERSION
    if plan is not None:
        predicted = {sg.id: sg.predicted_time for sg in plan.subgraphs}
        for record in manifest.subgraphs:
            record.predicted_time_s = predicted.get(record.id)
    bundle_writer.write_manifest(staging, manifest)
    return manifest
