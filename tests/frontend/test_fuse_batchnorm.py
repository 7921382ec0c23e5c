"""BatchNormalization folded into its producer (frontend/fuse_batchnorm.py), or, with no producer to fold into,
decomposed into a precomputed Mul + Add: the loaded model has no BatchNormalization left, and the compiled bundle
matches onnxruntime on the ORIGINAL model (at opsets 11, 15 and 22: torch-mlir alone converts BN only from 15 on)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

from hcc.frontend.fuse_batchnorm import fuse_batchnorm
from hcc.frontend.loader import load_model

RNG = np.random.default_rng(11)


def _w(name: str, *shape: int, scale: float = 0.5) -> onnx.TensorProto:
    return numpy_helper.from_array((RNG.standard_normal(shape) * scale).astype(np.float32), name)


def _bn_inits(c: int, prefix: str = "bn") -> list[onnx.TensorProto]:
    var = RNG.uniform(0.3, 2.0, c).astype(np.float32)
    return [_w(f"{prefix}.scale", c), _w(f"{prefix}.bias", c), _w(f"{prefix}.mean", c), numpy_helper.from_array(var, f"{prefix}.var")]


def _bn(x: str, y: str, prefix: str = "bn", **attrs) -> onnx.NodeProto:
    return h.make_node("BatchNormalization", [x, f"{prefix}.scale", f"{prefix}.bias", f"{prefix}.mean", f"{prefix}.var"], [y],
                       name=prefix, epsilon=1e-3, **attrs)


def _model(nodes, x_shape, outputs, inits, opset: int = 17) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "bn_case", [h.make_tensor_value_info("x", T.FLOAT, list(x_shape))],
                         [h.make_tensor_value_info(o, T.FLOAT, None) for o in outputs], initializer=inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=8 if opset <= 18 else 10)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)  # fills in the output shapes
    del model.graph.value_info[:]
    onnx.checker.check_model(model, full_check=True)
    return model


def conv_bn(bias: bool = True, group: int = 1, opset: int = 17, **bn_attrs) -> onnx.ModelProto:
    cin, cout = 4, 8 if group == 1 else 4
    inits = [_w("w", cout, cin // group, 3, 3)] + ([_w("b", cout)] if bias else []) + _bn_inits(cout)
    conv = h.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["c"], name="conv", pads=[1, 1, 1, 1], group=group)
    return _model([conv, _bn("c", "y", **bn_attrs)], (1, cin, 6, 6), ["y"], inits, opset)


def conv_transpose_bn(group: int = 1) -> onnx.ModelProto:
    cin, cout_per_group = 4, 3
    inits = [_w("w", cin, cout_per_group, 3, 3), _w("b", cout_per_group * group)] + _bn_inits(cout_per_group * group)
    conv = h.make_node("ConvTranspose", ["x", "w", "b"], ["c"], name="deconv", strides=[2, 2], group=group)
    return _model([conv, _bn("c", "y")], (1, cin, 5, 5), ["y"], inits)


def gemm_bn(trans_b: int, with_c: bool) -> onnx.ModelProto:
    w = _w("w", 6, 5) if trans_b else _w("w", 5, 6)
    inits = [w] + ([_w("c", 6)] if with_c else []) + _bn_inits(6)
    gemm = h.make_node("Gemm", ["x", "w"] + (["c"] if with_c else []), ["g"], name="fc", transB=trans_b, beta=0.5)
    return _model([gemm, _bn("g", "y")], (3, 5), ["y"], inits)


def matmul_bn(with_add: bool) -> onnx.ModelProto:
    nodes = [h.make_node("MatMul", ["x", "w"], ["m"], name="mm")]
    inits = [_w("w", 5, 6)] + _bn_inits(6)
    if with_add:
        nodes.append(h.make_node("Add", ["m", "b"], ["a"], name="add"))
        inits.append(_w("b", 6))
    nodes.append(_bn("a" if with_add else "m", "y"))
    return _model(nodes, (3, 5), ["y"], inits)


def relu_bn(opset: int = 17) -> onnx.ModelProto:
    nodes = [h.make_node("Relu", ["x"], ["r"], name="relu"), _bn("r", "y")]
    return _model(nodes, (1, 3, 4, 4), ["y"], _bn_inits(3), opset)


def conv_two_consumers() -> onnx.ModelProto:
    """The conv output also feeds an Add: folding would change what the Add sees."""
    inits = [_w("w", 3, 3, 3, 3), _w("b", 3)] + _bn_inits(3)
    nodes = [h.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]), _bn("c", "n"),
             h.make_node("Add", ["n", "c"], ["y"], name="residual")]
    return _model(nodes, (1, 3, 5, 5), ["y"], inits)


def conv_bn_relu_two_outputs() -> onnx.ModelProto:
    """The BN output is a graph output and feeds a Relu: the folded conv takes its name."""
    inits = [_w("w", 4, 2, 3, 3)] + _bn_inits(4)
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], name="conv"), _bn("c", "bn_out"), h.make_node("Relu", ["bn_out"], ["y"], name="relu")]
    return _model(nodes, (1, 2, 6, 6), ["bn_out", "y"], inits)


FOLDED = {
    "conv": lambda: conv_bn(),
    "conv-no-bias": lambda: conv_bn(bias=False),
    "conv-depthwise": lambda: conv_bn(bias=False, group=4),
    "conv-opset11": lambda: conv_bn(opset=11),
    "conv-opset15-training-mode-0": lambda: conv_bn(opset=15, training_mode=0),
    "conv-opset22": lambda: conv_bn(opset=22),
    "conv-transpose": lambda: conv_transpose_bn(),
    "conv-transpose-grouped": lambda: conv_transpose_bn(group=2),
    "gemm-transB-with-C": lambda: gemm_bn(1, True),
    "gemm-no-C": lambda: gemm_bn(0, False),
    "matmul-add": lambda: matmul_bn(True),
    "matmul": lambda: matmul_bn(False),
    "graph-output-and-consumer": conv_bn_relu_two_outputs,
}
NOT_FOLDED = {  # decomposed instead
    "after-relu": lambda: relu_bn(),
    "after-relu-opset11": lambda: relu_bn(11),
    "after-relu-opset15": lambda: relu_bn(15),
    "after-relu-opset22": lambda: relu_bn(22),
    "producer-has-two-consumers": conv_two_consumers,
}


def _ort(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)


def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return {"x": np.random.default_rng(5).standard_normal(shape).astype(np.float32)}


def _op_types(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _compile_and_compare(model: onnx.ModelProto, tmp_path) -> onnx.ModelProto:
    """Compile with hcc, run, compare with onnxruntime on the original model; returns the loaded (folded) model."""
    import hcc
    import hcc.runtime

    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    hcc.compile(path, tmp_path / "bundle")
    feeds = _feeds(model)
    actual = hcc.runtime.load(tmp_path / "bundle").run(None, feeds)
    for got, want in zip(actual, _ort(model, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    return load_model(str(path)).model


@pytest.mark.parametrize("build", FOLDED.values(), ids=FOLDED.keys())
def test_folded_matches_onnxruntime(build, tmp_path):
    model = build()
    loaded = _compile_and_compare(model, tmp_path)
    assert "BatchNormalization" not in _op_types(loaded)
    onnx.checker.check_model(loaded, full_check=True)
    assert [o.name for o in loaded.graph.output] == [o.name for o in model.graph.output]
    kept = {n.name for n in model.graph.node if n.op_type != "BatchNormalization"}
    assert kept <= {n.name for n in loaded.graph.node}  # the producer keeps its name
    names = {i.name for i in loaded.graph.initializer}
    assert not {"bn.scale", "bn.bias", "bn.mean", "bn.var"} & names  # unused initializers are removed


@pytest.mark.parametrize("build", NOT_FOLDED.values(), ids=NOT_FOLDED.keys())
def test_unfoldable_bn_is_decomposed_and_compiles(build, tmp_path):
    model = build()
    loaded = _compile_and_compare(model, tmp_path)
    assert "BatchNormalization" not in _op_types(loaded)
    producer = next(n for n in loaded.graph.node if n.name == model.graph.node[0].name)
    assert list(producer.output) == list(model.graph.node[0].output)  # not folded into: its output is unchanged
    mul = next(n for n in loaded.graph.node if n.name == "bn")
    assert mul.op_type == "Mul" and mul.input[0] == producer.output[0]


def test_shared_weight_is_copied_not_changed():
    """Two convs read one weight; only one is followed by a BN: the other must still see the original weight."""
    inits = [_w("w", 3, 3, 1, 1)] + _bn_inits(3)
    nodes = [h.make_node("Conv", ["x", "w"], ["c1"], name="conv1"), _bn("c1", "y1"),
             h.make_node("Conv", ["x", "w"], ["y2"], name="conv2")]
    model = _model(nodes, (1, 3, 4, 4), ["y1", "y2"], inits)
    original = onnx.ModelProto()
    original.CopyFrom(model)
    assert fuse_batchnorm(model) == 1
    assert "BatchNormalization" not in _op_types(model)
    conv2 = next(n for n in model.graph.node if n.name == "conv2")
    assert conv2.input[1] == "w" and "w" in {i.name for i in model.graph.initializer}
    feeds = _feeds(model)
    for got, want in zip(_ort(model, feeds), _ort(original, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attrs, outputs, opset, constant", [({"training_mode": 1}, 3, 15, True), ({}, 3, 11, True), ({}, 1, 17, False)],
                         ids=["training-mode", "extra-outputs", "parameters-are-inputs"])
def test_other_forms_are_left_alone(attrs, outputs, opset, constant):
    inits = [_w("w", 3, 3, 1, 1)] + (_bn_inits(3) if constant else [])
    bn = h.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["y", "rm", "rv"][:outputs],
                     name="bn", **attrs)
    params = [] if constant else [h.make_tensor_value_info(f"bn.{p}", T.FLOAT, [3]) for p in ("scale", "bias", "mean", "var")]
    graph = h.make_graph([h.make_node("Conv", ["x", "w"], ["c"], name="conv"), bn], "g",
                         [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 4, 4])] + params,
                         [h.make_tensor_value_info("y", T.FLOAT, None)], inits)
    model = onnx.shape_inference.infer_shapes(h.make_model(graph, opset_imports=[h.make_opsetid("", opset)]))
    assert fuse_batchnorm(model) == 0
    assert _op_types(model) == ["Conv", "BatchNormalization"]


def test_constant_node_parameters_are_folded():
    """BN parameters given as Constant nodes (some exporters do): folded, and the dead Constants removed."""
    model = conv_bn()
    consts = []
    for init in [i for i in model.graph.initializer if i.name.startswith("bn.")]:
        consts.append(h.make_node("Constant", [], [init.name], name=f"const_{init.name}", value=init))
    kept = [i for i in model.graph.initializer if not i.name.startswith("bn.")]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    nodes = consts + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    original = onnx.ModelProto()
    original.CopyFrom(model)
    assert fuse_batchnorm(model) == 1
    assert _op_types(model) == ["Conv"]
    feeds = _feeds(model)
    np.testing.assert_allclose(_ort(model, feeds)[0], _ort(original, feeds)[0], rtol=1e-5, atol=1e-6)
