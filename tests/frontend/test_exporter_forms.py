"""Forms that production exporters write and hcc refused or failed on (issue 11), each as a small model: found on
PP-OCR's detector, recogniser and angle classifier (paddle2onnx, shipped in rapidocr-onnxruntime) and Silero VAD.
Each compiles and matches onnxruntime on the model as written."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as h

from hcc.errors import HccError
from hcc.frontend.loader import load_model
from helpers import compile_and_compare


def _model(nodes, inits, inputs, outputs, opset=17) -> onnx.ModelProto:
    model = h.make_model(h.make_graph(nodes, "m", inputs, outputs, inits), opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = 7
    return model


def _vi(name, shape, elem=TensorProto.FLOAT):
    return h.make_tensor_value_info(name, elem, shape)


def test_a_negative_dim_value_is_a_dynamic_dim(tmp_path):
    """paddle2onnx declares a dynamic batch as dim_value -1 (on inputs, outputs and value_info): onnxruntime reads it
    as dynamic; hcc refused it as disagreeing with --input-shape, then failed in strict shape inference."""
    model = _model([h.make_node("Relu", ["x"], ["r"]), h.make_node("Identity", ["r"], ["y"])], [],
                   [_vi("x", [-1, 3, 8])], [_vi("y", [-1, 3, 8])])
    model.graph.value_info.append(_vi("r", [-1, 3, 8]))
    path = tmp_path / "neg.onnx"
    onnx.save(model, path)
    with pytest.raises(HccError, match="need a concrete shape"):
        load_model(str(path))  # dynamic: a shape must be given, as for any dynamic dim
    compile_and_compare(model, tmp_path, input_shapes={"x": [2, 3, 8]}, as_written=True)


def test_the_shape_hint_names_the_models_inputs(tmp_path):
    """torch's dynamic_axes {0: 'batch', 1: 'seq'}: the hint is a command line for this model, its own input names
    and sizes, 1 for the batch, the other symbolic dimension by name for the user to fill in."""
    nodes = [h.make_node("Add", ["ids", "mask"], ["y"])]
    model = _model(nodes, [], [_vi("ids", ["batch", "seq"]), _vi("mask", ["batch", "seq"])], [_vi("y", ["batch", "seq"])])
    path = tmp_path / "dyn.onnx"
    onnx.save(model, path)
    with pytest.raises(HccError, match=r"need a concrete shape: ids \['batch', 'seq'\]; mask") as raised:
        load_model(str(path))
    assert raised.value.hint.endswith("e.g. --input-shape ids=1xSEQ --input-shape mask=1xSEQ"), raised.value.hint


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("shape,axis", [([1, 2], 1), ([2, 3, 4], 1)])
def test_opset_11_softmax_family(tmp_path, op, shape, axis):
    """Opset-11 Softmax flattens to 2-D at `axis` (opset 13: one axis): such models are converted up to 13, where
    the converter writes the old meaning out (PP-OCR's angle classifier failed in lowering on its Softmax)."""
    model = _model([h.make_node(op, ["x"], ["y"], axis=axis)], [], [_vi("x", shape)], [_vi("y", shape)], opset=11)
    compile_and_compare(model, tmp_path, as_written=True)


def _reshape_by_computed_shape(source: str, out: str, target: list[int], tag: str) -> tuple[list, list]:
    """Reshape `source` to `target`, the target computed from Shape(source) through Casts (data propagation cannot
    follow a Cast: the output's shape is known only once the chain is folded into a constant)."""
    rank = len(target)
    nodes = [h.make_node("Shape", [source], [f"{tag}_s"]),
             h.make_node("Cast", [f"{tag}_s"], [f"{tag}_f"], to=TensorProto.FLOAT),
             h.make_node("ReduceProd", [f"{tag}_f"], [f"{tag}_n"], keepdims=1),
             h.make_node("Cast", [f"{tag}_n"], [f"{tag}_i"], to=TensorProto.INT64),
             h.make_node("Div", [f"{tag}_i", f"{tag}_rest"], [f"{tag}_last"]),
             h.make_node("Concat", [f"{tag}_head", f"{tag}_last"], [f"{tag}_t"], axis=0),
             h.make_node("Reshape", [source, f"{tag}_t"], [out])]
    inits = [numpy_helper.from_array(np.array(target[:-1], np.int64), f"{tag}_head"),
             numpy_helper.from_array(np.array([int(np.prod(target[:-1]))], np.int64), f"{tag}_rest")]
    assert rank >= 2
    return nodes, inits


def test_shape_arithmetic_folds_in_rounds(tmp_path):
    """A Reshape whose target is computed from the Shape of another such Reshape's output: that Shape folds only
    after the first chain has folded and shape inference has run again (paddle2onnx's attention blocks: PP-OCRv4's
    recogniser failed in lowering on a Transpose of an unknown-rank tensor)."""
    first, first_inits = _reshape_by_computed_shape("x", "a", [2, 4, 6], "p")
    second, second_inits = _reshape_by_computed_shape("a", "b", [8, 6], "q")
    nodes = first + second + [h.make_node("Transpose", ["b"], ["y"], perm=[1, 0])]
    model = _model(nodes, first_inits + second_inits, [_vi("x", [2, 4, 3, 2])], [_vi("y", [6, 8])])
    compile_and_compare(model, tmp_path, as_written=True)


def test_empty_resize_roi_and_scales_constants(tmp_path):
    """Empty Constants for Resize's roi and scales mean "not given" (paddle2onnx writes them, with `sizes`): hcc
    refused them as zero-size tensors (PP-OCRv4's text detector)."""
    empty = numpy_helper.from_array(np.zeros([0], np.float32))
    nodes = [h.make_node("Constant", [], ["roi"], value=empty), h.make_node("Constant", [], ["scales"], value=empty),
             h.make_node("Resize", ["x", "roi", "scales", "sizes"], ["y"], mode="nearest")]
    sizes = numpy_helper.from_array(np.array([1, 3, 16, 16], np.int64), "sizes")
    model = _model(nodes, [sizes], [_vi("x", [1, 3, 8, 8])], [_vi("y", [1, 3, 16, 16])], opset=13)
    compile_and_compare(model, tmp_path, as_written=True)


def test_opset_11_hardmax_keeps_its_meaning_when_the_model_is_converted(tmp_path):
    """An opset-11 model with an Unsqueeze is converted up to 13; its Hardmax over [2, 3, 4] at axis 1 (flattened to
    [2, 12]: one 1 per image) must not become opset 13's per-axis Hardmax."""
    nodes = [h.make_node("Hardmax", ["x"], ["hm"], axis=1), h.make_node("Unsqueeze", ["hm"], ["y"], axes=[0])]
    model = _model(nodes, [], [_vi("x", [2, 3, 4])], [_vi("y", [1, 2, 3, 4])], opset=11)
    _session, results, _expected = compile_and_compare(model, tmp_path, as_written=True)
    assert results[0].sum() == 2  # one per image
