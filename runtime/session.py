"""Execute a verified bundle: bind a device per subgraph, run the schedule, move tensors across device boundaries.

`run` is the hot path: for a small model the Python around the native call costs as much as the model itself, so
everything that does not depend on the inputs (each subgraph's device, weights, argument order, output shapes and
dtypes; the inputs' expected dtypes and shapes) is resolved once at load time into `Step`s and `InputSpec`s. Every
check that protects the caller stays (names, dtypes, shapes of the inputs). Inputs are read-only to native code, so
a host-memory device uses the caller's C-contiguous arrays without a copy; outputs are fresh arrays on every run.
"""
from __future__ import annotations

import os
import time
from collections import ChainMap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hcc.artifacts.manifest import BlockRecord, Manifest, StepRecord, TensorRecord
from hcc.errors import HccError
from hcc.runtime.boundary import flatten_feeds, structure, wanted_tensors
from hcc.runtime.bundle import read_manifest, safe_path
from hcc.runtime.devices import DeviceUnavailable, driver_class
from hcc.runtime.devices.base import Device, Executable, HostMemoryDevice
from hcc.runtime.devices.cpu import CpuDevice
from hcc.runtime.host_ops import run_host_op


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
    nodes: dict[str, float] = field(default_factory=dict)  # ONNX node -> seconds (load(profile=True), CPU code)


@dataclass
class NodeArg:
    """onnxruntime-style description of an input or output."""

    name: str
    type: str
    shape: list[int | str]


@dataclass(frozen=True)
class InputSpec:
    """What a model input must be: checked on every run."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    element_type: str | None = None  # a type numpy lacks, carried as `dtype` (manifest TensorRecord.element_type)


def _stored(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """An ml_dtypes array of a type numpy lacks as the bundle's storage (frontend/lowbit.py): 4-/2-bit integers by
    value (astype), floats by bit pattern (a view; float4_e2m1fn's code is the byte's low nibble). ml_dtypes itself
    is never imported: the array brings its own casts."""
    if spec.element_type in ("int4", "uint4", "int2", "uint2"):
        return array.astype(spec.dtype)
    return array.view(spec.dtype) if array.dtype.itemsize == spec.dtype.itemsize else array


def zipped(scores: np.ndarray, keys: list) -> list[dict]:
    """onnxruntime's ZipMap output for a [N, C] score matrix: one {label: score} dict per row, in column order."""
    return [dict(zip(keys, row)) for row in scores.tolist()]  # tolist: Python floats, the float32 values exactly


def zipmap_note(keys: list | None) -> str:
    """How `hcc run` and `hcc inspect` describe a ZipMap output's score matrix ('' for any other output)."""
    if keys is None:
        return ""
    shown = ", ".join(map(repr, keys[:12])) + (f", ... ({len(keys)} labels)" if len(keys) > 12 else "")
    return f" (ZipMap: a list of {{label: score}} per row from Session.run; columns: labels {shown})"


@dataclass(frozen=True)
class OutputSpec:
    """A subgraph output, allocated fresh on every run."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype


@dataclass
class Step:
    """One subgraph of the schedule, resolved at load time."""

    id: str
    instance: str  # device instance, e.g. "cpu#0"
    device: Device
    executable: Executable
    inputs: list[str]
    weights: list[Any]  # per input: its resident weight on `instance`, or None (a tensor of the run)
    outputs: list[OutputSpec]


class Session:
    """Run a bundle like an onnxruntime InferenceSession: `session.run(None, {"x": x})`."""

    def __init__(self, bundle_dir: str | os.PathLike, verify: bool = True, threads: int | None = None, trust=None,
                 profile: bool = False):
        """`threads`: threads the CPU code runs on (like onnxruntime's intra_op_num_threads); None or 0: all CPUs.
        `trust`: a public key (hex, bytes or a .pub file) or a list of them: the bundle must be signed by one.
        `profile`: time every ONNX node of the CPU code (`last_profile.nodes`; about 20 ns per node and run)."""
        self.profile = profile
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
            raise HccError(f"threads={threads!r}: expected a whole number >= 0 (0: every CPU)")
        self.threads = threads or 0
        self.bundle = Path(bundle_dir)
        trusted = [trust] if isinstance(trust, (str, bytes, bytearray, os.PathLike)) else list(trust or [])
        self.manifest: Manifest = read_manifest(self.bundle, verify=verify, trust=trusted)
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
        # Weights are moved to their devices once, at load time (host-memory devices use the file's bytes as they are).
        weights = self._load_weights()
        self._resident_weights: dict[tuple[str, str], Any] = {}
        for sg in self.manifest.subgraphs:
            instance = self.instance_of(sg)
            for name in sg.inputs:
                if name in weights and (instance, name) not in self._resident_weights:
                    self._resident_weights[(instance, name)] = self.devices[instance].to_device(weights[name])
        self._steps = [self._step(sg_id) for sg_id in self.manifest.schedule]
        self._input_specs = [InputSpec(n, np.dtype(self._tensors[n].dtype), tuple(self._tensors[n].shape), self._tensors[n].element_type)
                             for n in self.manifest.inputs]
        self._input_names = frozenset(self.manifest.inputs)
        self._produced = {o.name for step in self._steps for o in step.outputs}
        self._direct = self._direct_plan()
        self._zipmaps = {n: self._tensors[n].zipmap_keys for n in self.manifest.outputs if self._tensors[n].zipmap_keys is not None}
        self.last_profile = Profile()
        self._parts: dict[str, Session] = {}
        self._constants: dict[str, np.ndarray] = {}
        if self.manifest.program is not None:
            self._load_program(verify)

    def _load_program(self, verify: bool) -> None:
        """A bundle with run-time control flow (docs/control-flow.md): one session per compiled piece (validated with
        the bundle before anything was loaded; their files' checksums are the bundle's) and the constants."""
        program = self.manifest.program
        for rel in program.parts():
            self._parts[rel] = Session(safe_path(self.bundle, rel), verify=False, threads=self.threads, profile=self.profile)
            self.notes.extend(self._parts[rel].notes)
        blocks = [program.main]
        while blocks:
            block = blocks.pop()
            for record in block.constants:
                value = np.load(safe_path(self.bundle, record.file), allow_pickle=False)
                if value.dtype.name != record.dtype or list(value.shape) != record.shape:
                    raise HccError(f"{self.bundle}: constant {record.file} is {value.dtype} {list(value.shape)}, the manifest says "
                                   f"{record.dtype} {record.shape}; refusing to load the bundle")
                value.flags.writeable = False
                self._constants[record.file] = value
            blocks += [b for step in block.steps for b in (step.then_branch, step.else_branch, step.body) if b is not None]

    def _direct_plan(self) -> tuple[list[int], list[int]] | None:
        """For the common case, one subgraph on host memory that reads only model inputs and weights and computes every
        model output: per argument that is not a weight, the model input it takes, and per model output, the
        position of the subgraph output; `run` then skips the per-run bookkeeping of tensors and devices (a keyword spotter
        runs in about 90 us, of which that bookkeeping took about 4). None otherwise."""
        if len(self._steps) != 1 or not isinstance(self._steps[0].device, HostMemoryDevice):
            return None
        step = self._steps[0]
        names = [o.name for o in step.outputs]
        if any(w is None and n not in self._input_names for n, w in zip(step.inputs, step.weights)) or \
                any(n not in names for n in self.manifest.outputs):
            return None
        inputs = [self.manifest.inputs.index(n) for n, w in zip(step.inputs, step.weights) if w is None]
        return inputs, [names.index(n) for n in self.manifest.outputs]

    def _step(self, sg_id: str) -> Step:
        sg = next(s for s in self.manifest.subgraphs if s.id == sg_id)
        instance = self.instance_of(sg)
        weights = [self._resident_weights.get((instance, name)) for name in sg.inputs]
        executable = self._executables[sg.id]
        executable.bind_constants({i: w for i, w in enumerate(weights) if w is not None})
        outputs = [OutputSpec(n, tuple(self._tensors[n].shape), np.dtype(self._tensors[n].dtype)) for n in sg.outputs]
        return Step(sg.id, instance, self.devices[instance], executable, list(sg.inputs), weights, outputs)

    def instance_of(self, sg) -> str:
        return self._instance[sg.id]

    def _bind_device(self, device: str, index: int) -> Device:
        if device == "cpu":
            return CpuDevice(device, index, self.manifest.toolchain.get("target_cpu"), self.threads, self.profile)
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
        """The inputs as C-contiguous arrays of the compiled dtype and shape (the caller's own arrays when they are)."""
        if not isinstance(feeds, dict):
            raise HccError("inputs must be a dict {input name: numpy array}")
        if feeds.keys() != self._input_names:
            unknown = sorted(set(feeds) - set(self.manifest.inputs))
            missing = [n for n in self.manifest.inputs if n not in feeds]
            raise HccError(f"inputs do not match the model: missing {missing}, unknown {unknown} (expected {self.manifest.inputs})")
        checked = {}
        for spec in self._input_specs:
            value = feeds[spec.name]
            array = value if type(value) is np.ndarray else np.asarray(value)
            if spec.element_type is not None and array.dtype.name == spec.element_type:
                array = _stored(array, spec)
            if array.dtype != spec.dtype:
                carried = (f" (its {spec.element_type} values as stored: frontend/lowbit.py; or a {spec.element_type} array)"
                           if spec.element_type else "")
                raise HccError(f"input '{spec.name}': dtype {array.dtype}, expected {spec.dtype}{carried}")
            if array.shape != spec.shape:
                raise HccError(f"input '{spec.name}': shape {list(array.shape)}, expected {list(spec.shape)} (the shape the bundle was compiled for)")
            checked[spec.name] = array if array.flags.c_contiguous else np.ascontiguousarray(array)
        return checked

    def _wanted(self, output_names: list[str] | None) -> list[str]:
        if output_names is None:
            return list(self.manifest.outputs)
        if isinstance(output_names, (str, bytes)) or not isinstance(output_names, (list, tuple)):
            raise HccError(f"output_names must be None or a list of output names, not {type(output_names).__name__}")
        wanted = list(output_names)
        for name in wanted:
            if name not in self.manifest.outputs:
                raise HccError(f"'{name}' is not an output of this model (outputs: {self.manifest.outputs})")
        return wanted

    def run(self, output_names: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
        """Run the model; returns the requested outputs (all when `output_names` is None) as onnxruntime does: fresh
        numpy arrays, and for an output the model declares as a ZipMap's sequence of maps, one {label: score} dict
        per row (manifest TensorRecord.zipmap_keys); a sequence output as a list, an absent optional as None, and
        likewise for inputs (manifest `boundary`, runtime/boundary.py)."""
        if self.manifest.boundary is not None:
            return self._run_boundary(output_names, feeds)
        results = self.run_tensors(output_names, feeds)
        if not self._zipmaps:
            return results
        names = self._wanted(output_names)
        return [zipped(value, self._zipmaps[name]) if name in self._zipmaps else value for name, value in zip(names, results)]

    def _run_boundary(self, output_names: list[str] | None, feeds: dict[str, Any]) -> list[Any]:
        """`run` of a bundle whose model takes or returns sequences / optionals: the model's values flattened into
        the bundle's tensors (length, presence and shapes checked, naming the model's input), and the flat outputs
        gathered back into lists."""
        boundary = self.manifest.boundary
        if output_names is None:
            names = list(boundary.outputs)
        elif isinstance(output_names, (str, bytes)) or not isinstance(output_names, (list, tuple)):
            raise HccError(f"output_names must be None or a list of output names, not {type(output_names).__name__}")
        else:
            names = list(output_names)
            for name in names:
                if name not in boundary.outputs:
                    raise HccError(f"'{name}' is not an output of this model (outputs: {boundary.outputs})")
        flat = flatten_feeds(boundary, feeds, lambda n: tuple(self._tensors[n].shape))
        tensors = wanted_tensors(boundary, names)
        results = self.run_tensors(None if tensors == list(self.manifest.outputs) else tensors, flat)
        values = dict(zip(tensors, results))
        return [structure(boundary.values.get(name, name), values) for name in names]

    def run_tensors(self, output_names: list[str] | None, feeds: dict[str, Any]) -> list[np.ndarray]:
        """`run` with every output as the bundle computes it (a ZipMap output as its [N, C] score matrix; a sequence
        or optional as its flat tensors, by the manifest's flat names): what the golden data holds and `hcc run` writes."""
        if self._direct is not None and output_names is None and not self.profile:
            return self._run_direct(feeds)
        if self.manifest.program is not None:
            return self._run_program(output_names, feeds)
        wanted = self._wanted(output_names)
        state = _RunState(self._check_feeds(feeds), self.devices)
        start = time.perf_counter()
        for step in self._steps:
            args = [w if w is not None else state.on_device(name, step) for name, w in zip(step.inputs, step.weights)]
            outs = [step.device.empty(o.shape, o.dtype) for o in step.outputs]
            t0 = time.perf_counter()
            step.executable.run(args, outs)
            state.profile.subgraphs[step.id] = time.perf_counter() - t0
            if self.profile:
                for node, seconds in step.executable.profile().items():
                    state.profile.nodes[node] = state.profile.nodes.get(node, 0.0) + seconds
            for spec, value in zip(step.outputs, outs):
                state.resident[(step.instance, spec.name)] = value
                state.home[spec.name] = step.instance
        # An output that no subgraph computes (a model input passed through) is copied: outputs are always fresh.
        results = [state.to_host(n) if n in self._produced else np.array(state.to_host(n), copy=True) for n in wanted]
        state.profile.total = time.perf_counter() - start
        self.last_profile = state.profile
        return results


    def _run_direct(self, feeds: dict[str, Any]) -> list[np.ndarray]:
        """`run` for the plan `_direct_plan` made: the same checks of the inputs, the same fresh outputs."""
        checked = self._check_feeds(feeds)
        step = self._steps[0]
        values = [checked[spec.name] for spec in self._input_specs]
        outs = [np.empty(o.shape, o.dtype) for o in step.outputs]
        start = time.perf_counter()
        step.executable.run_bound([values[i] for i in self._direct[0]], outs)
        seconds = time.perf_counter() - start
        self.last_profile = Profile({step.id: seconds}, [], seconds)
        return [outs[i] for i in self._direct[1]]


    def _run_program(self, output_names: list[str] | None, feeds: dict[str, Any]) -> list[np.ndarray]:
        """Run the program's main block on the host; outputs are fresh arrays (never an input or a constant)."""
        wanted = self._wanted(output_names)
        checked = self._check_feeds(feeds)
        profile = Profile()
        start = time.perf_counter()
        values = dict(zip(self.manifest.outputs, self._run_block(self.manifest.program.main, ChainMap(dict(checked)), profile)))
        shared = {id(v) for v in checked.values()} | {id(v) for v in self._constants.values()}
        results = []
        for name in wanted:
            value = values[name]
            results.append(np.array(value, copy=True) if id(value) in shared else value)
            shared.add(id(value))
        profile.total = time.perf_counter() - start
        self.last_profile = profile
        return results

    def _run_block(self, block: BlockRecord, scope: ChainMap, profile: Profile) -> list[np.ndarray]:
        """Run a block's steps in `scope` (the enclosing block's values and this block's bound inputs); returns its
        outputs. Each compiled piece checks its inputs' dtypes and shapes as any session does."""
        local = {record.name: self._constants[record.file] for record in block.constants}
        env = scope.new_child(local)
        for step in block.steps:
            if step.kind == "segment":
                part = self._parts[step.bundle]
                outputs = part.run(None, {name: self._value(env, name, step) for name in step.inputs})
                profile.subgraphs[step.bundle] = profile.subgraphs.get(step.bundle, 0.0) + part.last_profile.total
                for node, seconds in part.last_profile.nodes.items():
                    profile.nodes[node] = profile.nodes.get(node, 0.0) + seconds
                local.update(zip(step.outputs, outputs))
            elif step.kind == "if":
                taken = step.then_branch if _flag(self._value(env, step.inputs[0], step), step, "condition") else step.else_branch
                local.update((name, value) for name, value in zip(step.outputs, self._run_block(taken, env, profile)) if name)
            elif step.kind == "fail":
                raise HccError(f"{self.bundle}: node '{step.node}': {step.message}")
            elif step.kind == "host":
                start = time.perf_counter()
                args = [self._value(env, name, step) if name else None for name in step.inputs]
                try:
                    results = run_host_op(step.op, args, step.attributes, len(step.outputs))
                except (ValueError, IndexError, TypeError) as exc:  # bad input values: an index out of range, a shape
                    raise HccError(f"{self.bundle}: node '{step.node}' ({step.op}) on the host: {exc}") from None
                local.update((name, value) for name, value in zip(step.outputs, results) if name)
                profile.nodes[step.node] = profile.nodes.get(step.node, 0.0) + time.perf_counter() - start
            else:
                self._run_loop(step, env, local, profile)
        return [self._value(env, name, None) for name in block.outputs]

    def _run_loop(self, step: StepRecord, env: ChainMap, local: dict, profile: Profile) -> None:
        """ONNX Loop: while (no trip count or iteration < trip count) and condition; stacks the scan outputs."""
        trip, cond, *carried = step.inputs
        limit = int(_scalar(self._value(env, trip, step), step, "trip count")) if trip else None
        keep = _flag(self._value(env, cond, step), step, "condition") if cond else True
        values = [self._value(env, name, step) for name in carried]
        n = len(carried)
        scans: list[list[np.ndarray]] = [[] for _ in step.scans]
        body = step.body
        iteration = 0
        while keep and (limit is None or iteration < limit):
            bound = {body.inputs[0]: np.array(iteration, np.int64), body.inputs[1]: np.array(keep)}
            bound.update(zip(body.inputs[2:], values))
            outputs = self._run_block(body, env.new_child(bound), profile)
            keep = _flag(outputs[0], step, "condition")
            values = outputs[1:1 + n]
            for stack, value in zip(scans, outputs[1 + n:]):
                stack.append(value)
            iteration += 1
        local.update((name, value) for name, value in zip(step.outputs[:n], values) if name)
        for name, record, stack in zip(step.outputs[n:], step.scans, scans):
            if name:
                local[name] = np.stack(stack) if stack else np.empty([0] + list(record.shape), np.dtype(record.dtype))

    def _value(self, env: ChainMap, name: str, step: StepRecord | None) -> np.ndarray:
        try:
            return env[name]
        except KeyError:
            where = f" (needed by '{step.node}')" if step is not None else ""
            raise HccError(f"internal: tensor '{name}'{where} was never produced") from None


def _scalar(value: np.ndarray, step: StepRecord, what: str):
    array = np.asarray(value)
    if array.size != 1:
        raise HccError(f"node '{step.node}' ({'If' if step.kind == 'if' else 'Loop'}): its {what} has {array.size} elements; ONNX requires one")
    return array.reshape(-1)[0]


def _flag(value: np.ndarray, step: StepRecord, what: str) -> bool:
    return bool(_scalar(value, step, what))


@dataclass(slots=True)
class _RunState:
    """The tensors of one run: host copies, per-device copies, and which device computed each; what moved where."""

    host: dict[str, np.ndarray]  # the inputs, then every tensor fetched to the host
    devices: dict[str, Device]
    resident: dict[tuple[str, str], Any] = field(default_factory=dict)  # (device instance, tensor) -> device array
    home: dict[str, str] = field(default_factory=dict)  # tensor -> device instance that computed it
    profile: Profile = field(default_factory=Profile)

    def to_host(self, name: str) -> np.ndarray:
        value = self.host.get(name)
        if value is None:
            if name not in self.home:
                raise HccError(f"internal: tensor '{name}' was never produced")
            t0 = time.perf_counter()
            source = self.resident[(self.home[name], name)]
            value = self.host[name] = self.devices[self.home[name]].to_host(source)
            if value is not source:  # a host-memory device hands over its array: nothing moved
                self.profile.transfers.append(Transfer(name, value.nbytes, self.home[name], "host", time.perf_counter() - t0))
        return value

    def on_device(self, name: str, step: Step) -> Any:
        value = self.resident.get((step.instance, name))
        if value is None:
            if name not in self.host and name not in self.home:
                raise HccError(f"internal: tensor '{name}' needed by {step.id} was never produced")
            source = self.to_host(name)
            t0 = time.perf_counter()
            value = self.resident[(step.instance, name)] = step.device.to_device(source)
            if value is not source:
                self.profile.transfers.append(Transfer(name, source.nbytes, self.home.get(name, "host"), step.instance, time.perf_counter() - t0))
        return value


def load(bundle_dir: str | os.PathLike, verify: bool = True, threads: int | None = None, trust=None, profile: bool = False) -> Session:
    """Open a bundle for execution (verifies every checksum first); `threads`: CPU threads (None/0: all CPUs);
    `trust`: public key(s) one of which must have signed the bundle (`hcc compile --sign`); `profile`: time every
    ONNX node (`session.last_profile.nodes`)."""
    return Session(bundle_dir, verify=verify, threads=threads, trust=trust, profile=profile)
