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
