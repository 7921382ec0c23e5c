"""Compile a model whose `If` / `Loop` is only decided at run time into a program bundle (docs/control-flow.md).

Why: hcc generates static tensor code, and a decision that depends on input values cannot be folded or unrolled.
As onnxruntime does, the decision stays on the host: the graph is cut at each run-time If / Loop
(frontend/segments.py), every piece between them, every If branch and every Loop body is compiled by the existing
pipeline into a sub-bundle of its own (`parts/pN/`, a complete bundle with its manifest, weights and native code),
and the manifest's `program` (artifacts/manifest.ProgramRecord) says in which order the runtime runs them.

Static shapes stay the rule for compiled code: every value a compiled piece reads has one shape. Both branches of
an If give each output one dtype; a Loop's carried values keep their dtype and shape. A value whose shape is only
known at run time (a Loop's stacked scan output, an If output whose branches disagree in shape) may only be handed
on by the host (a model output, a value a branch returns); compiled code reading it is refused by name.
"""
from __future__ import annotations

import re
import tempfile
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from hcc.artifacts import bundle as bundle_writer
from hcc.artifacts.manifest import (
    PROGRAM_FORMAT_HOST,
    BlockRecord,
    ConstantRecord,
    Manifest,
    ProgramRecord,
    ScanRecord,
    StepRecord,
    TensorRecord,
)
from hcc.errors import HccError
from hcc.frontend import segments
from hcc.frontend.control_flow import is_host_op, runtime_control_flow
from hcc.frontend.fold import fold_constants
from hcc.frontend.loader import SHAPES_DO_NOT_FIT
from hcc.options import CompileOptions

ProgressFn = Callable[[str], None]


@dataclass
class TensorType:
    """What the compiler knows of a value of the program: its numpy dtype and shape (None: only known at run time,
    `why` says why)."""

    dtype: str
    shape: list[int] | None
    why: str = ""

    def same(self, other: "TensorType") -> bool:
        return self.dtype == other.dtype and self.shape is not None and self.shape == other.shape

    def text(self) -> str:
        return f"{self.shape if self.shape is not None else '[run-time shape]'} {self.dtype}"


@dataclass
class _Context:
    """One program compile: where sub-bundles go, the model's name for messages, the toolchain seen."""

    root: Path  # the staging folder of the bundle
    model_path: str
    options: CompileOptions
    progress: ProgressFn
    parts: int = 0
    constants: int = 0
    toolchain: dict = field(default_factory=dict)

    def new_part(self) -> tuple[Path, str]:
        rel = f"parts/p{self.parts}"
        self.parts += 1
        folder = self.root / rel
        folder.mkdir(parents=True)
        return folder, rel

    def constant(self, name: str, tensor: onnx.TensorProto) -> tuple[ConstantRecord, TensorType]:
        array = numpy_helper.to_array(tensor)
        if array.dtype.name not in _NUMPY_TO_ONNX:
            raise HccError(f"{self.model_path}: constant '{name}' has dtype {array.dtype}, which a program cannot hand on")
        rel = f"program/c{self.constants}.npy"
        self.constants += 1
        (self.root / "program").mkdir(exist_ok=True)
        np.save(self.root / rel, array.copy(order="C"), allow_pickle=False)  # (ascontiguousarray makes a scalar 1-d)
        return ConstantRecord(name, rel, array.dtype.name, list(array.shape)), TensorType(array.dtype.name, list(array.shape))


_NUMPY_TO_ONNX = {name: helper.np_dtype_to_tensor_dtype(np.dtype(name)) for name in
                  ("float32", "float64", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64", "bool")}


def first_runtime_control_flow(model: onnx.ModelProto) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if segments.is_runtime_control_flow(n)), None)


def run_time_reason(node: onnx.NodeProto) -> str:
    """Why `node` makes the model a program, as an error message says it."""
    if is_host_op(node):
        return "has an output shape that depends on its input values (it runs on the host)"
    return "is only decided at run time"


def check_program_options(options: CompileOptions, node: onnx.NodeProto, path: str) -> None:
    """A program bundle runs its compiled pieces on the CPU at fp32 (the partitioner and precision choices work on one
    tensor program)."""
    why = []
    if options.planner.active:
        why.append("--devices/--place/--placement")
    if options.cpu.precision != "fp32":
        why.append(f"--cpu-precision {options.cpu.precision}")
    if options.debug.save_temps:
        why.append("--save-temps")
    if why:
        raise HccError(f"{path}: node '{node.name}' ({node.op_type}) {run_time_reason(node)}, so hcc compiles the model as a "
                       f"program of CPU pieces at fp32, which {', '.join(why)} cannot apply to",
                       hint="compile without those options, or make the condition / trip count a constant")


def compile_program(loaded, staging: Path, options: CompileOptions, progress: ProgressFn) -> tuple[ProgramRecord, list[TensorType], dict]:
    """Compile every piece of `loaded` (a model with a run-time If/Loop) into `staging/parts/`; returns the program,
    the types of the model's outputs and the toolchain of the pieces."""
    ctx = _Context(staging, loaded.path, options, progress)
    scope = {i.name: TensorType(i.dtype, list(i.shape)) for i in loaded.inputs}
    with runtime_control_flow():
        main, outputs = _build_block(loaded.model, ctx, scope, [], "the model")
    program = ProgramRecord(main=main)
    if program.has_host_steps():
        program.format = PROGRAM_FORMAT_HOST
    return program, outputs, ctx.toolchain


def _build_block(model: onnx.ModelProto, ctx: _Context, scope: Mapping[str, TensorType], bound: list[str],
                 where: str, held: dict[str, onnx.TensorProto] | None = None, order: list[str] | None = None) -> tuple[BlockRecord, list[TensorType]]:
    """One scope (the model, a branch, a body; already loaded: folded, checked, shapes inferred) as a block of steps.
    `held`: constants the block returns that were taken out of its graph (a branch returning a Constant); `order`:
    the block's outputs in order, when `held` took some of them out of the graph's outputs."""
    graph = model.graph
    inits = _constants_of(graph)
    inits.update(held or {})
    types: ChainMap[str, TensorType] = ChainMap({}, dict(scope))
    constants: list[ConstantRecord] = []

    def use_constant(name: str) -> None:
        if name in inits and not any(c.name == name for c in constants):
            record, types[name] = ctx.constant(name, inits[name])
            constants.append(record)

    def hand_on(name: str, tensor: onnx.TensorProto) -> None:
        inits[name] = tensor
        use_constant(name)

    plain = onnx.GraphProto()
    plain.CopyFrom(graph)
    del plain.node[:]
    plain.node.extend(n for n in graph.node if not (n.op_type == "Constant" and n.output[0] in inits))  # constants: handed on
    graph = plain
    steps = segments.split_steps(graph)
    records: list[StepRecord] = []
    for step, needed in zip(steps, segments.needed_after(steps, graph)):
        if isinstance(step, segments.Segment):
            records += _segment_steps(model, step, needed, inits, types, ctx, hand_on, use_constant)
            continue
        node = step.node
        _bind_inputs(node, types, use_constant, ctx)
        if node.op_type == "If":
            records.append(_if_step(model, node, types, ctx))
        elif node.op_type == "Loop":
            records.append(_loop_step(model, node, types, ctx))
        else:
            records.append(_host_step(node, types, ctx))
    names = order if order is not None else [o.name for o in graph.output]
    outputs = []
    for name in names:
        use_constant(name)
        if name not in types:
            raise HccError(f"{ctx.model_path}: {where}: output '{name}' is computed by no node")
        outputs.append(types[name])
    return BlockRecord(inputs=list(bound), steps=records, outputs=list(names), constants=constants), outputs


def _segment_steps(model, segment: segments.Segment, needed: set[str], inits: dict, types: ChainMap, ctx: _Context,
                   hand_on: Callable[[str, onnx.TensorProto], None], use_constant: Callable[[str], None]) -> list[StepRecord]:
    """A run of plain nodes as compiled segments, cut where a node reads a value of run-time shape (an output of a host
    step): such a node, when runtime/host_ops.py has it (Gather, Slice, Concat, Cast, ...), becomes a host step too;
    any other is refused by name (_require_static)."""
    from hcc.runtime.host_ops import FOLLOWING_OPS

    records: list[StepRecord] = []
    nodes = list(segment.nodes)
    while nodes:
        cut = next((i for i, node in enumerate(nodes)
                    if any(name in types and types[name].shape is None for name in segments.reads(node))), None)
        head = nodes if cut is None else nodes[:cut]
        if head:
            later = set(needed).union(*(segments.reads(n) for n in nodes[len(head):]))
            record = _segment_step(model, segments.Segment(head), later, inits, types, ctx, hand_on)
            if record is not None:
                records.append(record)
        if cut is None:
            break
        node = nodes[cut]
        if node.op_type not in FOLLOWING_OPS or node.domain not in ("", "ai.onnx"):
            dynamic = next(name for name in segments.reads(node) if name in types and types[name].shape is None)
            _require_static(types, dynamic, node, ctx)
        _bind_inputs(node, types, use_constant, ctx)
        records.append(_host_step(node, types, ctx))
        nodes = nodes[cut + 1:]
    return records


def _bind_inputs(node: onnx.NodeProto, types: Mapping[str, TensorType], use_constant: Callable[[str], None], ctx: _Context) -> None:
    """A step's inputs: constants handed on to the block, and every one computed before it (else an error naming it)."""
    for name in node.input:
        if name:
            use_constant(name)
            if name not in types:
                raise HccError(f"{ctx.model_path}: node '{node.name}' ({node.op_type}) reads '{name}', which nothing before it computes")


def _require_static(types: Mapping[str, TensorType], name: str, node: onnx.NodeProto, ctx: _Context) -> TensorType:
    known = types[name]
    if known.shape is None:
        raise HccError(f"{ctx.model_path}: node '{node.name}' ({node.op_type}) reads '{name}', whose shape is only known at run time "
                       f"({known.why}); compiled code needs static shapes, so only a model output or a value the host hands on may have one",
                       hint="give the loop a constant trip count or the branches one output shape, or make this value a model output")
    return known


def _value_info(name: str, known: TensorType) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, _NUMPY_TO_ONNX[known.dtype], known.shape)


def _segment_step(model, segment: segments.Segment, needed: set[str], inits: dict, types: ChainMap, ctx: _Context,
                  hand_on: Callable[[str, onnx.TensorProto], None]) -> StepRecord | None:
    """Compile a run of plain nodes into a sub-bundle; None when nothing after it reads what it computes. An output
    that folds to a constant is given to `hand_on` (a constant of the block) instead."""
    inputs, outputs = segments.segment_io(segment, set(inits), needed)
    if not outputs:
        return None
    for name in inputs:
        if name not in types:
            raise HccError(f"{ctx.model_path}: '{name}' is read before any node computes it")
        _require_static(types, name, next(n for n in segment.nodes if name in segments.reads(n)), ctx)
    elem = {v.name: v.type.tensor_type.elem_type for v in list(model.graph.value_info) + list(model.graph.output)}
    used = {n for node in segment.nodes for n in segments.reads(node)}
    piece = segments.standalone_model(model, f"{model.graph.name or 'model'}_segment", segment.nodes,
                                      [_value_info(n, types[n]) for n in inputs],
                                      [helper.make_tensor_value_info(n, elem.get(n, 0), None) for n in outputs],
                                      [inits[n] for n in inits if n in used])
    try:
        piece = shape_inference.infer_shapes(piece, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise HccError(f"{ctx.model_path}: shape inference failed on the nodes from '{segment.nodes[0].name}' on: "
                       f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from None
    if fold_constants(piece):  # with the inputs' shapes now known, more may fold (then: constants the host hands on)
        piece = shape_inference.infer_shapes(piece, check_type=True, strict_mode=True, data_prop=True)
    folded = _constants_of(piece.graph)
    for name in [n for n in outputs if n in folded]:
        hand_on(name, folded[name])
        del piece.graph.output[[o.name for o in piece.graph.output].index(name)]
    outputs = [n for n in outputs if n not in folded]
    if not outputs:
        return None
    manifest, rel = _compile_piece(piece, [(n, types[n]) for n in inputs], outputs, ctx)
    for name in manifest.outputs:
        record = manifest.tensor(name)
        types.maps[0][name] = TensorType(record.dtype, list(record.shape))
    return StepRecord(kind="segment", node=segment.nodes[0].name, inputs=list(manifest.inputs), outputs=list(manifest.outputs), bundle=rel)


def _compile_piece(piece: onnx.ModelProto, inputs: list[tuple[str, TensorType]], outputs: list[str], ctx: _Context) -> tuple[Manifest, str]:
    """The existing pipeline on one static piece (weights lifted, worker, records): a sub-bundle without golden data
    (the whole bundle's golden data covers it)."""
    from hcc import __version__
    from hcc.driver import _attach_boundary_casts, _run_worker, subgraph_records
    from hcc.frontend.bool_boundary import widen_bool_boundaries
    from hcc.frontend.names import name_nodes
    from hcc.frontend.weights import lift_weights
    from hcc.worker import WorkerRequest

    name_nodes(piece)
    folder, rel = ctx.new_part()
    lifted = lift_weights(piece)
    lifted.model = widen_bool_boundaries(lifted.model, lifted.weights)
    model_path, weights_path = folder / ".piece.onnx", folder / ".weights.npz"
    onnx.save(lifted.model, model_path)
    groups = [{"id": "sg0", "device": "cpu", "nodes": [n.name for n in lifted.model.graph.node], "device_index": 0}]
    request = WorkerRequest(options=ctx.options, model=str(model_path), weights_file=str(weights_path), bundle_dir=str(folder),
                            inputs=[n for n, _ in inputs] + list(lifted.weights), outputs=outputs,
                            groups=_attach_boundary_casts(groups, lifted.model), repro_dir=tempfile.gettempdir(), save_temps=None,
                            weights=list(lifted.weights))
    ctx.progress(f"program: compiling {rel} ({len(piece.graph.node)} nodes from '{piece.graph.node[0].name}')")
    response = _run_worker(request.to_dict(), ctx.progress, folder)
    model_path.unlink()
    weights_path.unlink(missing_ok=True)
    tensors = [TensorRecord(n, t.dtype, list(t.shape or []), "input") for n, t in inputs]
    tensors += [TensorRecord(n, str(a.dtype), list(a.shape), "weight") for n, a in lifted.weights.items()]
    declared = {}
    for out in piece.graph.output:
        dims = out.type.tensor_type.shape.dim
        shape = [d.dim_value for d in dims] if all(d.HasField("dim_value") for d in dims) else None
        dtype = helper.tensor_dtype_to_np_dtype(out.type.tensor_type.elem_type).name if out.type.tensor_type.elem_type else None
        declared[out.name] = (dtype, shape) if dtype else None
    declared = {k: v for k, v in declared.items() if v is not None}
    subgraphs = subgraph_records(response, tensors, declared, {n: None for n in outputs}, ctx.options, source="shape inference gives")
    toolchain = dict(response["toolchain"])
    toolchain.update({"onnx": onnx.__version__, "target_cpu": ctx.options.cpu.target_cpu})
    toolchain.update(ctx.options.env.code_knobs())
    ctx.toolchain = ctx.toolchain or toolchain
    manifest = Manifest(
        model_name=piece.graph.name, model_sha256="", compiler_version=__version__, toolchain=toolchain,
        inputs=[n for n, _ in inputs], outputs=list(outputs), tensors=tensors,
        weights=bundle_writer.write_weights(folder, lifted.weights), subgraphs=subgraphs, schedule=[s.id for s in subgraphs],
        devices_required=["cpu"], files={})
    bundle_writer.write_manifest(folder, manifest)
    return manifest, rel


def _subgraph_block(model: onnx.ModelProto, node: onnx.NodeProto, label: str, graph: onnx.GraphProto, types: Mapping[str, TensorType],
                    bound: list[tuple[str, TensorType]], ctx: _Context) -> tuple[BlockRecord, list[TensorType]]:
    """A branch or body as a standalone model (free names: inputs, or initializers when the enclosing scope holds them
    as constants), loaded like any model (folding, checks, shapes; nested run-time control flow stays), then a block."""
    from hcc.frontend.loader import load_model

    inits = _constants_of(model.graph)
    bound_names = {n for n, _ in bound}
    free = [n for n in segments.free_names(graph) if n not in bound_names]
    inputs = list(bound)
    constants = []
    for name in free:
        if name in inits:
            constants.append(inits[name])
        elif name in types:
            inputs.append((name, _require_static(types, name, node, ctx)))
        else:
            raise HccError(f"{ctx.model_path}: node '{node.name}' ({node.op_type}) {label} reads '{name}', which nothing before it computes")
    held = _returned_constants(graph)  # a branch returning a constant: the host hands it on (the loader refuses them)
    kept = [n for n in graph.node if not (n.op_type == "Constant" and n.output[0] in held)]
    piece = segments.standalone_model(model, f"{node.name}.{label}", kept, [_value_info(n, t) for n, t in inputs], [],
                                      [i for i in graph.initializer if i.name not in held] + constants)
    piece.graph.output.extend(o for o in _output_types(piece, graph) if o.name not in held)
    order = [o.name for o in graph.output]
    scope = dict(types)
    scope.update(inputs)
    where = f"node '{node.name}' ({node.op_type}) {label}"
    if not piece.graph.output:  # nothing to compute: its outputs are constants and names it reads
        piece.graph.ClearField("node")
        return _build_block(piece, ctx, scope, [n for n, _ in bound], where, held, order)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{node.name}.{label}")[:80]
    path = ctx.root / ".pieces" / f"{ctx.parts}-{safe}.onnx"
    path.parent.mkdir(exist_ok=True)
    onnx.save(piece, path)
    try:
        loaded = load_model(str(path))
    except HccError as exc:
        where = f"{ctx.model_path}: node '{node.name}' ({node.op_type}), its {label}"
        raise HccError(exc.message.replace(str(path), where), hint=exc.hint) from None
    finally:
        path.unlink(missing_ok=True)
    return _build_block(loaded.model, ctx, scope, [n for n, _ in bound], where, held, order)


def _constants_of(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The graph's initializers and the values of its numeric Constant nodes, each named as the value it is."""
    found = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1:
            attr = node.attribute[0]
            if attr.name == "value":
                tensor = onnx.TensorProto()
                tensor.CopyFrom(attr.t)
                tensor.name = node.output[0]
            elif attr.name in _CONSTANT_FORMS:
                tensor = numpy_helper.from_array(np.array(helper.get_attribute_value(attr), _CONSTANT_FORMS[attr.name]), node.output[0])
            else:
                continue
            found[node.output[0]] = tensor
    return found


_CONSTANT_FORMS = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64}


def _returned_constants(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """The outputs of a subgraph that are its initializers or the `value` of a Constant node."""
    outputs = {o.name for o in graph.output}
    held = {i.name: i for i in graph.initializer if i.name in outputs}
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] in outputs and len(node.attribute) == 1 and node.attribute[0].name == "value":
            held[node.output[0]] = node.attribute[0].t
    return held


def _output_types(piece: onnx.ModelProto, graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """The subgraph's outputs typed for a model of their own (a model output needs a shape, a subgraph's may lack one):
    the declared type where it has a shape, else what shape inference gives from the piece's static inputs."""
    known = {v.name: v for v in list(piece.graph.input)}
    known.update({i.name: helper.make_tensor_value_info(i.name, i.data_type, list(i.dims)) for i in piece.graph.initializer})
    try:
        inferred = shape_inference.infer_shapes(piece, data_prop=True)
        known.update({v.name: v for v in inferred.graph.value_info})
    except Exception:  # load_model reports what is wrong with the piece
        pass
    outputs = []
    for out in graph.output:
        value = onnx.ValueInfoProto()
        value.CopyFrom(out if out.type.tensor_type.HasField("shape") or out.name not in known else known[out.name])
        value.name = out.name
        if not value.type.tensor_type.elem_type:
            value.type.tensor_type.elem_type = known[out.name].type.tensor_type.elem_type if out.name in known else 0
        outputs.append(value)
    return outputs


def _graph_attr(node: onnx.NodeProto, name: str) -> onnx.GraphProto:
    return next(helper.get_attribute_value(a) for a in node.attribute if a.name == name)


def _if_step(model, node: onnx.NodeProto, types: ChainMap, ctx: _Context) -> StepRecord:
    cond = types[node.input[0]]
    if cond.shape is not None and int(np.prod(cond.shape)) != 1:
        raise HccError(f"{ctx.model_path}: node '{node.name}' (If): its condition '{node.input[0]}' has shape {cond.shape}; "
                       "ONNX requires one element")
    blocks, results, failed = {}, {}, {}
    for label in ("then_branch", "else_branch"):
        try:
            blocks[label], results[label] = _subgraph_block(model, node, label, _graph_attr(node, label), types, [], ctx)
        except HccError as exc:
            if SHAPES_DO_NOT_FIT not in exc.message:
                raise
            failed[label] = exc.message  # this branch cannot run at these shapes; the other may (Silero VAD's rates)
            continue
        if len(results[label]) != len(node.output):
            raise HccError(f"{ctx.model_path}: node '{node.name}' (If): its {label} has {len(results[label])} outputs, the node {len(node.output)}")
    if len(failed) == 2:
        raise HccError(failed["then_branch"])
    for label, message in failed.items():
        other = "else_branch" if label == "then_branch" else "then_branch"
        ctx.progress(f"warning: {message}; taking this branch at run time raises an error")
        blocks[label], results[label] = _failing_block(node, label, message, len(node.output)), results[other]
    for out, then, other in zip(node.output, results["then_branch"], results["else_branch"]):
        if then.dtype != other.dtype:
            raise HccError(f"{ctx.model_path}: node '{node.name}' (If): output '{out}' is {then.dtype} in then_branch and {other.dtype} in "
                           "else_branch; ONNX requires one type")
        if out:
            why = then.why or other.why or f"node '{node.name}' (If) gives it {then.text()} in then_branch, {other.text()} in else_branch"
            types.maps[0][out] = then if then.same(other) else TensorType(then.dtype, None, why)
    return StepRecord(kind="if", node=node.name, inputs=[node.input[0]], outputs=list(node.output),
                      then_branch=blocks["then_branch"], else_branch=blocks["else_branch"])


def _host_step(node: onnx.NodeProto, types: ChainMap, ctx: _Context) -> StepRecord:
    """An op whose output shape depends on its input values (runtime/host_ops.py), run by the runtime with numpy; its
    outputs have run-time shapes, so only host steps and the model's outputs may read them (`_require_static`)."""
    from hcc.runtime.host_ops import HOST_OPS, RUNTIME_OPS

    attributes = {a.name: _json_attribute(helper.get_attribute_value(a), node, ctx) for a in node.attribute}
    dtypes = RUNTIME_OPS[node.op_type][1]([types[n].dtype if n else "" for n in node.input], attributes)
    why = (f"output of node '{node.name}' ({node.op_type}), run on the host: its shape depends on the input values"
           if node.op_type in HOST_OPS else f"output of node '{node.name}' ({node.op_type}), run on the host on a value of run-time shape")
    for out, dtype in zip(node.output, dtypes):
        if out:
            types.maps[0][out] = TensorType(dtype, None, why)
    what = ("its output shape depends on the input values" if node.op_type in HOST_OPS
            else "it reads a value of run-time shape, which compiled code cannot")
    ctx.progress(f"note: node '{node.name}' ({node.op_type}) runs on the host with numpy at run time ({what}; runtime/host_ops.py)")
    return StepRecord(kind="host", node=node.name, inputs=list(node.input), outputs=list(node.output), op=node.op_type,
                      attributes=attributes)


def _json_attribute(value, node: onnx.NodeProto, ctx: _Context):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, (int, float, str)) or (isinstance(value, list) and all(isinstance(v, (int, float)) for v in value)):
        return value
    raise HccError(f"{ctx.model_path}: node '{node.name}' ({node.op_type}): an attribute of type {type(value).__name__} cannot be "
                   "recorded for the runtime")


def _failing_block(node: onnx.NodeProto, label: str, message: str, outputs: int) -> BlockRecord:
    """A branch that raises `message` when taken: one 'fail' step giving the branch's outputs names of its own."""
    names = [f"{node.name}.{label}.unavailable{i}" for i in range(outputs)]
    step = StepRecord(kind="fail", node=node.name, inputs=[], outputs=names,
                      message=f"its {label} was not compiled (the input shapes this bundle was compiled for do not fit it): {message}")
    return BlockRecord(inputs=[], steps=[step], outputs=names)


def _loop_step(model, node: onnx.NodeProto, types: ChainMap, ctx: _Context) -> StepRecord:
    inputs = list(node.input) + [""] * (2 - min(len(node.input), 2))
    trip, cond, carried = inputs[0], inputs[1], inputs[2:]
    body = _graph_attr(node, "body")
    where = f"{ctx.model_path}: node '{node.name}' (Loop)"
    if len(body.input) != 2 + len(carried):
        raise HccError(f"{where}: its body has {len(body.input)} inputs; ONNX requires 2 + {len(carried)} (iteration, condition, carried values)")
    for name in (trip, cond):
        if name and types[name].shape is not None and int(np.prod(types[name].shape)) != 1:
            raise HccError(f"{where}: '{name}' has shape {types[name].shape}; a trip count or condition has one element")
    bound = [(body.input[0].name, TensorType("int64", [])), (body.input[1].name, TensorType("bool", []))]
    bound += [(b.name, _require_static(types, c, node, ctx)) for b, c in zip(body.input[2:], carried)]
    block, results = _subgraph_block(model, node, "body", body, types, bound, ctx)
    n = len(carried)
    if len(results) < 1 + n:
        raise HccError(f"{where}: its body has {len(results)} outputs; ONNX requires 1 + {n} and the scan outputs")
    if results[0].dtype != "bool":
        raise HccError(f"{where}: its body's condition output '{body.output[0].name}' is {results[0].dtype}, not bool")
    for (name, before), after, out in zip(bound[2:], results[1:1 + n], body.output[1:1 + n]):
        if not before.same(after):
            raise HccError(f"{where}: loop-carried value '{name}' enters the body as {before.text()} and leaves it as '{out.name}' "
                           f"{after.text()}; compiled code needs a carried value to keep its dtype and shape",
                           hint="export the loop with fixed-size state (pad it), or with a constant trip count so that hcc unrolls it")
    scans = []
    for element, out in zip(results[1 + n:], body.output[1 + n:]):
        if element.shape is None:
            raise HccError(f"{where}: scan output '{out.name}' has a shape only known at run time ({element.why}); its iterations cannot be stacked")
        scans.append(ScanRecord(element.dtype, list(element.shape)))
    if len(node.output) != n + len(scans):
        raise HccError(f"{where}: it has {len(node.output)} outputs; its body gives {n} carried values and {len(scans)} scan outputs")
    for out, (_, before) in zip(node.output[:n], bound[2:]):
        if out:
            types.maps[0][out] = before
    for out, scan in zip(node.output[n:], scans):
        if out:
            types.maps[0][out] = TensorType(scan.dtype, None, f"scan output of Loop '{node.name}': its length is the run-time iteration count")
    return StepRecord(kind="loop", node=node.name, inputs=[trip, cond, *carried], outputs=list(node.output), body=block, scans=scans)
