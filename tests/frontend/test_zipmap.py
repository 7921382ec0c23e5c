"""ZipMap at a graph output (frontend/zipmap.py), as skl2onnx writes every classifier by default: the bundle computes
the score matrix, Session.run returns onnxruntime's list of {label: score} dicts, hcc run and the golden data keep
the matrix. And the refusals."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto as T
from onnx import helper as h

import hcc
import hcc.runtime
from hcc.errors import HccError
from hcc.runtime.golden_check import check_golden

ML = "ai.onnx.ml"


def _classifier(labels: list, zipmap_input: str = "probabilities", extra_nodes=()) -> onnx.ModelProto:
    """LinearClassifier -> Normalizer(L1) -> ZipMap, the shape of skl2onnx's LogisticRegression export."""
    rng = np.random.default_rng(0)
    classes = len(labels)
    int_labels = isinstance(labels[0], int)
    classifier = h.make_node("LinearClassifier", ["x"], ["label", "scores"], domain=ML, name="linear",
                             coefficients=rng.standard_normal(classes * 4).astype(np.float32).tolist(),
                             intercepts=rng.standard_normal(classes).astype(np.float32).tolist(),
                             classlabels_ints=list(range(classes)), post_transform="LOGISTIC")
    normalizer = h.make_node("Normalizer", ["scores"], ["probabilities"], domain=ML, name="normalizer", norm="L1")
    keys = {"classlabels_int64s": labels} if int_labels else {"classlabels_strings": labels}
    zipmap = h.make_node("ZipMap", [zipmap_input], ["output_probability"], domain=ML, name="zipmap", **keys)
    key_type = T.INT64 if int_labels else T.STRING
    out = onnx.ValueInfoProto(name="output_probability")
    out.type.sequence_type.elem_type.map_type.key_type = key_type
    out.type.sequence_type.elem_type.map_type.value_type.tensor_type.elem_type = T.FLOAT
    graph = h.make_graph([classifier, normalizer, zipmap, *extra_nodes], "zipmap", [h.make_tensor_value_info("x", T.FLOAT, [5, 4])],
                         [h.make_tensor_value_info("label", T.INT64, [5]), out])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 17), h.make_opsetid(ML, 1)], ir_version=8)


@pytest.mark.parametrize("labels", [[3, 7, 11], ["cat", "dog", "émeu"]], ids=["int64", "strings"])
def test_zipmap_output_matches_onnxruntime(tmp_path, labels):
    model = _classifier(labels)
    onnx.save(model, tmp_path / "m.onnx")
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)
    session = hcc.runtime.load(tmp_path / "b")
    label, maps = session.run(None, {"x": x})
    ref_label, ref_maps = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_array_equal(label, ref_label)
    assert len(maps) == len(ref_maps) == 5
    for got, want in zip(maps, ref_maps):
        assert list(got) == list(want)  # the same labels, in the same order
        np.testing.assert_allclose([got[k] for k in want], [want[k] for k in want], rtol=1e-6, atol=1e-7)
    matrix = session.run_tensors(["output_probability"], {"x": x})[0]  # what the golden data and `hcc run` hold
    assert matrix.shape == (5, 3) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix, [[row[k] for k in labels] for row in maps])
    assert session.manifest.tensor("output_probability").zipmap_keys == labels
    assert check_golden(tmp_path / "b").passed


def test_hcc_run_and_inspect_name_the_labels(tmp_path):
    from click.testing import CliRunner

    from hcc.cli import main

    onnx.save(_classifier([0, 1, 2]), tmp_path / "m.onnx")
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
    np.savez(tmp_path / "x.npz", x=np.ones((5, 4), np.float32))
    runner = CliRunner()
    run = runner.invoke(main, ["run", str(tmp_path / "b"), "--input", str(tmp_path / "x.npz"), "-o", str(tmp_path / "y.npz")])
    assert run.exit_code == 0, run.output
    assert "output_probability: float32 [5, 3] (ZipMap" in run.output and "labels 0, 1, 2" in run.output
    assert np.load(tmp_path / "y.npz")["output_probability"].shape == (5, 3)
    shown = runner.invoke(main, ["inspect", str(tmp_path / "b")])
    assert shown.exit_code == 0 and "(ZipMap" in shown.output


def test_zipmap_feeding_another_node_is_refused(tmp_path):
    reader = h.make_node("SequenceLength", ["output_probability"], ["count"], name="count")
    model = _classifier([0, 1, 2], extra_nodes=[reader])
    model.graph.output.append(h.make_tensor_value_info("count", T.INT64, []))
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"node 'zipmap' \(ai.onnx.ml.ZipMap\): its sequence of maps feeds other nodes"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b")


def test_label_count_must_match_the_columns(tmp_path):
    model = _classifier([0, 1, 2])
    model.graph.node[2].attribute[0].ints.append(9)  # four labels for three columns
    model.graph.value_info.append(h.make_tensor_value_info("probabilities", T.FLOAT, [5, 3]))
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(HccError, match=r"ZipMap\): 4 class labels for 3 score columns"):
        hcc.compile(tmp_path / "m.onnx", tmp_path / "b")


@pytest.mark.parametrize("keys", [[0, 1], [0, 0, 1], [0, "a", 2], [True, False, 2], "012"])
def test_a_bundle_whose_labels_do_not_fit_is_refused(tmp_path, keys):
    """The runtime validates zipmap_keys (one unique int or string per column of a float32 matrix) before it loads
    any native code (the manifest edited with its checksum kept consistent)."""
    onnx.save(_classifier([0, 1, 2]), tmp_path / "m.onnx")
    hcc.compile(tmp_path / "m.onnx", tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    next(t for t in manifest["tensors"] if t["name"] == "output_probability")["zipmap_keys"] = keys
    text = json.dumps(manifest, indent=2)
    (tmp_path / "b" / "manifest.json").write_text(text)
    (tmp_path / "b" / "manifest.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "  manifest.json\n")
    with pytest.raises(HccError, match="tensor 'output_probability': zipmap_keys must be unique ints or strings"):
        hcc.runtime.load(tmp_path / "b")
