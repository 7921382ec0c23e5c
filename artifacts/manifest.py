"""The bundle manifest: the contract between the compiler and the runtime (see docs/bundle-format.md).

Stdlib only: the runtime imports this module on deployment machines that have numpy and nothing else.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from hcc.devices import NATIVE_ABI  # every argument a pointer to a dense row-major buffer: inputs, then outputs

FORMAT_NAME = "hcc-bundle"
FORMAT_VERSION = 2  # 2: per-output golden tolerances, native artifacts carry an embedded signature
# 3: a bundle with a `program` (control flow decided at run time, docs/control-flow.md); bundles without one stay 2,
# so that a runtime that knows no programs refuses exactly the bundles it would misrun
PROGRAM_FORMAT_VERSION = 3
# 4: a bundle with a `boundary` (a sequence or optional model input/output flattened into tensors; with or without a
# program); bundles without one stay 2 or 3, so that a runtime that knows no boundary refuses exactly these bundles
BOUNDARY_FORMAT_VERSION = 4
SUPPORTED_FORMAT_VERSIONS = (FORMAT_VERSION, PROGRAM_FORMAT_VERSION, BOUNDARY_FORMAT_VERSION)
PROGRAM_FORMAT = "hcc-program-v1"
# v2: a program with "host" steps (ops of value-dependent output shape run by the runtime, runtime/host_ops.py);
# programs without one stay v1, so that a runtime that knows no host steps refuses exactly these bundles
PROGRAM_FORMAT_HOST = "hcc-program-v2"
PROGRAM_FORMATS = (PROGRAM_FORMAT, PROGRAM_FORMAT_HOST)
SIGNATURE_FORMAT = "hcc-signature-v1"
MANIFEST_FILE = "manifest.json"
MANIFEST_CHECKSUM_FILE = "manifest.sha256"
MANIFEST_SIGNATURE_FILE = "manifest.sig"  # optional: Ed25519 over the manifest's digest (runtime/signing.py)


@dataclass
class TensorRecord:
    """A named value that crosses a subgraph boundary: a model input/output, a weight, or an intermediate."""

    name: str
    dtype: str  # numpy dtype name: float32, int64, bool, ...
    shape: list[int]
    kind: str  # "input" | "output" | "weight" | "intermediate"
    symbolic_shape: list[int | str] | None = None  # the model's own shape (dim names for dynamic dims)
    # a model input/output of a type numpy lacks (float8_e4m3fn, bfloat16, int4, ...: ml_dtypes names), carried as
    # its storage `dtype` (bit patterns in uint8/uint16, 4-/2-bit integers as int8/uint8 values; frontend/lowbit.py);
    # written to the manifest only when set
    element_type: str | None = None
    # a model output the model declares as a sequence of maps (ai.onnx.ml ZipMap, frontend/zipmap.py): computed and
    # stored as its [N, C] float32 score matrix, zipped with these class labels (ints or strings, column order) by
    # the runtime's Session.run; written to the manifest only when set
    zipmap_keys: list[int] | list[str] | None = None


@dataclass
class WeightRecord:
    """Where a weight lives inside the packed weights file."""

    name: str
    file: str
    offset: int
    nbytes: int


@dataclass
class ArtifactRecord:
    """One compiled artifact of a subgraph (a shared object, PTX, ...)."""

    kind: str  # "cpu-so"
    file: str
    entry: str  # exported symbol
    abi: str = NATIVE_ABI
    meta: dict[str, Any] = field(default_factory=dict)  # backend-specific: related files, launch table, estimates


def native_signature(entry: str, target_cpu: str, inputs: list[tuple[list[int], int]], outputs: list[tuple[list[int], int]]) -> str:
    """The text a native artifact embeds (symbol `hcc_signature`) so that the runtime can check the manifest against
    the code before loading it: entry, ABI, target CPU, and per argument its shape and element size in bytes."""
    args = ",".join("x".join(map(str, shape)) + f":{itemsize}" for shape, itemsize in list(inputs) + list(outputs))
    return f"{SIGNATURE_FORMAT}|abi={NATIVE_ABI}|entry={entry}|target={target_cpu}|inputs={len(inputs)}|args={args}"


def parse_native_signature(text: str) -> dict[str, Any]:
    """{entry, abi, target, inputs: int, args: [(shape, itemsize)]}; ValueError when malformed."""
    head, *fields = text.split("|")
    if head != SIGNATURE_FORMAT:
        raise ValueError(f"unknown signature format {head!r}")
    values = dict(f.split("=", 1) for f in fields)
    args = []
    for arg in values["args"].split(",") if values.get("args") else []:
        shape, itemsize = arg.split(":")
        args.append(([int(d) for d in shape.split("x")] if shape else [], int(itemsize)))
    return {"entry": values["entry"], "abi": values["abi"], "target": values["target"], "inputs": int(values["inputs"]), "args": args}


@dataclass
class SubgraphRecord:
    id: str
    device: str  # device kind that runs it: "cpu", ...
    precision: str  # "fp32", ...
    inputs: list[str]
    outputs: list[str]
    artifacts: list[ArtifactRecord]
    nodes: list[str] = field(default_factory=list)  # ONNX node names placed in this subgraph
    predicted_time_s: float | None = None
    fallback: ArtifactRecord | None = None
    device_index: int = 0  # which instance of `device` (several CPU partitions, GPUs, FPGAs of one kind)


@dataclass
class OutputAccuracy:
    """One output's golden tolerance and, where it was measured, the error behind it (fixed-point bundles: the
    compiled bundle run on the golden inputs and on held-out inputs, against onnxruntime)."""

    rtol: float
    atol: float
    golden_max_abs: float | None = None  # |bundle - onnxruntime| on the golden inputs
    held_out_max_abs: float | None = None  # the same on inputs the compiler never saw
    held_out_samples: int = 0
    argmax_agreement: float | None = None  # held-out share of rows whose argmax (last axis) equals onnxruntime's
    note: str = ""


@dataclass
class GoldenRecord:
    file: str  # npz with keys "input:<name>" and "output:<name>"
    rtol: float  # the default tolerance; `outputs` may set one per output
    atol: float
    source: str  # "onnxruntime <version> on random inputs (seed N)" or "onnxruntime <version> on user inputs"
    outputs: dict[str, OutputAccuracy] = field(default_factory=dict)

    def tolerance(self, output: str) -> tuple[float, float]:
        accuracy = self.outputs.get(output)
        return (accuracy.rtol, accuracy.atol) if accuracy else (self.rtol, self.atol)


@dataclass
class ConstantRecord:
    """A constant a program step hands on without computing it (a branch that returns an initializer): an .npy file."""

    name: str
    file: str
    dtype: str
    shape: list[int]


@dataclass
class ScanRecord:
    """The per-iteration element of a Loop's scan output: its stack is `[iterations] + shape` (empty when 0)."""

    dtype: str
    shape: list[int]


@dataclass
class StepRecord:
    """One step of a program block, in execution order (docs/control-flow.md).

    segment: runs the sub-bundle `bundle` on its inputs (`inputs`, the sub-bundle's own input names) -> `outputs`.
    if:      `inputs[0]` is the condition; runs `then_branch` or `else_branch`, whose outputs become `outputs`.
    loop:    `inputs` = [trip count or "", condition or "", initial carried values...]; `outputs` = [final carried
             values..., stacked scan outputs...]; `body` binds [iteration, condition, carried...] and returns
             [condition, carried..., scan elements...].
    fail:    an If branch that cannot be compiled for the bundle's shapes (its shape inference fails: Silero VAD's
             8 kHz branch at 16 kHz input shapes); taking it raises an error with `message`. `outputs` are names of
             its own, never computed.
    host:    ONNX op `op` (NonMaxSuppression, Unique, NonZero: an output shape that depends on values) run by the
             runtime with numpy (runtime/host_ops.py) on `inputs` ("" for an absent optional one), with `attributes`
             (JSON values) -> `outputs` ("" for an unused one). Program format v2 only."""

    kind: str  # "segment" | "if" | "loop" | "fail" | "host"
    node: str  # the ONNX node (segment: the first node's name) it comes from
    inputs: list[str]
    outputs: list[str]
    bundle: str | None = None
    then_branch: "BlockRecord | None" = None
    else_branch: "BlockRecord | None" = None
    body: "BlockRecord | None" = None
    scans: list[ScanRecord] = field(default_factory=list)
    message: str = ""  # kind "fail": why the branch was not compiled
    op: str = ""  # kind "host": the ONNX op type
    attributes: dict[str, Any] = field(default_factory=dict)  # kind "host": its attributes


@dataclass
class BlockRecord:
    """A list of steps in one scope: the model's graph, an If branch or a Loop body. `inputs`: names the block binds
    (a Loop body's iteration, condition and carried values; none for a branch, which reads its enclosing scope);
    `outputs`: names in the block's scope (computed by a step, bound, a constant, or read from an enclosing scope)."""

    inputs: list[str]
    steps: list[StepRecord]
    outputs: list[str]
    constants: list[ConstantRecord] = field(default_factory=list)  # bound when the block starts


@dataclass
class ProgramRecord:
    """Host-side control flow: the model's graph as a block of steps whose compiled code lives in sub-bundles."""

    main: BlockRecord
    format: str = PROGRAM_FORMAT

    def has_host_steps(self) -> bool:
        def walk(block: BlockRecord) -> bool:
            return any(step.kind == "host" or any(walk(sub) for sub in (step.then_branch, step.else_branch, step.body) if sub)
                       for step in block.steps)
        return walk(self.main)

    def parts(self) -> list[str]:
        """Every sub-bundle folder the program runs, in first-use order."""
        found: list[str] = []

        def walk(block: BlockRecord) -> None:
            for step in block.steps:
                if step.bundle is not None and step.bundle not in found:
                    found.append(step.bundle)
                for sub in (step.then_branch, step.else_branch, step.body):
                    if sub is not None:
                        walk(sub)
        walk(self.main)
        return found

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ProgramRecord":
        def block(d: dict) -> BlockRecord:
            return BlockRecord(inputs=d["inputs"], outputs=d["outputs"], steps=[step(s) for s in d["steps"]],
                               constants=[ConstantRecord(**c) for c in d.get("constants", [])])

        def step(d: dict) -> StepRecord:
            fields = dict(d)
            for key in ("then_branch", "else_branch", "body"):
                fields[key] = block(d[key]) if d.get(key) is not None else None
            fields["scans"] = [ScanRecord(**r) for r in d.get("scans", [])]
            return StepRecord(**fields)

        if data.get("format") not in PROGRAM_FORMATS:
            raise ValueError(f"unknown program format {data.get('format')!r} (this runtime reads {', '.join(PROGRAM_FORMATS)}); "
                             "recompile the model with a matching hcc")
        return cls(main=block(data["main"]), format=data["format"])


# A boundary value's layout (JSON): a flat tensor's name (str), {"sequence": [layout, ...]} or {"optional": layout or
# None (absent)}. The runtime takes a list for a sequence and None for an absent optional, and returns the same.
Layout = Any


def layout_tensors(layout: Layout) -> list[str]:
    """The flat tensor names a layout holds, in order (the order they take in the manifest's inputs / outputs)."""
    if isinstance(layout, str):
        return [layout]
    if isinstance(layout, dict) and set(layout) == {"sequence"} and isinstance(layout["sequence"], list):
        return [name for item in layout["sequence"] for name in layout_tensors(item)]
    if isinstance(layout, dict) and set(layout) == {"optional"}:
        return [] if layout["optional"] is None else layout_tensors(layout["optional"])
    raise ValueError(f"not a boundary layout: {layout!r}")


def layout_text(layout: Layout) -> str:
    """A layout as a user reads it: `sequence[x[0], x[1]]`, `optional(x)`, `optional(absent)`."""
    if isinstance(layout, str):
        return layout
    if "sequence" in layout:
        return "sequence[" + ", ".join(layout_text(item) for item in layout["sequence"]) + "]"
    return "optional(" + ("absent" if layout["optional"] is None else layout_text(layout["optional"])) + ")"


@dataclass
class BoundaryRecord:
    """The model's own inputs and outputs when some are sequences or optionals (format version 4): the bundle
    computes flat tensors (the manifest's `inputs` / `outputs`), and this says which of them form which model value.
    `inputs` / `outputs`: the model's names in its order; `values`: name -> layout of each one that is not a tensor
    (the others are flat tensors of the same name)."""

    inputs: list[str]
    outputs: list[str]
    values: dict[str, Layout] = field(default_factory=dict)

    def flat(self, name: str) -> list[str]:
        """The flat tensors of model value `name`."""
        return layout_tensors(self.values[name]) if name in self.values else [name]


@dataclass
class Manifest:
    model_name: str
    model_sha256: str
    compiler_version: str
    toolchain: dict[str, str]
    inputs: list[str]
    outputs: list[str]
    tensors: list[TensorRecord]
    weights: list[WeightRecord]
    subgraphs: list[SubgraphRecord]
    schedule: list[str]  # subgraph ids in execution order
    devices_required: list[str]
    files: dict[str, str]  # relative path -> sha256, every file of the bundle but the manifest itself
    golden: GoldenRecord | None = None
    devices_optional: list[str] = field(default_factory=list)
    plan_report: str | None = None  # plan/plan.json: the partitioner's placement, predictions and explanations
    program: ProgramRecord | None = None  # run-time control flow (format_version 3); written only when set
    boundary: BoundaryRecord | None = None  # sequence / optional model inputs and outputs (format_version 4); only when set
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION

    def tensor(self, name: str) -> TensorRecord:
        for t in self.tensors:
            if t.name == name:
                return t
        raise KeyError(name)

    def to_json(self) -> str:
        data = asdict(self)
        for tensor in data["tensors"]:  # absent unless set: manifests without such types stay as they were
            for optional in ("element_type", "zipmap_keys"):
                if tensor.get(optional) is None:
                    tensor.pop(optional, None)
        for optional in ("program", "boundary"):
            if data[optional] is None:
                data.pop(optional)
        if "program" in data:  # a host step's fields are absent elsewhere: v1 programs stay as they were
            _drop_empty_host_fields(data["program"]["main"])
        return json.dumps(data, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        """Build from parsed JSON; raises KeyError/TypeError/ValueError on a malformed manifest."""
        if data.get("format") != FORMAT_NAME:
            raise ValueError(f"not an hcc bundle manifest (format={data.get('format')!r})")
        version = data.get("format_version")
        if version not in SUPPORTED_FORMAT_VERSIONS or isinstance(version, bool):
            raise ValueError(
                f"bundle format version {version} is not supported by this runtime "
                f"(supports {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); recompile the model with a matching hcc"
            )
        if version == PROGRAM_FORMAT_VERSION and data.get("program") is None:
            raise ValueError(f"format version {version} needs a program")
        if version == FORMAT_VERSION and data.get("program") is not None:
            raise ValueError(f"format version {version} cannot hold a program (run-time control flow is version 3)")
        if (version == BOUNDARY_FORMAT_VERSION) != (data.get("boundary") is not None):
            raise ValueError(f"format version {version} " + ("needs a boundary" if version == BOUNDARY_FORMAT_VERSION else
                                                                  "cannot hold a boundary (sequence / optional values are version 4)"))

        def artifact(d: dict | None) -> ArtifactRecord | None:
            return None if d is None else ArtifactRecord(**d)

        fields = dict(data)
        fields["tensors"] = [TensorRecord(**t) for t in data["tensors"]]
        fields["weights"] = [WeightRecord(**w) for w in data["weights"]]
        fields["subgraphs"] = [
            SubgraphRecord(**{**s, "artifacts": [artifact(a) for a in s["artifacts"]], "fallback": artifact(s.get("fallback"))})
            for s in data["subgraphs"]
        ]
        golden = data.get("golden")
        if golden:
            outputs = {name: OutputAccuracy(**acc) for name, acc in (golden.get("outputs") or {}).items()}
            fields["golden"] = GoldenRecord(**{**golden, "outputs": outputs})
        if data.get("program") is not None:
            fields["program"] = ProgramRecord.from_dict(data["program"])
        if data.get("boundary") is not None:
            fields["boundary"] = BoundaryRecord(**data["boundary"])
        return cls(**fields)


def _drop_empty_host_fields(block: dict) -> None:
    for step in block["steps"]:
        for key in ("op", "attributes"):
            if not step.get(key):
                step.pop(key, None)
        for sub in ("then_branch", "else_branch", "body"):
            if step.get(sub) is not None:
                _drop_empty_host_fields(step[sub])
