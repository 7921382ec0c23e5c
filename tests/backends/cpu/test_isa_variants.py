"""A CPU subgraph compiled for the default x86-64-v3 also carries its generated code for x86-64-v4 (devices.
WIDER_ISA_VARIANTS), and the runtime binds the widest entry the CPU runs: the bundle still loads on an AVX2-only
machine, and runs the AVX-512 code where it can (measured: a GELU 0.83 -> 0.53 ms, an LSTM -7%)."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h

import hcc
from hcc.devices import isa_entry
from hcc.runtime import load
from hcc.runtime.devices.cpu import TARGET_FEATURES, CpuExecutable, host_cpu_flags, widest_entry


def _gelu_model() -> onnx.ModelProto:
    nodes = [h.make_node("Mul", ["x", "x"], ["s"]), h.make_node("Erf", ["x"], ["e"]), h.make_node("Add", ["s", "e"], ["y"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, [4, 100])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [4, 100])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _compile(tmp_path, **options):
    onnx.save(_gelu_model(), tmp_path / "m.onnx")
    bundle = tmp_path / ("b" + "".join(options.values()))
    manifest = hcc.compile(tmp_path / "m.onnx", bundle, **options)
    return bundle, manifest


def test_default_bundle_holds_both_entries_and_binds_the_widest(tmp_path):
    bundle, manifest = _compile(tmp_path)
    artifact = manifest.subgraphs[0].artifacts[0]
    assert artifact.meta["isa_variants"] == ["x86-64-v4"]
    session = load(bundle)
    executable = session._steps[0].executable
    v4 = TARGET_FEATURES["x86-64-v4"] <= host_cpu_flags()
    assert executable.isa == ("x86-64-v4" if v4 else None)
    # both entries compute the model (the golden check is onnxruntime's), and agree with each other
    x = np.random.default_rng(0).standard_normal((4, 100)).astype(np.float32)
    so, entry, arity = bundle / artifact.file, artifact.entry, 2
    baseline = CpuExecutable(so, entry, arity)
    assert baseline.isa is None
    outputs = []
    for executable in (baseline, CpuExecutable(so, entry, arity, variants=["x86-64-v4"])):
        y = np.empty((4, 100), np.float32)
        executable.run([x], [y])
        outputs.append(y)
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(outputs[0], x * x + np.vectorize(__import__("math").erf)(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_widest_entry_needs_every_flag_of_the_isa():
    v4 = set(TARGET_FEATURES["x86-64-v4"])
    assert widest_entry("sg0", ["x86-64-v4"], v4 | {"amx_tile"}) == (isa_entry("sg0", "x86-64-v4"), "x86-64-v4")
    assert widest_entry("sg0", ["x86-64-v4"], v4 - {"avx512bw"}) == ("sg0", None)
    assert widest_entry("sg0", [], v4) == ("sg0", None)
    assert widest_entry("sg0", ["no-such-isa"], v4) == ("sg0", None)


def test_an_explicit_v4_target_has_no_variants(tmp_path):
    if not TARGET_FEATURES["x86-64-v4"] <= host_cpu_flags():
        pytest.skip("the compile's golden run executes x86-64-v4 code: this CPU lacks it")
    bundle, manifest = _compile(tmp_path, target_cpu="x86-64-v4")
    assert "isa_variants" not in manifest.subgraphs[0].artifacts[0].meta
    assert json.loads((bundle / "manifest.json").read_text())["toolchain"]["target_cpu"] == "x86-64-v4"
