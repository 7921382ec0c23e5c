"""Outlining placed node groups into one MLIR function per subgraph, and running the split bundle."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hcc
import hcc.runtime
from hcc.errors import HccError
from hcc.frontend.importer import import_to_torch_dialect
from hcc.frontend.loader import load_model
from hcc.frontend.weights import lift_weights
from hcc.passes.outline import SubgraphGroup, outline
from helpers import compile_groups


def diamond() -> onnx.ModelProto:
    """x -> a -> (b, c) -> add -> reshape -> y, with a reshape whose shape is computed from Shape (folded)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "w")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["a"], name="a"),
        helper.make_node("Relu", ["a"], ["b"], name="b"),
        helper.make_node("Sigmoid", ["a"], ["c"], name="c"),
        helper.make_node("Add", ["b", "c"], ["d"], name="join"),
        helper.make_node("Shape", ["x"], ["xs"], name="shape"),
        helper.make_node("Reshape", ["d", "xs"], ["y"], name="reshape"),
    ]
    graph = helper.make_graph(nodes, "diamond", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8]),
                               helper.make_tensor_value_info("c", TensorProto.FLOAT, [4, 8])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_outline_boundaries(tmp_path):
    onnx.save(diamond(), tmp_path / "d.onnx")
    loaded = load_model(str(tmp_path / "d.onnx"))
    assert "shape" not in {n.name for n in loaded.model.graph.node}, "Shape of a static tensor is folded away"
    lifted = lift_weights(loaded.model)
    text = import_to_torch_dialect(lifted.model)
    groups = [SubgraphGroup("sg0", "cpu", ["a", "b"]), SubgraphGroup("sg1", "cpu", ["c"], 1), SubgraphGroup("sg2", "cpu", ["join", "reshape"])]
    specs = outline(text, groups, [i.name for i in lifted.model.graph.input], {n.name: list(n.output) for n in lifted.model.graph.node}, ["y", "c"])
    by_id = {s.id: s for s in specs}
    assert by_id["sg0"].inputs == ["x", "w"] and sorted(by_id["sg0"].outputs) == ["a", "b"]
    assert by_id["sg1"].inputs == ["a"] and by_id["sg1"].outputs == ["c"]
    assert by_id["sg2"].inputs == ["b", "c"] and by_id["sg2"].outputs == ["y"]
    for spec in specs:
        assert f"func.func @{spec.id}(" in spec.module_text
        assert spec.module_text.count("func.func") == 1


def test_forced_split_across_two_cpu_partitions_matches_onnxruntime(tmp_path, compile_check):
    groups = [
        {"id": "sg0", "device": "cpu", "nodes": ["a", "b"], "device_index": 0},
        {"id": "sg1", "device": "cpu", "nodes": ["c"], "device_index": 1},
        {"id": "sg2", "device": "cpu", "nodes": ["join", "reshape"], "device_index": 0},
    ]
    onnx.save(diamond(), tmp_path / "d.onnx")
    manifest = compile_groups(tmp_path / "d.onnx", tmp_path / "bundle", groups)
    assert [s.id for s in manifest.subgraphs] == ["sg0", "sg1", "sg2"]
    assert {t.name for t in manifest.tensors if t.kind == "intermediate"} == {"a", "b"}
    session = hcc.runtime.load(tmp_path / "bundle")
    x = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    y, c = session.run(None, {"x": x})
    from hcc.artifacts.golden import run_onnxruntime

    ref = run_onnxruntime(diamond(), {"x": x})
    np.testing.assert_allclose(y, ref["y"], rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(c, ref["c"], rtol=1e-3, atol=1e-4)
    assert list(session.last_profile.subgraphs) == ["sg0", "sg1", "sg2"]
    # Both instances work in host memory: 'a' and 'c' cross the partition boundary without a copy, so no
    # transfer is recorded (a recorded one would mean the runtime copied for nothing).
    assert session.last_profile.transfers == []
    assert len(list((tmp_path / "bundle" / "cpu").glob("sg*/lib*.so"))) == 3


def test_node_in_no_group_is_an_error(tmp_path):
    onnx.save(diamond(), tmp_path / "d.onnx")
    with pytest.raises(HccError, match="belongs to no subgraph"):
        compile_groups(tmp_path / "d.onnx", tmp_path / "b", [{"id": "sg0", "device": "cpu", "nodes": ["a", "b", "c"], "device_index": 0}])
