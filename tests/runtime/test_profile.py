"""Per-node profile of the CPU code (`hcc.runtime.load(bundle, profile=True)`, `hcc run --profile`)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hcc
from hcc.runtime import load


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((64, 256)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((256, 32)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"), helper.make_node("Tanh", ["h"], ["t"], name="act"),
             helper.make_node("MatMul", ["t", "w2"], ["y"], name="fc2")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [128, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [128, 32])], [w1, w2])
    root = tmp_path_factory.mktemp("profile")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / "m.onnx")
    hcc.compile(root / "m.onnx", root / "bundle")
    np.savez(root / "x.npz", x=rng.standard_normal((128, 64)).astype(np.float32))
    return root


def test_profile_times_every_node(bundle):
    session = load(bundle / "bundle", profile=True, threads=1)
    feeds = {"x": np.ones((128, 64), np.float32)}
    session.run(None, feeds)
    nodes = session.last_profile.nodes
    assert set(nodes) == {"fc1", "act", "fc2"}, nodes
    assert all(t > 0 for t in nodes.values())
    assert sum(nodes.values()) <= session.last_profile.total
    session.run(None, feeds)  # the counters restart with every run
    assert sum(session.last_profile.nodes.values()) <= session.last_profile.total


def test_profile_is_off_by_default(bundle):
    session = load(bundle / "bundle")
    session.run(None, {"x": np.ones((128, 64), np.float32)})
    assert session.last_profile.nodes == {}


def test_cli_profile_prints_the_nodes(bundle):
    proc = subprocess.run([sys.executable, "-m", "hcc.cli", "run", str(bundle / "bundle"), "--input", str(bundle / "x.npz"), "--repeat", "3",
                           "--profile"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("fc1 ") for line in lines) and any(line.startswith("act ") for line in lines)
