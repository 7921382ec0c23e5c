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
from hcc.runtime.devices import DeviceUnavailable, driver_class
from hcc.runtime.devices.base import Device
from hcc.runtime.devices.cpu import CpuDevice


@dataclass
class Transfer:
    tensor: str
    nbytes: int
    source: str  # "host" or a device instance such as "cpu#1"
    destination: str
    seconds: float


@dataclass
class Profile:
    """What the last run did: wall time per subgraph and in total (seconds), and every tensor moved."""

    subgraphs: dict[str, float] = field(default_factory=dict)
    transfers: list[Transfer] = field(default_factory=list)
    total: float = 0.0


@dataclass
class NodeArg:
    """onnxruntime-style description of an input or output."""

    name: str
    type: str
    shape: list[int | str]


class Session:
    """Run a bundle like an onnxruntime InferenceSession: `session.run(None, {"x": x})`."""

    def __init__(self, bundle_dir: str | os.PathLike, verify: bool = True, threads: int | None = None):
        """`threads`: threads the CPU code runs on (like onnxruntime's intra_op_num_threads); None or 0: all CPUs."""
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
            raise HccError(f"threads={threads!r}: expected a whole number >= 0 (0: every CPU)")
        self.threads = threads or 0
        self.bundle = Path(bundle_dir)
        self.manifest: Manifest = read_manifest(self.bundle, verify=verify)
        self._tensors: dict[str, TensorRecord] = {t.name: t for t in self.manifest.tensors}
        # One driver per device instance ("cpu#0", "gpu:sm_90#0", ...): tensors are resident per instance.
        # A subgraph whose device is missing runs its CPU fallback artifact on the host ("cpu#fallback").
        self.notes: list[str] = []  # what the user should know about this run (fallbacks, emulation)
        self.devices: dict[str, Device] = {}
        self._instance: dict[str, str] = {}
        unavailable: dict[str, str] = {}
        for sg in self.manifest.subgraphs:
            instance = f"{sg.device}#{sg.device_index}"
            if instance not in self.devices and instance not in unavailable:
                try:
                    self.devices[instance] = self._bind_device(sg.device, sg.device_index)
                except DeviceUnavailable as exc:
                    unavailable[instance] = str(exc)
            if instance in unavailable:
                if sg.fallback is None:
                    raise HccError(f"{self.bundle}: subgraph {sg.id} needs {sg.device} ({unavailable[instance]}) and has no CPU fallback artifact")
                self.notes.append(f"{sg.id}: {sg.device} unavailable ({unavailable[instance]}); running its CPU fallback")
                instance = "cpu#fallback"
                self.devices.setdefault(instance, self._bind_device("cpu", 0))
            self._instance[sg.id] = instance
        self._executables = {}
        for sg in self.manifest.subgraphs:
            device = self.devices[self._instance[sg.id]]
            if self._instance[sg.id] == "cpu#fallback":
                self._executables[sg.id] = device.load_artifact(self.bundle, sg, sg.fallback)
            else:
                self._executables[sg.id] = device.load(self.bundle, sg)
        for device in self.devices.values():  # after loading: drivers note per subgraph (e.g. FPGA emulation)
            self.notes.extend(getattr(device, "notes", []))
        # Weights are moved to their devices once, at load time; the host copy is dropped afterwards.
        weights = self._load_weights()
        self._resident_weights: dict[tuple[str, str], Any] = {}
        for sg in self.manifest.subgraphs:
            instance = self.instance_of(sg)
            for name in sg.inputs:
                if name in weights and (instance, name) not in self._resident_weights:
                    self._resident_weights[(instance, name)] = self.devices[instance].to_device(weights[name])
        self.last_profile = Profile()

    def instance_of(self, sg) -> str:
        return self._instance[sg.id]

    def _bind_device(self, device: str, index: int) -> Device:
        if device == "cpu":
            return CpuDevice(device, index, self.manifest.toolchain.get("target_cpu"), self.threads)
        return driver_class(device)(device, index)

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
        host: dict[str, np.ndarray] = self._check_feeds(feeds)
        resident: dict[tuple[str, str], Any] = dict(self._resident_weights)  # (device instance, tensor) -> array
        home: dict[str, str] = {}  # tensor -> device instance that produced it
        profile = Profile()
        start = time.perf_counter()
        by_id = {sg.id: sg for sg in self.manifest.subgraphs}

        def fetch_to_host(name: str) -> np.ndarray:
            if name not in host:
                t0 = time.perf_counter()
                host[name] = self.devices[home[name]].to_host(resident[(home[name], name)])
                profile.transfers.append(Transfer(name, host[name].nbytes, home[name], "host", time.perf_counter() - t0))
            return host[name]

        for sg_id in self.manifest.schedule:
            sg = by_id[sg_id]
            instance = self.instance_of(sg)
            device = self.devices[instance]
            args = []
            for name in sg.inputs:
                key = (instance, name)
                if key not in resident:
                    if name not in host and name not in home:
                        raise HccError(f"internal: tensor '{name}' needed by {sg.id} was never produced")
                    value = fetch_to_host(name)
                    t0 = time.perf_counter()
                    resident[key] = device.to_device(value)
                    profile.transfers.append(Transfer(name, value.nbytes, home.get(name, "host"), instance, time.perf_counter() - t0))
                args.append(resident[key])
            outs = [device.empty(self._tensors[n].shape, np.dtype(self._tensors[n].dtype)) for n in sg.outputs]
            t0 = time.perf_counter()
            self._executables[sg.id].run(args, outs)
            profile.subgraphs[sg.id] = time.perf_counter() - t0
            for name, value in zip(sg.outputs, outs):
                resident[(instance, name)] = value
                home[name] = instance
        results = [fetch_to_host(name) for name in wanted]
        profile.total = time.perf_counter() - start
        self.last_profile = profile
        return results


def load(bundle_dir: str | os.PathLike, verify: bool = True, threads: int | None = None) -> Session:
    """Open a bundle for execution (verifies every checksum first); `threads`: CPU threads (None/0: all CPUs)."""
    return Session(bundle_dir, verify=verify, threads=threads)
