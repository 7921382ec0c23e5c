"""Building blocks of the frontend's node rewrites (frontend/quantized.py, frontend/classical_ml.py): what a rewrite
needs to know about the graph (`RewriteGraph`), and an emitter of the nodes and initializers that replace one node
(`NodeEmitter`: fresh unique names, numpy folding of ops on constants, the arithmetic helpers both rewrites use).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hcc.frontend.checks import static_shape
from hcc.frontend.names import fresh_name

I32 = np.dtype(np.int32)


@dataclass
class RewriteGraph:
    """What a rewrite needs to know about the graph: types, static shapes, constant values, producers, consumers."""

    types: dict[str, int] = field(default_factory=dict)
    shapes: dict[str, list[int] | None] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)
    initializers: set[str] = field(default_factory=set)
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)
    outputs: set[str] = field(default_factory=set)
    taken: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, model: onnx.ModelProto) -> RewriteGraph:
        graph, g = model.graph, cls()
        for value in list(graph.input) + list(graph.value_info) + list(graph.output):
            if value.type.HasField("tensor_type"):
                g.types[value.name] = value.type.tensor_type.elem_type
                g.shapes[value.name] = static_shape(value)
        for init in graph.initializer:
            g.types[init.name], g.shapes[init.name] = init.data_type, list(init.dims)
            g.constants[init.name] = numpy_helper.to_array(init)
            g.initializers.add(init.name)
        g.initializers -= {v.name for v in graph.input}  # an initializer that is also an input can be overridden
        for name in [v.name for v in graph.input if v.name in g.constants]:
            del g.constants[name]
        g.outputs = {o.name for o in graph.output}
        for node in graph.node:
            g.taken.update(node.output)
            g.taken.add(node.name)
            for name in node.output:
                g.producer[name] = node
            for name in node.input:
                if name:
                    g.consumers.setdefault(name, []).append(node)
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                value = next((a.t for a in node.attribute if a.name == "value"), None)
                if value is not None:
                    g.constants[node.output[0]] = numpy_helper.to_array(value)
                    g.types[node.output[0]], g.shapes[node.output[0]] = value.data_type, list(value.dims)
        g.taken.update(g.types)
        return g

    def constant(self, name: str) -> np.ndarray | None:
        return self.constants.get(name) if name else None

    def initializer(self, name: str) -> np.ndarray | None:
        """The value of an initializer (not a Constant node's output), as onnxruntime's graph-level checks see them."""
        return self.constants.get(name) if name in self.initializers else None


def replace_nodes(graph: onnx.GraphProto, rewrite) -> int:
    """Replace, in place and in order, every node for which `rewrite(node)` returns (nodes, initializers) by those
    nodes, adding the initializers; a node for which it returns None stays. Returns how many were replaced."""
    nodes, inits, replaced = [], [], 0
    for node in graph.node:
        expansion = rewrite(node)
        if expansion is None:
            nodes.append(node)
            continue
        nodes.extend(expansion[0])
        inits.extend(expansion[1])
        replaced += 1
    if replaced:
        del graph.node[:]
        graph.node.extend(nodes)
        graph.initializer.extend(inits)
    return replaced


def input_at(node: onnx.NodeProto, index: int) -> str:
    return node.input[index] if index < len(node.input) else ""


def type_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return str(elem_type)


class CountedNodes:
    """The nodes and initializers that replace one node, named `<node>/<hint>_<k>` by a running count (rewrites that
    build a fixed network of ops on tensor names: frontend/cumsum.py, frontend/topk.py)."""

    def __init__(self, node: onnx.NodeProto):
        self.node = node
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.node.name}/{hint}_{self.count}"

    def const(self, value, hint: str = "c") -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, output: str | None = None, **attrs) -> str:
        out = output or self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(f"{hint}_op"), **attrs))
        return out


class NodeEmitter:
    """Builds the nodes and initializers that replace one node. Values are tensor names or numpy constants: an op
    on constants only is computed here (with numpy's IEEE float32 arithmetic, the same as a compiled op's)."""

    def __init__(self, node: onnx.NodeProto, g: RewriteGraph):
        self.node, self.g = node, g
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.dtypes: dict[str, np.dtype] = {}
        self.named = False

    def fresh(self, hint: str) -> str:
        return fresh_name(f"{self.node.name}/{hint}", self.g.taken, first_suffix=2)

    def dtype(self, value) -> np.dtype:
        if isinstance(value, np.ndarray):
            return value.dtype
        if value in self.dtypes:
            return self.dtypes[value]
        return np.dtype(helper.tensor_dtype_to_np_dtype(self.g.types[value]))

    def tensor(self, value, hint: str = "const") -> str:
        if isinstance(value, str):
            return value
        name = self.fresh(hint)
        self.inits.append(numpy_helper.from_array(np.array(value, order="C"), name))
        self.dtypes[name] = value.dtype
        return name

    def op(self, op_type: str, inputs: list, dtype, hint: str, output: str | None = None, **attrs) -> str:
        names = [self.tensor(v, f"{hint}_arg") if v is not None else "" for v in inputs]
        out = output or self.fresh(hint)
        if output is not None and not self.named:
            node_name, self.named = self.node.name, True  # the node that computes the first output keeps the name
        else:
            node_name = self.fresh(f"{hint}_op")
        self.nodes.append(helper.make_node(op_type, names, [out], name=node_name, **attrs))
        self.dtypes[out] = np.dtype(dtype)
        return out

    def result(self, value, output: str, rename: bool = True) -> str:
        """`value` under the name `output` (a constant result becomes an Identity of it, folded later). With `rename`,
        the node that computed it (the last one emitted) writes `output` directly: the caller uses it no more."""
        if isinstance(value, np.ndarray):
            return self.op("Identity", [value], value.dtype, "value", output=output)
        producer = self.nodes[-1] if self.nodes and self.nodes[-1].output[0] == value else None
        if rename and producer is not None:
            producer.output[0] = output
            self.dtypes[output] = self.dtypes[value]
            if not self.named:
                producer.name, self.named = self.node.name, True
            return output
        return self.op("Identity", [value], self.dtype(value), "value", output=output)

    # ----------------------------------------------------------------------------------------- arithmetic
    def cast(self, value, dtype) -> object:
        dtype = np.dtype(dtype)
        if self.dtype(value) == dtype:
            return value
        if isinstance(value, np.ndarray):
            return value.astype(dtype)
        if dtype.kind == "u" and self.dtype(value).kind == "f":
            # torch-mlir converts a float -> uint8 cast with `fptosi` to i8, which saturates at 127 in vector code:
            # through int32 the values 128..255 survive (hcc only casts integral values in range here)
            value = self.cast(value, I32)
        return self.op("Cast", [value], dtype, "cast", to=helper.np_dtype_to_tensor_dtype(dtype))

    def binary(self, op_type: str, a, b, hint: str) -> object:
        dtype = self.dtype(a)
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            fn = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op_type]
            with np.errstate(all="ignore"):
                return np.asarray(fn(a, b)).astype(dtype)
        return self.op(op_type, [a, b], dtype, hint)

    def add(self, a, b, hint="add"):
        return self.binary("Add", a, b, hint)

    def sub(self, a, b, hint="sub"):
        return self.binary("Sub", a, b, hint)

    def mul(self, a, b, hint="mul"):
        return self.binary("Mul", a, b, hint)

    def div(self, a, b, hint="div"):
        return self.binary("Div", a, b, hint)

    def reshape(self, value, shape: list[int], hint: str = "reshape"):
        if isinstance(value, np.ndarray):
            return value.reshape(shape)
        return self.op("Reshape", [value, np.array(shape, np.int64)], self.dtype(value), hint)

    def gather(self, value, indices: np.ndarray, axis: int, hint: str = "blocks"):
        if isinstance(value, np.ndarray):
            return np.take(value, indices, axis=axis)
        return self.op("Gather", [value, indices.astype(np.int64)], self.dtype(value), hint, axis=axis)

    def max_where(self, v, bound, hint):
        """`maxps(v, bound)`: v where v > bound, else bound (so a NaN v gives the bound)."""
        if isinstance(v, np.ndarray) and isinstance(bound, np.ndarray):
            return np.where(v > bound, v, bound).astype(v.dtype)
        return self.op("Where", [self.op("Greater", [v, bound], np.bool_, f"{hint}_gt"), v, bound], self.dtype(v), hint)

    def min_where(self, v, bound, hint):
        """`minps(v, bound)`: v where v < bound, else bound."""
        if isinstance(v, np.ndarray) and isinstance(bound, np.ndarray):
            return np.where(v < bound, v, bound).astype(v.dtype)
        # Greater(bound, v), not Less(v, bound): torch-mlir converts onnx.Less only from opset 13 on
        return self.op("Where", [self.op("Greater", [bound, v], np.bool_, f"{hint}_lt"), v, bound], self.dtype(v), hint)

    def reduce(self, op_type: str, value, axis: int, opset: int, hint: str, keepdims: int = 1):
        """A reduction over one axis, spelled for the model's opset: axes an input from opset 18 (13 for ReduceSum),
        an attribute before."""
        if opset >= (13 if op_type == "ReduceSum" else 18):
            return self.op(op_type, [value, np.array([axis], np.int64)], self.dtype(value), hint, keepdims=keepdims)
        return self.op(op_type, [value], self.dtype(value), hint, axes=[axis], keepdims=keepdims)

    def round_even(self, v):
        if isinstance(v, np.ndarray):
            return np.rint(v).astype(v.dtype)
        return self.op("Round", [v], self.dtype(v), "round")
