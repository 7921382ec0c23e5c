"""Store a Gemm's transposed weight the way the kernels read it best: `Gemm(A, W, transB=1)` with W an
initializer becomes `Gemm(A, W.T)` with W.T stored, once, at compile time.

torch exports every 2-D `nn.Linear` as Gemm with transB=1 (W is [out, in]). The GEMM micro-kernel reads a B with
unit column stride in place; a transposed B is gathered element by element into panels on every call, which cost
about as much as the product itself for a batch of 64 (measured on the MLP of tools/bench_models.py). A weight that
other nodes also read keeps its own copy. With a few rows (batch 1) the transposed layout is the better one (the
kernel's dot products read both operands contiguously), so those Gemms are left alone.
"""
from __future__ import annotations

import onnx
from onnx import numpy_helper

from hcc.frontend.attributes import attr_value

FEW_ROWS = 4  # the micro-kernels' small-M path (backends/cpu/runtime/ukernels.c SMALL_M)


def _rows(graph: onnx.GraphProto) -> dict[str, int]:
    """First dim of every tensor whose shape inference knows it."""
    rows = {}
    for value in list(graph.input) + list(graph.value_info):
        dims = value.type.tensor_type.shape.dim if value.type.HasField("tensor_type") else []
        if dims and dims[0].HasField("dim_value"):
            rows[value.name] = dims[0].dim_value
    return rows


def _redeclare(graph: onnx.GraphProto, name: str, shape: list[int]) -> None:
    """An initializer also declared as a graph input or value (older exporters) gets its new shape there too."""
    for value in list(graph.input) + list(graph.value_info):
        if value.name == name and value.type.HasField("tensor_type"):
            value.type.tensor_type.ClearField("shape")
            for d in shape:
                value.type.tensor_type.shape.dim.add().dim_value = d


def pretranspose_gemm_weights(model: onnx.ModelProto) -> int:
    """Rewrite every Gemm(transB=1) whose B is a 2-D initializer; returns how many. Mutates `model`."""
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    rows = _rows(graph)
    rewritten = 0
    for node in graph.node:
        if node.op_type != "Gemm" or len(node.input) < 2 or attr_value(node, "transB", 0) != 1:
            continue
        if rows.get(node.input[0], FEW_ROWS + 1) <= FEW_ROWS and attr_value(node, "transA", 0) == 0:
            continue
        weight = initializers.get(node.input[1])
        if weight is None or len(weight.dims) != 2:
            continue
        array = numpy_helper.to_array(weight).T.copy()
        if readers[weight.name] == 1:
            weight.CopyFrom(numpy_helper.from_array(array, weight.name))
            _redeclare(graph, weight.name, list(array.shape))
        else:
            name = f"{weight.name}__hcc_transposed"
            if name not in initializers:
                initializers[name] = numpy_helper.from_array(array, name)
                graph.initializer.append(initializers[name])
            node.input[1] = name
        for attribute in node.attribute:
            if attribute.name == "transB":
                attribute.i = 0
        rewritten += 1
    return rewritten
