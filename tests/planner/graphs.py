"""Hand-built ONNX graphs for the partitioner tests (onnx.helper; weights are zeros: only shapes matter here), and
`two_branches` (random weights: the precision tests measure its errors)."""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx import helper as h

OPSET = 17


class Builder:
    def __init__(self, name: str = "g", opset: int = OPSET):
        self.name = name
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []

    def input(self, name: str, shape, elem=TensorProto.FLOAT) -> str:
        self.inputs.append(h.make_tensor_value_info(name, elem, list(shape)))
        return name

    def weight(self, name: str, shape, dtype=np.float32) -> str:
        self.inits.append(numpy_helper.from_array(np.zeros(shape, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, n_out: int = 1, **attrs) -> str:
        outs = [name] if n_out == 1 else [f"{name}:{i}" for i in range(n_out)]
        self.nodes.append(h.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0]

    def conv(self, x: str, cin: int, cout: int, k: int, name: str, stride: int = 1) -> str:
        w = self.weight(f"{name}.w", (cout, cin, k, k))
        b = self.weight(f"{name}.b", (cout,))
        return self.op("Conv", [x, w, b], name, kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4)

    def bn(self, x: str, c: int, name: str) -> str:
        ws = [self.weight(f"{name}.{p}", (c,)) for p in ("scale", "bias", "mean", "var")]
        return self.op("BatchNormalization", [x] + ws, name)

    def gemm(self, x: str, k: int, n: int, name: str) -> str:
        return self.op("Gemm", [x, self.weight(f"{name}.w", (n, k)), self.weight(f"{name}.b", (n,))], name, transB=1)

    def matmul(self, x: str, k: int, n: int, name: str) -> str:
        return self.op("MatMul", [x, self.weight(f"{name}.w", (k, n))], name)

    def model(self, outputs: list[str]) -> onnx.ModelProto:
        graph = h.make_graph(self.nodes, self.name, self.inputs, [h.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], self.inits)
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", self.opset)])
        model.ir_version = 8
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def chain(ops: list[str], shape=(1, 64), name: str = "chain") -> onnx.ModelProto:
    """x -> op0 -> op1 -> ... (unary elementwise ops, or 'Gemm:N' for a square Gemm of width N)."""
    b = Builder(name)
    x = b.input("x", shape)
    for i, op in enumerate(ops):
        if op.startswith("Gemm"):
            x = b.gemm(x, shape[-1], shape[-1], f"n{i}")
        elif op.startswith("MatMul"):
            x = b.matmul(x, shape[-1], shape[-1], f"n{i}")
        else:
            x = b.op(op, [x], f"n{i}")
    return b.model([x])


def diamond(width: int = 1024, heavy: int = 4096) -> onnx.ModelProto:
    """x -> a(Relu) -> {b: big Gemm chain, c: Sigmoid} -> d(Add) -> y."""
    b = Builder("diamond")
    x = b.input("x", (heavy, width))
    a = b.op("Relu", [x], "a")
    left = b.matmul(a, width, width, "b1")
    left = b.matmul(left, width, width, "b2")
    right = b.op("Sigmoid", [a], "c")
    d = b.op("Add", [left, right], "d")
    return b.model([d])


def resnet18(batch: int = 1, image: int = 224, classes: int = 1000) -> onnx.ModelProto:
    """ResNet-18 topology (conv/bn/relu, basic blocks, global pool, fc): 60-odd nodes, 11.7M weights."""
    b = Builder("resnet18")
    x = b.input("input", (batch, 3, image, image))
    x = b.op("Relu", [b.bn(b.conv(x, 3, 64, 7, "conv1", 2), 64, "bn1")], "relu1")
    x = b.op("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage, cout in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            p = f"layer{stage}.{block}"
            y = b.op("Relu", [b.bn(b.conv(x, cin, cout, 3, f"{p}/conv1", stride), cout, f"{p}/bn1")], f"{p}/relu1")
            y = b.bn(b.conv(y, cout, cout, 3, f"{p}/conv2"), cout, f"{p}/bn2")
            if stride != 1 or cin != cout:
                x = b.bn(b.conv(x, cin, cout, 1, f"{p}/down", stride), cout, f"{p}/downbn")
            x = b.op("Relu", [b.op("Add", [y, x], f"{p}/add")], f"{p}/relu2")
            cin = cout
    x = b.op("GlobalAveragePool", [x], "gap")
    x = b.op("Flatten", [x], "flatten")
    x = b.gemm(x, 512, classes, "fc")
    return b.model([x])


def transformer(layers: int = 2, seq: int = 128, dim: int = 512, heads: int = 8, batch: int = 1) -> onnx.ModelProto:
    """Pre-norm transformer encoder blocks: LayerNorm, QKV MatMuls, Reshape/Transpose, Softmax attention, GELU MLP."""
    b = Builder("transformer", opset=20)  # Gelu is opset 20
    x = b.input("x", (batch, seq, dim))
    hd = dim // heads
    shape_heads = b.weight("shape_heads", (4,), np.int64)
    b.inits[-1].CopyFrom(numpy_helper.from_array(np.array([batch, seq, heads, hd], np.int64), "shape_heads"))
    shape_back = b.weight("shape_back", (3,), np.int64)
    b.inits[-1].CopyFrom(numpy_helper.from_array(np.array([batch, seq, dim], np.int64), "shape_back"))
    scale = b.weight("scale", ())
    for i in range(layers):
        p = f"block{i}"
        ln = b.op("LayerNormalization", [x, b.weight(f"{p}.ln1.g", (dim,)), b.weight(f"{p}.ln1.b", (dim,))], f"{p}/ln1", axis=-1)
        heads_ = []
        for which in "qkv":
            t = b.matmul(ln, dim, dim, f"{p}/{which}")
            t = b.op("Reshape", [t, shape_heads], f"{p}/{which}_reshape")
            perm = [0, 2, 3, 1] if which == "k" else [0, 2, 1, 3]
            heads_.append(b.op("Transpose", [t], f"{p}/{which}_t", perm=perm))
        s = b.op("MatMul", [heads_[0], heads_[1]], f"{p}/scores")
        s = b.op("Mul", [s, scale], f"{p}/scale")
        s = b.op("Softmax", [s], f"{p}/softmax", axis=-1)
        o = b.op("MatMul", [s, heads_[2]], f"{p}/attn")
        o = b.op("Transpose", [o], f"{p}/attn_t", perm=[0, 2, 1, 3])
        o = b.op("Reshape", [o, shape_back], f"{p}/attn_reshape")
        o = b.matmul(o, dim, dim, f"{p}/proj")
        x = b.op("Add", [x, o], f"{p}/res1")
        ln = b.op("LayerNormalization", [x, b.weight(f"{p}.ln2.g", (dim,)), b.weight(f"{p}.ln2.b", (dim,))], f"{p}/ln2", axis=-1)
        m = b.matmul(ln, dim, 4 * dim, f"{p}/fc1")
        m = b.op("Gelu", [m], f"{p}/gelu")
        m = b.matmul(m, 4 * dim, dim, f"{p}/fc2")
        x = b.op("Add", [x, m], f"{p}/res2")
    return b.model([x])


def synthetic(n_ops: int = 240, width: int = 256, rows: int = 64, seed: int = 0) -> onnx.ModelProto:
    """A long DAG of mixed ops with skip connections (MatMul, Relu, Tanh, Add, Softmax): for solver timing."""
    rng = np.random.default_rng(seed)
    b = Builder("synthetic")
    x = b.input("x", (rows, width))
    values = [x]
    for i in range(n_ops):
        kind = ["MatMul", "Relu", "Tanh", "Add", "Softmax", "Sigmoid"][int(rng.integers(0, 6))]
        src = values[-1]
        if kind == "MatMul":
            y = b.matmul(src, width, width, f"op{i}")
        elif kind == "Add":
            other = values[int(rng.integers(max(0, len(values) - 8), len(values)))]
            y = b.op("Add", [src, other], f"op{i}")
        elif kind == "Softmax":
            y = b.op("Softmax", [src], f"op{i}", axis=-1)
        else:
            y = b.op(kind, [src], f"op{i}")
        values.append(y)
    return b.model([values[-1]])


OFFSET = 1000.0  # sg2 works around +1000, where fp16's spacing is 0.5: its rounding error is ~0.25 after the CPU removes it


def two_branches(seed: int = 3) -> onnx.ModelProto:
    """fc0 (Gemm 64->64) | mm1 + add1 + relu1 | tanh | mm2 + shift (+1000) | unshift (-1000) -> y [8, 32].
    The tests place it as FPGA | GPU | CPU | GPU | CPU (--place 'fc0=fpga' 'mm1|add1|relu1|mm2|shift=gpu'
    'tanh|unshift=cpu'): the first GPU subgraph works on O(1) values (fp16 costs ~1e-3), the second around 1000
    (fp16 costs ~0.25 once the offset is removed)."""
    rng = np.random.default_rng(seed)
    lecun = lambda *s: (rng.standard_normal(s) / math.sqrt(s[0])).astype(np.float32)  # noqa: E731
    inits = {"w0": lecun(64, 64), "b0": np.zeros(64, np.float32), "w1": lecun(64, 64), "b1": np.full(64, 0.1, np.float32),
             "w2": lecun(64, 32), "offset": np.array(OFFSET, np.float32)}
    nodes = [h.make_node("Gemm", ["x", "w0", "b0"], ["g0"], name="fc0"),
             h.make_node("MatMul", ["g0", "w1"], ["m1"], name="mm1"), h.make_node("Add", ["m1", "b1"], ["a1"], name="add1"),
             h.make_node("Relu", ["a1"], ["r1"], name="relu1"), h.make_node("Tanh", ["r1"], ["t"], name="tanh"),
             h.make_node("MatMul", ["t", "w2"], ["m2"], name="mm2"), h.make_node("Add", ["m2", "offset"], ["s2"], name="shift"),
             h.make_node("Sub", ["s2", "offset"], ["y"], name="unshift")]
    graph = h.make_graph(nodes, "two_branches", [h.make_tensor_value_info("x", TensorProto.FLOAT, [8, 64])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [8, 32])],
                         initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    return onnx.shape_inference.infer_shapes(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))
