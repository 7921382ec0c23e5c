"""Execute a verified bundle: bind a device per subgraph, run the schedule, move tensors across device boundaries."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hcc.artifacts.manifest import Manifest, TensorRecord
from hcc.errors import HccError
from hcc.runtime.bundle import read_manifest, safe_path
from hcc.runtime.devices.base import Device
from hcc.runtime.devices.cpu import CpuDevice


@dataclass
class Profile:
    """Wall time of the last run, per subgraph and in total (seconds)."""

    subgraphs: dict[str, float] = field(default_factory=dict)
    total: float = 0.0


@dataclass
class NodeArg:
    """onnxruntime-style description of an input or output."""

    name: str
    type: str
    shape: list[int | str]


class Session:
    """Run a bundle like an onnxruntime InferenceSession: `session.run(None, {"x": x})`."""

    def __init__(self, bundle_dir: str | os.PathLike, verify: bool = True):
        self.bundle = Path(bundle_dir)
        self.manifest: Manifest = read_manifest(self.bundle, verify=verify)
        self._tensors: dict[str, TensorRecord] = {t.name: t for t in self.manifest.tensors}
        self.devices: dict[str, Device] = {}
        for kind in self.manifest.devices_required:
            self.devices[kind] = self._bind_device(kind)
        self._executables = {sg.id: self.devices[sg.device].load(self.bundle, sg) for sg in self.manifest.subgraphs}
        self._weights = self._load_weights()
        self.last_profile = Profile()

    def _bind_device(self, kind: str) -> Device:
        if kind == "cpu":
            return CpuDevice(self.manifest.toolchain.get("target_cpu"))
        raise HccError(f"{self.bundle}: this runtime has no driver for device kind '{kind}'")

    def _load_weights(self) -> dict[str, np.ndarray]:
        weights: dict[str, np.ndarray] = {}
        mapped: dict[str, np.ndarray] = {}
        for record in self.manifest.weights:
            if record.file not in mapped:
                path = safe_path(self.bundle, record.file)
                mapped[record.file] = np.fromfile(path, dtype=np.uint8) if path.stat().st_size else np.zeros(0, np.uint8)
            tensor = self._tensors[record.name]
            blob = mapped[record.file][record.offset : record.offset + record.nbytes]
            weights[record.name] = blob.view(np.dtype(tensor.dtype)).reshape(tensor.shape)
        return weights

    def get_inputs(self) -> list[NodeArg]:
        return [NodeArg(n, self._tensors[n].dtype, self._tensors[n].symbolic_shape or self._tensors[n].shape) for n in self.manifest.inputs]

    def get_outputs(self) -> list[NodeArg]:
        return [NodeArg(n, self._tensors[n].dtype, self._tensors[n].shape) for n in self.manifest.outputs]

    def _check_feeds(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        if not isinstance(feeds, dict):
            raise HccError("inputs must be a dict {input name: numpy array}")
        unknown = sorted(set(feeds) - set(self.manifest.inputs))
        missing = [n for n in self.manifest.inputs if n not in feeds]
        if unknown or missing:
            raise HccError(f"inputs do not match the model: missing {missing}, unknown {unknown} (expected {self.manifest.inputs})")
        checked = {}
        for name in self.manifest.inputs:
            tensor = self._tensors[name]
            value = feeds[name]
            array = np.asarray(value)
            if array.dtype != np.dtype(tensor.dtype):
                raise HccError(f"input '{name}': dtype {array.dtype}, expected {tensor.dtype}")
            if list(array.shape) != tensor.shape:
                raise HccError(f"input '{name}': shape {list(array.shape)}, expected {tensor.shape} (the shape the bundle was compiled for)")
            checked[name] = np.ascontiguousarray(array)
        return checked

    def run(self, output_names: list[str] | None, feeds: dict[str, Any]) -> list[np.ndarray]:
        """Run the model; returns the requested outputs (all when `output_names` is None) as numpy arrays."""
        wanted = list(self.manifest.outputs) if output_names is None else list(output_names)
        for name in wanted:
            if name not in self.manifest.outputs:
                raise HccError(f"'{name}' is not an output of this model (outputs: {self.manifest.outputs})")
        host: dict[str, np.ndarray] = {**self._weights, **self._check_feeds(feeds)}
        resident: dict[tuple[str, str], Any] = {}  # (device kind, tensor) -> device array
        profile = Profile()
        start = time.perf_counter()
        by_id = {sg.id: sg for sg in self.manifest.subgraphs}
        for sg_id in self.manifest.schedule:
            sg = by_id[sg_id]
            device = self.devices[sg.device]
            args = []
            for name in sg.inputs:
                key = (sg.device, name)
                if key not in resident:
                    if name not in host:
                        raise HccError(f"internal: tensor '{name}' needed by {sg.id} was never produced")
                    resident[key] = device.to_device(host[name])
                args.append(resident[key])
            outs = [device.empty(self._tensors[n].shape, np.dtype(self._tensors[n].dtype)) for n in sg.outputs]
            t0 = time.perf_counter()
            self._executables[sg.id].run(args, outs)
            profile.subgraphs[sg.id] = time.perf_counter() - t0
            for name, value in zip(sg.outputs, outs):
                resident[(sg.device, name)] = value
                host[name] = device.to_host(value)
        profile.total = time.perf_counter() - start
        self.last_profile = profile
        return [host[name] for name in wanted]


def load(bundle_dir: str | os.PathLike, verify: bool = True) -> Session:
    """Open a bundle for execution (verifies every checksum first)."""
    return Session(bundle_dir, verify=verify)
