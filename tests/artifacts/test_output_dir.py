"""`hcc compile -o DIR` never deletes or overwrites what hcc did not create (issue 9, item 1)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import hcc
from hcc.artifacts import output_dir
from hcc.errors import HccError


def _relu_model() -> onnx.ModelProto:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _no_staging_left(parent: Path) -> bool:
    return not [p for p in parent.iterdir() if ".hcc-staging." in p.name or ".hcc-old." in p.name]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """A model and one intact bundle of it (copied by the tests that change it)."""
    root = tmp_path_factory.mktemp("outdir")
    model = root / "m.onnx"
    onnx.save(_relu_model(), model)
    hcc.compile(model, root / "bundle")
    return model, root / "bundle"


def _copy_bundle(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_a_foreign_manifest_json_is_not_a_bundle(compiled, tmp_path):
    model, _ = compiled
    webapp = tmp_path / "webapp"
    webapp.mkdir()
    (webapp / "manifest.json").write_text('{"name": "my web app", "icons": []}')
    (webapp / "index.html").write_text("<html></html>")
    before = _snapshot(webapp)
    with pytest.raises(HccError, match=r"not an intact hcc bundle.*index\.html"):
        hcc.compile(model, webapp)
    assert _snapshot(webapp) == before
    assert _no_staging_left(tmp_path)


def test_a_file_added_to_a_bundle_is_kept_and_named(compiled, tmp_path):
    model, bundle = compiled
    copy = _copy_bundle(bundle, tmp_path / "b")
    (copy / "cpu" / "my-notes.txt").write_text("mine")
    before = _snapshot(copy)
    with pytest.raises(HccError, match=r"did not write.*cpu/my-notes\.txt"):
        hcc.compile(model, copy)
    assert _snapshot(copy) == before
    assert _no_staging_left(tmp_path)


def test_an_edited_bundle_file_is_a_users_file(compiled, tmp_path):
    model, bundle = compiled
    copy = _copy_bundle(bundle, tmp_path / "b")
    golden = copy / "golden" / "golden.npz"
    golden.write_bytes(golden.read_bytes() + b"edit")
    with pytest.raises(HccError, match=r"golden/golden\.npz"):
        hcc.compile(model, copy)
    assert golden.read_bytes().endswith(b"edit")


def test_an_empty_subfolder_added_to_a_bundle_is_foreign(compiled, tmp_path):
    model, bundle = compiled
    copy = _copy_bundle(bundle, tmp_path / "b")
    (copy / "mine").mkdir()
    with pytest.raises(HccError, match=r"mine/"):
        hcc.compile(model, copy)
    assert (copy / "mine").is_dir()


def test_an_intact_bundle_is_replaced(compiled, tmp_path):
    model, bundle = compiled
    copy = _copy_bundle(bundle, tmp_path / "b")
    manifest = hcc.compile(model, copy, seed=5)
    assert "seed 5" in manifest.golden.source
    assert output_dir.foreign_entries(copy) == []
    assert _no_staging_left(tmp_path)


def test_missing_and_empty_folders_are_fine(compiled, tmp_path):
    model, _ = compiled
    hcc.compile(model, tmp_path / "new" / "nested" / "b")
    (tmp_path / "empty").mkdir()
    hcc.compile(model, tmp_path / "empty")
    assert (tmp_path / "empty" / "manifest.json").is_file()


def test_the_current_folder_and_its_parents_are_refused(compiled, tmp_path, monkeypatch):
    model, _ = compiled
    work = tmp_path / "work" / "inner"
    work.mkdir(parents=True)
    local_model = work / "m.onnx"
    local_model.write_bytes(model.read_bytes())
    monkeypatch.chdir(work)
    for target in (".", "..", str(tmp_path)):
        with pytest.raises(HccError, match="current folder"):
            hcc.compile("m.onnx", target)
    assert local_model.read_bytes() == model.read_bytes()
    assert sorted(os.listdir(work)) == ["m.onnx"]


def test_a_folder_holding_the_model_or_an_input_file_is_refused(compiled, tmp_path):
    model, _ = compiled
    folder = tmp_path / "project"
    folder.mkdir()
    inside = folder / "m.onnx"
    inside.write_bytes(model.read_bytes())
    with pytest.raises(HccError, match=r"contains .*m\.onnx"):
        hcc.compile(inside, folder)
    with pytest.raises(HccError, match=r"contains .*placement\.json"):
        hcc.compile(model, folder, devices="cpu", save_placement=str(folder / "placement.json"))
    assert sorted(os.listdir(folder)) == ["m.onnx"]


def test_a_symlinked_output_is_refused(compiled, tmp_path):
    model, _ = compiled
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(HccError, match="symbolic link"):
        hcc.compile(model, tmp_path / "link")


def test_a_file_added_during_the_compile_stops_the_swap(compiled, tmp_path):
    model, bundle = compiled
    copy = _copy_bundle(bundle, tmp_path / "b")
    staging = output_dir.make_staging_dir(copy)
    (staging / "manifest.json").write_text("{}")
    (copy / "late.txt").write_text("written while hcc compiled")
    with pytest.raises(HccError, match="late.txt"):
        output_dir.move_into_place(staging, copy, [])
    assert (copy / "late.txt").read_text() == "written while hcc compiled"


def test_cli_refuses_the_current_folder_in_one_line(compiled, tmp_path):
    model, _ = compiled
    local = tmp_path / "m.onnx"
    local.write_bytes(model.read_bytes())
    proc = subprocess.run([sys.executable, "-m", "hcc.cli", "compile", "m.onnx", "-o", "."], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.startswith("hcc: error: -o .: is the current folder")
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["m.onnx"]


def _default_signals() -> None:
    """In the child before exec: SIGINT handled by default, even when this test runs in a background job (a shell
    starts those with SIGINT ignored, which Python, and so hcc, would then rightly keep ignoring)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_compile(model: Path, out: Path) -> subprocess.Popen:
    """A CLI compile, returned once its worker is running (the worker prints 'imported ...')."""
    proc = subprocess.Popen([sys.executable, "-m", "hcc.cli", "compile", str(model), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_signals)
    for line in proc.stderr:
        if "imported" in line:
            return proc
    raise AssertionError("the compile ended before its worker started")


def _workers_of(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_an_interrupted_compile_leaves_nothing_behind(compiled, tmp_path, signum):
    import signal

    model, _ = compiled
    for attempt in range(5):  # on a loaded machine the compile can end before the signal lands: try again
        out = tmp_path / f"attempt{attempt}"
        out.mkdir()
        proc = _start_compile(model, out / "b")
        workers = _workers_of(proc.pid)
        proc.send_signal(getattr(signal, signum))
        _, err = proc.communicate(timeout=60)
        if proc.returncode == 0:
            continue
        assert proc.returncode == 130 and "hcc: interrupted" in err and "Traceback" not in err
        assert sorted(os.listdir(out)) == []
        for pid in workers:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        return
    pytest.fail("5 compiles in a row finished before the interrupt reached them")


def test_a_killed_compiles_staging_folder_is_removed_by_the_next(compiled, tmp_path):
    import signal

    model, _ = compiled
    proc = _start_compile(model, tmp_path / "b")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p for p in os.listdir(tmp_path) if ".hcc-staging." in p]  # SIGKILL gives no chance to clean up
    hcc.compile(model, tmp_path / "b")
    assert sorted(os.listdir(tmp_path)) == ["b"]
