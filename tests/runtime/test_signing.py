"""Signed bundles (issue 9, item 5): Ed25519 against RFC 8032's vectors, then compile --sign / load(trust=)."""
from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import hcc
from hcc.errors import HccError
from hcc.runtime import load, signing

# RFC 8032, section 7.1: (secret, public, message, signature)
VECTORS = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7", "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


@pytest.mark.parametrize("secret,public,message,signature", VECTORS)
def test_rfc8032_vectors(secret, public, message, signature):
    sk, msg = bytes.fromhex(secret), bytes.fromhex(message)
    assert signing.public_key(sk).hex() == public
    assert signing.sign(sk, msg).hex() == signature
    assert signing.verify(bytes.fromhex(public), msg, bytes.fromhex(signature))
    assert not signing.verify(bytes.fromhex(public), msg + b"!", bytes.fromhex(signature))
    bad = bytearray(bytes.fromhex(signature))
    bad[10] ^= 1
    assert not signing.verify(bytes.fromhex(public), msg, bytes(bad))


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    root = tmp_path_factory.mktemp("signing")
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), root / "m.onnx")
    secret, public = signing.generate_keys(root / "release")
    other_secret, other_public = signing.generate_keys(root / "other")
    hcc.compile(root / "m.onnx", root / "bundle", sign_key=str(secret))
    return root, public, other_public


def _copy(signed, tmp_path) -> Path:
    return Path(shutil.copytree(signed[0] / "bundle", tmp_path / "bundle"))


def test_keygen_writes_an_owner_only_secret_and_refuses_to_overwrite(signed):
    root = signed[0]
    assert stat.S_IMODE((root / "release.key").stat().st_mode) == 0o600
    with pytest.raises(HccError, match="refusing to overwrite"):
        signing.generate_keys(root / "release")


def test_a_signed_bundle_loads_with_its_key_only(signed, tmp_path):
    root, public, other = signed
    load(root / "bundle", trust=str(public))
    load(root / "bundle", trust=[str(other), public.read_text().strip()])  # any one trusted key
    with pytest.raises(HccError, match="does not verify"):
        load(root / "bundle", trust=str(other))


def test_an_unsigned_bundle_is_refused_when_trust_is_required(signed, tmp_path):
    copy = _copy(signed, tmp_path)
    (copy / "manifest.sig").unlink()
    load(copy)  # without trust it still loads (checksums only)
    with pytest.raises(HccError, match="not signed"):
        load(copy, trust=str(signed[1]))


def test_a_resealed_edit_of_a_signed_bundle_is_refused(signed, tmp_path):
    copy = _copy(signed, tmp_path)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["golden"]["atol"] = 1.0
    text = json.dumps(manifest, indent=2)
    (copy / "manifest.json").write_text(text)
    (copy / "manifest.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "  manifest.json\n")
    load(copy)  # the checksums were recomputed: only the signature can tell
    with pytest.raises(HccError, match="does not verify"):
        load(copy, trust=str(signed[1]))


def test_a_broken_signature_file_is_a_clear_error(signed, tmp_path):
    copy = _copy(signed, tmp_path)
    (copy / "manifest.sig").write_bytes(b"\xff not json")
    with pytest.raises(HccError, match="not a valid hcc signature file"):
        load(copy, trust=str(signed[1]))


def test_bad_keys_are_clear_errors(signed, tmp_path):
    with pytest.raises(HccError, match="64 hex digits"):
        load(signed[0] / "bundle", trust="not-a-key")
    with pytest.raises(HccError, match="--sign"):
        hcc.compile(signed[0] / "m.onnx", tmp_path / "b", sign_key="0123")
    assert not (tmp_path / "b").exists()


def test_cli_trust_and_recompiling_into_a_signed_bundle(signed, tmp_path):
    root, public, other = signed
    copy = _copy(signed, tmp_path)
    run = [sys.executable, "-m", "hcc.cli"]
    ok = subprocess.run(run + ["test", str(copy), "--trust", str(public)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run(run + ["test", str(copy), "--trust", str(other)], capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.startswith("hcc: error:") and "Traceback" not in refused.stderr
    hcc.compile(root / "m.onnx", copy)  # a signed bundle is an intact hcc bundle: it may be replaced
    assert not (copy / "manifest.sig").exists()
