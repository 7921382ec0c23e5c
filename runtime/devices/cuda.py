"""CUDA driver: runs a GPU subgraph's launch table (`hcc-launch-v1`) through ctypes over the CUDA driver API.

numpy + stdlib only: no CUDA runtime, no cuda-python. The library is `libcuda.so.1` (the NVIDIA driver's), or the
file named by $HCC_LIBCUDA (tests point it at a stub built with gcc). Construction raises DeviceUnavailable when the
library cannot be loaded, cuInit fails, or the requested GPU does not exist / is older than sm_80; the session then
runs the subgraph's CPU fallback and says so.

Image choice for a subgraph: the cubin for the exact SM, else a cubin of the same major and a lower minor (sm_80 runs
on sm_86/sm_89), else the PTX (`.target sm_80`), JIT-compiled by the driver.

Set HCC_CUDA_SYNC=1 to synchronize after every launch, so that a failing kernel is named exactly (slower).
"""
from __future__ import annotations

import ctypes
import json
import re
import weakref
from pathlib import Path

import numpy as np

from hcc.artifacts.manifest import SubgraphRecord
from hcc.devices import DEVICE_KINDS, GPU_MIN_COMPUTE_CAPABILITY, LAUNCH_ABI
from hcc.env import read_env
from hcc.errors import HccError
from hcc.runtime.bundle import safe_path
from hcc.runtime.devices import DeviceUnavailable
from hcc.runtime.devices.base import Device, Executable
from hcc.runtime.devices.libcuda import (
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
    CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
    CU_JIT_ERROR_LOG_BUFFER,
    CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
    VOIDP,
    CudaDriver,
    CudaError,
    CUdeviceptr,
)

_PARAM_CTYPES = {"ptr": ctypes.c_uint64, "i64": ctypes.c_int64, "i32": ctypes.c_int32, "i16": ctypes.c_int16,
                 "i8": ctypes.c_int8, "f32": ctypes.c_float, "f64": ctypes.c_double, "f16": ctypes.c_uint16}


_DRIVERS: dict[str, CudaDriver] = {}


def _driver() -> CudaDriver:
    path = read_env().libcuda
    if path not in _DRIVERS:
        driver = CudaDriver(path)
        code = driver.functions["cuInit"](0)
        if code != 0:
            raise DeviceUnavailable(f"cuInit failed: {driver.error_text(code)}")
        _DRIVERS[path] = driver
    return _DRIVERS[path]


class DeviceArray:
    """A tensor in GPU memory (freed when garbage-collected)."""

    def __init__(self, device: "CudaDevice", shape, dtype, ptr: int, nbytes: int):
        self.device, self.shape, self.dtype, self.ptr, self.nbytes = device, tuple(int(d) for d in shape), np.dtype(dtype), ptr, nbytes
        self._finalizer = weakref.finalize(self, device._free, ptr)

    def __repr__(self) -> str:
        return f"DeviceArray(shape={list(self.shape)}, dtype={self.dtype}, {self.device.name}, ptr=0x{self.ptr:x})"


def _same_storage(a: np.dtype, b: np.dtype) -> bool:
    """Equal dtypes, or two 1-byte integer/bool types (bool tensors cross subgraph boundaries as bytes)."""
    return a == b or (a.itemsize == b.itemsize == 1 and a.kind in "biu" and b.kind in "biu")


def _image_for(cc: tuple[int, int], table: dict) -> tuple[str, str]:
    """-> (kind, bundle-relative path): exact cubin, same-major lower-minor cubin, else PTX."""
    module = table.get("module", {})
    cubins: dict[str, str] = module.get("cubins", {})
    major, minor = cc
    exact = f"sm_{major}{minor}"
    if exact in cubins:
        return "cubin", cubins[exact]
    compatible = []
    for arch, path in cubins.items():
        match = re.fullmatch(r"sm_(\d+?)(\d)", arch)  # sm_86 -> (8, 6); arch-specific sm_90a cubins never match
        if match and int(match.group(1)) == major and int(match.group(2)) <= minor:
            compatible.append((int(match.group(2)), path))
    if compatible:
        return "cubin", max(compatible)[1]
    if "ptx" not in module:
        raise HccError(f"no image for compute capability {major}.{minor}: the launch table has cubins for {sorted(cubins)} and no PTX")
    return "ptx", module["ptx"]


class CudaExecutable(Executable):
    """One subgraph: a loaded module, its kernels, its constant and temporary buffers, and packed parameters."""

    def __init__(self, device: "CudaDevice", bundle: Path, subgraph: SubgraphRecord, table: dict, image_kind: str, image_path: str):
        self.device, self.subgraph, self.table = device, subgraph, table
        self.image_kind, self.image_path = image_kind, image_path
        self.sg = subgraph.id
        drv = device.driver
        device._activate()
        data = safe_path(bundle, image_path).read_bytes()
        if image_kind == "ptx":
            data = data + b"\0"
        self._image = ctypes.create_string_buffer(data, len(data))
        self.module = VOIDP()
        self._load_module(image_kind, image_path)
        self._owned: list[int] = []
        self.functions: dict[str, VOIDP] = {}
        try:
            for name in table["kernels"]:
                fn = VOIDP()
                drv.check("cuModuleGetFunction", ctypes.byref(fn), self.module, name.encode(),
                          what=f"subgraph {self.sg}: kernel {name} in {image_path}")
                self.functions[name] = fn
            self.buffers: dict[int, dict] = {b["id"]: b for b in table["buffers"]}
            self.ptr: dict[int, int] = {}
            arena = int(table.get("arena_bytes", 0))
            base = self._alloc(arena, f"temporary arena of {arena} bytes") if arena else 0
            for buf in table["buffers"]:
                if buf["role"] == "temp" and not buf.get("unused"):
                    if "arena_offset" in buf:
                        offset = int(buf["arena_offset"])
                        if not base or offset + int(buf["nbytes"]) > arena:
                            raise HccError(f"subgraph {self.sg}: temporary buffer {buf['id']} lies outside the {arena}-byte arena")
                        self.ptr[buf["id"]] = base + offset
                    else:
                        self.ptr[buf["id"]] = self._alloc(buf["nbytes"], f"temporary buffer {buf['id']}")
                elif buf["role"] == "constant":
                    blob = safe_path(bundle, buf["file"]).read_bytes()[buf["offset"] : buf["offset"] + buf["nbytes"]]
                    if len(blob) != buf["nbytes"]:
                        raise HccError(f"subgraph {self.sg}: constant {buf['name']} is truncated in {buf['file']}")
                    ptr = self._alloc(buf["nbytes"], f"constant {buf['name']}")
                    if blob:
                        drv.check("cuMemcpyHtoD_v2", ptr, blob, len(blob), what=f"subgraph {self.sg}: uploading constant {buf['name']}")
                    self.ptr[buf["id"]] = ptr
            self.inputs = [i for i in table["inputs"]]
            self.outputs = [i for i in table["outputs"]]
            self._prepare_steps()
        except BaseException:
            self.close()
            raise

    def _load_module(self, kind: str, path: str) -> None:
        drv = self.device.driver
        what = f"subgraph {self.sg}: loading {path}" + (" (PTX JIT)" if kind == "ptx" else "")
        if kind == "ptx" and drv.has("cuModuleLoadDataEx"):
            size = 1 << 14
            log = ctypes.create_string_buffer(size)
            options = (ctypes.c_int * 2)(CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
            values = (VOIDP * 2)(ctypes.cast(log, VOIDP), VOIDP(size))
            code = drv.functions["cuModuleLoadDataEx"](ctypes.byref(self.module), ctypes.cast(self._image, VOIDP), 2, options, values)
            if code != 0:
                detail = log.value.decode(errors="replace").strip()
                raise CudaError(f"{what}: cuModuleLoadDataEx failed: {drv.error_text(code)}" + (f"\n{detail}" if detail else ""), code)
            return
        drv.check("cuModuleLoadData", ctypes.byref(self.module), ctypes.cast(self._image, VOIDP), what=what)

    def _alloc(self, nbytes: int, what: str) -> int:
        ptr = self.device._alloc(nbytes, f"subgraph {self.sg}: {what}")
        self._owned.append(ptr)
        return ptr

    def _prepare_steps(self) -> None:
        """Pack every launch's parameters once; input/output pointers are patched in on each run."""
        self.steps: list[tuple] = []
        self._slots: dict[int, list] = {}  # buffer id -> ctypes slots holding its device pointer
        for index, step in enumerate(self.table["steps"]):
            op = step.get("op")
            if op == "launch":
                name = step["kernel"]
                values = []
                for p in step["params"]:
                    kind = p["kind"]
                    if kind not in _PARAM_CTYPES:
                        raise HccError(f"subgraph {self.sg}: kernel {name}: parameter kind {kind!r} is not supported by this runtime")
                    slot = _PARAM_CTYPES[kind]()
                    if kind == "ptr":
                        buffer = int(p["buffer"])
                        if buffer not in self.buffers:
                            raise HccError(f"subgraph {self.sg}: kernel {name} refers to unknown buffer {buffer}")
                        self._slots.setdefault(buffer, []).append((slot, int(p.get("byte_offset", 0))))
                        if buffer in self.ptr:
                            slot.value = self.ptr[buffer] + int(p.get("byte_offset", 0))
                    elif kind == "f16":
                        slot.value = int(np.array(p["value"], np.float16).view(np.uint16))
                    else:
                        slot.value = p["value"]
                    values.append(slot)
                array = (VOIDP * max(len(values), 1))(*[ctypes.cast(ctypes.pointer(v), VOIDP) for v in values])
                grid, block = [int(x) for x in step["grid"]], [int(x) for x in step["block"]]
                self.steps.append(("launch", name, self.functions[name], grid, block, int(step.get("shared_bytes", 0)), array, values))
            elif op == "copy":
                self.steps.append(("copy", index, int(step["src"]["buffer"]), int(step["src"].get("byte_offset", 0)),
                                   int(step["dst"]["buffer"]), int(step["dst"].get("byte_offset", 0)), int(step["nbytes"])))
            else:
                raise HccError(f"subgraph {self.sg}: launch table step {index} has unknown op {op!r}")

    def _bind(self, ids: list[int], arrays: list, role: str) -> None:
        if len(arrays) != len(ids):
            raise HccError(f"subgraph {self.sg}: {len(arrays)} {role}s given, the launch table expects {len(ids)}")
        for buffer, array in zip(ids, arrays):
            record = self.buffers[buffer]
            if not isinstance(array, DeviceArray) or array.device is not self.device:
                raise HccError(f"subgraph {self.sg}: {role} '{record.get('name')}' is not an array on {self.device.name}")
            if list(array.shape) != list(record["shape"]) or not _same_storage(array.dtype, np.dtype(record["dtype"])):
                raise HccError(f"subgraph {self.sg}: {role} '{record.get('name')}' is {list(array.shape)} {array.dtype}, "
                               f"the kernels expect {record['shape']} {record['dtype']}")
            self.ptr[buffer] = array.ptr
            for slot, offset in self._slots.get(buffer, []):
                slot.value = array.ptr + offset

    def run(self, inputs: list, outputs: list) -> None:
        drv = self.device.driver
        self.device._activate()
        self._bind(self.inputs, inputs, "input")
        self._bind(self.outputs, outputs, "output")
        sync_each = read_env().cuda_sync
        for step in self.steps:
            if step[0] == "launch":
                _, name, fn, grid, block, shared, params, _values = step
                drv.check("cuLaunchKernel", fn, grid[0], grid[1], grid[2], block[0], block[1], block[2], shared, None, params, None,
                          what=f"subgraph {self.sg}: launching kernel {name} (grid {grid}, block {block})")
                if sync_each:
                    drv.check("cuCtxSynchronize", what=f"subgraph {self.sg}: kernel {name}")
            else:
                _, index, src, src_off, dst, dst_off, nbytes = step
                drv.check("cuMemcpyDtoD_v2", self.ptr[dst] + dst_off, self.ptr[src] + src_off, nbytes,
                          what=f"subgraph {self.sg}: copy step {index}")
        names = [s[1] for s in self.steps if s[0] == "launch"]
        span = f"{names[0]}..{names[-1]}" if len(names) > 1 else (names[0] if names else "no kernels")
        drv.check("cuCtxSynchronize", what=f"subgraph {self.sg}: running kernels {span} (set HCC_CUDA_SYNC=1 to name the failing kernel)")

    def close(self) -> None:
        owned, self._owned = getattr(self, "_owned", []), []
        for ptr in owned:
            self.device._free(ptr)
        if getattr(self, "module", None) and self.module.value:
            try:
                self.device._activate()
                self.device.driver.functions["cuModuleUnload"](self.module)
            except Exception:
                pass
            self.module = VOIDP()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class CudaDevice(Device):
    kind = "gpu"
    POOL_LIMIT = 1 << 30  # bytes of freed device memory kept for reuse (cuMemAlloc/cuMemFree cost microseconds)

    def __init__(self, device: str = "gpu", index: int = 0):
        self.device, self.index = device, index
        self.notes: list[str] = []
        self._pool: dict[int, list[int]] = {}
        self._pooled_bytes = 0
        self._sizes: dict[int, int] = {}
        self.driver = _driver()
        count = ctypes.c_int()
        self.driver.check("cuDeviceGetCount", ctypes.byref(count), what="counting GPUs")
        if count.value == 0:
            raise DeviceUnavailable("the CUDA driver reports no GPU")
        if index >= count.value:
            raise DeviceUnavailable(f"GPU #{index} requested, this host has {count.value}")
        handle = ctypes.c_int()
        self.driver.check("cuDeviceGet", ctypes.byref(handle), index, what=f"opening GPU #{index}")
        self.handle = handle.value
        major, minor = ctypes.c_int(), ctypes.c_int()
        for value, code in ((major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR), (minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)):
            self.driver.check("cuDeviceGetAttribute", ctypes.byref(value), code, self.handle, what="reading the compute capability")
        self.compute_capability = (major.value, minor.value)
        self.name = f"GPU #{index} (sm_{major.value}{minor.value})"
        if self.driver.has("cuDeviceGetName"):
            buf = ctypes.create_string_buffer(256)
            if self.driver.functions["cuDeviceGetName"](buf, 256, self.handle) == 0 and buf.value:
                self.name = f"{buf.value.decode(errors='replace')} #{index} (sm_{major.value}{minor.value})"
        if self.compute_capability < GPU_MIN_COMPUTE_CAPABILITY:
            raise DeviceUnavailable(f"{self.name} is older than sm_80, the oldest architecture hcc generates GPU code for")
        ctx = VOIDP()
        self.driver.check("cuDevicePrimaryCtxRetain", ctypes.byref(ctx), self.handle, what=f"creating a context on {self.name}")
        self.context = ctx
        self._activate()
        self.loaded: list[CudaExecutable] = []

    def _activate(self) -> None:
        self.driver.check("cuCtxSetCurrent", self.context, what=f"making {self.name} current")

    def _alloc(self, nbytes: int, what: str) -> int:
        size = max(int(nbytes), 1)
        pooled = self._pool.get(size)
        if pooled:
            self._pooled_bytes -= size
            ptr = pooled.pop()
            self._sizes[ptr] = size
            return ptr
        ptr = CUdeviceptr()
        fn = self.driver.functions["cuMemAlloc_v2"]
        code = fn(ctypes.byref(ptr), size)
        if code != 0 and self._pooled_bytes:  # out of memory with cached blocks: give them back and retry once
            self.trim()
            code = fn(ctypes.byref(ptr), size)
        if code != 0:
            raise CudaError(f"{what}: allocating {nbytes} bytes on {self.name}: cuMemAlloc_v2 failed: {self.driver.error_text(code)}", code)
        self._sizes[ptr.value] = size
        return ptr.value

    def _free(self, ptr: int) -> None:
        """Keep the block for the next allocation of the same size (outputs of each run), within POOL_LIMIT."""
        size = self._sizes.pop(ptr, None)
        if size is not None and self._pooled_bytes + size <= self.POOL_LIMIT:
            self._pool.setdefault(size, []).append(ptr)
            self._pooled_bytes += size
            return
        self._release(ptr)

    def _release(self, ptr: int) -> None:
        try:
            self.driver.functions["cuCtxSetCurrent"](self.context)
            self.driver.functions["cuMemFree_v2"](ptr)
        except Exception:  # interpreter shutdown
            pass

    def trim(self) -> None:
        """Free the cached blocks."""
        pool, self._pool, self._pooled_bytes = self._pool, {}, 0
        for ptrs in pool.values():
            for ptr in ptrs:
                self._release(ptr)

    # -- Device interface ----------------------------------------------------------------------------------------
    def load(self, bundle: Path, subgraph: SubgraphRecord) -> Executable:
        artifact = next((a for a in subgraph.artifacts if a.kind in DEVICE_KINDS["gpu"].artifact_kinds), None)
        if artifact is None:
            raise HccError(f"subgraph {subgraph.id} has no CUDA artifact")
        if artifact.abi != LAUNCH_ABI:
            raise HccError(f"subgraph {subgraph.id}: artifact ABI {artifact.abi!r} is not supported by this runtime (expects {LAUNCH_ABI})")
        path = safe_path(bundle, artifact.file)
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise HccError(f"{path}: unreadable launch table ({exc})") from None
        if table.get("format") != LAUNCH_ABI:
            raise HccError(f"{path}: not an {LAUNCH_ABI} launch table (format={table.get('format')!r})")
        kind, image = _image_for(self.compute_capability, table)
        self.notes.append(f"{subgraph.id}: {self.name} runs {image} ({'PTX, JIT-compiled by the driver' if kind == 'ptx' else 'cubin'})")
        executable = CudaExecutable(self, bundle, subgraph, table, kind, image)
        self.loaded.append(executable)
        return executable

    def empty(self, shape, dtype) -> DeviceArray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self._activate()
        return DeviceArray(self, shape, dtype, self._alloc(nbytes, "output"), nbytes)

    def to_device(self, array: np.ndarray) -> DeviceArray:
        host = np.ascontiguousarray(array)
        self._activate()
        out = DeviceArray(self, host.shape, host.dtype, self._alloc(host.nbytes, "input"), host.nbytes)
        if host.nbytes:
            self.driver.check("cuMemcpyHtoD_v2", out.ptr, host.ctypes.data, host.nbytes, what=f"copying {host.nbytes} bytes to {self.name}")
        return out

    def to_host(self, value: DeviceArray) -> np.ndarray:
        if not isinstance(value, DeviceArray):
            raise HccError(f"internal: to_host expects a DeviceArray of {self.name}, got {type(value).__name__}")
        out = np.empty(value.shape, value.dtype)
        self._activate()
        if value.nbytes:
            self.driver.check("cuMemcpyDtoH_v2", out.ctypes.data, value.ptr, value.nbytes, what=f"copying {value.nbytes} bytes from {self.name}")
        return out

    def synchronize(self) -> None:
        self._activate()
        self.driver.check("cuCtxSynchronize", what=f"synchronizing {self.name}")

    def event_timer(self):
        """CUDA events around a callable: `elapsed_ms = device.event_timer()(fn)` (None when the driver lacks events)."""
        drv = self.driver
        if not all(drv.has(n) for n in ("cuEventCreate", "cuEventRecord", "cuEventSynchronize", "cuEventElapsedTime")):
            return None

        def timed(fn) -> float:
            self._activate()
            start, stop = VOIDP(), VOIDP()
            drv.check("cuEventCreate", ctypes.byref(start), 0, what="creating a CUDA event")
            drv.check("cuEventCreate", ctypes.byref(stop), 0, what="creating a CUDA event")
            try:
                drv.check("cuEventRecord", start, None, what="recording a CUDA event")
                fn()
                drv.check("cuEventRecord", stop, None, what="recording a CUDA event")
                drv.check("cuEventSynchronize", stop, what="waiting for a CUDA event")
                ms = ctypes.c_float()
                drv.check("cuEventElapsedTime", ctypes.byref(ms), start, stop, what="reading a CUDA event")
                return float(ms.value)
            finally:
                if drv.has("cuEventDestroy_v2"):
                    drv.functions["cuEventDestroy_v2"](start)
                    drv.functions["cuEventDestroy_v2"](stop)

        return timed
