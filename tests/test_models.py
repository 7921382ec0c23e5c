"""End-to-end: compile the small networks of tests/models.py and compare every output with onnxruntime."""
from __future__ import annotations

import onnx
import pytest

import models
from hcc.frontend import ops as ops_module
from hcc.frontend.ops import BLOCKED_OPS, SUPPORTED_OPS


def _allow_blocked(monkeypatch, model: onnx.ModelProto) -> None:
    """Widen the op whitelist by the model's blocked ops, so an xfail test fails on the real backend bug."""
    used = {n.op_type for n in model.graph.node}
    monkeypatch.setattr(ops_module, "SUPPORTED_OPS", SUPPORTED_OPS | (used & BLOCKED_OPS.keys()))


@pytest.mark.parametrize("build", [models.mlp, models.cnn, models.residual_block, models.unet_block], ids=lambda f: f.__name__)
def test_model(build, compile_check):
    compile_check(build())


@pytest.mark.parametrize("gelu", [
    "erf",  # GELU as x*0.5*(1+Erf(x/sqrt2)), as torch exports it
    "tanh",  # the tanh approximation
])
def test_transformer_block(gelu, compile_check, monkeypatch):
    model = models.transformer_block(gelu=gelu)
    _allow_blocked(monkeypatch, model)
    _session, outputs, expected = compile_check(model, feeds=models.transformer_feeds())
    assert outputs[0].shape == (1, 8, 32)


def test_lstm_model(compile_check, monkeypatch):
    model = models.lstm_model()
    _allow_blocked(monkeypatch, model)
    compile_check(model)


def test_dynamic_batch_compiled_for_a_concrete_shape(compile_check):
    model = models.mlp(batch="N")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    _session, outputs, _expected = compile_check(model, input_shapes={"x": [2, 32]})
    assert outputs[0].shape == (2, 10)


@pytest.mark.slow
def test_resnet18(compile_check):
    model = models.resnet18()  # full size: 1x3x224x224, 11.7M parameters; compiles and runs in ~7 s on 2 cores
    assert sum(1 for n in model.graph.node if n.op_type == "Conv") == 20
    _session, outputs, _expected = compile_check(model)
    assert outputs[0].shape == (1, 1000)
