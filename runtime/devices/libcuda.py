"""The one ctypes binding of the CUDA driver library (libcuda.so.1): prototypes, attribute codes, error text.

Why its own module: two readers need it and one of them must not import numpy -- the GPU driver
(runtime/devices/cuda.py, numpy for tensors) and device discovery (runtime/devices/discovery.py, stdlib only, for
`hcc devices` and the planner's host facts). Each used to declare its own prototypes; now both bind here and differ
only in which entry points they require. No CUDA runtime, no cuda-python: the driver API through ctypes.
"""
from __future__ import annotations

import ctypes
from collections.abc import Iterable
from typing import Any

from hcc.errors import HccError
from hcc.runtime.devices import DeviceUnavailable

# cuDeviceGetAttribute codes (CUDA driver API, cuda.h CUdevice_attribute).
CU_DEVICE_ATTRIBUTE_CLOCK_RATE = 13  # kHz
CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16
CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE = 36  # kHz
CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH = 37  # bits
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
# cuModuleLoadDataEx options (cuda.h CUjit_option).
CU_JIT_INFO_LOG_BUFFER = 3
CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES = 4
CU_JIT_ERROR_LOG_BUFFER = 5
CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6

CUresult = ctypes.c_int
CUdeviceptr = ctypes.c_uint64
VOIDP = ctypes.c_void_p

# name -> argtypes; every function returns CUresult
PROTOTYPES: dict[str, list] = {
    "cuInit": [ctypes.c_uint],
    "cuDriverGetVersion": [ctypes.POINTER(ctypes.c_int)],
    "cuDeviceGetCount": [ctypes.POINTER(ctypes.c_int)],
    "cuDeviceGet": [ctypes.POINTER(ctypes.c_int), ctypes.c_int],
    "cuDeviceGetAttribute": [ctypes.POINTER(ctypes.c_int), ctypes.c_int, ctypes.c_int],
    "cuDeviceGetName": [ctypes.c_char_p, ctypes.c_int, ctypes.c_int],
    "cuDeviceTotalMem_v2": [ctypes.POINTER(ctypes.c_size_t), ctypes.c_int],
    "cuDevicePrimaryCtxRetain": [ctypes.POINTER(VOIDP), ctypes.c_int],
    "cuDevicePrimaryCtxRelease_v2": [ctypes.c_int],
    "cuCtxSetCurrent": [VOIDP],
    "cuCtxSynchronize": [],
    "cuModuleLoadData": [ctypes.POINTER(VOIDP), VOIDP],
    "cuModuleLoadDataEx": [ctypes.POINTER(VOIDP), VOIDP, ctypes.c_uint, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(VOIDP)],
    "cuModuleGetFunction": [ctypes.POINTER(VOIDP), VOIDP, ctypes.c_char_p],
    "cuModuleUnload": [VOIDP],
    "cuMemAlloc_v2": [ctypes.POINTER(CUdeviceptr), ctypes.c_size_t],
    "cuMemFree_v2": [CUdeviceptr],
    "cuMemcpyHtoD_v2": [CUdeviceptr, VOIDP, ctypes.c_size_t],
    "cuMemcpyDtoH_v2": [VOIDP, CUdeviceptr, ctypes.c_size_t],
    "cuMemcpyDtoD_v2": [CUdeviceptr, CUdeviceptr, ctypes.c_size_t],
    "cuLaunchKernel": [VOIDP, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint, ctypes.c_uint,
                       ctypes.c_uint, VOIDP, ctypes.POINTER(VOIDP), ctypes.POINTER(VOIDP)],
    "cuGetErrorName": [CUresult, ctypes.POINTER(ctypes.c_char_p)],
    "cuGetErrorString": [CUresult, ctypes.POINTER(ctypes.c_char_p)],
    "cuEventCreate": [ctypes.POINTER(VOIDP), ctypes.c_uint],
    "cuEventRecord": [VOIDP, VOIDP],
    "cuEventSynchronize": [VOIDP],
    "cuEventElapsedTime": [ctypes.POINTER(ctypes.c_float), VOIDP, VOIDP],
    "cuEventDestroy_v2": [VOIDP],
}
# What running kernels needs (runtime/devices/cuda.py); the rest is used when present.
LAUNCH_FUNCTIONS: frozenset[str] = frozenset(PROTOTYPES) - {
    "cuModuleLoadDataEx", "cuDevicePrimaryCtxRelease_v2", "cuDeviceGetName", "cuDriverGetVersion", "cuDeviceTotalMem_v2",
    "cuEventCreate", "cuEventRecord", "cuEventSynchronize", "cuEventElapsedTime", "cuEventDestroy_v2",
}
# What listing the GPUs needs (runtime/devices/discovery.py).
DISCOVERY_FUNCTIONS: frozenset[str] = frozenset(
    {"cuInit", "cuDeviceGetCount", "cuDeviceGet", "cuDeviceGetName", "cuDeviceGetAttribute", "cuDeviceTotalMem_v2"})


class CudaError(HccError):
    """A CUDA driver call failed; `code` is the CUresult."""

    def __init__(self, message: str, code: int, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.code = code


class CudaDriver:
    """The loaded driver library with prototypes set; `check(name, *args, what=...)` raises CudaError.

    Raises DeviceUnavailable when the library cannot be loaded or lacks one of `required`."""

    def __init__(self, path: str, required: Iterable[str] = LAUNCH_FUNCTIONS):
        try:
            self.lib = ctypes.CDLL(path)
        except OSError as exc:
            raise DeviceUnavailable(f"cannot load the CUDA driver library {path} ({exc})") from None
        self.path = path
        self.functions: dict[str, Any] = {}
        required = set(required)
        for name, argtypes in PROTOTYPES.items():
            try:
                fn = getattr(self.lib, name)
            except AttributeError:
                if name not in required:
                    continue
                raise DeviceUnavailable(f"{path} does not export {name}; is it the NVIDIA driver library?") from None
            fn.restype = CUresult
            fn.argtypes = argtypes
            self.functions[name] = fn

    def has(self, name: str) -> bool:
        return name in self.functions

    def error_text(self, code: int) -> str:
        name, text = ctypes.c_char_p(), ctypes.c_char_p()
        label = f"CUDA error {code}"
        try:
            if self.functions["cuGetErrorName"](code, ctypes.byref(name)) == 0 and name.value:
                label = name.value.decode(errors="replace")
            if self.functions["cuGetErrorString"](code, ctypes.byref(text)) == 0 and text.value:
                label += f" ({text.value.decode(errors='replace')})"
        except Exception:
            pass
        return label

    def check(self, name: str, *args, what: str = "") -> None:
        code = self.functions[name](*args)
        if code != 0:
            raise CudaError(f"{what + ': ' if what else ''}{name} failed: {self.error_text(code)}", code)
