"""The device interface: what the session needs from any device to run a subgraph and move tensors.

A driver loads a subgraph's artifact into an `Executable`, and moves arrays between host memory and the device.
For the CPU, device memory is host memory, so transfers are no-ops; other drivers (GPU, FPGA emulation) keep
their own buffers behind `DeviceArray`.

Inputs are read-only: native code writes only its outputs (bare-ptr ABI, docs/bundle-format.md; the runtime has
always relied on it for weights and for a tensor read by several subgraphs, and tests/runtime/test_session_run.py
checks it for model inputs), so a host-memory device takes a caller's C-contiguous array as it is, without a copy;
outputs are always fresh `empty` arrays.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from hcc.artifacts.manifest import SubgraphRecord

DEVICE_INTERFACE_VERSION = 1


class Executable(ABC):
    @abstractmethod
    def run(self, inputs: list[Any], outputs: list[Any]) -> None:
        """Run once: `inputs` and `outputs` are device arrays in the subgraph's argument order."""

    def profile(self) -> dict[str, float]:
        """Seconds per ONNX node of the runs since the last call, where the driver can tell (else empty)."""
        return {}

    def bind_constants(self, constants: dict[int, Any]) -> None:
        """Inputs passed as the same object on every call (resident weights), by argument position: a driver may
        prepare them once here instead of on every `run` (the CPU driver converts their pointers once)."""
        self._bound_constants = dict(constants)

    def run_bound(self, inputs: list[Any], outputs: list[Any]) -> None:
        """`run` with every bound constant in its own position: `inputs` are the other inputs, in argument order
        (a session's common call; a driver may make it cheaper than `run`)."""
        bound = getattr(self, "_bound_constants", {})
        others = iter(inputs)
        self.run([bound[i] if i in bound else next(others) for i in range(len(bound) + len(inputs))], outputs)


class Device(ABC):
    kind: str

    @abstractmethod
    def load(self, bundle: Path, subgraph: SubgraphRecord) -> Executable:
        """Load the subgraph's artifact for this device (the bundle has already been verified)."""

    @abstractmethod
    def empty(self, shape: list[int], dtype: np.dtype) -> Any:
        """Allocate an uninitialised device array."""

    @abstractmethod
    def to_device(self, array: np.ndarray) -> Any:
        """Host array -> device array (may return the same object for host-memory devices)."""

    @abstractmethod
    def to_host(self, value: Any) -> np.ndarray:
        """Device array -> host numpy array."""


class HostMemoryDevice(Device):
    """A device whose memory is host memory (the CPU, the FPGA emulation): arrays are numpy arrays."""

    def empty(self, shape: list[int], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def to_device(self, array: np.ndarray) -> np.ndarray:
        """The array itself when it is already C-contiguous and aligned (inputs are read-only: nothing writes to
        it), else a C-contiguous copy."""
        flags = array.flags
        if flags.c_contiguous and flags.aligned:
            return array
        return np.array(array, order="C", copy=True)

    def to_host(self, value: np.ndarray) -> np.ndarray:
        return value
