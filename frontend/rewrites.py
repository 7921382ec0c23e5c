"""Graph rewrites that route around torch-mlir conversions known to be wrong or to fail, at the ONNX level.

Why here: the fix is a few ONNX nodes with the op's exact semantics, which every backend then compiles; patching
the converter's output would have to be done per backend and per torch-mlir release.

* Gelu with approximate='tanh': torch-mlir's conversion uses 0.797724 for sqrt(2/pi) (0.7978846), a relative error
  of 2e-4 in tanh's argument (node suite: test_gelu_tanh_2 was off by 1.4e-5). It is replaced by the op's ONNX
  function body, 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), which elementwise fusion turns back into
  one loop.
* LpNormalization: torch-mlir divides by the norm unconditionally, so an all-zero slice gives 0/0 = NaN where
  onnxruntime and the ONNX reference give 0 (node suite: test_l2normalization_axis_0). It is replaced by
  Where(norm == 0, 0, x / norm), with the norm from ReduceSumSquare + Sqrt (p=2) or ReduceL1 (p=1).
* Hardmax: torch-mlir's conversion takes an argmax, so a row whose maximum is NaN gets a one where onnxruntime
  (which compares every element with Eigen's row maximum) gives all zeros. It is replaced by ReduceMax, Equal,
  ArgMax, OneHot and a mask, which keep onnxruntime's NaN rules (passes/nan_semantics.py handles the ReduceMax).
* Cast (and CastLike) from a float type to uint8: torch-mlir converts it with `arith.fptosi` to i8, which
  saturates at 127 in vectorized code (200.0 became 127). It is replaced by a Cast to int32 and one to uint8, which
  keeps 0..255 and wraps like onnxruntime's static_cast on x86 (300.0 -> 44, -1.0 -> 255).
* MaxPool and Clip of uint8 tensors: torch-mlir compares them as signed bytes (200 < 100), so a uint8 maximum or
  bound came out wrong. They are computed in float32 (exact for 8-bit values; MaxPool's padding stays -inf) and
  cast back through int32, as above.
* Expand whose shape operand has fewer dimensions than the input (bidirectional broadcasting): torch-mlir
  lowers Expand to aten.broadcast_to, which requires the target shape to cover the input's rank. With static shapes
  the output shape is known, so the constant shape operand is replaced by it (the same broadcast, stated in full).
* CumSum: torch-mlir lowers it to a TMTensor scan the linalg pipeline cannot legalize; it is written as a log-step
  scan of Slice, Concat and Add (frontend/cumsum.py).
* Dropout (inference: training_mode absent or a constant false, or ratio 0): y = x and an all-true mask computed
  from x; torch-mlir's conversion fails on the mask output and before opset 12. Training mode is refused (random).
* Resize with `axes` or keep_aspect_ratio_policy (opset 18 attributes torch-mlir does not convert): the same Resize
  with full-rank scales or sizes.
* Slice with a negative step (the CPU backend's loops reject the negative offsets): a Gather of the exact indices.
* Einsum "->" of a scalar (not compiled for rank 0): Identity.
* ConvTranspose with auto_pad SAME_* or group > 1 (not converted / a wrong-rank collapse_shape): explicit pads, one
  ConvTranspose per group (frontend/conv_transpose.py).
* MaxPool's Indices output: torch-mlir's are within each (n, c) plane (wrong for a batch or channels > 1): the
  plane offsets are added, and storage_order=1 is converted with integer Div/Mod; forms whose indices are in other
  coordinates (uneven pads, ceil_mode, dilations, auto_pad) are refused.
* Pad with mode 'wrap' (no torch-mlir conversion): Concat of the tensor's own slices, axis by axis.
* MatMul with one 1-D operand and one of rank >= 2: torch-mlir's aten.matmul fails; the vector is reshaped to a
  matrix and the result to the op's output shape (numpy's rules, stated with static shapes).
* ScatterElements, ScatterND: lowered by torch-mlir to TMTensor scatters, likewise; written as Equal masks against
  index ramps with Where and Gather (frontend/scatter.py).
* GridSample (no lowering in hcc): coordinate arithmetic, GatherElements and weighted sums, as onnx.reference
  computes it (frontend/grid_sample.py).
* Col2Im with constant image and block shapes: strided placements of each kernel tap, added (frontend/col2im.py).
* DFT: MatMuls with constant cosine and sine matrices; STFT: a Gather of the frames, the window, and those
  (frontend/dft.py).
* MaxUnpool: a ScatterND of the flattened input into zeros (frontend/max_unpool.py).
* Compress with a constant condition: a Gather of the selected positions (frontend/compress.py).
* Integer Div and Mod by a divisor that may be 0, or -1 for a signed type (not a constant without them): x86's idiv
  traps on a zero divisor and on the most negative value / -1, which killed the calling process (SIGFPE;
  onnxruntime raises an error for the first); the result is 0 where the divisor is 0 (numpy's integer result) and
  -a (wrapping) / 0 for Div / Mod by -1, so the run completes.
* TopK: lowered by torch-mlir to a TMTensor sort, likewise; it is written as ranks from pairwise comparisons
  (frontend/topk.py).

`apply_rewrites` runs in `loader.load_model` after constant folding; the caller re-runs shape inference when it
returns a non-zero count (the new nodes' intermediate tensors have no shapes yet).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.errors import HccError
from hcc.frontend.attributes import attr_text, attr_value
from hcc.frontend.checks import constant_tensors, static_shape
from hcc.frontend.col2im import col2im_nodes
from hcc.frontend.compress import compress_nodes
from hcc.frontend.conv_transpose import explicit_pads, split_groups
from hcc.frontend.cumsum import cumsum_nodes
from hcc.frontend.det import det_nodes
from hcc.frontend.dft import dft_nodes, stft_nodes
from hcc.frontend.grid_sample import grid_sample_nodes
from hcc.frontend.max_unpool import max_unpool_nodes
from hcc.frontend.roi_align import roi_align_nodes
from hcc.frontend.scatter import scatter_elements_nodes, scatter_nd_nodes
from hcc.frontend.topk import topk_nodes

GELU_COEFFICIENT = 0.044715
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    types.update({init.name: init.data_type for init in graph.initializer})
    return types


def _is_tanh_gelu(node: onnx.NodeProto) -> bool:
    approximate = next((a.s for a in node.attribute if a.name == "approximate"), b"none")
    return node.op_type == "Gelu" and node.domain in ("", "ai.onnx") and approximate == b"tanh"


def _gelu_tanh_nodes(node: onnx.NodeProto, elem_type: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Gelu(x, approximate='tanh') as its function body; the last node keeps the Gelu's name and output."""
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    prefix, x, y = node.name, node.input[0], node.output[0]
    consts = {"c": GELU_COEFFICIENT, "k": SQRT_2_OVER_PI, "one": 1.0, "half": 0.5}
    inits = [numpy_helper.from_array(np.array(v, dtype=dtype), f"{prefix}/{k}") for k, v in consts.items()]
    t = {k: f"{prefix}/{k}_out" for k in ("x2", "x3", "cx3", "inner", "u", "tanh", "onep", "hx")}
    c = {k: f"{prefix}/{k}" for k in consts}
    nodes = [
        helper.make_node("Mul", [x, x], [t["x2"]], name=f"{prefix}/x2"),
        helper.make_node("Mul", [t["x2"], x], [t["x3"]], name=f"{prefix}/x3"),
        helper.make_node("Mul", [t["x3"], c["c"]], [t["cx3"]], name=f"{prefix}/cx3"),
        helper.make_node("Add", [x, t["cx3"]], [t["inner"]], name=f"{prefix}/inner"),
        helper.make_node("Mul", [t["inner"], c["k"]], [t["u"]], name=f"{prefix}/u"),
        helper.make_node("Tanh", [t["u"]], [t["tanh"]], name=f"{prefix}/tanh"),
        helper.make_node("Add", [t["tanh"], c["one"]], [t["onep"]], name=f"{prefix}/onep"),
        helper.make_node("Mul", [x, c["half"]], [t["hx"]], name=f"{prefix}/hx"),
        helper.make_node("Mul", [t["hx"], t["onep"]], [y], name=prefix),
    ]
    return nodes, inits


def _lp_normalization_nodes(node: onnx.NodeProto, elem_type: int, opset: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """LpNormalization(x) as x / norm, and 0 where the norm is 0; the last node keeps the op's name and output."""
    prefix, x, y = node.name, node.input[0], node.output[0]
    axis, p = attr_value(node, "axis", -1), attr_value(node, "p", 2)
    zero = numpy_helper.from_array(np.array(0, dtype=helper.tensor_dtype_to_np_dtype(elem_type)), f"{prefix}/zero")
    inits = [zero]
    reduce_op = "ReduceSumSquare" if p == 2 else "ReduceL1"
    reduce_inputs, reduce_attrs = [x], {"axes": [axis]}
    if opset >= 18:  # axes became an input of the Reduce ops in opset 18
        inits.append(numpy_helper.from_array(np.array([axis], dtype=np.int64), f"{prefix}/axes"))
        reduce_inputs, reduce_attrs = [x, f"{prefix}/axes"], {}
    reduced = f"{prefix}/reduced_out"
    norm = f"{prefix}/norm_out" if p == 2 else reduced
    nodes = [helper.make_node(reduce_op, reduce_inputs, [reduced], name=f"{prefix}/reduce", keepdims=1, **reduce_attrs)]
    if p == 2:
        nodes.append(helper.make_node("Sqrt", [reduced], [norm], name=f"{prefix}/sqrt"))
    nodes += [
        helper.make_node("Div", [x, norm], [f"{prefix}/div_out"], name=f"{prefix}/div"),
        helper.make_node("Equal", [norm, zero.name], [f"{prefix}/is_zero_out"], name=f"{prefix}/is_zero"),
        helper.make_node("Where", [f"{prefix}/is_zero_out", zero.name, f"{prefix}/div_out"], [y], name=prefix),
    ]
    return nodes, inits


def _hardmax_nodes(node: onnx.NodeProto, elem_type: int, opset: int, shape: list[int]) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Hardmax as onnxruntime computes it: the row's maximum by Eigen's rowwise max (hcc's ReduceMax over the last
    axis has its NaN rules, passes/nan_semantics.py), then a one at the first element equal to it, and none at all
    when no element is (a NaN maximum): y = OneHot(ArgMax(x == max)) * ReduceMax(x == max). Rows lie along the last
    axis: the axis is moved there (opset 13+) or the trailing dims are flattened into it (before 13)."""
    prefix, x, y = node.name, node.input[0], node.output[0]
    rank, axis = len(shape), attr_value(node, "axis", -1 if opset >= 13 else 1)
    axis %= rank
    dtype = helper.tensor_dtype_to_np_dtype(elem_type)
    t = {k: f"{prefix}/{k}_out" for k in ("rows", "max", "eq", "eqf", "first", "onehot", "any", "y2")}
    inits = [numpy_helper.from_array(np.array(np.prod(shape[axis:]) if opset < 13 else shape[axis], np.int64), f"{prefix}/depth"),
             numpy_helper.from_array(np.array([0, 1], dtype), f"{prefix}/values")]
    nodes, perm = [], None
    if opset < 13:
        inits.append(numpy_helper.from_array(np.array([int(np.prod(shape[:axis])), -1], np.int64), f"{prefix}/rows_shape"))
        inits.append(numpy_helper.from_array(np.array(shape, np.int64), f"{prefix}/shape"))
        nodes.append(helper.make_node("Reshape", [x, f"{prefix}/rows_shape"], [t["rows"]], name=f"{prefix}/rows"))
    elif axis != rank - 1:
        perm = [d for d in range(rank) if d != axis] + [axis]
        nodes.append(helper.make_node("Transpose", [x], [t["rows"]], name=f"{prefix}/rows", perm=perm))
    else:
        t["rows"] = x
    reduce_attrs: dict = {"keepdims": 1}
    reduce_axes: list[str] = []
    if opset >= 18:
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), f"{prefix}/axes"))
        reduce_axes = [f"{prefix}/axes"]
    else:
        reduce_attrs["axes"] = [-1]
    nodes += [
        helper.make_node("ReduceMax", [t["rows"], *reduce_axes], [t["max"]], name=f"{prefix}/max", **reduce_attrs),
        helper.make_node("Equal", [t["rows"], t["max"]], [t["eq"]], name=f"{prefix}/eq"),
        helper.make_node("Cast", [t["eq"]], [t["eqf"]], name=f"{prefix}/eqf", to=elem_type),
        helper.make_node("ArgMax", [t["eqf"]], [t["first"]], name=f"{prefix}/first", axis=-1, keepdims=0),
        helper.make_node("OneHot", [t["first"], f"{prefix}/depth", f"{prefix}/values"], [t["onehot"]], name=f"{prefix}/onehot", axis=-1),
        helper.make_node("ReduceMax", [t["eqf"], *reduce_axes], [t["any"]], name=f"{prefix}/any", **reduce_attrs),
    ]
    if opset < 13:
        nodes += [helper.make_node("Mul", [t["onehot"], t["any"]], [t["y2"]], name=f"{prefix}/mask"),
                  helper.make_node("Reshape", [t["y2"], f"{prefix}/shape"], [y], name=prefix)]
    elif perm is not None:
        inverse = [perm.index(d) for d in range(rank)]
        nodes += [helper.make_node("Mul", [t["onehot"], t["any"]], [t["y2"]], name=f"{prefix}/mask"),
                  helper.make_node("Transpose", [t["y2"]], [y], name=prefix, perm=inverse)]
    else:
        nodes.append(helper.make_node("Mul", [t["onehot"], t["any"]], [y], name=prefix))
    return nodes, inits


def _full_expand_shape(node: onnx.NodeProto, shapes: dict[str, list[int] | None],
                       constants: dict[str, np.ndarray]) -> list[int] | None:
    """The output shape to use as Expand's shape operand, when it differs from the (constant) one given."""
    if node.op_type != "Expand" or len(node.input) < 2 or node.input[1] not in constants:
        return None
    out_shape = shapes.get(node.output[0])
    if out_shape is None or constants[node.input[1]].tolist() == out_shape:
        return None
    return out_shape


FLOAT_ELEM_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}


def _float_to_uint8_cast(node: onnx.NodeProto, types: dict[str, int]):
    """Cast/CastLike from a float type to uint8, as a cast to int32 and one to uint8 (see the module docstring)."""
    if node.op_type == "Cast":
        target = attr_value(node, "to", 0)
    elif node.op_type == "CastLike" and len(node.input) > 1:
        target = types.get(node.input[1], 0)
    else:
        return None
    if target != onnx.TensorProto.UINT8 or types[node.input[0]] not in FLOAT_ELEM_TYPES:
        return None
    return _to_uint8_through_int32(node, node.input[0]), []


def _to_uint8_through_int32(node: onnx.NodeProto, value: str) -> list[onnx.NodeProto]:
    """The float `value` as `node`'s uint8 output: a Cast to int32, then one to uint8 (the last keeps the node's name)."""
    wide = f"{node.name}/int32_out"
    return [helper.make_node("Cast", [value], [wide], name=f"{node.name}/int32", to=onnx.TensorProto.INT32),
            helper.make_node("Cast", [wide], [node.output[0]], name=node.name, to=onnx.TensorProto.UINT8)]


def _uint8_order_nodes(node: onnx.NodeProto, types: dict[str, int]):
    """MaxPool (values only) and Clip of uint8 tensors, computed in float32 (exact for 8-bit values) and cast back
    through int32 (see the module docstring)."""
    if types.get(node.input[0]) != onnx.TensorProto.UINT8 or (node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]):
        return None
    nodes = []
    inputs = []
    for index, name in enumerate(node.input):
        if not name:
            inputs.append(name)
            continue
        inputs.append(f"{node.name}/float_{index}")
        nodes.append(helper.make_node("Cast", [name], [inputs[-1]], name=f"{node.name}/to_float_{index}", to=onnx.TensorProto.FLOAT))
    computed = f"{node.name}/float_out"
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    nodes.append(helper.make_node(node.op_type, inputs, [computed], name=f"{node.name}/float", **attrs))
    return nodes + _to_uint8_through_int32(node, computed), []


@dataclass
class _Facts:
    """What the rewrites read about the graph: element types, static shapes, constant operands."""

    types: dict[str, int]
    shapes: dict[str, list[int] | None]
    constants: dict[str, np.ndarray]  # 1-D initializers
    scalars: dict[str, np.ndarray]  # one-element initializers (as 1-D), not overridable inputs
    opset: int
    path: str
    safe_divisors: frozenset[str] = frozenset()  # integer constants no division traps on (_safe_divisors)


def _expansion(node: onnx.NodeProto, facts: _Facts):
    """(nodes, initializers) replacing `node`, or None when it is kept."""
    types, shapes, opset, scalars, path = facts.types, facts.shapes, facts.opset, facts.scalars, facts.path
    if node.domain not in ("", "ai.onnx") or not node.input or node.input[0] not in types:
        return None
    x_shape = shapes.get(node.input[0])
    if node.op_type == "CumSum" and x_shape:
        return cumsum_nodes(node, types[node.input[0]], x_shape, _int_scalar(scalars, node.input[1]))
    if node.op_type == "TopK" and x_shape:
        return topk_nodes(node, types[node.input[0]], x_shape, _int_scalar(scalars, node.input[1]), opset, path)
    if node.op_type in ("ScatterElements", "ScatterND") and x_shape and shapes.get(node.input[1]) is not None:
        build = scatter_elements_nodes if node.op_type == "ScatterElements" else scatter_nd_nodes
        return build(node, x_shape, shapes[node.input[1]], opset, path)
    if node.op_type == "Compress" and x_shape:
        return compress_nodes(node, x_shape, _constant(facts, node.input[1]), path)
    if node.op_type == "GridSample" and x_shape and shapes.get(node.input[1]):
        return grid_sample_nodes(node, types[node.input[0]], x_shape, shapes[node.input[1]], path)
    if node.op_type == "Col2Im" and x_shape and len(node.input) > 2:
        return col2im_nodes(node, x_shape, _constant(facts, node.input[1]), _constant(facts, node.input[2]), path)
    if node.op_type == "RoiAlign" and x_shape and len(node.input) > 2:
        return roi_align_nodes(node, types[node.input[0]], x_shape, shapes.get(node.input[1]), opset, path)
    if node.op_type == "Det" and x_shape:
        return det_nodes(node, types[node.input[0]], x_shape, path)
    if node.op_type == "DFT" and x_shape:
        return dft_nodes(node, types[node.input[0]], x_shape, opset, {**facts.constants, **facts.scalars}, path)
    if node.op_type == "MaxUnpool" and x_shape:
        output_shape = _constant(facts, node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return max_unpool_nodes(node, types[node.input[0]], x_shape, output_shape, opset, path)
    if node.op_type == "STFT" and x_shape:
        window = shapes.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        return stft_nodes(node, types[node.input[0]], x_shape, window, {**facts.constants, **facts.scalars}, path)
    if node.op_type == "Dropout":
        return _dropout_nodes(node, scalars, opset, path)
    if node.op_type in ("Div", "Mod") and types.get(node.input[1]) in INTEGER_TYPES and node.input[1] not in facts.safe_divisors:
        return _guarded_division(node, types[node.input[1]])
    if node.op_type == "Resize" and x_shape and _has_attr(node, ("axes", "keep_aspect_ratio_policy")):
        return _full_rank_resize(node, x_shape, facts.constants, path)
    if node.op_type == "ConvTranspose" and x_shape and shapes.get(node.input[1]):
        return _conv_transpose_nodes(node, x_shape, shapes[node.input[1]], opset)
    if node.op_type == "MaxPool" and x_shape and len(x_shape) == 4 and len(node.output) > 1 and node.output[1]:
        return _max_pool_indices(node, x_shape, path)
    if node.op_type == "Pad" and x_shape and attr_text(node, "mode", "constant") == "wrap":
        return _wrap_pad_nodes(node, x_shape, facts.constants)
    if node.op_type == "Slice" and x_shape and len(node.input) > 4 and node.input[4] in facts.constants \
            and (facts.constants[node.input[4]] < 0).any():
        return _negative_step_slice(node, x_shape, facts.constants)
    if node.op_type == "Einsum" and len(node.input) == 1 and shapes.get(node.input[0]) == [] \
            and attr_text(node, "equation", "").replace(" ", "") == "->":
        return [helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name)], []
    if node.op_type == "MatMul" and 1 in (len(shapes.get(n) or [0, 0]) for n in node.input):
        return _vector_matmul_nodes(node, shapes)
    if node.op_type in ("Cast", "CastLike"):
        return _float_to_uint8_cast(node, types)
    if node.op_type in ("MaxPool", "Clip"):
        return _uint8_order_nodes(node, types)
    if node.op_type == "Hardmax" and shapes.get(node.input[0]):
        return _hardmax_nodes(node, types[node.input[0]], opset, shapes[node.input[0]])
    if _is_tanh_gelu(node):
        return _gelu_tanh_nodes(node, types[node.input[0]])
    if node.op_type == "LpNormalization" and attr_value(node, "p", 2) in (1, 2):
        return _lp_normalization_nodes(node, types[node.input[0]], opset)
    return None


def _constant(facts: _Facts, name: str) -> np.ndarray | None:
    """The value of a 1-D or one-element initializer."""
    value = facts.constants.get(name)
    return value if value is not None else facts.scalars.get(name)


def _int_scalar(scalars: dict[str, np.ndarray], name: str) -> int | None:
    value = scalars.get(name)
    return int(value[0]) if value is not None and value.dtype.kind in "iu" else None


def _dropout_nodes(node: onnx.NodeProto, scalars: dict[str, np.ndarray], opset: int, path: str):
    """Inference Dropout: y = x, mask all true (computed from x, not a constant output). Training mode with a
    non-zero ratio is random: refused. torch-mlir's conversion fails on the mask and before opset 12."""
    where = f"{path}: node '{node.name}' (Dropout)"
    if opset < 12 and len(node.output) > 1 and node.output[1]:
        raise HccError(f"{where}: its mask output is unspecified in inference before opset 12 (onnxruntime gives all "
                       "false, onnx.reference all true); hcc compiles it from opset 12 on")
    training = node.input[2] if len(node.input) > 2 and node.input[2] else None
    if training is not None:
        if training not in scalars:
            raise HccError(f"{where}: training_mode is given at run time; in training mode Dropout is random, and hcc "
                           "compiles inference Dropout only (training_mode absent or a constant false)")
        ratio_name = node.input[1] if len(node.input) > 1 and node.input[1] else None
        ratio = float(scalars[ratio_name][0]) if ratio_name in scalars else 0.5 if ratio_name is None else None
        if bool(scalars[training][0]) and ratio != 0.0:
            raise HccError(f"{where}: training_mode is true with ratio {'given at run time' if ratio is None else ratio}: "
                           "Dropout is random then, and hcc compiles inference Dropout only")
    nodes = [helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name)]
    if len(node.output) > 1 and node.output[1]:
        nan = f"{node.name}/is_nan"
        nodes += [helper.make_node("IsNaN", [node.input[0]], [nan], name=f"{nan}_op"),
                  helper.make_node("Not", [nan], [f"{node.name}/not_nan"], name=f"{node.name}/not_nan_op"),
                  helper.make_node("Or", [nan, f"{node.name}/not_nan"], [node.output[1]], name=f"{node.name}/mask")]
    return nodes, []


def _conv_transpose_nodes(node: onnx.NodeProto, x_shape: list[int], w_shape: list[int], opset: int):
    padded = explicit_pads(node, x_shape, w_shape)
    conv, after, inits = padded if padded is not None else (node, [], [])
    grouped = split_groups(conv, x_shape, w_shape, opset)
    if grouped is None and padded is None:
        return None
    nodes, group_inits = grouped if grouped is not None else ([conv], [])
    return nodes + after, inits + group_inits


def _max_pool_indices(node: onnx.NodeProto, shape: list[int], path: str):
    """MaxPool's Indices output (ONNX: ((n*C + c)*H + h)*W + w, or c-plane + h + w*H with storage_order=1): torch-mlir
    gives the index within the (n, c) plane, so the plane's offset is added (and, column-major, the index taken
    apart with integer Div/Mod). With uneven pads, ceil_mode, dilations or auto_pad its indices are in padded or
    other coordinates (measured): refused."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID") or pads[:2] != pads[2:] or attrs.get("ceil_mode", 0) \
            or any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise HccError(f"{path}: node '{node.name}' (MaxPool): its Indices output is compiled only without auto_pad, "
                       "ceil_mode and dilations and with even pads (torch-mlir's indices are in other coordinates then)")
    batch, channels, height, width = shape
    pool = helper.make_node("MaxPool", list(node.input), [node.output[0], f"{node.name}/in_plane"], name=node.name)
    pool.attribute.extend(a for a in node.attribute if a.name != "storage_order")
    offsets = (np.arange(batch * channels, dtype=np.int64) * height * width).reshape(batch, channels, 1, 1)
    consts = {"offsets": offsets, "w": np.array(width, np.int64), "h": np.array(height, np.int64)}
    inits = [numpy_helper.from_array(v, f"{node.name}/{k}") for k, v in consts.items()]
    v = {k: f"{node.name}/{k}" for k in ("offsets", "w", "h", "in_plane", "hh", "ww", "wcol", "base")}
    if attrs.get("storage_order", 0) == 0:
        steps = [("Add", "in_plane", "offsets", None)]
    else:
        steps = [("Div", "in_plane", "w", "hh"), ("Mod", "in_plane", "w", "ww"), ("Mul", "ww", "h", "wcol"),
                 ("Add", "offsets", "hh", "base"), ("Add", "base", "wcol", None)]
    nodes = [pool]
    for op, x, y, out in steps:
        nodes.append(helper.make_node(op, [v[x], v[y]], [v[out] if out else node.output[1]], name=f"{node.name}/{out or 'indices'}_op"))
    return nodes, inits


def _wrap_pad_nodes(node: onnx.NodeProto, shape: list[int], constants: dict[str, np.ndarray]):
    """Pad mode 'wrap' (opset 19; torch-mlir has no conversion) as Concat of the tensor's own slices along each
    padded axis: y[i] = x[i mod n] (numpy's wrap). Only constant pads in 0..n (others stay refused by checks.py)."""
    rank = len(shape)
    pads = constants.get(node.input[1]) if len(node.input) > 1 else None
    axes_name = node.input[3] if len(node.input) > 3 else ""
    axes = constants.get(axes_name) if axes_name else np.arange(rank)
    if pads is None or axes is None or pads.size != 2 * axes.size:
        return None
    axes = [int(a) % rank for a in axes]
    begins, ends = [int(p) for p in pads[:len(axes)]], [int(p) for p in pads[len(axes):]]
    if any(not 0 <= p <= shape[a] for a, p in zip(axes + axes, begins + ends)):
        return None
    nodes, inits, x = [], [], node.input[0]
    for k, (axis, begin, end) in enumerate(zip(axes, begins, ends)):
        if begin == end == 0:
            continue
        n, parts = shape[axis], []
        for label, start, stop in (("head", n - begin, n), ("body", 0, n), ("tail", 0, end)):
            if stop == start:
                continue
            if label == "body":
                parts.append(x)
                continue
            name = f"{node.name}/{label}{k}"
            for field, value in (("start", start), ("stop", stop), ("axis", axis)):
                inits.append(numpy_helper.from_array(np.array([value], np.int64), f"{name}_{field}"))
            nodes.append(helper.make_node("Slice", [x, f"{name}_start", f"{name}_stop", f"{name}_axis"], [name], name=f"{name}_op"))
            parts.append(name)
        x = f"{node.name}/wrapped{k}"
        nodes.append(helper.make_node("Concat", parts, [x], name=f"{x}_op", axis=axis))
    if not nodes:
        return [helper.make_node("Identity", [node.input[0]], [node.output[0]], name=node.name)], inits
    nodes[-1].output[0] = node.output[0]
    nodes[-1].name = node.name
    return nodes, inits


def _negative_step_slice(node: onnx.NodeProto, shape: list[int], constants: dict[str, np.ndarray]):
    """Slice with a negative step (the CPU backend's loops reject the negative offsets torch-mlir emits) as a Gather of
    the exact indices per axis, computed with Python's slice rules, which are ONNX's (clamping included)."""
    starts, ends = constants.get(node.input[1]), constants.get(node.input[2])
    axes = constants.get(node.input[3]) if node.input[3] else np.arange(len(starts) if starts is not None else 0)
    steps = constants[node.input[4]]
    if starts is None or ends is None or axes is None or not len(starts) == len(ends) == len(axes) == len(steps):
        return None
    nodes, inits, x = [], [], node.input[0]
    for k, (start, end, axis, step) in enumerate(zip(starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist())):
        axis %= len(shape)
        indices = np.arange(*slice(start, end, step).indices(shape[axis]), dtype=np.int64)
        if indices.size == 0 or step == 0:
            return None  # an empty result (refused later) or an invalid step: left as it is
        name = f"{node.name}/axis{k}"
        inits.append(numpy_helper.from_array(indices, f"{name}_indices"))
        nodes.append(helper.make_node("Gather", [x, f"{name}_indices"], [name], name=f"{name}_op", axis=axis))
        x = name
    if not nodes:
        return None
    nodes[-1].output[0], nodes[-1].name = node.output[0], node.name
    return nodes, inits


def _has_attr(node: onnx.NodeProto, names: tuple[str, ...]) -> bool:
    return any(a.name in names for a in node.attribute)


def _full_rank_resize(node: onnx.NodeProto, shape: list[int], constants: dict[str, np.ndarray], path: str):
    """Resize with `axes` or a keep_aspect_ratio_policy (opset 18), which torch-mlir does not convert, as a Resize of
    full-rank scales or sizes (1 / the input's length on the other axes). A policy's common scale becomes scales
    when floor(scale * length), what a scale gives, is the policy's rounded length on every axis; else refused."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    rank = len(shape)
    axes = [a % rank for a in attrs.get("axes", range(rank))]
    policy = attrs.get("keep_aspect_ratio_policy", b"stretch").decode()
    names = [node.input[i] if i < len(node.input) else "" for i in range(4)]
    given = [constants.get(n) if n else None for n in names]
    if any(n and (v is None) for n, v in zip(names[1:], given[1:])):
        return None  # not constants: left to the converter, which refuses
    roi, scales, sizes = (v if v is not None and v.size else None for v in given[1:])
    new_roi = None
    if roi is not None:
        new_roi = np.array([0.0] * rank + [1.0] * rank, roi.dtype)
        for i, a in enumerate(axes):
            new_roi[a], new_roi[rank + a] = roi[i], roi[len(axes) + i]
    new_scales, new_sizes = None, None
    if sizes is not None:
        new_sizes = np.array(shape, np.int64)
        new_sizes[axes] = sizes
        if policy != "stretch":
            ratios = [new_sizes[a] / shape[a] for a in axes]
            scale = min(ratios) if policy == "not_larger" else max(ratios)
            lengths = [int(scale * shape[a] + 0.5) for a in axes]  # the policy's round-half-up
            scale32 = np.float32(scale)
            if any(math.floor(float(scale32) * shape[a]) != n or math.floor(scale * shape[a]) != n for a, n in zip(axes, lengths)):
                raise HccError(f"{path}: node '{node.name}' (Resize): keep_aspect_ratio_policy '{policy}' gives lengths "
                               f"{lengths} on axes {axes}, which its scale {scale:.6g} does not (hcc compiles it as scales)")
            new_scales, new_sizes = np.array([scale if a in axes else 1.0 for a in range(rank)], np.float32), None
    elif scales is not None:
        new_scales = np.ones(rank, np.float32)
        new_scales[axes] = scales
    inits, inputs = [], [node.input[0]]
    for label, value in (("roi", new_roi), ("scales", new_scales), ("sizes", new_sizes)):
        if value is not None:
            inits.append(numpy_helper.from_array(value, f"{node.name}/{label}"))
        inputs.append(f"{node.name}/{label}" if value is not None else "")
    while inputs[-1] == "":
        inputs.pop()
    kept = [a for a in node.attribute if a.name not in ("axes", "keep_aspect_ratio_policy")]
    resized = helper.make_node("Resize", inputs, list(node.output), name=node.name)
    resized.attribute.extend(kept)
    return [resized], inits


def _vector_matmul_nodes(node: onnx.NodeProto, shapes: dict[str, list[int] | None]):
    """MatMul with a 1-D operand (numpy rules: a vector a is [1, k], a vector b is [k, 1], and that dimension is
    dropped from the result), as a MatMul of reshaped operands: torch-mlir's aten.matmul fails on 1-D x N-D."""
    a, b = node.input
    sa, sb = shapes.get(a), shapes.get(b)
    if sa is None or sb is None or len(sa) == len(sb) == 1:
        return None  # the vector dot product converts
    out_shape = shapes.get(node.output[0])
    if out_shape is None:
        return None
    nodes, inits = [], []
    operands = []
    for name, shape, new in ((a, sa, [1] + sa), (b, sb, sb + [1])):
        if len(shape) != 1:
            operands.append(name)
            continue
        target = f"{node.name}/{'a' if name == a else 'b'}_shape"
        inits.append(numpy_helper.from_array(np.array(new, np.int64), target))
        operands.append(f"{node.name}/{'a' if name == a else 'b'}_2d")
        nodes.append(helper.make_node("Reshape", [name, target], [operands[-1]], name=f"{operands[-1]}_op"))
    product = f"{node.name}/product"
    nodes.append(helper.make_node("MatMul", operands, [product], name=node.name))
    inits.append(numpy_helper.from_array(np.array(out_shape, np.int64), f"{node.name}/out_shape"))
    nodes.append(helper.make_node("Reshape", [product, f"{node.name}/out_shape"], [node.output[0]], name=f"{node.name}/out"))
    return nodes, inits


def apply_rewrites(model: onnx.ModelProto, path: str = "model") -> int:
    """Rewrite in place; returns how many nodes were rewritten."""
    graph = model.graph
    types = _elem_types(model)
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    shapes = {v.name: static_shape(v) for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    for init in graph.initializer:  # weights have no value_info
        shapes.setdefault(init.name, list(init.dims))
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer if len(init.dims) == 1}
    inputs = {v.name for v in graph.input}  # an initializer that is also an input is a run-time value
    scalars = {init.name: numpy_helper.to_array(init).reshape(-1) for init in graph.initializer
               if int(np.prod(init.dims)) == 1 and init.name not in inputs}
    facts = _Facts(types, shapes, constants, scalars, opset, path, _safe_divisors(graph))
    nodes, new_inits, replaced, rewritten = [], [], set(), 0
    for node in graph.node:
        expansion = _expansion(node, facts)
        if expansion is not None:
            nodes.extend(expansion[0])
            new_inits.extend(expansion[1])
            rewritten += 1
            continue
        full = _full_expand_shape(node, shapes, constants)
        if full is not None:
            name = f"{node.name}/shape"
            new_inits.append(numpy_helper.from_array(np.array(full, dtype=np.int64), name))
            replaced.add(node.input[1])
            node.input[1] = name
            rewritten += 1
        nodes.append(node)
    if rewritten:
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(new_inits)
        _drop_unused_initializers(graph, replaced)
    return rewritten


INTEGER_TYPES = frozenset({onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64,
                           onnx.TensorProto.UINT8, onnx.TensorProto.UINT16, onnx.TensorProto.UINT32, onnx.TensorProto.UINT64})


SIGNED_TYPES = frozenset({onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32, onnx.TensorProto.INT64})


def _guarded_division(node: onnx.NodeProto, elem: int) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The division with its two traps taken out: b == 0 gives 0; for signed types b == -1 divides by 1 and negates
    (wrapping: the most negative value / -1 is itself, as numpy gives, where idiv traps; a remainder by -1 is 0).
    Every other element is the same quotient or remainder."""
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    signed = elem in SIGNED_TYPES
    p, b, y = node.name, node.input[1], node.output[0]
    inits = [numpy_helper.from_array(np.array(v, dtype), f"{p}/{name}") for name, v in (("zero", 0), ("one", 1))]
    nodes = [helper.make_node("Equal", [b, f"{p}/zero"], [f"{p}/by_zero"], name=f"{p}/by_zero")]
    special = f"{p}/by_zero"
    if signed:
        inits.append(numpy_helper.from_array(np.array(-1, dtype), f"{p}/minus_one"))
        nodes += [helper.make_node("Equal", [b, f"{p}/minus_one"], [f"{p}/by_minus_one"], name=f"{p}/by_minus_one"),
                  helper.make_node("Or", [f"{p}/by_zero", f"{p}/by_minus_one"], [f"{p}/special"], name=f"{p}/special")]
        special = f"{p}/special"
    guarded = onnx.NodeProto()
    guarded.CopyFrom(node)
    guarded.input[1], guarded.output[0] = f"{p}/divisor", f"{p}/result"  # keeps the node's name: errors name it
    nodes += [helper.make_node("Where", [special, f"{p}/one", b], [f"{p}/divisor"], name=f"{p}/divisor"), guarded]
    result = f"{p}/result"
    if signed and node.op_type == "Div":
        nodes += [helper.make_node("Where", [f"{p}/by_minus_one", f"{p}/minus_one", f"{p}/one"], [f"{p}/sign"], name=f"{p}/sign"),
                  helper.make_node("Mul", [result, f"{p}/sign"], [f"{p}/signed"], name=f"{p}/signed")]
        result = f"{p}/signed"
    nodes.append(helper.make_node("Where", [f"{p}/by_zero", f"{p}/zero", result], [y], name=f"{p}/zero_divisor"))
    return nodes, inits


def _safe_divisors(graph: onnx.GraphProto) -> frozenset[str]:
    """Integer constants (checks.constant_tensors: not overridable inputs) that no division traps on: no 0, and no
    -1 if signed."""
    def safe(tensor: onnx.TensorProto) -> bool:
        values = numpy_helper.to_array(tensor)
        return bool(np.all(values != 0)) and (tensor.data_type not in SIGNED_TYPES or bool(np.all(values != -1)))
    return frozenset(name for name, tensor in constant_tensors(graph).items() if tensor.data_type in INTEGER_TYPES and safe(tensor))


def _drop_unused_initializers(graph: onnx.GraphProto, candidates: set[str]) -> None:
    """Remove the initializers among `candidates` that no node or graph output reads any more."""
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    unused = (candidates - used) - {v.name for v in graph.input}
    if unused:
        kept = [init for init in graph.initializer if init.name not in unused]
        del graph.initializer[:]
        graph.initializer.extend(kept)
