"""A small synthetic device catalog with round numbers, so tests can work out the optimal placement by hand."""
from __future__ import annotations

from hcc.devices import FPGA_SUPPORTED_OPS
from hcc.planner.device_catalog import OP_CLASSES, DeviceSpec, builtin_catalog, parse_device_mix

NO_SIGMOID = frozenset({"MatMul", "Gemm", "Relu", "Add", "Mul", "Conv", "Tanh", "Softmax", "Reshape", "Transpose"})


def catalog() -> dict[str, DeviceSpec]:
    """cpu: 100 GFLOP/s, 10 GB/s; gpu:test: 10 TFLOP/s, 100 GB/s, 1 GB/s link + 10 us, 10 us per op, no Sigmoid;
    fpga:test: 2000 DSP, 4000 BRAM18K at 400 MHz, 1 GB/s link."""
    ideal = {c: (1.0, 0.0) for c in OP_CLASSES}
    cat = builtin_catalog()
    cat["cpu"] = DeviceSpec("cpu", "cpu", "test host", {"fp32": 1e11}, 1e10, 64e9, 1e10, 0.0, None, dict(ideal), 1.0)
    cat["gpu:test"] = DeviceSpec("gpu:test", "gpu", "test GPU", {"fp32": 1e13}, 1e11, 16e9, 1e9, 1e-5, NO_SIGMOID,
                                 {c: (1.0, 1e-5) for c in OP_CLASSES}, 1.0)
    cat["fpga:test"] = DeviceSpec("fpga:test", "fpga", "test FPGA", {"fp32": 2e11}, 1e10, 4e9, 1e9, 1e-5, FPGA_SUPPORTED_OPS,
                                  dict(ideal), 1.0, dsp=2000, bram18k=4000, lut=500_000, ff=1_000_000, clock_hz=4e8, dsp_width=27)
    return cat


def mix(text: str):
    return parse_device_mix(text, catalog())
