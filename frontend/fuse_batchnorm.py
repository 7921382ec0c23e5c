"""Fold inference-mode BatchNormalization into the Conv / ConvTranspose / Gemm / MatMul(+Add) that produces its input.

Why: BatchNormalization in inference form is a per-channel affine map `y = s*x + t` with constant `s` and `t`.
Left as a node it is a separate elementwise pass over every convolution output (about 10-20% of a ResNet's time
on the CPU), and models exported by torch dynamo, Keras/tf2onnx or PaddleOCR keep it unfused. Scaling the
producer's weights by `s` and its bias to `s*b + t` computes the same thing once, at compile time.

What is folded: a BatchNormalization (default domain, any opset hcc accepts, `training_mode` 0, one output) whose
scale, bias, mean and variance are constants (initializers or Constant nodes) and whose input is the only use of the
output of
- Conv or ConvTranspose with a constant weight (and bias, if any), any group count;
- Gemm with a constant B (and C, if any), on a rank-2 output (BN's channel axis 1 is Gemm's N);
- MatMul with a constant 2-D B on a rank-2 output, optionally followed by an Add of a constant (the bias). A
  MatMul without that Add keeps a bias Add in the BatchNormalization's place.
The producer keeps its node name and takes the BatchNormalization's output name (graph outputs and consumers stay
valid); the BatchNormalization node disappears; weights shared with other nodes are copied, not changed in place;
initializers (and Constant nodes) nothing uses any more are removed.

A BatchNormalization with constant parameters and no producer to fold into (after a Relu, or its producer has other
readers) becomes `Mul(x, s)` (named like the BN) and `Add(t)`: one multiply-add per element with `s` and `t`
computed here, and it compiles at every opset hcc accepts (torch-mlir converts BatchNormalization only from opset
15 on). Training forms (`training_mode` 1, extra outputs) and non-constant parameters are left as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.frontend.attributes import attr_value
from hcc.frontend.names import fresh_name

FLOAT_TYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16}


@dataclass
class Affine:
    """The folded BatchNormalization: y = scale * x + shift, per channel (float64)."""

    scale: np.ndarray
    shift: np.ndarray


@dataclass
class GraphIndex:
    """Constants, producers and use counts of a graph, kept up to date while folding."""

    graph: onnx.GraphProto
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    uses: dict[str, int] = field(default_factory=dict)
    graph_inputs: set[str] = field(default_factory=set)
    graph_outputs: set[str] = field(default_factory=set)
    taken: set[str] = field(default_factory=set)  # every tensor name in use, for fresh names
    node_names: set[str] = field(default_factory=set)
    value_info: dict[str, onnx.ValueInfoProto] = field(default_factory=dict)  # inferred types of tensors

    @classmethod
    def of(cls, graph: onnx.GraphProto) -> GraphIndex:
        index = cls(graph)
        index.initializers = {t.name: t for t in graph.initializer}
        index.constants = {name: numpy_helper.to_array(t) for name, t in index.initializers.items()}
        index.graph_inputs = {v.name for v in graph.input}
        index.graph_outputs = {v.name for v in graph.output}
        index.taken = set(index.initializers) | index.graph_inputs | index.graph_outputs
        index.node_names = {node.name for node in graph.node}
        index.value_info = {v.name: v for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
        for node in graph.node:
            for name in node.input:
                index.uses[name] = index.uses.get(name, 0) + 1
            for name in node.output:
                index.producer[name] = node
                index.taken.add(name)
            value = _constant_node_value(node)
            if value is not None:
                index.constants[node.output[0]] = value
        return index

    def single_use(self, name: str) -> bool:
        return self.uses.get(name, 0) == 1 and name not in self.graph_outputs

    def fresh(self, wanted: str) -> str:
        """`wanted`, or `wanted_<n>` when a tensor of that name exists."""
        return fresh_name(wanted, self.taken, first_suffix=2)

    def fresh_node(self, wanted: str) -> str:
        return fresh_name(wanted, self.node_names, first_suffix=2)

    def set_constant(self, node: onnx.NodeProto, slot: int, value: np.ndarray) -> None:
        """Give `node` input `slot` the new constant `value`: in place when only this node reads a plain
        initializer, else as a new initializer (the old one stays for its other readers)."""
        old = node.input[slot] if slot < len(node.input) else ""
        if old and old in self.initializers and self.uses.get(old, 0) == 1 and old not in self.graph_inputs | self.graph_outputs:
            self.initializers[old].CopyFrom(numpy_helper.from_array(value, old))
            self.constants[old] = value
            return
        name = self.fresh(f"{old}_bnfold" if old else f"{node.name}_bias")
        tensor = numpy_helper.from_array(value, name)
        self.graph.initializer.append(tensor)
        self.initializers[name] = self.graph.initializer[-1]
        self.constants[name] = value
        if old:
            self.uses[old] -= 1
        while len(node.input) <= slot:
            node.input.append("")
        node.input[slot] = name
        self.uses[name] = 1


def _constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    if node.op_type != "Constant" or node.domain not in ("", "ai.onnx") or len(node.output) != 1:
        return None
    attr = next((a for a in node.attribute if a.name == "value"), None)
    return numpy_helper.to_array(attr.t) if attr is not None and attr.type == onnx.AttributeProto.TENSOR else None


def _batchnorm_affine(bn: onnx.NodeProto, index: GraphIndex) -> Affine | None:
    """The per-channel affine map of an inference-mode BatchNormalization with constant parameters, else None."""
    if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx") or len(bn.input) != 5:
        return None
    if len([o for o in bn.output if o]) != 1 or not bn.output[0] or attr_value(bn, "training_mode", 0) != 0:
        return None
    params = [index.constants.get(name) for name in bn.input[1:]]
    if any(p is None or p.ndim != 1 or p.dtype.kind != "f" for p in params):
        return None
    scale, bias, mean, var = (p.astype(np.float64) for p in params)
    if not scale.shape == bias.shape == mean.shape == var.shape:
        return None
    s = scale / np.sqrt(var + float(attr_value(bn, "epsilon", 1e-5)))
    return Affine(s, bias - s * mean)


def _float_constant(name: str, index: GraphIndex) -> np.ndarray | None:
    value = index.constants.get(name)
    return value if value is not None and value.dtype.kind == "f" else None


def _fold_conv(conv: onnx.NodeProto, affine: Affine, index: GraphIndex) -> bool:
    """Conv: W [C_out, C_in/g, k...] scaled per output channel; ConvTranspose: W [C_in, C_out/g, k...]."""
    weight = _float_constant(conv.input[1], index)
    has_bias = len(conv.input) > 2 and conv.input[2] != ""
    bias = _float_constant(conv.input[2], index) if has_bias else None
    if weight is None or weight.ndim < 3 or (has_bias and bias is None):
        return False
    channels = affine.scale.size
    group = int(attr_value(conv, "group", 1))
    w = weight.astype(np.float64)
    if conv.op_type == "Conv":
        if weight.shape[0] != channels:
            return False
        w = w * affine.scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    else:
        if group < 1 or weight.shape[0] % group or weight.shape[1] * group != channels:
            return False
        grouped = w.reshape((group, weight.shape[0] // group, weight.shape[1]) + weight.shape[2:])
        w = (grouped * affine.scale.reshape((group, 1, weight.shape[1]) + (1,) * (weight.ndim - 2))).reshape(weight.shape)
    b = bias.astype(np.float64) if bias is not None else np.zeros(channels)
    if b.shape != (channels,):
        return False
    index.set_constant(conv, 1, w.astype(weight.dtype))
    index.set_constant(conv, 2, (affine.scale * b + affine.shift).astype(weight.dtype))
    return True


def _fold_gemm(gemm: onnx.NodeProto, affine: Affine, index: GraphIndex) -> bool:
    """Gemm: Y = alpha*A'B' + beta*C; BN scales the columns of B' and maps C to s*beta*C + t (then beta = 1)."""
    weight = _float_constant(gemm.input[1], index)
    has_c = len(gemm.input) > 2 and gemm.input[2] != ""
    c = _float_constant(gemm.input[2], index) if has_c else None
    if weight is None or weight.ndim != 2 or (has_c and c is None):
        return False
    trans_b = int(attr_value(gemm, "transB", 0))
    channels = affine.scale.size
    if weight.shape[0 if trans_b else 1] != channels:
        return False
    scale = affine.scale[:, None] if trans_b else affine.scale[None, :]
    beta = float(attr_value(gemm, "beta", 1.0))
    new_c = affine.shift if c is None else beta * affine.scale * c.astype(np.float64) + affine.shift
    if new_c.ndim > 2:
        return False
    index.set_constant(gemm, 1, (weight.astype(np.float64) * scale).astype(weight.dtype))
    index.set_constant(gemm, 2, new_c.astype(weight.dtype))
    _set_float_attr(gemm, "beta", 1.0)
    return True


def _set_float_attr(node: onnx.NodeProto, name: str, value: float) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])


def _matmul_weight(matmul: onnx.NodeProto, affine: Affine, index: GraphIndex, shapes: dict[str, list[int]]) -> np.ndarray | None:
    """The constant 2-D B of a MatMul with a rank-2 output whose N matches the channels, else None."""
    if matmul.op_type != "MatMul" or matmul.domain not in ("", "ai.onnx") or len(shapes.get(matmul.output[0], [])) != 2:
        return None
    weight = _float_constant(matmul.input[1], index)
    if weight is None or weight.ndim != 2 or weight.shape[1] != affine.scale.size:
        return None
    return weight


def _fold_matmul_add(add: onnx.NodeProto, affine: Affine, index: GraphIndex, shapes: dict[str, list[int]]) -> bool:
    """MatMul -> Add(constant bias) -> BN: scale B's columns and map the bias to s*b + t."""
    if len(add.input) != 2:
        return False
    for side in (0, 1):
        matmul = index.producer.get(add.input[side])
        bias = _float_constant(add.input[1 - side], index)
        if matmul is None or bias is None or not index.single_use(add.input[side]):
            continue
        weight = _matmul_weight(matmul, affine, index, shapes)
        out_shape = shapes.get(add.output[0])
        if weight is None or out_shape != shapes.get(matmul.output[0]) or bias.ndim > 2:
            continue
        new_bias = affine.scale * bias.astype(np.float64) + affine.shift
        if tuple(np.broadcast_shapes(tuple(out_shape), new_bias.shape)) != tuple(out_shape):
            continue
        index.set_constant(matmul, 1, (weight.astype(np.float64) * affine.scale[None, :]).astype(weight.dtype))
        index.set_constant(add, 1 - side, new_bias.astype(bias.dtype))
        return True
    return False


def _fold_matmul(matmul: onnx.NodeProto, bn: onnx.NodeProto, affine: Affine, index: GraphIndex,
                 shapes: dict[str, list[int]]) -> onnx.NodeProto | None:
    """MatMul -> BN: scale B's columns; the BN becomes an Add of the shift (returned, to take the BN's place)."""
    weight = _matmul_weight(matmul, affine, index, shapes)
    if weight is None:
        return None
    index.set_constant(matmul, 1, (weight.astype(np.float64) * affine.scale[None, :]).astype(weight.dtype))
    shift = index.fresh(f"{bn.name}_shift")
    index.graph.initializer.append(numpy_helper.from_array(affine.shift.astype(weight.dtype), shift))
    index.initializers[shift] = index.graph.initializer[-1]
    index.uses[shift] = 1
    return helper.make_node("Add", [matmul.output[0], shift], [bn.output[0]], name=bn.name)


def _shapes(graph: onnx.GraphProto) -> dict[str, list[int]]:
    shapes = {}
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = [d.dim_value for d in dims]
    return shapes


def _try_fold(bn: onnx.NodeProto, affine: Affine, index: GraphIndex, shapes: dict[str, list[int]]) -> list[onnx.NodeProto] | None:
    """Fold one BN into its producer: the nodes to put in its place (none, or a bias Add), None when not folded."""
    source = bn.input[0]
    producer = index.producer.get(source)
    if producer is None or producer.domain not in ("", "ai.onnx") or not index.single_use(source):
        return None
    if producer.op_type in ("Conv", "ConvTranspose"):
        done = _fold_conv(producer, affine, index)
    elif producer.op_type == "Gemm":
        done = len(shapes.get(source, [])) == 2 and _fold_gemm(producer, affine, index)
    elif producer.op_type == "Add":
        done = _fold_matmul_add(producer, affine, index, shapes)
    elif producer.op_type == "MatMul":
        add = _fold_matmul(producer, bn, affine, index, shapes)
        return None if add is None else [add]
    else:
        done = False
    if not done:
        return None
    producer.output[0] = bn.output[0]
    index.producer[bn.output[0]] = producer
    return []


def _decompose(bn: onnx.NodeProto, affine: Affine, index: GraphIndex, shapes: dict[str, list[int]]) -> list[onnx.NodeProto] | None:
    """A BN with no producer to fold into becomes `Mul(x, s) -> Add(t)` with s, t precomputed per channel: the
    same arithmetic, without a square root per element, and at every opset (torch-mlir converts
    BatchNormalization only from opset 15 on: BN in an opset 11-14 model would not compile otherwise)."""
    rank = len(shapes.get(bn.input[0], []))
    info = index.value_info.get(bn.output[0])
    if rank < 2 or info is None or info.type.tensor_type.elem_type not in FLOAT_TYPES:
        return None
    dtype = helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
    channel_shape = (affine.scale.size,) + (1,) * (rank - 2)
    scale, shift = index.fresh(f"{bn.name}_scale"), index.fresh(f"{bn.name}_shift")
    for name, value in ((scale, affine.scale), (shift, affine.shift)):
        index.graph.initializer.append(numpy_helper.from_array(value.reshape(channel_shape).astype(dtype), name))
    scaled = index.fresh(f"{bn.output[0]}_scaled")
    scaled_info = index.graph.value_info.add()
    scaled_info.CopyFrom(info)
    scaled_info.name = scaled
    return [helper.make_node("Mul", [bn.input[0], scale], [scaled], name=bn.name),
            helper.make_node("Add", [scaled, shift], [bn.output[0]], name=index.fresh_node(f"{bn.name}_shift"))]


def _drop_unused(graph: onnx.GraphProto, constants: set[str]) -> None:
    """Remove the value infos of vanished tensors, and the constants (initializers, Constant nodes, initializers
    listed as graph inputs by old exporters) that were read before folding and are read by nothing now."""
    used = {name for node in graph.node for name in node.input} | {v.name for v in graph.output}
    produced = {name for node in graph.node for name in node.output}
    dead = constants - used
    _keep(graph.value_info, lambda v: v.name in produced)
    _keep(graph.node, lambda n: not (n.op_type == "Constant" and n.output[0] in dead))
    _keep(graph.initializer, lambda t: t.name not in dead)
    _keep(graph.input, lambda v: v.name not in dead)


def _keep(items, wanted) -> None:
    kept = [item for item in items if wanted(item)]
    del items[:]
    items.extend(kept)


def fuse_batchnorm(model: onnx.ModelProto) -> int:
    """Fold (or decompose) in place; returns how many BatchNormalization nodes went away."""
    graph = model.graph
    index = GraphIndex.of(graph)
    shapes = _shapes(graph)
    before = {name for node in graph.node for name in node.input if name in index.constants}
    nodes: list[onnx.NodeProto] = []
    folded = 0
    for node in graph.node:
        affine = _batchnorm_affine(node, index)
        replacement = None if affine is None else _try_fold(node, affine, index, shapes)
        if affine is not None and replacement is None:
            replacement = _decompose(node, affine, index, shapes)
        if replacement is None:
            nodes.append(node)
            continue
        folded += 1
        for name in node.input[1:]:
            index.uses[name] -= 1
        nodes.extend(replacement)
    if not folded:
        return 0
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_unused(graph, before)
    return folded
