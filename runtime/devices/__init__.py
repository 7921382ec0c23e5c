"""Runtime device drivers (the HAL's run-time half). Each driver needs numpy and ctypes only.

A driver class is constructed as `Driver(device: str, index: int)` (device as in the manifest, e.g. "gpu:sm_90")
and raises `DeviceUnavailable` when the hardware (or its library) is absent; the session then runs the subgraph's
CPU fallback artifact and says so.
"""
from __future__ import annotations

import importlib

from hcc.devices import parse_device


class DeviceUnavailable(Exception):
    """The device is not present on this host (or its driver library is missing); the reason is the message."""


def driver_class(device: str) -> type:
    """The driver class of `device`'s kind (hcc.devices names it), imported on first use so that a runtime without,
    say, the CUDA driver module still runs CPU subgraphs."""
    name = parse_device(device)
    kind = name.kind
    if name.facts is None:
        raise DeviceUnavailable(f"this runtime has no driver for device kind '{kind}'")
    module_name, class_name = name.facts.driver
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise DeviceUnavailable(f"this runtime build has no {kind} driver") from None
        raise
    return getattr(module, class_name)
