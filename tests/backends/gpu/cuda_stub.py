"""Test helpers for the GPU runtime without a GPU: build the stub libcuda (stub_libcuda.c) with gcc, build kernel
emulators for a bundle (emulate.py, in a subprocess), point the ctypes driver at them, parse the stub's
call log. Loaded by path from tests/backends/gpu and tests/runtime (see `load_helpers`)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
STUB_SOURCE = HERE / "stub_libcuda.c"


def build_stub(out_dir: Path) -> Path:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise RuntimeError("no C compiler to build the stub libcuda")
    out = Path(out_dir) / "libcuda_stub.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-Wall", "-Werror", str(STUB_SOURCE), "-o", str(out), "-ldl"], check=True,
                   capture_output=True, text=True)
    return out


def build_emulators(bundle: Path, out_dir: Path, serial: bool = False) -> dict[str, str]:
    """{subgraph id: emulator .so} for every GPU subgraph of `bundle` (compiled with keep_ir=True). `serial`: the
    negative control (kernels with barriers run their threads one after another, barriers ignored)."""
    cmd = [sys.executable, str(Path(__file__).with_name("emulate.py")), str(bundle), str(out_dir)] + (["--serial"] if serial else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"emulator build failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextmanager
def stub_environment(stub: Path, log: Path | None = None, emulators: list[str] | None = None, **settings: str):
    """Point hcc's CUDA driver at the stub (HCC_LIBCUDA) with HCC_STUB_* settings, restoring the environment after."""
    from hcc.runtime.devices import cuda

    values = {"HCC_LIBCUDA": str(stub), "HCC_STUB_LOG": str(log) if log else "", "HCC_STUB_EMULATOR": ":".join(emulators or []),
              "HCC_STUB_CC": "9.0", "HCC_STUB_DEVICES": "1", "HCC_STUB_INIT_ERROR": "", "HCC_STUB_FAIL_KERNEL": "",
              "HCC_STUB_MEM_LIMIT": "", "HCC_CUDA_SYNC": ""}
    values.update({f"HCC_STUB_{k.upper()}" if not k.startswith("HCC_") else k: str(v) for k, v in settings.items()})
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    cuda._DRIVERS.clear()  # re-run cuInit under the new settings
    try:
        yield
    finally:
        cuda._DRIVERS.clear()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_LAUNCH = re.compile(r"^cuLaunchKernel (\S+) grid=(\d+),(\d+),(\d+) block=(\d+),(\d+),(\d+) shared=(\d+) params=(.*?)( BADPTR)?$")


def parse_log(path: Path) -> list[dict]:
    """One dict per stub call: {"call": name, ...fields}."""
    events = []
    for line in Path(path).read_text().splitlines():
        match = _LAUNCH.match(line)
        if match:
            params = []
            for item in match.group(9).split():
                kind, _, value = item.partition(":")
                params.append((kind, int(value, 16) if kind == "p" else (float(value) if kind in "fd" else int(value))))
            events.append({"call": "cuLaunchKernel", "kernel": match.group(1), "grid": [int(match.group(i)) for i in (2, 3, 4)],
                           "block": [int(match.group(i)) for i in (5, 6, 7)], "shared": int(match.group(8)), "params": params,
                           "bad": bool(match.group(10))})
            continue
        name, _, rest = line.partition(" ")
        event = {"call": name, "text": rest}
        for key, value in re.findall(r"(\w+)=(\S+)", rest):
            event[key] = value
        arrow = re.search(r"-> (0x[0-9a-f]+)", rest)
        if arrow:
            event["ptr"] = int(arrow.group(1), 16)
        events.append(event)
    return events


def fnv1a(data: bytes) -> str:
    h = 1469598103934665603
    for b in data:
        h ^= b
        h = (h * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def tolerance(precision: str) -> tuple[float, float]:
    """(rtol, atol) against onnxruntime: the golden tolerances of hcc.devices (fp32, else fp16's)."""
    from hcc.devices import TOLERANCES

    return TOLERANCES["fp32"] if precision == "fp32" else TOLERANCES["fp16"]
