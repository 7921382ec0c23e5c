"""Small models (onnx.helper) and a compile helper that runs the worker's steps for one FPGA subgraph."""
from __future__ import annotations

import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx import helper as h

from hcc.options import CompileOptions, ModelFiles

OPSET = 17


class G:
    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits = [], []

    def w(self, name, shape, std=1.0):
        self.inits.append(numpy_helper.from_array((self.rng.standard_normal(shape) * std).astype(np.float32), name))
        return name

    def c(self, name, value, dtype=np.float32):
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def n(self, op, inputs, name, **attrs):
        self.nodes.append(h.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv(self, x, cin, cout, k, name, group=1, stride=1, bias=True):
        ins = [x, self.w(f"{name}.weight", (cout, cin // group, k, k), math.sqrt(2.0 / (cin // group * k * k)))]
        if bias:
            ins.append(self.w(f"{name}.bias", (cout,), 0.1))
        return self.n("Conv", ins, name, kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride, stride], group=group)

    def bn(self, x, c, name):
        ins = [x, self.c(f"{name}.g", self.rng.uniform(0.5, 1.2, c)), self.c(f"{name}.b", self.rng.standard_normal(c) * 0.1),
               self.c(f"{name}.m", self.rng.standard_normal(c) * 0.1), self.c(f"{name}.v", self.rng.uniform(0.5, 1.5, c))]
        return self.n("BatchNormalization", ins, name, epsilon=1e-5)

    def build(self, name, inputs, outputs):
        graph = h.make_graph(self.nodes, name, [h.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                             [h.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs], self.inits)
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], ir_version=8)
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        onnx.checker.check_model(model, full_check=True)
        return model


def tiny_cnn() -> onnx.ModelProto:
    """Conv (no bias) + BatchNorm + Relu + MaxPool, Conv + BatchNorm + Relu + MaxPool, Flatten, Gemm + Relu, Gemm."""
    g = G(11)
    x = "x"
    for i, (cin, cout) in enumerate([(3, 4), (4, 8)], start=1):
        x = g.n("Relu", [g.bn(g.conv(x, cin, cout, 3, f"conv{i}", bias=False), cout, f"bn{i}")], f"relu{i}")
        x = g.n("MaxPool", [x], f"pool{i}", kernel_shape=[2, 2], strides=[2, 2])
    x = g.n("Flatten", [x], "flatten", axis=1)
    x = g.n("Relu", [g.n("Gemm", [x, g.w("fc1.w", (16, 8 * 2 * 2), 0.3), g.w("fc1.b", (16,), 0.1)], "fc1", transB=1)], "fc1_relu")
    g.n("Gemm", [x, g.w("fc2.w", (16, 5), 0.3), g.w("fc2.b", (5,), 0.1)], "logits")
    return g.build("tiny_cnn", [("x", [1, 3, 8, 8])], ["logits"])


def mlp() -> onnx.ModelProto:
    """Gemm + Relu, MatMul + Add + Relu, Gemm, batch 2."""
    g = G(12)
    x = g.n("Relu", [g.n("Gemm", ["x", g.w("fc1.w", (24, 12), 0.3), g.w("fc1.b", (24,), 0.1)], "fc1", transB=1)], "fc1_relu")
    x = g.n("Relu", [g.n("Add", [g.n("MatMul", [x, g.w("fc2.w", (24, 16), 0.25)], "fc2_mm"), g.w("fc2.b", (16,), 0.1)], "fc2_add")], "fc2_relu")
    g.n("Gemm", [x, g.w("fc3.w", (16, 6), 0.3), g.w("fc3.b", (6,), 0.1)], "out")
    return g.build("mlp", [("x", [2, 12])], ["out"])


def depthwise() -> onnx.ModelProto:
    """Depthwise Conv + Clip (ReLU6), AveragePool, pointwise Conv + BatchNorm, GlobalAveragePool."""
    g = G(13)
    x = g.conv("x", 6, 6, 3, "dw", group=6)
    x = g.n("Clip", [x, g.c("clip.lo", 0.0), g.c("clip.hi", 6.0)], "relu6")
    x = g.n("AveragePool", [x], "avg", kernel_shape=[2, 2], strides=[2, 2])
    x = g.bn(g.conv(x, 6, 4, 1, "pw", bias=False), 4, "pw_bn")
    g.n("GlobalAveragePool", [x], "gap")
    return g.build("depthwise", [("x", [1, 6, 8, 8])], ["gap"])


def activations() -> onnx.ModelProto:
    """Sigmoid, Tanh, Concat, Mul and Add of activations, MatMul, Softmax."""
    g = G(14)
    a = g.n("Sigmoid", [g.n("MatMul", ["x", g.w("wa", (8, 6), 0.5)], "mm_a")], "sig")
    b = g.n("Tanh", [g.n("MatMul", ["x", g.w("wb", (8, 6), 0.5)], "mm_b")], "tanh")
    c = g.n("Concat", [a, b], "cat", axis=1)
    d = g.n("Add", [g.n("Mul", [c, c], "sq"), c], "poly")
    logits = g.n("MatMul", [d, g.w("wc", (12, 5), 0.8)], "mm_c")
    g.n("Softmax", [logits], "softmax", axis=-1)
    return g.build("activations", [("x", [3, 8])], ["softmax"])


def shapes() -> onnx.ModelProto:
    """The data-movement and by-constant ops: Constant, Sub, Div, Pad, Transpose, GlobalMaxPool, Squeeze, Identity,
    Dropout, Unsqueeze, Reshape."""
    g = G(16)
    shift = numpy_helper.from_array(np.full((4, 1, 1), 0.25, np.float32), "shift")
    g.nodes.append(h.make_node("Constant", [], ["shift"], name="shift", value=shift))
    x = g.n("Sub", ["x", "shift"], "sub")
    x = g.n("Div", [x, g.c("scale", [[[2.0]], [[0.5]], [[4.0]], [[1.0]]])], "div")
    x = g.n("Pad", [x, g.c("pads", [0, 0, 1, 1, 0, 0, 1, 1], np.int64)], "pad", mode="constant")
    x = g.n("Transpose", [x], "transpose", perm=[0, 1, 3, 2])
    x = g.n("GlobalMaxPool", [x], "gmp")
    x = g.n("Squeeze", [x, g.c("sq_axes", [2, 3], np.int64)], "squeeze")
    x = g.n("Dropout", [g.n("Identity", [x], "identity")], "dropout")
    x = g.n("Unsqueeze", [x, g.c("unsq_axes", [1], np.int64)], "unsqueeze")
    g.n("Reshape", [x, g.c("shape", [1, 4], np.int64)], "reshape")
    return g.build("shapes", [("x", [1, 4, 6, 6])], ["reshape"])


def with_exp() -> onnx.ModelProto:
    g = G(15)
    g.n("Exp", [g.n("MatMul", ["x", g.w("w", (4, 4))], "mm")], "exp")
    return g.build("with_exp", [("x", [1, 4])], ["exp"])


@dataclass
class Compiled:
    model: onnx.ModelProto
    lifted_path: Path
    weights: dict
    spec: object
    linalg: str
    bundle: Path
    options: CompileOptions
    files: ModelFiles
    artifact: object

    @property
    def root(self) -> Path:
        return self.bundle / "fpga" / self.spec.id

    @property
    def so(self) -> Path:
        return self.bundle / self.artifact.file


def lower(model: onnx.ModelProto, work: Path, sg: str = "sg0"):
    """What the worker does before calling a backend: lift weights, import, outline one FPGA group, lower."""
    from hcc.frontend.importer import import_to_torch_dialect
    from hcc.frontend.loader import load_model
    from hcc.frontend.weights import lift_weights
    from hcc.passes.outline import SubgraphGroup, outline
    from hcc.passes.to_linalg import lower_to_linalg

    work.mkdir(parents=True, exist_ok=True)
    onnx.save(model, work / "model.onnx")
    loaded = load_model(str(work / "model.onnx"), None)
    lifted = lift_weights(loaded.model)
    onnx.save(lifted.model, work / "lifted.onnx")
    np.savez(work / "weights.npz", **lifted.weights)
    torch_text = import_to_torch_dialect(lifted.model)
    arg_names = [i.name for i in loaded.inputs] + list(lifted.weights)
    groups = [SubgraphGroup(sg, "fpga:xcu250", [n.name for n in lifted.model.graph.node])]
    node_outputs = {n.name: list(n.output) for n in lifted.model.graph.node}
    spec = outline(torch_text, groups, arg_names, node_outputs, [o.name for o in loaded.outputs])[0]
    return spec, lower_to_linalg(spec.module_text), lifted


def compile_fpga(model: onnx.ModelProto, work: Path, fpga: dict | None = None) -> Compiled:
    from hcc.backends.fpga import backend

    spec, linalg, lifted = lower(model, work)
    options = CompileOptions.from_keywords(fpga=fpga or {})
    files = ModelFiles(model=str(work / "lifted.onnx"), weights=str(work / "weights.npz"))
    artifact = backend.compile_subgraph(linalg, spec, work / "bundle", options, files)[0]
    return Compiled(model, work / "lifted.onnx", lifted.weights, spec, linalg, work / "bundle", options, files, artifact)


def run_csim(c: Compiled, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Call the csim .so like the runtime does (every subgraph input in order, weights included)."""
    from hcc.backends.fpga.backend import CsimLibrary

    args = [inputs[n] if n in inputs else c.weights[n] for n in c.spec.inputs]
    shapes = []
    ref = onnxruntime_outputs(c, inputs)
    for n in c.spec.outputs:
        shapes.append(ref[n].shape)
    lib = CsimLibrary(c.so, c.artifact.entry, len(c.spec.inputs) + len(c.spec.outputs))
    return dict(zip(c.spec.outputs, lib(args, shapes)))


def onnxruntime_outputs(c: Compiled, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from hcc.artifacts.golden import run_onnxruntime

    return run_onnxruntime(c.model, inputs)


def reference(c: Compiled, inputs: dict[str, np.ndarray]):
    """hcc's numpy fixed-point reference on new inputs: {output: Val} (codes, float track, error bound)."""
    from hcc.backends.fpga import backend, fixed_point

    state = backend.build(c.linalg, c.spec, c.options, c.files)
    prog = state["prog"]
    ev = fixed_point.Evaluator(prog, state["cfg"].table_size)
    vals = ev.run({b.id: inputs[b.tensor] for b in prog.inputs})
    return {b.tensor: vals[b.id] for b in prog.outputs}, ev


def gxx(args: list[str], cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["g++", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)
