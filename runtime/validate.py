"""Check a bundle's manifest against itself, the bundle's files and its native code before any of it is loaded.

Checksums prove that the files are those the manifest lists, not that the manifest is right: whoever can edit it can
recompute them (signed bundles, runtime/signing.py, prove who wrote it). So the runtime also checks that the
manifest is self-consistent and agrees with the code: every field has its type, every shape fits its byte size, the
schedule runs each subgraph once with every input produced before it is read, and each native artifact exports
its entry itself (a name resolved through libc is refused) and carries the signature hcc embedded in it (argument
count, shapes and element sizes must equal the manifest's, so a shrunk output can never be overrun). No file of a
bundle may be a symbolic link. Stdlib only (the deployable runtime).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from hcc.artifacts.manifest import (
    FORMAT_VERSION,
    NATIVE_ABI,
    PROGRAM_FORMAT_HOST,
    BlockRecord,
    Manifest,
    SubgraphRecord,
    TensorRecord,
    layout_tensors,
    parse_native_signature,
)
from hcc.devices import ARTIFACT_KINDS, DEVICE_KINDS, NATIVE_ARTIFACT_KINDS
from hcc.errors import HccError
from hcc.runtime.elf import SIGNATURE_SYMBOL, read_exports
from hcc.runtime.host_ops import RUNTIME_OPS

ITEM_BYTES = {"float64": 8, "float32": 4, "float16": 2, "int64": 8, "int32": 4, "int16": 2, "int8": 1, "uint8": 1, "uint16": 2, "uint32": 4,
              "uint64": 8, "bool": 1}
TENSOR_KINDS = ("input", "output", "weight", "intermediate")
# element_type (a type numpy lacks; ml_dtypes' name) -> the storage dtype a bundle carries it in (frontend/lowbit.py)
ELEMENT_STORAGE = {"float8_e4m3fn": "uint8", "float8_e4m3fnuz": "uint8", "float8_e5m2": "uint8", "float8_e5m2fnuz": "uint8",
                   "float4_e2m1fn": "uint8", "float8_e8m0fnu": "uint8", "bfloat16": "uint16",
                   "int4": "int8", "int2": "int8", "uint4": "uint8", "uint2": "uint8"}
MAX_TENSOR_BYTES = 1 << 40
MAX_PROGRAM_DEPTH = 32  # nested branches / bodies: deeper than any real model, and no recursion bomb


def _refuse(bundle: Path, what: str) -> HccError:
    return HccError(f"{bundle}: {what}; refusing to load the bundle")


def check_no_symlinks(bundle: Path) -> None:
    for root, dirs, files in os.walk(bundle):
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink():
                raise _refuse(bundle, f"{path.relative_to(bundle)} is a symbolic link (a bundle holds plain files only)")


def _is_count(value) -> bool:
    """A non-negative JSON integer (true/false are not numbers here, although Python's bool is an int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_int_list(value) -> bool:
    return isinstance(value, list) and all(_is_count(d) for d in value)


def tensor_bytes(record: TensorRecord) -> int:
    return math.prod(record.shape) * ITEM_BYTES[record.dtype]


def _valid_zipmap(t: TensorRecord) -> bool:
    keys = t.zipmap_keys
    if t.kind != "output" or t.dtype != "float32" or not _is_int_list(t.shape) or len(t.shape) != 2:
        return False
    if not isinstance(keys, list) or len(keys) != t.shape[1] or len(set(keys)) != len(keys):
        return False
    return all(type(k) is int for k in keys) or all(isinstance(k, str) for k in keys)


def check_tensors(bundle: Path, manifest: Manifest) -> dict[str, TensorRecord]:
    tensors: dict[str, TensorRecord] = {}
    for t in manifest.tensors:
        if not isinstance(t.name, str) or t.name in tensors:
            raise _refuse(bundle, f"tensor name {t.name!r} is not a unique string")
        if t.dtype not in ITEM_BYTES or t.kind not in TENSOR_KINDS or not _is_int_list(t.shape):
            raise _refuse(bundle, f"tensor {t.name!r}: dtype {t.dtype!r}, kind {t.kind!r} or shape {t.shape!r} is not valid")
        if t.element_type is not None and (not isinstance(t.element_type, str) or ELEMENT_STORAGE.get(t.element_type) != t.dtype
                                           or t.kind not in ("input", "output")):
            raise _refuse(bundle, f"tensor {t.name!r}: element type {t.element_type!r} is not carried as {t.kind} {t.dtype!r}")
        if t.zipmap_keys is not None and not _valid_zipmap(t):
            raise _refuse(bundle, f"tensor {t.name!r}: zipmap_keys must be unique ints or strings, one per column of a 2-D "
                                  f"float32 output (it is {t.kind} {t.dtype} {t.shape})")
        if tensor_bytes(t) > MAX_TENSOR_BYTES:
            raise _refuse(bundle, f"tensor {t.name!r}: shape {t.shape} is larger than any real model's")
        tensors[t.name] = t
    for names, kind in ((manifest.inputs, "input"), (manifest.outputs, "output")):
        if not isinstance(names, list) or any(n not in tensors or tensors[n].kind != kind for n in names):
            raise _refuse(bundle, f"the model {kind}s {names!r} are not all {kind} tensors of the manifest")
    return tensors


def check_weights(bundle: Path, manifest: Manifest, tensors: dict[str, TensorRecord]) -> None:
    from hcc.runtime.bundle import safe_path

    sizes: dict[str, int] = {}
    for w in manifest.weights:
        t = tensors.get(w.name)
        if t is None or t.kind != "weight":
            raise _refuse(bundle, f"weight {w.name!r} is not a weight tensor of the manifest")
        if not (_is_count(w.offset) and w.offset % ITEM_BYTES[t.dtype] == 0):  # the compiler aligns every weight
            raise _refuse(bundle, f"weight {w.name!r}: offset {w.offset!r} is not a byte offset aligned to its {t.dtype} elements")
        if not (_is_count(w.nbytes) and w.nbytes == tensor_bytes(t)):
            raise _refuse(bundle, f"weight {w.name!r}: {w.nbytes!r} bytes, but its shape {t.shape} {t.dtype} needs {tensor_bytes(t)}")
        if w.file not in sizes:
            path = safe_path(bundle, w.file)
            sizes[w.file] = path.stat().st_size if path.is_file() else -1
        if w.offset + w.nbytes > sizes[w.file]:
            raise _refuse(bundle, f"weight {w.name!r} lies outside {w.file}")


def check_schedule(bundle: Path, manifest: Manifest, tensors: dict[str, TensorRecord]) -> None:
    """Each subgraph runs once, in `schedule` order, reading only model inputs, weights and earlier outputs."""
    by_id = {}
    for sg in manifest.subgraphs:
        if not isinstance(sg.id, str) or sg.id in by_id:
            raise _refuse(bundle, f"subgraph id {sg.id!r} is not a unique string")
        if not isinstance(sg.device, str) or not _is_count(sg.device_index):
            raise _refuse(bundle, f"subgraph {sg.id}: device {sg.device!r} #{sg.device_index!r} is not valid")
        lists = (sg.inputs, sg.outputs, sg.artifacts)
        if not all(isinstance(x, list) for x in lists) or not all(isinstance(n, str) for n in sg.inputs + sg.outputs):
            raise _refuse(bundle, f"subgraph {sg.id}: inputs, outputs and artifacts must be lists (of tensor names)")
        by_id[sg.id] = sg
    if not isinstance(manifest.schedule, list) or sorted(map(str, manifest.schedule)) != sorted(by_id):
        raise _refuse(bundle, f"schedule {manifest.schedule!r} does not run each subgraph ({sorted(by_id)}) exactly once")
    available = {t.name for t in tensors.values() if t.kind in ("input", "weight")}
    for sg_id in manifest.schedule:
        sg = by_id[sg_id]
        for name in sg.inputs:
            if name not in available:
                raise _refuse(bundle, f"subgraph {sg.id} reads {name!r}, which no earlier subgraph produces")
        for name in sg.outputs:
            if name not in tensors or tensors[name].kind not in ("output", "intermediate"):
                raise _refuse(bundle, f"subgraph {sg.id} writes {name!r}, which is not an output or intermediate tensor")
        available.update(sg.outputs)
    missing = [n for n in manifest.outputs if n not in available]
    if missing:
        raise _refuse(bundle, f"model outputs {missing} are produced by no subgraph")


def check_native(bundle: Path, manifest: Manifest, sg: SubgraphRecord, artifact, tensors: dict[str, TensorRecord]) -> None:
    """A shared object exports its entry itself; a CPU one carries a signature equal to the manifest's view."""
    from hcc.runtime.bundle import safe_path

    if artifact.kind not in ARTIFACT_KINDS:
        raise _refuse(bundle, f"subgraph {sg.id}: unknown artifact kind {artifact.kind!r}")
    if artifact.kind not in NATIVE_ARTIFACT_KINDS:  # loaded with dlopen
        return
    where = f"subgraph {sg.id}: {artifact.file}"
    if artifact.abi != NATIVE_ABI:
        raise _refuse(bundle, f"{where}: ABI {artifact.abi!r} is not {NATIVE_ABI}")
    exports = read_exports(safe_path(bundle, artifact.file))
    if artifact.entry not in exports.functions:
        raise _refuse(bundle, f"{where}: entry {artifact.entry!r} is not a function this file exports")
    if artifact.kind not in DEVICE_KINDS["cpu"].artifact_kinds:  # only the CPU backend embeds a signature
        return
    raw = exports.objects.get(SIGNATURE_SYMBOL)
    try:
        signature = parse_native_signature(raw.rstrip(b"\0").decode())
    except (AttributeError, ValueError, KeyError, UnicodeDecodeError):
        raise _refuse(bundle, f"{where}: no valid embedded hcc signature (not code hcc built, or built by an older hcc: recompile)") from None
    expected = [(tensors[n].shape, ITEM_BYTES[tensors[n].dtype]) for n in sg.inputs + sg.outputs]
    target = manifest.toolchain.get("target_cpu") if isinstance(manifest.toolchain, dict) else None
    if signature["entry"] != artifact.entry or signature["abi"] != artifact.abi or signature["target"] != target:
        raise _refuse(bundle, f"{where}: the manifest's entry/ABI/target CPU ({artifact.entry}, {artifact.abi}, {target}) differ from "
                              f"the code's ({signature['entry']}, {signature['abi']}, {signature['target']})")
    if signature["inputs"] != len(sg.inputs) or signature["args"] != expected:
        raise _refuse(bundle, f"{where}: the code takes {signature['inputs']} inputs and arguments {signature['args']}, the manifest "
                              f"gives {len(sg.inputs)} inputs and {expected}")


def check_golden(bundle: Path, manifest: Manifest) -> None:
    golden = manifest.golden
    if golden is None:
        return
    fields = {"golden.rtol": golden.rtol, "golden.atol": golden.atol}
    for name, acc in golden.outputs.items():
        fields.update({f"golden.outputs[{name!r}].rtol": acc.rtol, f"golden.outputs[{name!r}].atol": acc.atol})
    for field_name, v in fields.items():
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
            raise _refuse(bundle, f"manifest {field_name} = {v!r}: a tolerance must be a finite number >= 0")


def check_program(bundle: Path, manifest: Manifest, tensors: dict[str, TensorRecord]) -> None:
    """A program (run-time control flow, docs/control-flow.md): its compiled code lives in sub-bundles only; every
    step reads names its scope has by then (model inputs, bound inputs, constants, earlier steps' outputs), the
    shapes of If / Loop steps fit, constants lie in the bundle's checksummed files, and every sub-bundle is itself
    valid (its native code checked here, before the runtime loads any of it)."""
    from hcc.runtime.bundle import read_manifest, safe_path

    program = manifest.program
    if manifest.subgraphs or manifest.schedule or manifest.weights:
        raise _refuse(bundle, "a program bundle keeps its code and weights in its parts, not in subgraphs, schedule or weights")
    files = manifest.files if isinstance(manifest.files, dict) else {}

    def names(value, what: str, allow_empty: bool = False) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(n, str) and (n or allow_empty) for n in value):
            raise _refuse(bundle, f"program: {what} {value!r} is not a list of tensor names")
        return value

    def block(b: BlockRecord, available: set[str], depth: int, where: str) -> None:
        if depth > MAX_PROGRAM_DEPTH:
            raise _refuse(bundle, f"program: blocks nested deeper than {MAX_PROGRAM_DEPTH}")
        if not isinstance(b, BlockRecord) or not isinstance(b.steps, list) or not isinstance(b.constants, list):
            raise _refuse(bundle, f"program: {where} is not a block")
        available = available | set(names(b.inputs, f"{where} inputs"))
        for c in b.constants:
            if not (isinstance(c.name, str) and isinstance(c.file, str) and c.dtype in ITEM_BYTES and _is_int_list(c.shape)):
                raise _refuse(bundle, f"program: {where}: constant {c.name!r} ({c.file!r}, {c.dtype!r} {c.shape!r}) is not valid")
            if c.file not in files:
                raise _refuse(bundle, f"program: constant file {c.file!r} has no checksum")
            safe_path(bundle, c.file)
            available.add(c.name)
        for step in b.steps:
            here = f"{where}: step '{step.node}' ({step.kind})"
            reads = names(step.inputs, f"{here} inputs", allow_empty=step.kind == "loop")
            missing = [n for n in reads if n and n not in available]
            if missing:
                raise _refuse(bundle, f"program: {here} reads {missing}, which nothing before it computes")
            outputs = names(step.outputs, f"{here} outputs", allow_empty=step.kind != "segment")
            if step.kind == "segment":
                if not isinstance(step.bundle, str) or f"{step.bundle}/manifest.json" not in files:
                    raise _refuse(bundle, f"program: {here}: part {step.bundle!r} is not a sub-bundle of this bundle's files")
                part = read_manifest(safe_path(bundle, step.bundle), verify=False)  # validates it (checksums: this bundle's)
                if part.format_version != FORMAT_VERSION or part.inputs != reads or part.outputs != outputs:
                    raise _refuse(bundle, f"program: {here}: part {step.bundle} takes {part.inputs} -> {part.outputs}, the program "
                                          f"says {reads} -> {outputs}")
            elif step.kind == "if":
                if len(reads) != 1 or step.then_branch is None or step.else_branch is None:
                    raise _refuse(bundle, f"program: {here} needs one condition and two branches")
                for label, sub in (("then", step.then_branch), ("else", step.else_branch)):
                    block(sub, available, depth + 1, f"{here} {label}")
                    if len(sub.outputs) != len(outputs):
                        raise _refuse(bundle, f"program: {here}: its {label} branch returns {len(sub.outputs)} values for {len(outputs)}")
            elif step.kind == "loop":
                body, scans = step.body, step.scans
                if len(reads) < 2 or body is None or not isinstance(scans, list):
                    raise _refuse(bundle, f"program: {here} needs a trip count, a condition (or \"\") and a body")
                carried = len(reads) - 2
                if any(not (s.dtype in ITEM_BYTES and _is_int_list(s.shape)) for s in scans):
                    raise _refuse(bundle, f"program: {here}: scan element types {scans!r} are not valid")
                block(body, available, depth + 1, f"{here} body")
                if len(body.inputs) != 2 + carried or len(body.outputs) != 1 + carried + len(scans) or len(outputs) != carried + len(scans):
                    raise _refuse(bundle, f"program: {here}: {carried} carried values and {len(scans)} scan outputs do not fit its body "
                                          f"({len(body.inputs)} inputs, {len(body.outputs)} outputs) and {len(outputs)} outputs")
            elif step.kind == "host":
                if program.format != PROGRAM_FORMAT_HOST or step.op not in RUNTIME_OPS or not isinstance(step.attributes, dict):
                    raise _refuse(bundle, f"program: {here}: op {step.op!r} is not one the runtime runs on the host "
                                          f"({', '.join(RUNTIME_OPS)}; program format {PROGRAM_FORMAT_HOST})")
                if not reads or not reads[0]:
                    raise _refuse(bundle, f"program: {here} reads no input")
            elif step.kind == "fail":
                if reads or not isinstance(step.message, str) or not step.message:
                    raise _refuse(bundle, f"program: {here} reads nothing and needs a message")
            else:
                raise _refuse(bundle, f"program: {here}: unknown step kind")
            available.update(n for n in outputs if n)
        missing = [n for n in names(b.outputs, f"{where} outputs") if n not in available]
        if missing:
            raise _refuse(bundle, f"program: {where} returns {missing}, which nothing computes")

    main = program.main
    block(main, {n for n in manifest.inputs}, 0, "main")
    if main.inputs or main.outputs != manifest.outputs:
        raise _refuse(bundle, f"program: the main block returns {main.outputs}, the model's outputs are {manifest.outputs}")


def check_boundary(bundle: Path, manifest: Manifest) -> None:
    """A boundary (format version 4): the model's inputs / outputs, each a flat tensor or a sequence / optional whose
    layout names flat tensors; flattened in order they must be exactly the manifest's inputs / outputs, so that every
    flat tensor belongs to one model value and the runtime's list <-> tensors mapping is total."""
    boundary = manifest.boundary
    if not isinstance(boundary.values, dict):
        raise _refuse(bundle, f"boundary: values {boundary.values!r} is not a mapping")
    for label, names, flat in (("inputs", boundary.inputs, manifest.inputs), ("outputs", boundary.outputs, manifest.outputs)):
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
            raise _refuse(bundle, f"boundary: {label} {names!r} is not a list of unique names")
        expanded = [t for name in names for t in layout_tensors(boundary.values.get(name, name))]
        if expanded != flat:
            raise _refuse(bundle, f"boundary: the model's {label} {names} hold the tensors {expanded}, the manifest's {label} are {flat}")
    stray = set(boundary.values) - set(boundary.inputs) - set(boundary.outputs)
    if stray:
        raise _refuse(bundle, f"boundary: values {sorted(stray)} are neither model inputs nor outputs")


def validate_bundle(bundle: Path, manifest: Manifest) -> None:
    """Every check above, in order; the first problem is an HccError naming it."""
    try:
        _validate(bundle, manifest)
    except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:  # a field of the wrong JSON type
        raise _refuse(bundle, f"malformed manifest ({type(exc).__name__}: {exc})") from None


def _validate(bundle: Path, manifest: Manifest) -> None:
    check_no_symlinks(bundle)
    tensors = check_tensors(bundle, manifest)
    check_weights(bundle, manifest, tensors)
    if manifest.program is not None:
        check_program(bundle, manifest, tensors)
    else:
        check_schedule(bundle, manifest, tensors)
    check_golden(bundle, manifest)
    if manifest.boundary is not None:
        check_boundary(bundle, manifest)
    for sg in manifest.subgraphs:
        for name in sg.inputs + sg.outputs:
            if name not in tensors:
                raise _refuse(bundle, f"subgraph {sg.id} names tensor {name!r}, which the manifest does not declare")
        for artifact in list(sg.artifacts) + ([sg.fallback] if sg.fallback else []):
            check_native(bundle, manifest, sg, artifact, tensors)
