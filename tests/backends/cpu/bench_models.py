"""The CPU benchmark models (not a test module): `python tests/backends/cpu/bench_models.py OUTDIR` writes

* mm512.onnx  MatMul 512x512x512 + Add + Relu (weights as initializers)
* cnn.onnx    1x3x64x64: Conv3x3(32)+Relu, Conv3x3(32)+Relu, MaxPool2, Conv3x3(64)+Relu, MaxPool2, Flatten, Gemm(10)
* mlp.onnx    64x784: Gemm(1024, transB)+Relu, Gemm(512, transB)+Relu, Gemm(10, transB)

then, for example: `python tools/bench.py OUTDIR/mm512.onnx --repeat 200`.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


def _builder(seed: int = 0):
    rng = np.random.default_rng(seed)

    def weight(name, shape):
        scale = 1 / np.sqrt(np.prod(shape[1:]) if len(shape) > 1 else 1)
        return nh.from_array((rng.standard_normal(shape).astype(np.float32) * scale).astype(np.float32), name)

    return weight


def _model(nodes, inits, inputs, outputs, name) -> onnx.ModelProto:
    model = h.make_model(h.make_graph(nodes, name, inputs, outputs, inits), opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def mm512() -> onnx.ModelProto:
    w = _builder()
    nodes = [h.make_node("MatMul", ["x", "w"], ["y"]), h.make_node("Add", ["y", "b"], ["z"]), h.make_node("Relu", ["z"], ["out"])]
    return _model(nodes, [w("w", [512, 512]), w("b", [512])], [h.make_tensor_value_info("x", T.FLOAT, [512, 512])],
                  [h.make_tensor_value_info("out", T.FLOAT, [512, 512])], "mm512")


def cnn() -> onnx.ModelProto:
    w = _builder()
    nodes = [
        h.make_node("Conv", ["x", "c1w", "c1b"], ["c1"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c1"], ["r1"]),
        h.make_node("Conv", ["r1", "c2w", "c2b"], ["c2"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c2"], ["r2"]),
        h.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        h.make_node("Conv", ["p2", "c3w", "c3b"], ["c3"], pads=[1, 1, 1, 1]), h.make_node("Relu", ["c3"], ["r3"]),
        h.make_node("MaxPool", ["r3"], ["p3"], kernel_shape=[2, 2], strides=[2, 2]),
        h.make_node("Flatten", ["p3"], ["f"]), h.make_node("Gemm", ["f", "fw", "fb"], ["out"], transB=1),
    ]
    inits = [w("c1w", [32, 3, 3, 3]), w("c1b", [32]), w("c2w", [32, 32, 3, 3]), w("c2b", [32]), w("c3w", [64, 32, 3, 3]),
             w("c3b", [64]), w("fw", [10, 64 * 16 * 16]), w("fb", [10])]
    return _model(nodes, inits, [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 64, 64])], [h.make_tensor_value_info("out", T.FLOAT, [1, 10])], "cnn")


def mlp() -> onnx.ModelProto:
    w = _builder()
    nodes = [
        h.make_node("Gemm", ["x", "w1", "b1"], ["h1"], transB=1), h.make_node("Relu", ["h1"], ["a1"]),
        h.make_node("Gemm", ["a1", "w2", "b2"], ["h2"], transB=1), h.make_node("Relu", ["h2"], ["a2"]),
        h.make_node("Gemm", ["a2", "w3", "b3"], ["out"], transB=1),
    ]
    inits = [w("w1", [1024, 784]), w("b1", [1024]), w("w2", [512, 1024]), w("b2", [512]), w("w3", [10, 512]), w("b3", [10])]
    return _model(nodes, inits, [h.make_tensor_value_info("x", T.FLOAT, [64, 784])], [h.make_tensor_value_info("out", T.FLOAT, [64, 10])], "mlp")


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else ".")
    out.mkdir(parents=True, exist_ok=True)
    for name, build in (("mm512", mm512), ("cnn", cnn), ("mlp", mlp)):
        onnx.save(build(), out / f"{name}.onnx")
        print(out / f"{name}.onnx")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
