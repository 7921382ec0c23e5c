"""Ops defined by an ONNX function body (frontend/functions.py): expanded into the body's nodes, compiled, and
compared with onnx's reference implementation of the op itself (onnx.reference, which implements Attention,
RMSNormalization and Swish natively, not through the body) or with onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx.reference import ReferenceEvaluator

from hcc.errors import HccError
from hcc.frontend.functions import expand_functions
from hcc.frontend.loader import load_model
from hcc.frontend.ops import SUPPORTED_OPS

F = T.FLOAT
RNG = np.random.default_rng(11)


def _model(nodes, inputs, outputs, opset: int) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "fn_case", [h.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                         [h.make_tensor_value_info(n, t, s) for n, t, s in outputs])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=10)
    onnx.checker.check_model(model, full_check=True)
    return model


def _attention(opset: int = 23, **attrs) -> onnx.ModelProto:
    node = h.make_node("Attention", ["q", "k", "v"], ["y"], name="attn", **attrs)
    return _model([node], [("q", F, [2, 3, 4, 8]), ("k", F, [2, 3, 6, 8]), ("v", F, [2, 3, 6, 5])],
                  [("y", F, [2, 3, 4, 5])], opset)


def _feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    feeds = {}
    for value in model.graph.input:
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if value.type.tensor_type.elem_type == T.INT64:
            feeds[value.name] = RNG.integers(0, shape[1] if len(shape) > 1 else 2, shape).astype(np.int64)
        else:
            feeds[value.name] = RNG.standard_normal(shape).astype(np.float32)
    return feeds


def _compile_and_compare(model: onnx.ModelProto, tmp_path, feeds: dict[str, np.ndarray], rtol=1e-4, atol=1e-5):
    """Compile with hcc, run the bundle and compare with onnx.reference run on the op itself (not its body)."""
    import hcc
    from hcc.runtime import load

    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    hcc.compile(path, tmp_path / "bundle")
    session = load(tmp_path / "bundle")
    actual = session.run(None, feeds)
    expected = ReferenceEvaluator(model).run(None, feeds)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and a.dtype == e.dtype
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol)
        assert np.abs(e).max() > 10 * atol  # the comparison is not vacuous


def test_expansion_names_nodes_after_the_original_and_matches_the_reference():
    model = _attention(is_causal=1)
    expanded, done = expand_functions(model, "m.onnx", SUPPORTED_OPS)
    assert [(e.node, e.op_type, e.opset) for e in done] == [("attn", "Attention", 23)]
    assert "Attention" not in {n.op_type for n in expanded.graph.node}
    assert all(n.name.startswith("attn/") for n in expanded.graph.node)
    assert len({n.name for n in expanded.graph.node}) == len(expanded.graph.node)
    assert model.graph.node[0].op_type == "Attention"  # the caller's model is left alone
    assert "expanded into its ONNX function body" in done[0].note()
    feeds = _feeds(model)
    want = ReferenceEvaluator(model).run(None, feeds)[0]
    got = ReferenceEvaluator(expanded).run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_native_ops_are_not_expanded():
    model = _model([h.make_node("Gelu", ["x"], ["y"], name="g")], [("x", F, [4])], [("y", F, [4])], 20)
    same, done = expand_functions(model, "m.onnx", SUPPORTED_OPS)
    assert same is model and done == []


def test_loader_notes_the_expansion_and_converts_to_opset_22(tmp_path):
    onnx.save(_attention(), tmp_path / "m.onnx")
    loaded = load_model(str(tmp_path / "m.onnx"))
    assert loaded.notes == [loaded.expanded[0].note()] and "'attn' (Attention)" in loaded.notes[0]
    assert loaded.model.opset_import[0].version == 22


@pytest.mark.parametrize("causal", [0, 1])
def test_attention_opset23_compiles_and_matches(tmp_path, causal):
    model = _attention(is_causal=causal)
    _compile_and_compare(model, tmp_path, _feeds(model))


def test_attention_with_scale_and_softcap(tmp_path):
    model = _attention(scale=0.3, softcap=2.0)
    _compile_and_compare(model, tmp_path, _feeds(model))


def test_rms_normalization_opset23(tmp_path):
    node = h.make_node("RMSNormalization", ["x", "s"], ["y"], name="rms", axis=-1, epsilon=1e-5)
    model = _model([node], [("x", F, [2, 5, 16]), ("s", F, [16])], [("y", F, [2, 5, 16])], 23)
    _compile_and_compare(model, tmp_path, _feeds(model))


def test_swish_opset24(tmp_path):
    node = h.make_node("Swish", ["x"], ["y"], name="sw", alpha=1.7)
    model = _model([node], [("x", F, [3, 7])], [("y", F, [3, 7])], 24)
    _compile_and_compare(model, tmp_path, _feeds(model))


def test_softmax_cross_entropy_expands_twice(tmp_path):
    """SoftmaxCrossEntropyLoss's body uses NegativeLogLikelihoodLoss, itself a function: two rounds."""
    node = h.make_node("SoftmaxCrossEntropyLoss", ["x", "t"], ["loss"], name="sce", reduction="mean")
    model = _model([node], [("x", F, [4, 5]), ("t", T.INT64, [4])], [("loss", F, [])], 13)
    expanded, done = expand_functions(model, "m.onnx", SUPPORTED_OPS)
    assert [e.op_type for e in done] == ["SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"]
    feeds = {"x": RNG.standard_normal((4, 5)).astype(np.float32), "t": np.array([0, 4, 2, 1], np.int64)}
    _compile_and_compare(model, tmp_path, feeds)


def test_body_of_an_older_opset_is_converted(tmp_path):
    """Softsign's body is written at opset 18; in an opset-22 model its ops (CastLike, Constant) are converted."""
    import onnxruntime

    node = h.make_node("Softsign", ["x"], ["y"], name="ss")
    model = _model([node], [("x", F, [3, 4])], [("y", F, [3, 4])], 22)
    _, done = expand_functions(model, "m.onnx", SUPPORTED_OPS - {"Softsign"})
    assert done[0].opset == 18
    feeds = _feeds(model)
    import hcc
    from hcc.runtime import load

    onnx.save(model, tmp_path / "m.onnx")
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
    got = load(tmp_path / "b").run(None, feeds)[0]
    want = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_unsupported_op_in_a_body_names_the_origin(tmp_path):
    node = h.make_node("Bernoulli", ["x"], ["y"], name="coin")
    model = _model([node], [("x", F, [4])], [("y", F, [4])], 22)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(HccError) as info:
        load_model(str(tmp_path / "m.onnx"))
    message = str(info.value)
    assert "RandomUniformLike" in message and "coin/" in message and "'coin' (Bernoulli)" in message


def test_depth_limit(monkeypatch):
    """A body that still holds function ops after MAX_DEPTH rounds is refused by name, not expanded forever."""
    from hcc.frontend import functions

    node = h.make_node("SoftmaxCrossEntropyLoss", ["x", "t"], ["loss"], name="sce")
    model = _model([node], [("x", F, [4, 5]), ("t", T.INT64, [4])], [("loss", F, [])], 13)
    monkeypatch.setattr(functions, "MAX_DEPTH", 1)
    with pytest.raises(HccError, match=r"after 1 rounds of expansion: 'sce/NegativeLogLikelihoodLoss_\d+'"):
        functions.expand_functions(model, "m.onnx", SUPPORTED_OPS)


def test_preview_domain_flex_attention(tmp_path):
    """ai.onnx.preview's FlexAttention (a context-dependent function of that domain) at default opset 26: expanded,
    converted to opset 22, compiled, and compared with onnx.reference."""
    node = h.make_node("FlexAttention", ["q", "k", "v"], ["y"], name="flex", domain="ai.onnx.preview", scale=0.3)
    graph = h.make_graph([node], "flex", [h.make_tensor_value_info("q", F, [2, 4, 8, 16]), h.make_tensor_value_info("k", F, [2, 4, 6, 16]),
                                          h.make_tensor_value_info("v", F, [2, 4, 6, 16])],
                         [h.make_tensor_value_info("y", F, [2, 4, 8, 16])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 26), h.make_opsetid("ai.onnx.preview", 1)], ir_version=13)
    _, done = expand_functions(model, "m.onnx", SUPPORTED_OPS)
    assert [e.op_type for e in done] == ["ai.onnx.preview.FlexAttention"]
    _compile_and_compare(model, tmp_path, _feeds(model))
