"""A Scan whose iterations are independent (a map) computed once over the whole scanned axis, instead of unrolled.

skl2onnx writes the pairwise distances of nearest-neighbours models (and other kernels) as a Scan over the
training set: the state (the query batch) passes through every iteration unchanged, and each iteration reduces
`query - training_row`. Unrolled, 600 training rows were 2,400 nodes and a 6-minute compile; a training set of
5,000 rows went over the unrolling limit. As a map, the scanned tensor keeps its leading axis (one entry per
iteration) through the body: each body value that depends on a scanned input is "batched" (that extra leading
axis), every other value is computed once, as it is. An elementwise op aligns a batched operand to its result's
rank with Unsqueeze after the leading axis (numpy broadcasting aligns the rest on the right, as in the iteration);
a reduction or Transpose shifts its axes by one. The per-iteration scan outputs are then the batched values
themselves (stacked along axis 0); the final states are the initial ones.

Taken only when every condition holds, else the Scan is unrolled as before (frontend/unroll.py): opset 13 or newer,
forward directions and axis 0 for every scan input and output, every state passed through unchanged, every body op
in MAPPED_OPS with its operands' ranks known, and every scan output depending on a scanned input. The arithmetic
per element is the iteration's own (the same ops on the same values), so results are the unrolled ones exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.frontend.attributes import attr_value
from hcc.frontend.unroll import _body_of, _Graph

UNARY = {"Identity", "Neg", "Abs", "Sqrt", "Exp", "Log", "Reciprocal", "Cast", "Relu", "Sigmoid", "Tanh", "Not", "Floor",
         "Ceil", "IsNaN", "IsInf", "Erf", "Sign", "Softplus"}
BINARY = {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual",
          "And", "Or", "Xor", "Where", "Mod"}
REDUCE = {"ReduceSum", "ReduceSumSquare", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceProd",
          "ReduceLogSum", "ReduceLogSumExp"}
MAPPED_OPS = UNARY | BINARY | REDUCE | {"Transpose"}
AXES_INPUT_FROM = {"ReduceSum": 13}  # the other reductions take axes as an input from opset 18 on


class _NotAMap(Exception):
    """The Scan is not one this rewrite takes: it is unrolled instead."""


@dataclass
class _Value:
    name: str  # in the main graph
    rank: int  # per iteration
    batched: bool  # carries the leading iteration axis


class _Mapper:
    def __init__(self, g: _Graph, node: onnx.NodeProto, body: onnx.GraphProto):
        self.g, self.node, self.body = g, node, body
        self.nodes: list[onnx.NodeProto] = []
        self.values: dict[str, _Value] = {}
        self.body_constants = {i.name: numpy_helper.to_array(i) for i in body.initializer}

    def fresh(self, base: str) -> str:
        return self.g.fresh(f"{self.node.name}/map/{base}")

    def emit(self, op_type: str, inputs: list[str], base: str, **attrs) -> str:
        out = self.fresh(base)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.fresh(f"{base}_op"), **attrs))
        return out

    def value(self, name: str) -> _Value:
        if name in self.values:
            return self.values[name]
        if name in self.body_constants:
            array = self.body_constants[name]
            self.values[name] = _Value(self.g.constant(array, f"{self.node.name}/map/{name}"), array.ndim, False)
        elif name in self.g.constants:
            self.values[name] = _Value(name, self.g.constants[name].ndim, False)
        elif self.g.shapes.get(name) is not None:  # a value of the outer scope
            self.values[name] = _Value(name, len(self.g.shapes[name]), False)
        else:
            raise _NotAMap(f"the rank of '{name}' is unknown")
        return self.values[name]

    def aligned(self, v: _Value, rank: int) -> str:
        """A batched value with size-1 axes after the iteration axis, up to `rank` per-iteration axes."""
        if not v.batched or v.rank == rank:
            return v.name
        axes = self.g.constant(np.arange(1, 1 + rank - v.rank, dtype=np.int64), f"{self.node.name}/map/axes")
        return self.emit("Unsqueeze", [v.name, axes], "aligned")

    def map_node(self, n: onnx.NodeProto) -> None:
        if n.domain not in ("", "ai.onnx") or n.op_type not in MAPPED_OPS or len(n.output) != 1:
            raise _NotAMap(f"op {n.op_type}")
        operands = [self.value(i) for i in n.input if i]
        if not any(v.batched for v in operands):  # computed once, as written
            out = self.fresh(n.output[0])
            copy = onnx.NodeProto()
            copy.CopyFrom(n)
            copy.name = self.fresh(f"{n.op_type}_op")
            del copy.input[:]
            copy.input.extend([self.value(i).name if i else "" for i in n.input])
            copy.output[0] = out
            self.nodes.append(copy)
            rank = self._rank(n, operands)
            self.values[n.output[0]] = _Value(out, rank, False)
            return
        if n.op_type in UNARY or n.op_type in BINARY:
            rank = max(v.rank for v in operands)
            inputs = [self.aligned(v, rank) for v in operands]
            self.values[n.output[0]] = _Value(self.emit(n.op_type, inputs, n.output[0], **_attrs(n)), rank, True)
        elif n.op_type == "Transpose":
            (v,) = operands
            perm = list(attr_value(n, "perm", list(range(v.rank))[::-1]))
            self.values[n.output[0]] = _Value(self.emit("Transpose", [v.name], n.output[0], perm=[0] + [p + 1 for p in perm]), v.rank, True)
        else:
            self._reduce(n, operands)

    def _rank(self, n: onnx.NodeProto, operands: list[_Value]) -> int:
        if n.op_type in REDUCE:
            axes = self._axes(n, operands[0].rank)
            return operands[0].rank if attr_value(n, "keepdims", 1) else operands[0].rank - len(axes)
        return max(v.rank for v in operands)

    def _axes(self, n: onnx.NodeProto, rank: int) -> list[int]:
        if len(n.input) > 1 and n.input[1]:
            constant = self.body_constants.get(n.input[1], self.g.constants.get(n.input[1]))
            if constant is None:
                raise _NotAMap("reduction axes given at run time")
            axes = [int(a) for a in np.asarray(constant).reshape(-1)]
        else:
            axes = list(attr_value(n, "axes", []))
        if not axes:
            if attr_value(n, "noop_with_empty_axes", 0):
                raise _NotAMap("a reduction over no axes")
            axes = list(range(rank))
        return sorted({a % rank for a in axes}) if rank else []

    def _reduce(self, n: onnx.NodeProto, operands: list[_Value]) -> None:
        v = operands[0]
        axes = [a + 1 for a in self._axes(n, v.rank)]
        keepdims = attr_value(n, "keepdims", 1)
        if self.g.opset >= AXES_INPUT_FROM.get(n.op_type, 18):
            inputs = [v.name, self.g.constant(np.array(axes, np.int64), f"{self.node.name}/map/reduce_axes")]
            out = self.emit(n.op_type, inputs, n.output[0], keepdims=keepdims)
        else:
            out = self.emit(n.op_type, [v.name], n.output[0], axes=axes, keepdims=keepdims)
        self.values[n.output[0]] = _Value(out, v.rank if keepdims else v.rank - len(axes), True)


def _attrs(n: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in n.attribute}


def _passed_through(body: onnx.GraphProto, states: int) -> bool:
    """Every state output is its state input (directly or through Identity nodes)."""
    producer = {o: n for n in body.node for o in n.output}
    for i in range(states):
        name = body.output[i].name
        while name in producer and producer[name].op_type == "Identity":
            name = producer[name].input[0]
        if name != body.input[i].name:
            return False
    return True


def map_scan(g: _Graph, node: onnx.NodeProto, path: str) -> list[onnx.NodeProto] | None:
    """The nodes computing the Scan `node` as a map, or None when it is not one (then it is unrolled)."""
    if g.opset < 13:
        return None
    body = _body_of(node, path)
    m = attr_value(node, "num_scan_inputs")
    n = len(node.input) - m
    k = len(body.output) - n
    for name, count in (("scan_input_axes", m), ("scan_input_directions", m), ("scan_output_axes", k), ("scan_output_directions", k)):
        if any(attr_value(node, name, [0] * count)):
            return None
    if k == 0 or not _passed_through(body, n) or any(g.shapes.get(s) is None for s in node.input[n:]):
        return None
    lengths = {g.shapes[s][0] for s in node.input[n:]}
    if len(lengths) != 1 or None in lengths or lengths.pop() == 0:
        return None
    mapper = _Mapper(g, node, body)
    for inner, outer in zip(body.input[n:], node.input[n:]):
        mapper.values[inner.name] = _Value(outer, len(g.shapes[outer]) - 1, True)
    try:
        for inner, outer in zip(body.input[:n], node.input[:n]):  # states: the outer values, as any outer name reads
            mapper.values[inner.name] = mapper.value(outer)
        for body_node in body.node:
            mapper.map_node(body_node)
    except _NotAMap:
        return None
    results = [mapper.values.get(o.name) for o in body.output[n:]]
    if any(r is None or not r.batched for r in results):
        return None  # a scan output the same in every iteration: unrolled (it would need tiling)
    nodes = mapper.nodes
    nodes += [helper.make_node("Identity", [state], [out], name=g.fresh(f"{node.name}/map/final{i}"))
              for i, (state, out) in enumerate(zip(node.input[:n], node.output[:n])) if out]
    nodes += [helper.make_node("Identity", [r.name], [out], name=g.fresh(f"{node.name}/map/scan_output{i}"))
              for i, (r, out) in enumerate(zip(results, node.output[n:])) if out]
    return nodes
