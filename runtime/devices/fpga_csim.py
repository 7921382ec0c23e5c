"""FPGA driver without an FPGA: runs a subgraph's csim shared object (the HLS C++ compiled with g++ against the
ap_fixed headers), a bit-accurate emulation of the FPGA kernel. numpy + ctypes only.

ABI (`bare-ptr-v1`, artifact kind `fpga-csim-so`): `void <entry>(const float *in0, ..., float *out0, ...)` with
every subgraph input in argument order (weights baked into the firmware are passed too and ignored), then every
output; inputs are quantized to the kernel's input types inside the call, outputs converted back to float32.

Fixed point has no NaN and no infinity: the ap_fixed conversion of one is not defined (a NaN became an arbitrary
code, +-inf wrapped or saturated depending on the type), so `run` refuses an input tensor that holds one, with an
HccError naming the subgraph, the tensor and the first bad element (docs/backends/fpga.md, "Non-finite inputs").
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from hcc.artifacts.manifest import ArtifactRecord, SubgraphRecord
from hcc.devices import DEVICE_KINDS, NATIVE_ABI
from hcc.errors import HccError
from hcc.runtime.bundle import safe_path
from hcc.runtime.devices.base import Executable, HostMemoryDevice
from hcc.runtime.devices.native import entry_function, load_library

ARTIFACT_KIND = DEVICE_KINDS["fpga"].artifact_kinds[0]
CSIM_LIBRARY = "the FPGA C simulation"
CSIM_HINT = "it needs the C++ runtime (libstdc++) of the machine that compiled it"


def check_finite(subgraph: str, names: list[str], arrays: list[np.ndarray]) -> None:
    """Refuse NaN and +-inf in the activations entering an FPGA subgraph (fixed point cannot represent them)."""
    for name, a in zip(names, arrays):
        finite = np.isfinite(a)
        if finite.all():
            continue
        bad = np.argwhere(~finite)
        first = tuple(int(i) for i in bad[0])
        raise HccError(f"FPGA subgraph {subgraph}: input tensor '{name}' holds {len(bad)} NaN or infinite value(s), the first "
                       f"{a[first]!r} at index {list(first)}; the FPGA's fixed-point types have no NaN or infinity",
                       hint=f"clean the input, or place the nodes that read '{name}' on the CPU or GPU (--place)")


class FpgaCsimExecutable(Executable):
    def __init__(self, path: Path, entry: str, arity: int, subgraph: str, checked: dict[int, str] | None = None):
        """`checked`: argument index -> tensor name of the activation inputs (baked-in weights are not checked)."""
        self._lib = load_library(path, CSIM_LIBRARY, hint=CSIM_HINT)
        self._fn = entry_function(self._lib, entry, arity, path)
        self._lock = threading.Lock()  # the simulation keeps its port buffers in static storage
        self.subgraph = subgraph
        self.checked = dict(checked or {})

    def run(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        for a in inputs:
            if a.dtype != np.float32 or not a.flags.c_contiguous:
                raise HccError(f"internal: {self.subgraph}: FPGA csim inputs must be C-contiguous float32 arrays")
        for out in outputs:
            if out.dtype != np.float32 or not out.flags.c_contiguous or not out.flags.writeable:
                raise HccError(f"internal: {self.subgraph}: FPGA csim outputs must be writable C-contiguous float32 arrays")
        check_finite(self.subgraph, list(self.checked.values()), [inputs[i] for i in self.checked])
        with self._lock:
            self._fn(*[a.ctypes.data for a in inputs], *[o.ctypes.data for o in outputs])


class FpgaCsimDevice(HostMemoryDevice):
    kind = "fpga"

    def __init__(self, device: str = "fpga", index: int = 0):
        self.device, self.index = device, index
        self.notes: list[str] = [
            f"no FPGA present: {device}#{index} subgraphs run on fpga-csim, the bit-accurate C++ emulation of the HLS kernel"
        ]

    def load(self, bundle: Path, subgraph: SubgraphRecord) -> Executable:
        artifact = next((a for a in subgraph.artifacts if a.kind == ARTIFACT_KIND), None)
        if artifact is None:
            raise HccError(f"subgraph {subgraph.id} has no {ARTIFACT_KIND} artifact (was it compiled for {self.device}?)")
        note = f"no FPGA present: {subgraph.id} runs on fpga-csim, the bit-accurate C++ emulation"
        if note not in self.notes:
            self.notes.append(note)
        return self.load_artifact(bundle, subgraph, artifact)

    def load_artifact(self, bundle: Path, subgraph: SubgraphRecord, artifact: ArtifactRecord) -> Executable:
        if artifact.abi != NATIVE_ABI:
            raise HccError(f"subgraph {subgraph.id}: unsupported FPGA csim ABI {artifact.abi!r}")
        baked = set((artifact.meta or {}).get("baked_inputs", []))
        checked = {i: name for i, name in enumerate(subgraph.inputs) if name not in baked}
        return FpgaCsimExecutable(safe_path(bundle, artifact.file), artifact.entry, len(subgraph.inputs) + len(subgraph.outputs),
                                  subgraph.id, checked)

