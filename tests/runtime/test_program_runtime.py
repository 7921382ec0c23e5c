"""The runtime's side of programs (runtime/validate.py check_program, runtime/session.py): a bundle with run-time
control flow is refused when its program, its constants or a piece disagree, even with recomputed checksums, and
every piece's native code is checked before any is loaded; format versions 2 and 3 mean what they say."""
from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import onnx
import pytest

import hcc
import program_models as pm
from hcc.artifacts import bundle as bundle_writer
from hcc.errors import HccError
from hcc.runtime import load


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("program")
    onnx.save(pm.nested_if(), folder / "m.onnx")
    hcc.compile(folder / "m.onnx", folder / "bundle")
    return folder / "bundle"


@pytest.fixture
def bundle(pristine, tmp_path):
    shutil.copytree(pristine, tmp_path / "bundle")
    return tmp_path / "bundle"


def _reseal(bundle) -> None:
    """Recompute every checksum, as someone who edits a bundle on purpose would."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"] = bundle_writer.file_checksums(bundle)
    text = json.dumps(manifest, indent=2)
    (bundle / "manifest.json").write_text(text)
    (bundle / "manifest.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "  manifest.json\n")


def _edit(bundle, change) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    change(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    _reseal(bundle)


def _refused(bundle) -> str:
    with pytest.raises(HccError) as info:
        load(bundle)
    return str(info.value)


def _then_steps(manifest: dict) -> list:
    return manifest["program"]["main"]["steps"][0]["then_branch"]["steps"]


def test_the_pristine_program_runs(bundle):
    session = load(bundle)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = session.run(None, {"x": x, "c1": np.array(True), "c2": np.array(False)})
    np.testing.assert_array_equal(y, -x)  # outer then: -(inner else: x)
    assert set(session.last_profile.subgraphs) == {"parts/p1", "parts/p2"}  # the pieces that ran


def test_a_step_reading_a_name_nothing_computes_is_refused(bundle):
    _edit(bundle, lambda m: _then_steps(m)[1].update(inputs=["nowhere"]))
    assert "reads ['nowhere'], which nothing before it computes" in _refused(bundle)


def test_a_piece_whose_inputs_differ_from_the_program_is_refused(bundle):
    def swap(m):
        inner = _then_steps(m)[0]
        inner["then_branch"]["steps"][0]["bundle"] = inner["else_branch"]["steps"][0]["bundle"]
        inner["then_branch"]["steps"][0]["outputs"] = ["in_then_y"]
    _edit(bundle, swap)
    assert "takes ['x'] -> ['in_else_y'], the program says ['x'] -> ['in_then_y']" in _refused(bundle)


def test_a_piece_outside_the_checksummed_files_is_refused(bundle):
    _edit(bundle, lambda m: _then_steps(m)[1].update(bundle="parts/elsewhere"))
    assert "part 'parts/elsewhere' is not a sub-bundle of this bundle's files" in _refused(bundle)


def test_a_piece_with_a_bad_native_signature_is_refused_before_any_code_loads(bundle):
    """The piece's own manifest edited (and resealed at both levels): its code's embedded signature disagrees."""
    part = bundle / "parts" / "p2"
    manifest = json.loads((part / "manifest.json").read_text())
    for tensor in manifest["tensors"]:
        if tensor["name"] == "then_y":
            tensor["shape"] = [2, 4]
    (part / "manifest.json").write_text(json.dumps(manifest))
    _reseal(part)
    _reseal(bundle)
    message = _refused(bundle)
    assert "parts/p2" in message and "the code takes 1 inputs and arguments [([2, 3], 4), ([2, 3], 4)]" in message


def test_an_edited_piece_without_resealing_the_bundle_is_refused(bundle):
    (bundle / "parts" / "p0" / "weights" / "weights.bin").write_bytes(b"\0" * 64)
    assert "checksum mismatch" in _refused(bundle)


def test_a_constant_of_another_shape_is_refused(bundle):
    np.save(bundle / "program" / "c0.npy", np.zeros((3, 3), np.float32), allow_pickle=False)
    _reseal(bundle)
    assert "constant program/c0.npy is float32 [3, 3], the manifest says float32 [2, 3]" in _refused(bundle)


def test_a_version_2_manifest_with_a_program_is_refused(bundle):
    _edit(bundle, lambda m: m.update(format_version=2))
    assert "format version 2 cannot hold a program (run-time control flow is version 3)" in _refused(bundle)


def test_a_version_3_manifest_without_a_program_is_refused(bundle):
    _edit(bundle, lambda m: m.pop("program"))
    assert "format version 3 needs a program" in _refused(bundle)


def test_a_program_bundle_with_top_level_subgraphs_is_refused(bundle, pristine):
    part = json.loads((pristine / "parts" / "p0" / "manifest.json").read_text())
    for artifact in part["subgraphs"][0]["artifacts"]:
        artifact["file"] = "parts/p0/" + artifact["file"]
    _edit(bundle, lambda m: m.update(subgraphs=part["subgraphs"], schedule=["sg0"]))
    assert "a program bundle keeps its code and weights in its parts" in _refused(bundle)


def _host_step(op: str = "NonZero") -> dict:
    return {"kind": "host", "node": "nz", "inputs": ["x"], "outputs": ["nz_out"], "op": op, "attributes": {}}


def test_a_host_step_needs_program_format_v2(bundle):
    """A host step (runtime/host_ops.py) in a v1 program is refused: a runtime that predates host steps reads v1."""
    _edit(bundle, lambda m: m["program"]["main"]["steps"].insert(0, _host_step()))
    assert "op 'NonZero' is not one the runtime runs on the host" in _refused(bundle)


def test_a_host_step_of_an_unknown_op_is_refused(bundle):
    def change(m):
        m["program"]["format"] = "hcc-program-v2"
        m["program"]["main"]["steps"].insert(0, _host_step("StringSplit"))
    _edit(bundle, change)
    assert "op 'StringSplit' is not one the runtime runs on the host (NonMaxSuppression, Unique, NonZero" in _refused(bundle)


def test_a_v2_program_with_a_host_step_runs_it(bundle):
    def change(m):
        m["program"]["format"] = "hcc-program-v2"
        m["program"]["main"]["steps"].insert(0, _host_step())
    _edit(bundle, change)
    session = load(bundle)
    x = np.array([[0, 1, 0], [2, 0, 3]], np.float32)
    (y,) = session.run(None, {"x": x, "c1": np.array(True), "c2": np.array(False)})
    np.testing.assert_array_equal(y, -x)
    assert "nz" in session.last_profile.nodes  # the host step ran (and is timed)
