"""Every user mistake in point 2 of the foundation issue yields one clear HccError (and no traceback in the CLI)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hcc
from hcc.errors import HccError
from hcc.frontend.loader import load_model, parse_shape_options


def small_model(opset: int = 17, input_shape=(2, 4)) -> onnx.ModelProto:
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"), helper.make_node("Relu", ["m"], ["y"], name="act")],
        "small", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [input_shape[0], 3])], [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def hcc_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcc.cli", *map(str, args)], capture_output=True, text=True)


def test_missing_file(tmp_path):
    with pytest.raises(HccError, match="no such file"):
        load_model(str(tmp_path / "nope.onnx"))


def test_not_onnx(tmp_path):
    path = tmp_path / "text.onnx"
    path.write_text("this is not a protobuf at all \x00\xff" * 10)
    with pytest.raises(HccError, match="not a valid ONNX"):
        load_model(str(path))


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(HccError, match="empty"):
        load_model(str(path))


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_file(tmp_path, keep):
    data = small_model().SerializeToString()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(HccError, match=str(path)):
        load_model(str(path))


def test_invalid_graph_names_the_problem(tmp_path):
    model = small_model()
    model.graph.node[1].input[0] = "does_not_exist"
    path = tmp_path / "bad.onnx"
    onnx.save(model, path)
    with pytest.raises(HccError, match="invalid ONNX graph.*does_not_exist"):
        load_model(str(path))


def test_unsupported_ops_are_all_listed_with_node_names(tmp_path):
    """One tensor program (`hcc plan`, load_model outside runtime_control_flow): NonMaxSuppression and Unique are
    unsupported there too (`hcc compile` runs them as host steps: tests/test_program.py)."""
    model = small_model()
    model.graph.node.extend([
        helper.make_node("NonMaxSuppression", ["y"], ["n1"], name="nms_a"),
        helper.make_node("NonMaxSuppression", ["y"], ["n2"], name="nms_b"),
        helper.make_node("Unique", ["y"], ["d"], name="uniq"),
        helper.make_node("FusedMatMul", ["y", "y"], ["f"], name="ms_fused", domain="com.microsoft"),
    ])
    path = tmp_path / "unsupported.onnx"
    onnx.save(model, path)
    with pytest.raises(HccError) as info:
        load_model(str(path))
    message = str(info.value)
    assert "3 unsupported op type(s)" in message
    for expected in ("NonMaxSuppression: nms_a, nms_b", "Unique: uniq", "com.microsoft.FusedMatMul: ms_fused"):
        assert expected in message


@pytest.mark.parametrize("opset", [0, 30])
def test_opset_out_of_range(tmp_path, opset):
    path = tmp_path / "old.onnx"
    onnx.save(small_model(opset=opset), path)
    with pytest.raises(HccError, match=f"opset {opset} is outside the supported range"):
        load_model(str(path))


def test_dynamic_input_needs_a_shape(tmp_path):
    path = tmp_path / "dyn.onnx"
    onnx.save(small_model(input_shape=("batch", 4)), path)
    with pytest.raises(HccError, match=r"(?s)x \['batch', 4\].*--input-shape"):
        load_model(str(path))
    loaded = load_model(str(path), {"x": [5, 4]})
    assert loaded.inputs[0].shape == [5, 4]
    assert loaded.inputs[0].symbolic_shape == ["batch", 4]


def test_input_shape_must_agree_with_static_shape(tmp_path):
    path = tmp_path / "static.onnx"
    onnx.save(small_model(), path)
    assert load_model(str(path), {"x": [2, 4]}).inputs[0].shape == [2, 4]
    with pytest.raises(HccError, match="disagrees"):
        load_model(str(path), {"x": [3, 4]})
    with pytest.raises(HccError, match="rank 3"):
        load_model(str(path), {"x": [2, 4, 1]})
    with pytest.raises(HccError, match="not an input"):
        load_model(str(path), {"y": [2, 4]})


@pytest.mark.parametrize("spec", ["x", "x=", "x=1x", "x=ax3", "=1x2"])
def test_bad_shape_option(spec):
    if spec == "x=":  # a scalar input
        assert parse_shape_options([spec]) == {"x": []}
        return
    with pytest.raises(HccError, match="expected NAME="):
        parse_shape_options([spec])


def test_cli_prints_errors_without_traceback(tmp_path):
    path = tmp_path / "trunc.onnx"
    path.write_bytes(small_model().SerializeToString()[:40])
    proc = hcc_cli("compile", path, "-o", tmp_path / "b")
    assert proc.returncode == 1
    assert proc.stderr.startswith("hcc: error: ")
    assert str(path) in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "b").exists()


def test_compile_refuses_to_overwrite_a_foreign_folder(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(small_model(), path)
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep me")
    with pytest.raises(HccError, match="not an intact hcc bundle"):
        hcc.compile(path, tmp_path / "precious")
    assert (tmp_path / "precious" / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("training", ["input", "true"])
def test_training_dropout_is_refused(tmp_path, training):
    """Dropout in training mode is random: refused by name, whether the mode is a run-time input or a constant true."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
    inits = [numpy_helper.from_array(np.array(0.5, np.float32), "ratio")]
    if training == "input":
        inputs.append(helper.make_tensor_value_info("training", TensorProto.BOOL, []))
    else:
        inits.append(numpy_helper.from_array(np.array(True), "training"))
    graph = helper.make_graph([helper.make_node("Dropout", ["x", "ratio", "training"], ["y"], name="drop")], "dropout",
                              inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])], inits)
    path = tmp_path / "dropout.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(HccError, match=r"node 'drop' \(Dropout\): training_mode .* hcc compiles inference Dropout only"):
        load_model(str(path), {"training": []} if training == "input" else None)


def test_dropout_mask_before_opset_12_is_refused(tmp_path):
    """Before opset 12 the inference mask is unspecified: onnxruntime and onnx.reference disagree, so no answer."""
    graph = helper.make_graph([helper.make_node("Dropout", ["x"], ["y", "mask"], name="drop")], "dropout",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("mask", TensorProto.BOOL, [2, 3])])
    path = tmp_path / "dropout11.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), path)
    with pytest.raises(HccError, match=r"node 'drop' \(Dropout\): its mask output is unspecified"):
        load_model(str(path))


def test_resize_policy_a_scale_cannot_express_is_refused(tmp_path):
    """not_smaller on a 2x4 input to sizes 1x3: scale 0.75 and lengths round(1.5)=2, 3; a scale gives floor(1.5)=1."""
    node = helper.make_node("Resize", ["x", "", "", "sizes"], ["y"], name="rs", axes=[2, 3], mode="nearest",
                            keep_aspect_ratio_policy="not_smaller")
    graph = helper.make_graph([node], "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 3])],
                              [numpy_helper.from_array(np.array([1, 3], np.int64), "sizes")])
    path = tmp_path / "resize.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), path)
    with pytest.raises(HccError, match=r"node 'rs' \(Resize\): keep_aspect_ratio_policy 'not_smaller' gives lengths \[2, 3\]"):
        load_model(str(path))


def test_max_pool_indices_with_uneven_pads_are_refused(tmp_path):
    """torch-mlir's MaxPool indices are in padded coordinates when the pads are uneven: refused, not miscompiled."""
    node = helper.make_node("MaxPool", ["x"], ["y", "idx"], name="mp", kernel_shape=[2, 3], pads=[1, 0, 0, 1])
    graph = helper.make_graph([node], "maxpool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 5, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 5, 5]),
                               helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 2, 5, 5])])
    path = tmp_path / "maxpool.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(HccError, match=r"node 'mp' \(MaxPool\): its Indices output is compiled only"):
        load_model(str(path))
