"""Load an ONNX file, check it, fix its input shapes and infer every tensor's shape, with errors a user can act on."""
from __future__ import annotations

import copy
import hashlib
import os
from dataclasses import dataclass, field

import onnx
from onnx import shape_inference

from hcc.artifacts.manifest import BoundaryRecord
from hcc.errors import HccError
from hcc.frontend.affine_grid import rewrite_affine_grid
from hcc.frontend.boundary import flatten_boundary, parse_input_spec
from hcc.frontend.checks import check_patterns
from hcc.frontend.classical_ml import rewrite_classical_ml
from hcc.frontend.constant_outputs import materialize_constant_outputs
from hcc.frontend.constant_range import fold_constant_ranges
from hcc.frontend.control_flow import (
    CONTROL_FLOW,
    HOST_STEP_OPS,
    check_control_flow,
    inline_known_ifs,
    runtime_control_flow_allowed,
)
from hcc.frontend.conv1d import restate_conv1d
from hcc.frontend.deform_conv import rewrite_deform_conv
from hcc.frontend.dft import explicit_stft_defaults
from hcc.frontend.fold import fold_constants
from hcc.frontend.functions import Expansion, expand_functions
from hcc.frontend.fuse_batchnorm import fuse_batchnorm
from hcc.frontend.gemm_weights import pretranspose_gemm_weights
from hcc.frontend.integrity import check_dims, check_initializers, check_text
from hcc.frontend.lowbit import ELEMENT_NAMES, rewrite_lowbit
from hcc.frontend.lp_pool import rewrite_lp_pool
from hcc.frontend.lstm_steps import write_out_lstm_steps
from hcc.frontend.names import name_nodes
from hcc.frontend.ops import SUPPORTED_OPS, check_supported, to_supported_opset
from hcc.frontend.quantized import rewrite_quantized
from hcc.frontend.recurrent import split_directions
from hcc.frontend.resize_matrix import restate_resizes
from hcc.frontend.rewrites import apply_rewrites
from hcc.frontend.sequences import rewrite_sequences
from hcc.frontend.unroll import unroll_known_loops
from hcc.frontend.unsigned import widen_unsigned
from hcc.frontend.upsampling import restate_upsampling
from hcc.frontend.zipmap import strip_zipmaps

SHAPES_DO_NOT_FIT = "shape inference failed"  # the start of _infer's message (program.py: an If branch that cannot run)
FOLD_ROUNDS = 16  # constant folding then shape inference, until nothing more folds
CONTROL_FLOW_ROUNDS = 8  # nesting depth of If/Scan/Loop that compile-time decisions and unrolling go through

# ONNX element type -> numpy dtype name, for the types hcc moves across the runtime boundary.
ONNX_TO_NUMPY = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.DOUBLE: "float64",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.UINT16: "uint16",  # computed widened or as bit patterns (frontend/unsigned.py)
    onnx.TensorProto.UINT32: "uint32",
    onnx.TensorProto.UINT64: "uint64",
    onnx.TensorProto.BOOL: "bool",
}


@dataclass
class ValueInfo:
    name: str
    dtype: str
    shape: list[int]  # concrete, after --input-shape and shape inference
    symbolic_shape: list[int | str]  # as declared by the model (dim_param names for dynamic dims)
    element_type: str | None = None  # a type numpy lacks, carried as `dtype` (frontend/lowbit.py): its ml_dtypes name
    zipmap_keys: list | None = None  # an output ZipMap made a sequence of maps: its class labels (frontend/zipmap.py)


@dataclass
class LoadedModel:
    path: str
    sha256: str
    model: onnx.ModelProto  # checked, inputs fixed to concrete shapes, shapes inferred
    inputs: list[ValueInfo]  # real inputs (initializers excluded)
    outputs: list[ValueInfo]
    expanded: list[Expansion] = field(default_factory=list)  # nodes replaced by their op's ONNX function body
    # inputs/outputs of 8-/4-bit float, bfloat16 or 4-/2-bit integer type, carried as their storage dtype
    # (frontend/lowbit.py): name -> the ONNX type's ml_dtypes name, which the manifest records as element_type
    element_types: dict[str, str] = field(default_factory=dict)
    # outputs that ended in a ZipMap (frontend/zipmap.py): name -> class labels; computed as the score matrix
    zipmaps: dict[str, list] = field(default_factory=dict)
    quantized: bool = False  # it held quantized integer ops or QDQ groups (frontend/quantized.py rewrote them)
    # sequence / optional inputs and outputs flattened into the tensors of `inputs` / `outputs` (frontend/boundary.py):
    # which tensors form which model value; None when every input and output is a tensor
    boundary: BoundaryRecord | None = None

    @property
    def notes(self) -> list[str]:
        """What the loader did to the model that a user should know (printed by `hcc compile`)."""
        return [e.note() for e in self.expanded]

    @property
    def name(self) -> str:
        return self.model.graph.name or os.path.splitext(os.path.basename(self.path))[0]


def parse_shape_options(specs: list[str] | tuple[str, ...]) -> dict[str, list[int] | list[list[int]] | None]:
    """Parse repeated `name=1x3x224x224` options; the name may itself contain '=' only before the last one. A sequence
    input: `name=[2x3,4x3]` or `name=[2x3]*4` (a list of element shapes); an absent optional input: `name=none`
    (None); a present optional: its element's declaration (frontend/boundary.py)."""
    shapes: dict[str, list[int] | list[list[int]] | None] = {}
    for spec in specs:
        name, sep, dims = spec.partition("=[") if "=[" in spec else spec.rpartition("=")
        if sep == "=[":
            dims = "[" + dims
        if not sep or not name:
            raise HccError(f"--input-shape {spec!r}: expected NAME=D1xD2x... (e.g. x=1x3x224x224; NAME= for a scalar)")
        shapes[name] = parse_input_spec(name, dims, spec)
    return shapes


def _declared_shape(value: onnx.ValueInfoProto) -> list[int | str]:
    dims: list[int | str] = []
    for d in value.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        else:
            dims.append(d.dim_param or "?")
    return dims


def _dtype_of(value: onnx.ValueInfoProto, what: str, declared_types: dict[str, int] | None = None) -> str:
    if not value.type.HasField("tensor_type"):
        raise HccError(f"{what} '{value.name}' is not a tensor (sequences, maps and optionals are not supported)")
    elem = (declared_types or {}).get(value.name, value.type.tensor_type.elem_type)
    if elem not in ONNX_TO_NUMPY:
        raise HccError(f"{what} '{value.name}' has element type {onnx.TensorProto.DataType.Name(elem)}, which hcc does not support")
    return ONNX_TO_NUMPY[elem]


def _read(path: str) -> tuple[onnx.ModelProto, str]:
    if not os.path.exists(path):
        raise HccError(f"{path}: no such file")
    if os.path.isdir(path):
        raise HccError(f"{path}: is a directory, expected an .onnx file")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise HccError(f"{path}: the file is empty")
    digest = hashlib.sha256(data).hexdigest()
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError (or RuntimeWarning-ish errors) on garbage
        raise HccError(f"{path}: not a valid ONNX file (truncated or corrupt protobuf: {exc})") from None
    if not model.HasField("graph") or not model.opset_import:
        raise HccError(f"{path}: not a valid ONNX model (no graph or no opset_import; truncated or not ONNX?)")
    try:
        onnx.load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
    except Exception as exc:
        raise HccError(f"{path}: cannot load the model's external weight data: {exc}") from None
    return model, digest


def _infer(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    """Strict shape inference with data propagation; a failure (also after a rewrite or a folding round: a branch
    that cannot hold the compiled shapes) is one HccError naming the file, not the checker's exception."""
    try:
        return shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        message = str(exc).strip().replace("\n", " ")
        raise HccError(f"{path}: {SHAPES_DO_NOT_FIT}: {message}") from None


def negative_dims_as_dynamic(model: onnx.ModelProto) -> int:
    """A negative dim_value (paddle2onnx writes -1 for a dynamic batch: PP-OCR's angle classifier) becomes an
    unnamed dynamic dim, as onnxruntime reads it, on the graph's inputs, outputs and value_info; returns how many."""
    count = 0
    for value in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        for d in value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else ():
            if d.HasField("dim_value") and d.dim_value < 0:
                d.Clear()
                count += 1
    return count


def _fix_input_shapes(model: onnx.ModelProto, path: str, shapes: dict[str, list[int]]) -> None:
    initializer_names = {init.name for init in model.graph.initializer}
    real_inputs = [v for v in model.graph.input if v.name not in initializer_names]
    known = {v.name for v in real_inputs}
    for name in shapes:
        if name not in known:
            raise HccError(f"--input-shape names '{name}', which is not an input of {path} (inputs: {', '.join(sorted(known))})")
    missing = []
    for value in real_inputs:
        declared = _declared_shape(value)
        if not value.type.tensor_type.HasField("shape"):
            declared = None
        given = shapes.get(value.name)
        if value.name in shapes and (given is None or any(not isinstance(d, int) for d in given)):
            raise HccError(f"--input-shape {value.name}: '{value.name}' is a tensor input, so it takes NAME=D1xD2x... "
                           "(a list of shapes or none is for sequence and optional inputs)")
        if given is not None:
            if declared is not None:
                if len(given) != len(declared):
                    raise HccError(f"--input-shape {value.name}={'x'.join(map(str, given))}: rank {len(given)}, "
                                   f"but the model declares rank {len(declared)} {declared}")
                for g, d in zip(given, declared):
                    if isinstance(d, int) and d != g:
                        raise HccError(f"--input-shape {value.name}={'x'.join(map(str, given))} disagrees with the model's static shape {declared}")
            tensor_type = value.type.tensor_type
            tensor_type.ClearField("shape")
            tensor_type.shape.SetInParent()
            for g in given:
                tensor_type.shape.dim.add().dim_value = g
        elif declared is None or any(not isinstance(d, int) for d in declared):
            missing.append((value.name, declared))
    if missing:
        found = "; ".join(f"{name} {declared if declared is not None else '(no shape)'}" for name, declared in missing)
        example = " ".join(f"--input-shape {name}={_shape_example(declared)}" for name, declared in missing)
        raise HccError(f"{path}: input(s) with dynamic or unknown dimensions need a concrete shape: {found}",
                       hint=f"compile for a concrete shape with --input-shape NAME=D1xD2x... (repeatable), e.g. {example}")


def _shape_example(declared: list | None) -> str:
    """A --input-shape value for the hint: the model's own sizes, 1 for a batch dimension, the name of any other
    symbolic one (for the user to replace)."""
    if declared is None:
        return "D1xD2x..."
    batch = {"batch", "batch_size", "n", "b", "bs", "?"}
    return "x".join(str(d) if isinstance(d, int) else "1" if i == 0 and str(d).lower() in batch else str(d).upper()
                    for i, d in enumerate(declared))


def load_model(path: str, input_shapes: dict[str, list[int]] | None = None) -> LoadedModel:
    """Read, check and shape-infer a model; raises HccError for anything a user must fix."""
    path = os.fspath(path)
    model, digest = _read(path)
    check_text(model, path)
    negative_dims_as_dynamic(model)
    zipmaps = strip_zipmaps(model, path)  # an output's sequence of maps: the score matrix, zipped by the runtime
    fold_constant_ranges(model)  # before the two steps that refuse a bfloat16 / float16 Range (constant_range.py)
    # first: the opset converter refuses the newest of these types; they become storage bytes and INT32 codes
    lowbit_types = rewrite_lowbit(model, path)
    # ops ONNX defines by a function body that hcc has no lowering for: the body's nodes, before the opset
    # conversion (Attention, RMSNormalization, Swish are newer than opset 22; their bodies are not)
    model = rewrite_affine_grid(model, path)  # of a constant size: one MatMul against a constant grid (affine_grid.py)
    model = rewrite_deform_conv(model, path)  # 2-D, static shapes: GridSample + MatMul (deform_conv.py)
    model = rewrite_lp_pool(model, path)  # with dilations or SAME padding: a depthwise Conv of |x|^p (lp_pool.py)
    model, expanded = expand_functions(model, path, SUPPORTED_OPS)
    model = to_supported_opset(model, path)  # a newer opset is converted down to one hcc compiles
    # sequence / optional inputs as tensors, optionals of known presence resolved (frontend/boundary.py); then
    # sequences of compile-time positions as tensor ops, sequence outputs as their elements (frontend/sequences.py)
    boundary, input_shapes = flatten_boundary(model, path, dict(input_shapes or {}))
    model = rewrite_sequences(model, path, boundary)
    if not model.graph.output:  # e.g. an Identity of an absent optional input: a bundle of no code (not built)
        raise HccError(f"{path}: every output of the model is an absent optional for these inputs, so there is "
                       "nothing to compile; hcc compiles models with at least one output that exists")
    explicit_stft_defaults(model)  # onnx's shape inference misreads STFT's default onesided (frontend/dft.py)
    # before the checker: list every unsupported op even in an otherwise odd graph (control flow: after folding)
    _check_supported(model, path, expanded)
    try:
        onnx.checker.check_model(model, full_check=False)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "validation failed"
        raise HccError(f"{path}: invalid ONNX graph: {first}") from None
    check_initializers(model, path)
    declared = {v.name: _declared_shape(v) for v in list(model.graph.input) + list(model.graph.output)}
    _fix_input_shapes(model, path, input_shapes or {})
    for value in model.graph.input:  # before shape inference spreads a negative or huge dimension
        check_dims([d for d in _declared_shape(value) if isinstance(d, int)], f"{path}: input '{value.name}'")
    model = _infer(model, path)
    name_nodes(model)
    if rewrite_classical_ml(model, path):  # ai.onnx.ml nodes into default-domain ops (frontend/classical_ml.py)
        model = _infer(model, path)
    # Before folding, which would turn the DequantizeLinear of a constant weight into float weights: QDQ groups fused
    # as onnxruntime fuses them, then every quantized op rewritten into exact float/integer ops (frontend/quantized.py).
    quantized = bool(rewrite_quantized(model, path))
    if quantized:
        model = _infer(model, path)
    # rounds: folded shape arithmetic gives later Reshapes static shapes, whose own Shape nodes then fold (paddle2onnx
    # graphs; an opset-11 Softmax converted to 13 restores its shape through Shape -> Reshape)
    for round_ in range(FOLD_ROUNDS):
        before = copy.deepcopy(model) if round_ else None
        if not fold_constants(model):
            break
        try:
            model = _infer(model, path)
        except HccError:  # a later round's inference can fail where the earlier ones passed (shapes that cannot
            if before is None:  # hold show once their arithmetic folds): keep the last round that inferred; a failure
                raise           # of the first round is the model's (program.py: an If branch that cannot run)
            model = before
            break
    # an If whose condition folding made a constant becomes its branch (control_flow.py); a Scan or Loop with a
    # compile-time trip count, its unrolled body (unroll.py); rounds, since a branch or body may hold more of them
    for _ in range(CONTROL_FLOW_ROUNDS):
        if not inline_known_ifs(model) + unroll_known_loops(model, path):
            break
        name_nodes(model)
        check_supported(model, path, deferred=_deferred_ops())  # the branches' and bodies' ops
        check_initializers(model, path)
        model = _infer(model, path)
        if fold_constants(model):
            model = _infer(model, path)
    check_control_flow(model, path)
    fuse_batchnorm(model)  # after folding: BN parameters computed from Constant chains are constants by now
    if apply_rewrites(model, path):  # around torch-mlir conversions known to be wrong (frontend/rewrites.py)
        model = _infer(model, path)
    if restate_upsampling(model):  # nearest Resize / ConvTranspose as a broadcast / a 1x1 conv (frontend/upsampling.py)
        model = _infer(model, path)
    if restate_conv1d(model):  # 1-D Conv as a 2-D one over a height of 1: the 2-D kernels take it (frontend/conv1d.py)
        model = _infer(model, path)
    if restate_resizes(model):  # cubic / antialiased / cropping / align_corners Resize as matrices (resize_matrix.py)
        model = _infer(model, path)
    if split_directions(model):  # reverse / bidirectional GRU, RNN, reverse LSTM as forward ones (frontend/recurrent.py)
        model = _infer(model, path)
    if write_out_lstm_steps(model):  # an LSTM with peepholes, clip or other activations as its steps (lstm_steps.py)
        model = _infer(model, path)
    materialize_constant_outputs(model)  # a constant model output: an Identity of it, which the compiled code writes
    check_patterns(model, path)  # patterns that would compile to a wrong result or a crash (frontend/checks.py)
    pretranspose_gemm_weights(model)  # after BN folding, which may scale a Gemm's weight
    # last: UINT16/32/64 values into exact signed representations; the boundary keeps the storage bytes
    declared_types = widen_unsigned(model, path)
    if declared_types:
        model = shape_inference.infer_shapes(model, data_prop=True)  # BitShift on a signed type: not strict

    initializer_names = {init.name for init in model.graph.initializer}
    inputs, outputs = [], []
    for value in model.graph.input:
        if value.name in initializer_names:
            continue
        concrete = [int(d) for d in _declared_shape(value)]
        inputs.append(ValueInfo(value.name, _dtype_of(value, "input", declared_types), concrete, declared[value.name]))
    for value in model.graph.output:
        # Output shapes may stay symbolic here; the lowered function's signature gives the concrete ones.
        shape = [d if isinstance(d, int) else -1 for d in _declared_shape(value)]
        outputs.append(ValueInfo(value.name, _dtype_of(value, "output", declared_types), shape, declared.get(value.name, [])))
    element_types = {name: ELEMENT_NAMES[elem] for name, elem in lowbit_types.items()}
    for info in inputs + outputs:
        info.element_type = element_types.get(info.name)
        info.zipmap_keys = zipmaps.get(info.name)
    return LoadedModel(path=path, sha256=digest, model=model, inputs=inputs, outputs=outputs, expanded=expanded,
                       element_types=element_types, zipmaps=zipmaps, quantized=quantized, boundary=boundary.record())


def _deferred_ops() -> tuple[str, ...]:
    """Op types check_supported leaves for later: control flow (folded, unrolled, or a program step), and, where the
    caller compiles programs (control_flow.runtime_control_flow), the ops the runtime runs on the host."""
    return CONTROL_FLOW + (HOST_STEP_OPS if runtime_control_flow_allowed() else ())


def _check_supported(model: onnx.ModelProto, path: str, expanded: list[Expansion]) -> None:
    """check_supported, whose error also says which nodes came from function bodies (named `<node>/...`)."""
    try:
        check_supported(model, path, deferred=_deferred_ops())
    except HccError as exc:
        if not expanded:
            raise
        ops = ", ".join(sorted({f"'{e.node}' ({e.op_type})" for e in expanded}))
        raise HccError(f"{exc.message}\n  (nodes named '<node>/...' come from the ONNX function bodies of {ops})",
                       hint=exc.hint) from None
