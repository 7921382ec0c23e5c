"""The one loader of native shared objects (runtime/devices/native.py): CPU subgraphs, FPGA csim, test libraries."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from hcc.errors import HccError
from hcc.runtime.devices.native import entry_function, load_library


def _library(folder: Path, name: str, value: float) -> Path:
    """A bare-ptr-v1 library whose entry `sg0` writes `value` into its one output."""
    source, so = folder / f"{name}.c", folder / f"lib{name}.so"
    source.write_text(f"void sg0(const float *x, float *y) {{ y[0] = x[0] + {value}f; }}\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", str(source), "-o", str(so)], check=True)
    return so


def test_two_libraries_with_the_same_entry_name_stay_apart(tmp_path):
    """RTLD_LOCAL: two bundles' `sg0` never resolve to each other."""
    first = entry_function(load_library(_library(tmp_path, "a", 1.0)), "sg0", 2, "a")
    second = entry_function(load_library(_library(tmp_path, "b", 2.0)), "sg0", 2, "b")
    x, y = np.array([10.0], np.float32), np.zeros(1, np.float32)
    first(x.ctypes.data, y.ctypes.data)
    assert y[0] == 11.0
    second(x.ctypes.data, y.ctypes.data)
    assert y[0] == 12.0


def test_failures_are_one_error_naming_the_file(tmp_path):
    with pytest.raises(HccError, match=r"missing\.so: cannot load the FPGA C simulation: .*No such file") as info:
        load_library(tmp_path / "missing.so", "the FPGA C simulation", hint="rebuild it")
    assert info.value.hint == "rebuild it"
    not_elf = tmp_path / "text.so"
    not_elf.write_text("not a library")
    with pytest.raises(HccError, match=r"text\.so: cannot load the shared object"):
        load_library(not_elf)
    lib = load_library(_library(tmp_path, "c", 0.0))
    with pytest.raises(HccError, match=r"libc\.so: entry symbol 'sg1' not found"):
        entry_function(lib, "sg1", 2, tmp_path / "libc.so")


@pytest.mark.parametrize("how", ["replaced", "rewritten"])
def test_a_library_rebuilt_at_the_same_path_is_loaded_anew(tmp_path, how):
    """A bundle recompiled in place, then loaded again by the same process: glibc's dlopen matches loaded objects by
    the name it was given and would hand back the old code (silently the old model); the loader sees that the path
    now names another file and loads the new one."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    x, y = np.array([10.0], np.float32), np.zeros(1, np.float32)
    old = load_library(_library(folder, "sg", 1.0))
    entry_function(old, "sg0", 2, "old")(x.ctypes.data, y.ctypes.data)
    assert y[0] == 11.0
    if how == "replaced":  # hcc compile: a new folder renamed into place, the old one deleted
        staged = tmp_path / "staged"
        staged.mkdir()
        _library(staged, "sg", 5.0)
        (folder / "libsg.so").unlink()
        (staged / "libsg.so").rename(folder / "libsg.so")
    else:  # the same file written over (a new inode only if the compiler unlinks first: gcc -o does)
        _library(folder, "sg", 5.0)
    again = load_library(folder / "libsg.so")
    entry_function(again, "sg0", 2, "new")(x.ctypes.data, y.ctypes.data)
    assert y[0] == 15.0
    entry_function(old, "sg0", 2, "old")(x.ctypes.data, y.ctypes.data)  # the first session keeps its own code
    assert y[0] == 11.0


def test_a_bundle_recompiled_in_place_runs_its_new_code(tmp_path):
    """The same, end to end: compile, load and run; compile another model into the same folder (hcc replaces its own
    bundle), load and run again in the same process: the new model's result, not the old one's."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    import hcc
    from hcc.runtime import load

    def model(bias: float) -> Path:
        graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
                                  [numpy_helper.from_array(np.full(4, bias, np.float32), "b")])
        path = tmp_path / f"add{bias:g}.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
        return path

    x = np.arange(4, dtype=np.float32)
    outputs = []
    for bias in (1.0, 5.0):
        hcc.compile(model(bias), tmp_path / "bundle")
        outputs.append(load(tmp_path / "bundle").run(None, {"x": x})[0])
    np.testing.assert_array_equal(outputs[0], x + 1.0)
    np.testing.assert_array_equal(outputs[1], x + 5.0)
