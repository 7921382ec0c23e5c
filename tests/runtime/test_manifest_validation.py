"""A manifest edited and resealed (checksums recomputed, as an attacker would) is refused before any native code of
the bundle loads (issue 9, item 4): every case below must raise HccError from `hcc.runtime.load`, and a foreign
shared object's constructor must never run."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hcc
from hcc.errors import HccError
from hcc.runtime import load


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"), helper.make_node("Relu", ["h"], ["y"], name="relu")], "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], [w])
    root = tmp_path_factory.mktemp("validation")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / "m.onnx")
    hcc.compile(root / "m.onnx", root / "bundle")
    return root / "bundle"


@pytest.fixture
def bundle(pristine, tmp_path):
    return Path(shutil.copytree(pristine, tmp_path / "bundle"))


def reseal(bundle: Path, edit=None) -> None:
    """Apply `edit` to the manifest, recompute every file checksum and the manifest's own."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    if edit:
        edit(manifest)
    for rel in manifest["files"] if isinstance(manifest["files"], dict) else ():
        if (bundle / rel).is_file():
            manifest["files"][rel] = hashlib.sha256((bundle / rel).read_bytes()).hexdigest()
    text = json.dumps(manifest, indent=2)
    (bundle / "manifest.json").write_text(text)
    (bundle / "manifest.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "  manifest.json\n")


def tensor(manifest: dict, name: str) -> dict:
    return next(t for t in manifest["tensors"] if t["name"] == name)


EDITS = {
    "output shape shrunk": (lambda m: tensor(m, "y").update(shape=[1, 2]), "arguments"),
    "input removed from the subgraph": (lambda m: m["subgraphs"][0]["inputs"].pop(), "arguments"),
    "entry set to a libc function": (lambda m: m["subgraphs"][0]["artifacts"][0].update(entry="abort"), "not a function this file exports"),
    "abi changed": (lambda m: m["subgraphs"][0]["artifacts"][0].update(abi="other-abi"), "ABI"),
    "target cpu changed": (lambda m: m["toolchain"].update(target_cpu="x86-64"), "target CPU"),
    "weight size changed": (lambda m: m["weights"][0].update(nbytes=8), "needs"),
    "weight shape grown": (lambda m: tensor(m, "w").update(shape=[1600, 8]), "needs"),
    "subgraph scheduled twice": (lambda m: m["schedule"].append(m["schedule"][0]), "exactly once"),
    "unknown artifact kind": (lambda m: m["subgraphs"][0]["artifacts"][0].update(kind="elf"), "unknown artifact kind"),
    "shape of the wrong type": (lambda m: tensor(m, "x").update(shape="4x16"), "not valid"),
    "negative dim": (lambda m: tensor(m, "x").update(shape=[-4, 16]), "not valid"),
    "huge dim": (lambda m: tensor(m, "y").update(shape=[2 ** 40, 8]), "larger than"),
    "output read before it is produced": (lambda m: m["subgraphs"][0]["inputs"].append("y"), "no earlier subgraph"),
    # Found by tools/fuzz.py: a JSON true is not the offset 1, an offset between elements is refused, and a
    # `files` table of the wrong type is an error, not a TypeError.
    "weight offset true": (lambda m: m["weights"][0].update(offset=True), "not a byte offset"),
    "weight offset misaligned": (lambda m: m["weights"][0].update(offset=1), "not a byte offset"),
    "files not a table": (lambda m: m.update(files=1.5), "'files' is not a table"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_resealed_manifest_edits_are_refused_before_loading(bundle, case):
    edit, message = EDITS[case]
    reseal(bundle, edit)
    with pytest.raises(HccError, match=message):
        load(bundle)


def test_a_foreign_shared_object_never_runs(bundle, tmp_path):
    """Replaced by a library whose constructor writes a file: refused (no hcc signature), and nothing ran."""
    marker = tmp_path / "constructor-ran"
    source = tmp_path / "evil.c"
    source.write_text(f'#include <stdio.h>\n__attribute__((constructor)) static void run(void) {{ fclose(fopen("{marker}", "w")); }}\n'
                      "void sg0(void *a, void *b, void *c) {}\n")
    so = next(bundle.glob("cpu/*/lib*.so"))
    subprocess.run(["gcc", "-shared", "-fPIC", str(source), "-o", str(so)], check=True)
    reseal(bundle)
    with pytest.raises(HccError, match="signature"):
        load(bundle)
    assert not marker.exists()


def test_symlinks_are_refused(bundle, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.copy(bundle / "manifest.json", outside)
    (bundle / "manifest.json").unlink()
    (bundle / "manifest.json").symlink_to(outside)
    with pytest.raises(HccError, match="symbolic link"):
        load(bundle)


def test_a_symlink_inside_the_bundle_is_refused(bundle):
    (bundle / "cpu" / "link").symlink_to("/etc")
    with pytest.raises(HccError, match="symbolic link"):
        load(bundle)


def test_a_checksum_file_that_is_not_text(bundle):
    (bundle / "manifest.sha256").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(HccError, match="not a checksum file"):
        load(bundle)


def test_the_pristine_bundle_loads_and_runs(pristine):
    session = load(pristine)
    (y,) = session.run(None, {"x": np.ones((4, 16), np.float32)})
    assert y.shape == (4, 8) and np.all(y >= 0)
    assert os.path.getsize(next(pristine.glob("cpu/*/lib*.so"))) > 0


def test_a_symlink_loop_is_an_error_not_a_crash(bundle):
    so = next(bundle.glob("cpu/*/lib*.so"))
    so.unlink()
    so.symlink_to(so.name)  # points at itself
    with pytest.raises(HccError, match="cannot be resolved"):
        load(bundle)
