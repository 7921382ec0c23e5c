"""Regenerate the embedded example model(s): `python examples/build_examples.py`.

`tiny_cnn.onnx` is a small image classifier (Conv+BN+ReLU, MaxPool, residual Add, GlobalAveragePool, Gemm,
Softmax) with deterministic random weights; `make demo` compiles, runs and checks it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def tiny_cnn() -> onnx.ModelProto:
    rng = np.random.default_rng(2026)
    inits, nodes = [], []

    def weight(name, shape, scale=None):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        value = rng.standard_normal(shape).astype(np.float32) * (scale or np.sqrt(2.0 / fan_in))
        inits.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv_bn_relu(prefix, x, cin, cout, relu=True):
        nodes.append(helper.make_node("Conv", [x, weight(f"{prefix}.w", [cout, cin, 3, 3]), weight(f"{prefix}.b", [cout], 0.1)],
                                      [f"{prefix}.conv"], name=f"{prefix}/conv", pads=[1, 1, 1, 1]))
        bn = [weight(f"{prefix}.bn.{k}", [cout], 0.1) for k in ("scale", "bias", "mean")]
        var = f"{prefix}.bn.var"
        inits.append(numpy_helper.from_array((rng.random(cout) + 0.5).astype(np.float32), var))
        nodes.append(helper.make_node("BatchNormalization", [f"{prefix}.conv", *bn, var], [f"{prefix}.bn"], name=f"{prefix}/bn"))
        if not relu:
            return f"{prefix}.bn"
        nodes.append(helper.make_node("Relu", [f"{prefix}.bn"], [f"{prefix}.relu"], name=f"{prefix}/relu"))
        return f"{prefix}.relu"

    x = conv_bn_relu("stem", "image", 3, 16)
    nodes.append(helper.make_node("MaxPool", [x], ["pool"], name="stem/pool", kernel_shape=[2, 2], strides=[2, 2]))
    y = conv_bn_relu("block.0", "pool", 16, 16)
    y = conv_bn_relu("block.1", y, 16, 16, relu=False)
    nodes.append(helper.make_node("Add", ["pool", y], ["block.sum"], name="block/add"))
    nodes.append(helper.make_node("Relu", ["block.sum"], ["block.out"], name="block/relu"))
    nodes.append(helper.make_node("GlobalAveragePool", ["block.out"], ["gap"], name="head/gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="head/flatten"))
    nodes.append(helper.make_node("Gemm", ["flat", weight("fc.w", [10, 16]), weight("fc.b", [10], 0.1)], ["logits"], name="head/fc", transB=1))
    nodes.append(helper.make_node("Softmax", ["logits"], ["probs"], name="head/softmax", axis=-1))
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, 32, 32])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hcc-examples")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    out = Path(__file__).with_name("tiny_cnn.onnx")
    onnx.save(tiny_cnn(), out)
    print(f"wrote {out} ({out.stat().st_size} bytes)")
