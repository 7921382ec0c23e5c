"""The user-facing commands of the foundation issue, end to end through the console entry point."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "tiny_cnn.onnx"


def hcc(*args, check=True):
    proc = subprocess.run([sys.executable, "-m", "hcc.cli", *map(str, args)], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "bundle"
    proc = hcc("compile", EXAMPLE, "-o", out, "--input-shape", "image=2x3x32x32")
    assert "compiled tiny_cnn" in proc.stdout
    assert "[hcc" in proc.stderr  # progress messages
    return out


def test_inspect(bundle):
    out = hcc("inspect", bundle).stdout
    assert "image: float32 [2, 3, 32, 32] (model: ['batch', 3, 32, 32])" in out
    assert "sg0: device cpu#0" in out and "all sha256-verified" in out
    assert "generated code: x86-64-v3, and x86-64-v4 (entry sg0__x86_64_v4) used where the CPU has it" in out


def test_test_uses_stored_golden(bundle):
    out = hcc("test", bundle).stdout
    assert "PASS probs" in out and "1 passed, 0 failed" in out


def test_run_and_golden_round_trip(bundle, tmp_path):
    x = np.random.default_rng(5).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "x.npz", image=x)
    out = hcc("run", bundle, "--input", tmp_path / "x.npz", "-o", tmp_path / "y.npz").stdout
    assert "probs: float32 [2, 10]" in out and "time:" in out
    probs = np.load(tmp_path / "y.npz")["probs"]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)

    hcc("golden", EXAMPLE, "--input", tmp_path / "x.npz", "-o", tmp_path / "golden.npz", "--input-shape", "image=2x3x32x32")
    golden = np.load(tmp_path / "golden.npz")
    np.testing.assert_allclose(probs, golden["output:probs"], rtol=1e-3, atol=1e-4)
    assert "1 passed" in hcc("test", bundle, "--golden", tmp_path / "golden.npz").stdout

    bad = {k: golden[k] for k in golden.files}
    bad["output:probs"] = bad["output:probs"] + 0.01
    np.savez(tmp_path / "bad.npz", **bad)
    proc = hcc("test", bundle, "--golden", tmp_path / "bad.npz", check=False)
    assert proc.returncode == 1 and "FAIL probs" in proc.stdout
    assert "1 passed" in hcc("test", bundle, "--golden", tmp_path / "bad.npz", "--atol", "0.02").stdout


def test_run_with_wrong_input_shape_is_a_clear_error(bundle, tmp_path):
    np.savez(tmp_path / "x.npz", image=np.zeros((1, 3, 32, 32), np.float32))
    proc = hcc("run", bundle, "--input", tmp_path / "x.npz", check=False)
    assert proc.returncode == 1
    assert "input 'image': shape [1, 3, 32, 32], expected [2, 3, 32, 32]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_explains_commands():
    out = hcc("--help").stdout
    for command in ("compile", "run", "test", "golden", "inspect", "ops"):
        assert command in out
    assert "--input-shape" in hcc("compile", "--help").stdout


def _zip_bomb(path: Path, name: str, elements: int) -> None:
    """An npz whose member declares `elements` float32 zeros: a few kB on disk, `4 * elements` bytes inflated."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (elements,)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open(f"{name}.npy", "w", force_zip64=True) as f:
        f.write(header.getvalue())
        for _ in range(elements // (1 << 22)):
            f.write(bytes(1 << 24))


def test_a_zip_bomb_is_refused_from_its_headers(bundle, tmp_path):
    """Issue 9, item 7: 256 MiB declared for an input of 24 kB: refused before decompressing, as --input and --golden."""
    _zip_bomb(tmp_path / "bomb.npz", "image", 1 << 26)
    for command in (("run", bundle, "--input", tmp_path / "bomb.npz"), ("test", bundle, "--golden", tmp_path / "bomb.npz")):
        proc = hcc(*command, check=False)
        assert proc.returncode == 1 and "refusing to decompress it" in proc.stderr, proc.stderr


def test_output_files_are_checked_before_the_work(bundle, tmp_path):
    x = tmp_path / "x.npz"
    np.savez(x, image=np.zeros((2, 3, 32, 32), np.float32))
    commands = {
        "run": ("run", bundle, "--input", x, "-o", tmp_path / "missing" / "y.npz"),
        "golden": ("golden", EXAMPLE, "--input-shape", "image=2x3x32x32", "-o", tmp_path / "missing" / "g.npz"),
        "save-placement": ("compile", EXAMPLE, "--input-shape", "image=2x3x32x32", "-o", tmp_path / "b",
                           "--save-placement", tmp_path / "missing" / "p.json"),
    }
    for what, command in commands.items():
        proc = hcc(*command, check=False)
        assert proc.returncode == 1 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr, (what, proc.stderr)
    assert not (tmp_path / "b").exists()


def test_negative_seed_is_a_usage_error(tmp_path):
    proc = hcc("compile", EXAMPLE, "--input-shape", "image=2x3x32x32", "-o", tmp_path / "b", "--seed", "-1", check=False)
    assert proc.returncode == 2 and "--seed" in proc.stderr and "Traceback" not in proc.stderr


def test_output_names_must_be_a_list(bundle):
    from hcc.errors import HccError
    from hcc.runtime import load

    session = load(bundle)
    with pytest.raises(HccError, match="output_names must be None or a list"):
        session.run(5, {"image": np.zeros((2, 3, 32, 32), np.float32)})


def test_compile_says_which_nodes_it_expanded_into_function_bodies(tmp_path):
    """An op hcc has no lowering for but ONNX defines by a function body is expanded, and the compile says so."""
    import onnx
    from onnx import TensorProto
    from onnx import helper as h

    graph = h.make_graph([h.make_node("MeanVarianceNormalization", ["x"], ["y"], name="mvn")], "g",
                         [h.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4, 5])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "mvn.onnx")
    proc = hcc("compile", tmp_path / "mvn.onnx", "-o", tmp_path / "b")
    assert "note: node 'mvn' (MeanVarianceNormalization) expanded into its ONNX function body" in proc.stderr
    assert hcc("test", tmp_path / "b").returncode == 0


def test_compile_takes_its_options_from_a_config_file(tmp_path):
    config = tmp_path / "hcc.toml"
    config.write_text("input_shapes = { image = [2, 3, 32, 32] }\n[golden]\nseed = 5\n")
    proc = hcc("compile", EXAMPLE, "-o", tmp_path / "b", "--config", config)
    assert "compiled tiny_cnn" in proc.stdout
    assert "seed 5" in hcc("inspect", tmp_path / "b").stdout
    both = hcc("compile", EXAMPLE, "-o", tmp_path / "c", "--config", config, "--seed", "3", check=False)
    assert both.returncode == 1 and "not both (--seed)" in both.stderr and not (tmp_path / "c").exists()


def test_compile_declares_a_sequence_input(tmp_path):
    """A sequence input's length and element shapes come from --input-shape NAME=[...]; without them the compile
    says how to give them; `hcc test` checks the sequence output's elements."""
    import onnx
    from onnx import TensorProto
    from onnx import helper as h

    graph = h.make_graph([h.make_node("ConcatFromSequence", ["xs"], ["y"], name="cat", axis=0),
                          h.make_node("SplitToSequence", ["b"], ["parts"], name="split", axis=0)], "g",
                         [h.make_tensor_sequence_value_info("xs", TensorProto.FLOAT, ["n", 3]),
                          h.make_tensor_value_info("b", TensorProto.FLOAT, [2, 3])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, None),
                          h.make_tensor_sequence_value_info("parts", TensorProto.FLOAT, None)])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "seq.onnx")
    proc = hcc("compile", tmp_path / "seq.onnx", "-o", tmp_path / "b", check=False)
    assert proc.returncode != 0 and "input 'xs' is a sequence" in proc.stderr and "NAME=[2x3,4x3]" in proc.stderr
    hcc("compile", tmp_path / "seq.onnx", "-o", tmp_path / "b", "--input-shape", "xs=[2x3]*2")
    proc = hcc("test", tmp_path / "b")
    assert "parts[1]" in proc.stdout and "y" in proc.stdout
