"""Runtime device drivers (the HAL's run-time half). Each driver needs numpy and ctypes only.

A driver class is constructed as `Driver(device: str, index: int)` (device as in the manifest, e.g. "gpu:sm_90")
and raises `DeviceUnavailable` when the hardware (or its library) is absent; the session then runs the subgraph's
CPU fallback artifact and says so.
"""
from __future__ import annotations

import importlib

DRIVER_CLASSES = {
    "cpu": ("hcc.runtime.devices.cpu", "CpuDevice"),
    "gpu": ("hcc.runtime.devices.cuda", "CudaDevice"),
    "fpga": ("hcc.runtime.devices.fpga_csim", "FpgaCsimDevice"),
}


class DeviceUnavailable(Exception):
    """The device is not present on this host (or its driver library is missing); the reason is the message."""


def driver_class(device: str):
    kind = device.split(":", 1)[0]
    if kind not in DRIVER_CLASSES:
        raise DeviceUnavailable(f"this runtime has no driver for device kind '{kind}'")
    module_name, class_name = DRIVER_CLASSES[kind]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise DeviceUnavailable(f"this runtime build has no {kind} driver") from None
        raise
    return getattr(module, class_name)
