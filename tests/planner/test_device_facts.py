"""hcc.devices is the one table of device-kind facts: the planner, the backends, the runtime and the tools read it.

These tests hold the readers to it, so that the tables cannot drift apart again (the planner once scored Sub, Div,
Transpose, Pad, ... as impossible on an FPGA whose backend compiles them). That the FPGA op set is exactly what the
backend builds is proven by tests/backends/fpga/test_csim.py (`test_models_cover_exactly_the_ops_the_fpga_supports`).
"""
from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from hcc.devices import (
    ARTIFACT_KINDS,
    DEVICE_KINDS,
    FPGA_PARTS,
    GPU_ARCHS,
    KINDS,
    LAUNCH_ABI,
    NATIVE_ABI,
    NATIVE_ARTIFACT_KINDS,
    TOLERANCES,
    DeviceName,
    fpga_part_by_number,
    golden_tolerance,
    parse_device,
)
from hcc.errors import HccError
from hcc.frontend.ops import SUPPORTED_OPS
from hcc.options import FpgaOptions
from hcc.planner.device_catalog import builtin_catalog, resolve_spec


@pytest.mark.parametrize("text, parsed, name", [
    ("cpu", DeviceName("cpu"), "cpu"),
    ("gpu:sm_90", DeviceName("gpu", "sm_90"), "gpu:sm_90"),
    ("gpu:sm_90#1", DeviceName("gpu", "sm_90", 1), "gpu:sm_90"),
    ("fpga:xcu250#0", DeviceName("fpga", "xcu250", 0), "fpga:xcu250"),
    ("gpu:rtx:4090", DeviceName("gpu", "rtx:4090"), "gpu:rtx:4090"),
    ("cpu#fallback", DeviceName("cpu#fallback"), "cpu#fallback"),  # not an index: an unknown kind, refused by its reader
])
def test_parse_device(text, parsed, name):
    assert parse_device(text) == parsed and parse_device(text).name == name


def test_planner_support_sets_are_the_backends():
    """Every built-in catalog device supports exactly its kind's ops, and names exactly its kind's devices."""
    catalog = builtin_catalog(profile_path="/nonexistent/profile.json")
    for name, spec in catalog.items():
        facts = DEVICE_KINDS[spec.kind]
        assert spec.supported_ops == facts.supported_ops, name
        assert all(spec.supports(op) == (facts.supported_ops is None or op in facts.supported_ops) for op in SUPPORTED_OPS), name
    for kind, facts in DEVICE_KINDS.items():
        assert sorted(n for n, s in catalog.items() if s.kind == kind) == sorted(facts.devices), kind
        assert resolve_spec(kind, catalog).name == facts.default_device
    assert DEVICE_KINDS["fpga"].supported_ops <= SUPPORTED_OPS, "the FPGA claims ops the frontend refuses"


def test_fpga_backend_gate_is_the_planners_set():
    """The FPGA backend refuses, before any work, exactly the ops the planner scores as impossible on an FPGA."""
    from hcc.backends.fpga import backend

    fpga = builtin_catalog(profile_path="/nonexistent/profile.json")["fpga:xcu250"]
    accepted = set()
    for op in sorted(SUPPORTED_OPS):
        try:
            backend._check_ops(SimpleNamespace(nodes=["n"], device="fpga:xcu250"), {"n": op})
            accepted.add(op)
        except HccError:
            pass
    assert accepted == {op for op in SUPPORTED_OPS if fpga.supports(op)}


def test_fpga_parts_are_the_catalogs_and_the_backends():
    from hcc.backends.fpga import backend, estimate

    catalog = builtin_catalog(profile_path="/nonexistent/profile.json")
    for name, part in FPGA_PARTS.items():
        spec = catalog[name]
        assert (spec.dsp, spec.bram18k, spec.lut, spec.ff, spec.clock_hz, spec.dsp_width) == (
            part.dsp, part.bram18k, part.lut, part.ff, part.clock_hz, part.dsp_width)
        assert backend.target_of(name, FpgaOptions()) == (part.part, round(1e9 / part.clock_hz, 3))
        assert estimate.part_budget(part.part) == {"dsp": part.dsp, "bram18k": part.bram18k, "lut": part.lut, "ff": part.ff}
        assert fpga_part_by_number(part.part.upper()) is part
    assert backend.target_of("fpga:mine", FpgaOptions()) == ("xcu250-figd2104-2L-e", 5.0)
    assert estimate.part_budget("xc7z020") is None


def test_gpu_facts_are_the_backends_and_the_drivers():
    from hcc.backends.gpu import backend, toolchain
    from hcc.runtime.devices import cuda

    assert toolchain.CUBIN_ARCHS == GPU_ARCHS and backend.target_archs("gpu:sm_90") == list(GPU_ARCHS)
    assert backend.PRECISIONS == DEVICE_KINDS["gpu"].precisions and set(backend.PRECISIONS) <= set(TOLERANCES)
    assert DEVICE_KINDS["gpu"].abi == LAUNCH_ABI and cuda.DeviceArray  # the driver module imports with the shared binding


def test_runtime_drivers_and_compiler_backends_follow_the_table():
    from hcc.backends import backend_for
    from hcc.runtime.devices import DeviceUnavailable, driver_class

    for kind, facts in DEVICE_KINDS.items():
        assert driver_class(f"{kind}:x").__name__ == facts.driver[1]
        if kind != "gpu":  # importing the GPU backend needs the MLIR bindings; tests/backends/gpu covers it
            assert backend_for(kind).__name__ == facts.backend
    with pytest.raises(DeviceUnavailable, match="no driver for device kind 'tpu'"):
        driver_class("tpu:v5")
    with pytest.raises(HccError, match="no backend for device 'tpu:v5'"):
        backend_for("tpu:v5")
    assert set(KINDS) == {"cpu", "gpu", "fpga"}
    assert set(NATIVE_ARTIFACT_KINDS) == {"cpu-so", "fpga-csim-so"} and set(ARTIFACT_KINDS) == {"cpu-so", "fpga-csim-so", "cuda-module"}
    assert DEVICE_KINDS["cpu"].abi == DEVICE_KINDS["fpga"].abi == NATIVE_ABI


def test_golden_tolerances():
    from hcc.artifacts.manifest import NATIVE_ABI as manifest_abi

    assert golden_tolerance("fp32") == (1e-3, 1e-4) and golden_tolerance("fp16") == (3e-2, 3e-2)
    assert golden_tolerance("ap_fixed<16,6>") == TOLERANCES["fp32"]
    assert manifest_abi is NATIVE_ABI


def test_facts_import_nothing_and_the_libcuda_binding_no_compiler_package():
    """hcc.devices is stdlib only (anything may read it); the libcuda binding is part of the numpy-only runtime."""
    code = ("import sys; import hcc.devices; bad = [m for m in ('numpy', 'onnx') if m in sys.modules]; "
            "import hcc.runtime.devices.libcuda, hcc.runtime.devices.discovery; "
            "bad += [m for m in ('onnx', 'scipy', 'mlir', 'torch_mlir') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    subprocess.run([sys.executable, "-c", code], check=True)
