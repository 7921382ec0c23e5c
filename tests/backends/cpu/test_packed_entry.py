"""A CPU subgraph's .so also exports each entry's packed companion (devices.packed_entry): the same call with the
argument pointers in one array, which ctypes converts as one argument instead of one per weight (a keyword spotter's
21-argument call: 1.2 -> 0.5 us of Python per run). Bundles without it still run through the N-argument entry."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

import hcc
from hcc.backends.cpu.toolchain import packed_wrapper
from hcc.devices import isa_entry, packed_entry
from hcc.errors import HccError
from hcc.runtime import load
from hcc.runtime.devices.cpu import CpuExecutable
from hcc.runtime.elf import read_exports


def _model() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b")
    nodes = [h.make_node("MatMul", ["x", "w"], ["t"]), h.make_node("Add", ["t", "b"], ["y"])]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], initializer=[w, b])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("packed")
    onnx.save(_model(), root / "m.onnx")
    manifest = hcc.compile(root / "m.onnx", root / "b")
    return root / "b", manifest


def test_every_entry_has_a_packed_companion(bundle):
    path, manifest = bundle
    artifact = manifest.subgraphs[0].artifacts[0]
    exported = read_exports(path / artifact.file).functions
    entries = [artifact.entry] + [isa_entry(artifact.entry, isa) for isa in artifact.meta.get("isa_variants", [])]
    for entry in entries:
        assert entry in exported and packed_entry(entry) in exported


def test_packed_and_unpacked_calls_agree_with_numpy(bundle):
    path, manifest = bundle
    session = load(path)
    executable = session._steps[0].executable
    assert executable._packed is not None
    x = np.random.default_rng(2).standard_normal((4, 16)).astype(np.float32)
    model = _model()
    w, b = (numpy_helper.to_array(t) for t in model.graph.initializer)
    expected = x @ w + b
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)
    # the N-argument entry (an older bundle's only one) gives the same bits, weights bound or passed
    step = session._steps[0]
    args = [weight if weight is not None else x for weight in step.weights]
    artifact = manifest.subgraphs[0].artifacts[0]
    unpacked = CpuExecutable(path / artifact.file, artifact.entry, len(args) + 1, variants=artifact.meta.get("isa_variants"))
    unpacked._packed = None
    outputs = []
    for run in (lambda y: executable.run(args, [y]), lambda y: unpacked.run(args, [y])):
        y = np.empty((4, 8), np.float32)
        run(y)
        outputs.append(y)
    np.testing.assert_array_equal(outputs[0], outputs[1])
    np.testing.assert_allclose(outputs[0], expected, rtol=1e-5, atol=1e-5)


def test_wrapper_loads_each_pointer_and_calls_the_entry():
    ir = "define void @sg0(ptr %0, ptr noalias %1) {\n  ret void\n}\n"
    wrapper = packed_wrapper(ir, "sg0")
    assert "define void @sg0__packed(ptr %args)" in wrapper
    assert "getelementptr inbounds ptr, ptr %args, i64 1" in wrapper
    assert "call void @sg0(ptr %p0, ptr %p1)" in wrapper


def test_wrapper_refuses_a_function_that_is_not_bare_pointer():
    with pytest.raises(HccError, match="bare-pointer"):
        packed_wrapper("define void @sg0(ptr %0, i64 %1) {\n  ret void\n}\n", "sg0")
    with pytest.raises(HccError, match="bare-pointer"):
        packed_wrapper("define void @other(ptr %0) {\n  ret void\n}\n", "sg0")
