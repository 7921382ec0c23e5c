"""A tampered, incomplete or path-escaping bundle is refused with a message naming the file; bad inputs are named."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap

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
    inits = [numpy_helper.from_array(rng.standard_normal((16, 8)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.standard_normal((8,)).astype(np.float32), "b1")]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"), helper.make_node("Add", ["h", "b1"], ["a"], name="bias1"),
         helper.make_node("Relu", ["a"], ["y"], name="relu1")],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    root = tmp_path_factory.mktemp("integrity")
    onnx.save(model, root / "mlp.onnx")
    hcc.compile(root / "mlp.onnx", root / "bundle")
    return root / "bundle"


@pytest.fixture
def bundle(pristine, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(pristine, copy)
    return copy


def flip_byte(path, position=None):
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if position is None else position
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def rewrite_manifest(bundle, edit):
    """Change the manifest like a careful attacker would: keep its checksum file consistent."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    text = json.dumps(manifest, indent=2)
    (bundle / "manifest.json").write_text(text)
    (bundle / "manifest.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "  manifest.json\n")


def test_pristine_bundle_runs(bundle):
    session = load(bundle)
    x = np.ones((4, 16), np.float32)
    (y,) = session.run(None, {"x": x})
    assert y.shape == (4, 8) and (y >= 0).all()


@pytest.mark.parametrize("victim", ["cpu/sg0/libsg0.so", "weights/weights.bin", "golden/golden.npz"])
def test_one_changed_byte_is_detected(bundle, victim):
    flip_byte(bundle / victim)
    with pytest.raises(HccError, match=f"{victim}: checksum mismatch"):
        load(bundle)


def test_changed_manifest_byte_is_detected(bundle):
    text = (bundle / "manifest.json").read_text()
    (bundle / "manifest.json").write_text(text.replace('"shape": [\n        4,', '"shape": [\n        5,', 1))
    with pytest.raises(HccError, match="manifest.json: checksum mismatch"):
        load(bundle)


def test_missing_file_is_named(bundle):
    (bundle / "weights" / "weights.bin").unlink()
    with pytest.raises(HccError, match="incomplete bundle: weights/weights.bin is missing"):
        load(bundle)


def test_missing_manifest(bundle):
    (bundle / "manifest.json").unlink()
    with pytest.raises(HccError, match="manifest.json is missing"):
        load(bundle)


@pytest.mark.parametrize("evil", ["../outside.so", "/etc/passwd", "cpu/../../outside.so", "cpu\\..\\x.so"])
def test_paths_that_escape_are_refused(bundle, evil):
    def edit(m):
        m["subgraphs"][0]["artifacts"][0]["file"] = evil
        m["files"][evil] = "0" * 64
    rewrite_manifest(bundle, edit)
    with pytest.raises(HccError, match="(escapes the bundle|not a relative path inside the bundle)"):
        load(bundle)


def test_symlink_escaping_the_bundle_is_refused(bundle, tmp_path):
    outside = tmp_path / "outside.so"
    shutil.copy(bundle / "cpu/sg0/libsg0.so", outside)
    (bundle / "cpu/sg0/libsg0.so").unlink()
    (bundle / "cpu/sg0/libsg0.so").symlink_to(outside)
    with pytest.raises(HccError, match="escapes the bundle"):
        load(bundle)


def test_unreferenced_artifact_without_checksum_is_refused(bundle):
    rewrite_manifest(bundle, lambda m: m["files"].pop("cpu/sg0/libsg0.so"))
    with pytest.raises(HccError, match="without a checksum"):
        load(bundle)


def test_newer_format_version_is_refused(bundle):
    rewrite_manifest(bundle, lambda m: m.update(format_version=99))
    with pytest.raises(HccError, match="format version 99 is not supported"):
        load(bundle)


def test_wrong_inputs_are_named(pristine):
    session = load(pristine)
    with pytest.raises(HccError, match=r"input 'x': shape \[4, 15\], expected \[4, 16\]"):
        session.run(None, {"x": np.ones((4, 15), np.float32)})
    with pytest.raises(HccError, match="input 'x': dtype float64, expected float32"):
        session.run(None, {"x": np.ones((4, 16))})
    with pytest.raises(HccError, match=r"missing \['x'\]"):
        session.run(None, {})
    with pytest.raises(HccError, match=r"unknown \['z'\]"):
        session.run(None, {"x": np.ones((4, 16), np.float32), "z": np.ones(1)})
    with pytest.raises(HccError, match="'nope' is not an output"):
        session.run(["nope"], {"x": np.ones((4, 16), np.float32)})


def test_cli_test_reports_tampering(bundle):
    flip_byte(bundle / "weights" / "weights.bin")
    proc = subprocess.run([sys.executable, "-m", "hcc.cli", "test", str(bundle)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "weights/weights.bin: checksum mismatch" in proc.stderr and "Traceback" not in proc.stderr


def test_runtime_imports_and_runs_with_numpy_alone(pristine):
    """Deployment needs no compiler packages: block them and run the bundle in a fresh interpreter."""
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        BLOCKED = ("onnx", "onnxruntime", "mlir", "torch_mlir", "click", "scipy", "google.protobuf")
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED or name in BLOCKED:
                    raise ImportError(f"blocked for this test: {{name}}")
        sys.meta_path.insert(0, Block())
        import numpy as np
        import hcc.runtime
        session = hcc.runtime.load({str(pristine)!r})
        (y,) = session.run(None, {{"x": np.ones((4, 16), np.float32)}})
        from hcc.runtime.golden_check import check_golden
        assert check_golden({str(pristine)!r}).passed
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        print("ok", y.shape)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok (4, 8)"
