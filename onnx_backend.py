"""hcc behind onnx's backend API (`onnx.backend.base.Backend`), so that onnx's own test suites can run against it.

Why this shape: onnx's node suite (tools/conformance.py) and any harness written for `onnx.backend` hand a
backend a model first (`prepare`) and its inputs later (`BackendRep.run`). hcc is ahead-of-time and compiles for
concrete shapes, so `prepare` only keeps the model and `run` compiles on first use, once per set of input shapes,
into a temporary folder, then runs the bundle with `hcc.runtime`.

Inputs that determine output *shapes* (a Reshape's shape, Slice's starts/ends, Expand's shape, ...) cannot stay
run-time values in a static-shape bundle: their values are frozen into the model as initializers before the
compile, and they are part of the cache key, so a run with other values compiles again (never reuses a bundle
specialised for different values). So are inputs that select what an op computes (Dropout's training_mode and
ratio: MODE_OPERANDS). The compile's golden inputs are the run's own inputs.

A sequence input (a list of arrays) or an optional one (None when absent) is compiled for the run's concrete list:
its length, element shapes and presence become the compile's input declaration and part of the cache key
(frontend/boundary.py); the bundle's runtime takes and returns lists. The trip count and condition of a Loop that
carries a sequence, and the condition of an If that returns one (or an optional), are frozen like shape operands: they
decide the sequence's length or the optional's presence.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.base import Backend, BackendRep

from hcc.errors import HccError
from hcc.frontend.boundary import element_name
from hcc.frontend.segments import reads

# Per op: the input positions whose *values* decide the shape of an output (not just its values).
SHAPE_OPERANDS: dict[str, tuple[int, ...]] = {
    "Reshape": (1,), "Expand": (1,), "ConstantOfShape": (0,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Split": (1,),
    "Squeeze": (1,), "Unsqueeze": (1,), "Pad": (1, 3), "Resize": (1, 2, 3), "Upsample": (1,), "Range": (0, 1, 2),
    "TopK": (1,), "OneHot": (1,), "CenterCropPad": (1,), "Compress": (1,), "MaxUnpool": (2,), "Col2Im": (1, 2),
    "AffineGrid": (1,), "DFT": (1, 2), "STFT": (1, 3), "HannWindow": (0,), "HammingWindow": (0,),
    "BlackmanWindow": (0,), "MelWeightMatrix": (0, 1, 2), "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,),
    "ReduceMin": (1,), "ReduceProd": (1,), "ReduceL1": (1,), "ReduceL2": (1,), "ReduceLogSum": (1,),
    "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,),
    # positions and split sizes decide which tensors a sequence holds (frontend/sequences.py compiles constant ones)
    "SequenceInsert": (2,), "SequenceAt": (1,), "SequenceErase": (1,), "SplitToSequence": (1,),
}
# Per op: the input positions whose values select *what* it computes, frozen like shape operands: Dropout's ratio and
# training_mode (random in training mode with a non-zero ratio, which hcc refuses; the identity otherwise).
MODE_OPERANDS: dict[str, tuple[int, ...]] = {"Dropout": (1, 2)}
# Ops whose output depends only on their input's shape, which is fixed anyway: the walk back stops there.
SHAPE_ONLY_OPS = frozenset({"Shape", "Size"})


def sequence_structure_operands(node: onnx.NodeProto) -> list[str]:
    """The inputs of a Loop that carries a sequence or an optional (its trip count and condition) or of an If whose
    branches return one (its condition): they decide how many tensors the sequence holds, or whether the optional is
    present, which a bundle fixes (hcc unrolls / inlines these, frontend/sequences.py), so they are frozen."""
    if node.op_type not in ("Loop", "If") or node.domain not in ("", "ai.onnx"):
        return []
    def listlike(values) -> bool:
        return any(v.type.WhichOneof("value") in ("sequence_type", "optional_type") for v in values)

    graphs = {a.name: a.g for a in node.attribute if a.type == onnx.AttributeProto.GRAPH}
    if node.op_type == "Loop" and "body" in graphs and listlike(list(graphs["body"].input[2:]) + list(graphs["body"].output[1:])):
        return [name for name in node.input[:2] if name]
    if node.op_type == "If" and any(listlike(g.output) for g in graphs.values()):
        return [node.input[0]]
    return []


def _frozen_operands(node: onnx.NodeProto) -> tuple[int, ...]:
    return SHAPE_OPERANDS.get(node.op_type, ()) + MODE_OPERANDS.get(node.op_type, ())


def shape_inputs(model: onnx.ModelProto) -> set[str]:
    """Graph inputs whose values flow (through any chain of nodes, and into the branches and bodies of control flow
    through the outer values those read) into an operand in SHAPE_OPERANDS or MODE_OPERANDS."""
    producer = {out: node for node in model.graph.node for out in node.output}
    pending = [node.input[i] for node in model.graph.node for i in _frozen_operands(node) if i < len(node.input) and node.input[i]]
    pending += [name for node in model.graph.node for name in sequence_structure_operands(node)]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        node = producer.get(name)
        if node is not None and node.op_type not in SHAPE_ONLY_OPS:
            pending.extend(reads(node))  # an If's outputs also depend on what its branches read
    initializers = {init.name for init in model.graph.initializer}
    return {v.name for v in model.graph.input if v.name in seen and v.name not in initializers and v.type.HasField("tensor_type")}


def declaration(value: Any) -> list[int] | list[list[int]] | None:
    """How `input_shapes` declares a run's input (frontend/boundary.py): an array's shape, a list's element shapes,
    None for an absent optional."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return [list(np.shape(item)) for item in value]
    return list(value.shape)


def flat_feeds(name: str, value: Any) -> dict[str, np.ndarray]:
    """A run's input as the bundle's flat tensor inputs (named as frontend/boundary.py names them)."""
    if value is None:
        return {}
    if isinstance(value, (list, tuple)):
        return {element_name(name, k): np.asarray(item) for k, item in enumerate(value)}
    return {name: value}


def freeze_inputs(model: onnx.ModelProto, values: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `model` whose inputs named in `values` are initializers holding those values."""
    frozen = onnx.ModelProto()
    frozen.CopyFrom(model)
    kept = [v for v in frozen.graph.input if v.name not in values]
    del frozen.graph.input[:]
    frozen.graph.input.extend(kept)
    frozen.graph.initializer.extend(numpy_helper.from_array(np.asarray(a), name) for name, a in values.items())
    return frozen


@dataclass
class CompiledBundle:
    """One compile of the model: the runtime session and the inputs it still takes at run time."""

    session: Any  # hcc.runtime.Session
    runtime_inputs: list[str]


class HccBackendRep(BackendRep):
    """A model prepared for hcc: compiles on `run`, once per input shapes (and shape-deciding input values)."""

    def __init__(self, model: onnx.ModelProto, threads: int | None = None, compile_options: dict | None = None):
        self.model = model
        self.threads = threads
        self.compile_options = dict(compile_options or {})
        initializers = {init.name for init in model.graph.initializer}
        self.input_names = [v.name for v in model.graph.input if v.name not in initializers]
        self.frozen_names = shape_inputs(model)
        self._bundles: dict[tuple, CompiledBundle] = {}
        self._workdir = tempfile.mkdtemp(prefix="hcc-backend-")

    def close(self) -> None:
        """Remove the compiled bundles (sessions already loaded keep working until they are dropped)."""
        workdir = getattr(self, "_workdir", None)
        if workdir and shutil is not None:  # shutil is None when this runs at interpreter exit
            shutil.rmtree(workdir, ignore_errors=True)

    def __del__(self) -> None:
        self.close()

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        from hcc.frontend.lowbit import LOWBIT, from_storage, to_storage

        typed = self._feeds(inputs)
        # types numpy lacks (float8, bfloat16, int4, ...) cross the bundle boundary as storage arrays
        # (frontend/lowbit.py); onnx's harnesses hand and expect ml_dtypes arrays. A frozen input keeps its own type
        # (its storage bits as an initializer of the model's type were other numbers).
        declared = {v.name: v.type.tensor_type.elem_type for v in list(self.model.graph.input) + list(self.model.graph.output)}
        feeds = {n: to_storage(a, declared[n]) if declared.get(n) in LOWBIT and isinstance(a, np.ndarray) else a for n, a in typed.items()}
        key = self._cache_key(feeds)
        bundle = self._bundles.get(key)
        if bundle is None:
            bundle = self._bundles[key] = self._compile(feeds, {n: typed[n] for n in self.frozen_names})
        outputs = bundle.session.run(None, {n: feeds[n] for n in bundle.runtime_inputs})
        names = [v.name for v in self.model.graph.output]
        return tuple(from_storage(a, declared[n]) if declared.get(n) in LOWBIT and isinstance(a, np.ndarray) else a
                     for n, a in zip(names, outputs))

    def _feeds(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, dict):
            named = dict(inputs)
        else:
            values = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
            if len(values) != len(self.input_names):
                raise HccError(f"the model takes {len(self.input_names)} input(s) {self.input_names}, got {len(values)}")
            named = dict(zip(self.input_names, values))
        if set(named) != set(self.input_names):
            raise HccError(f"inputs {sorted(named)} do not match the model's inputs {self.input_names}")
        for name, value in named.items():
            listed = isinstance(value, (list, tuple)) and all(isinstance(v, np.ndarray) for v in value)
            if not (isinstance(value, np.ndarray) or listed or value is None):
                raise HccError(f"input '{name}' is a {type(value).__name__}; hcc compiles tensors, lists of tensors (sequences) "
                               "and None (an absent optional)")
        return named

    def _cache_key(self, feeds: dict[str, Any]) -> tuple:
        def kind(value: Any) -> tuple:
            if isinstance(value, np.ndarray):
                return str(value.dtype), value.shape
            return ("none",) if value is None else ("list",) + tuple((str(v.dtype), v.shape) for v in value)

        shapes = tuple((n, kind(feeds[n])) for n in self.input_names)
        values = tuple((n, feeds[n].tobytes()) for n in sorted(self.frozen_names))
        return shapes, values

    def _compile(self, feeds: dict[str, np.ndarray], frozen: dict[str, np.ndarray]) -> CompiledBundle:
        """Compile for `feeds` (the runtime inputs' storage arrays) with the `frozen` inputs' values built in."""
        import hcc
        import hcc.runtime

        runtime_inputs = [n for n in self.input_names if n not in frozen]
        folder = tempfile.mkdtemp(prefix="compile-", dir=self._workdir)
        model_path, golden_path = os.path.join(folder, "model.onnx"), os.path.join(folder, "inputs.npz")
        onnx.save(freeze_inputs(self.model, frozen), model_path)
        with open(golden_path, "wb") as f:
            np.savez(f, **{flat: a for n in runtime_inputs for flat, a in flat_feeds(n, feeds[n]).items()})
        bundle = os.path.join(folder, "bundle")
        shapes = {n: declaration(feeds[n]) for n in runtime_inputs}
        hcc.compile(model_path, bundle, input_shapes=shapes, golden_inputs=golden_path, **self.compile_options)
        return CompiledBundle(hcc.runtime.load(bundle, threads=self.threads), runtime_inputs)


class HccBackend(Backend):
    """`onnx.backend.base.Backend` for hcc (CPU only): `HccBackend.prepare(model).run([x, ...])`."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> HccBackendRep:
        """Keep the model for compiling on first run. kwargs: `threads` (runtime CPU threads, default all) and
        `target_cpu` (hcc.compile's); others (onnx's test runner passes tolerances) are ignored."""
        if not cls.supports_device(device):
            raise HccError(f"hcc's ONNX backend runs on CPU; device '{device}' is not supported")
        options = {"target_cpu": kwargs["target_cpu"]} if "target_cpu" in kwargs else {}
        return HccBackendRep(model, threads=kwargs.get("threads"), compile_options=options)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs: Any) -> tuple[np.ndarray, ...]:
        rep = cls.prepare(model, device, **kwargs)
        try:
            return rep.run(inputs)
        finally:
            rep.close()

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU", outputs_info: Sequence | None = None,
                 **kwargs: Any) -> tuple[np.ndarray, ...]:
        raise NotImplementedError("hcc compiles whole models: wrap the node in a model and use run_model")

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return str(device).upper() == "CPU"


prepare = HccBackend.prepare
run_model = HccBackend.run_model
run_node = HccBackend.run_node
supports_device = HccBackend.supports_device
