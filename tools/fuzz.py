#!/usr/bin/env python
"""Fuzz hcc's user-facing surface: mutated models into `hcc compile`, mutated bundles into `hcc run`.

    python tools/fuzz.py [--count N] [--seed S] [--jobs J] [--workdir DIR] [--only models|bundles]

Four small models are built here (an MLP, a CNN, an elementwise/reduction chain, an attention head). Each case takes
one of them and applies random mutations, derived only from (--seed, case index) so that any case can be replayed:

- model bytes: flipped, zeroed, inserted or truncated protobuf bytes;
- model graph: edits through the onnx API (attribute values, dims, element types, initializer data, rewired or deleted
  nodes, unknown ops and domains, opset versions, odd names);
- bundle: edits of a compiled bundle's manifest.json (any leaf replaced, deleted or duplicated), half of them with the
  checksum resealed, plus file-level faults (a flipped byte in native code or weights, symbolic links).

Every case runs hcc's CLI in a child process with a time limit, and its outcome must be one of
- refused: a non-zero exit whose stderr is hcc's progress lines and warnings plus one final `hcc: error:` line;
- correct: a compiled model passes `hcc test` (the golden data onnxruntime made for the mutated model), or a bundle run
  gives the unmutated model's onnxruntime outputs within the bundle's own golden tolerance;
- inconclusive: `hcc test` exits 2 because its tolerance cannot tell the output from zero (flagged, not passed).
Anything else is a finding: a traceback, a death by signal, a hang, a mismatch, an edit of an unsealed manifest that
was accepted, or an error that is not one clean line. `make fuzz` runs a long campaign; the test suite runs a fixed
count (tests/tools/test_fuzz.py).
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx import helper as h

COMPILE_TIMEOUT_S = 240
RUN_TIMEOUT_S = 90
OK_VERDICTS = ("refused", "correct", "inconclusive")
# Lines hcc may print to stderr before its one error line: timed progress, warnings and notes.
_BENIGN_STDERR = re.compile(r"^(\[hcc\s|hcc: (warning|note):|\s)")


@dataclasses.dataclass(frozen=True)
class Case:
    index: int
    family: str  # "model-bytes" | "model-graph" | "bundle"
    base: str
    mutations: tuple[str, ...]


@dataclasses.dataclass
class Outcome:
    case: Case
    verdict: str
    detail: str
    path: str

    @property
    def ok(self) -> bool:
        return self.verdict in OK_VERDICTS


# -- base models ------------------------------------------------------------------------------------------------
def _model(name: str, nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = h.make_graph(nodes, name, inputs, outputs, inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)], ir_version=8)
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def _weights(rng: np.random.Generator, name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array((rng.standard_normal(shape) * 0.5).astype(np.float32), name)


def _value(name: str, shape, elem=TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return h.make_tensor_value_info(name, elem, shape)


def base_models() -> dict[str, onnx.ModelProto]:
    """Small models covering the common op families; deterministic."""
    rng = np.random.default_rng(7)
    mlp = _model("mlp", [
        h.make_node("Gemm", ["x", "fc1.w", "fc1.b"], ["h1"], name="fc1/Gemm", transB=1),
        h.make_node("Relu", ["h1"], ["a1"], name="fc1/Relu"),
        h.make_node("MatMul", ["a1", "fc2.w"], ["h2"], name="fc2/MatMul"),
        h.make_node("Softmax", ["h2"], ["probs"], name="softmax", axis=-1),
    ], [_value("x", [2, 16])], [_value("probs", [2, 10])],
        [_weights(rng, "fc1.w", 32, 16), _weights(rng, "fc1.b", 32), _weights(rng, "fc2.w", 32, 10)])
    cnn = _model("cnn", [
        h.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], name="conv", pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        h.make_node("Relu", ["c"], ["r"], name="relu"),
        h.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        h.make_node("Conv", ["p", "dw.w"], ["d"], name="dwconv", kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=4),
        h.make_node("GlobalAveragePool", ["d"], ["g"], name="gap"),
        h.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        h.make_node("Gemm", ["f", "fc.w"], ["logits"], name="fc", transB=1),
    ], [_value("x", [1, 3, 8, 8])], [_value("logits", [1, 5])],
        [_weights(rng, "conv.w", 4, 3, 3, 3), _weights(rng, "conv.b", 4), _weights(rng, "dw.w", 4, 1, 3, 3), _weights(rng, "fc.w", 5, 4)])
    elementwise = _model("elementwise", [
        h.make_node("Mul", ["x", "scale"], ["m"], name="scale"),
        h.make_node("Add", ["m", "bias"], ["a"], name="bias"),
        h.make_node("Clip", ["a", "lo", "hi"], ["c"], name="clip"),
        h.make_node("ReduceMean", ["c"], ["mean"], name="mean", axes=[1], keepdims=1),
        h.make_node("Sub", ["c", "mean"], ["centred"], name="centre"),
        h.make_node("Tanh", ["centred"], ["t"], name="tanh"),
        h.make_node("Max", ["t", "x"], ["y"], name="max"),
    ], [_value("x", [3, 4])], [_value("y", [3, 4])],
        [_weights(rng, "scale", 4), _weights(rng, "bias", 1, 4), numpy_helper.from_array(np.float32(-1.0), "lo"),
         numpy_helper.from_array(np.float32(2.0), "hi")])
    attention = _model("attention", [
        h.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
        h.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
        h.make_node("Transpose", ["k"], ["kt"], name="kt", perm=[0, 2, 1]),
        h.make_node("MatMul", ["q", "kt"], ["s"], name="scores"),
        h.make_node("Div", ["s", "sqrt_d"], ["sd"], name="scale"),
        h.make_node("Softmax", ["sd"], ["p"], name="softmax", axis=-1),
        h.make_node("MatMul", ["p", "x"], ["o"], name="context"),
        h.make_node("Reshape", ["o", "shape"], ["y"], name="reshape"),
    ], [_value("x", [1, 4, 8])], [_value("y", [1, 32])],
        [_weights(rng, "wq", 8, 8), _weights(rng, "wk", 8, 8), numpy_helper.from_array(np.float32(np.sqrt(8.0)), "sqrt_d"),
         numpy_helper.from_array(np.array([1, 32], np.int64), "shape")])
    return {"mlp": mlp, "cnn": cnn, "elementwise": elementwise, "attention": attention}


# -- model mutations --------------------------------------------------------------------------------------------
_INTS = [-(1 << 40), -2, -1, 0, 1, 2, 3, 5, 64, 1 << 31, 1 << 40]
_FLOATS = [float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e-30, 0.5, 3.0, 1e30]
_OPS = ["Relu", "Add", "MatMul", "Conv", "Softmax", "Identity", "Transpose", "Reshape", "Gather", "LSTM", "Resize", "Concat", "Split",
        "Loop", "QuantizeLinear", "NoSuchOp"]
_ELEM_TYPES = [0, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, TensorProto.INT64, TensorProto.BOOL, TensorProto.FLOAT16,
               TensorProto.DOUBLE, TensorProto.BFLOAT16, TensorProto.STRING, TensorProto.COMPLEX64, 99]
_NAMES = ["", "a/b:c", "\u2603 snow", "../../etc/passwd", "x" * 5000, "with space", "x"]


def _all_names(graph: onnx.GraphProto) -> list[str]:
    names = {i.name for i in graph.input} | {o.name for o in graph.output} | {t.name for t in graph.initializer}
    for node in graph.node:
        names.update(node.input)
        names.update(node.output)
    return sorted(n for n in names if n)


def _random_attribute(model: onnx.ModelProto, rnd: random.Random):
    """(node, attribute) of a random node that has attributes, or None when no node has any."""
    nodes = [n for n in model.graph.node if n.attribute]
    if not nodes:
        return None
    node = rnd.choice(nodes)
    return node, rnd.choice(list(node.attribute))


def _mutate_attribute(model: onnx.ModelProto, rnd: random.Random) -> str:
    picked = _random_attribute(model, rnd)
    if picked is None:
        return _add_attribute(model, rnd)
    node, attr = picked
    if attr.type == onnx.AttributeProto.INT:
        attr.i = rnd.choice(_INTS)
        return f"{node.name}.{attr.name} = {attr.i}"
    if attr.type == onnx.AttributeProto.INTS:
        values = [rnd.choice(_INTS) if rnd.random() < 0.5 else rnd.choice([0, 1, 2]) for _ in range(rnd.choice([0, 1, 2, 3, 4, 8]))]
        del attr.ints[:]
        attr.ints.extend(values)
        return f"{node.name}.{attr.name} = {values}"
    if attr.type == onnx.AttributeProto.FLOAT:
        attr.f = rnd.choice(_FLOATS)
        return f"{node.name}.{attr.name} = {attr.f}"
    return _remove_attribute(node, attr)


def _remove_attribute(node: onnx.NodeProto, attr: onnx.AttributeProto) -> str:
    node.attribute.remove(attr)
    return f"{node.name}: attribute {attr.name} removed"


def _drop_attribute(model: onnx.ModelProto, rnd: random.Random) -> str:
    picked = _random_attribute(model, rnd)
    return _drop_node(model, rnd) if picked is None else _remove_attribute(*picked)


def _add_attribute(model: onnx.ModelProto, rnd: random.Random) -> str:
    node = rnd.choice(list(model.graph.node))
    name = rnd.choice(["bogus", "axis", "perm", "kernel_shape", "group", "transA", "alpha"])
    if any(a.name == name for a in node.attribute):
        return _mutate_attribute(model, rnd)
    node.attribute.append(h.make_attribute(name, rnd.choice(_INTS[1:-1])))
    return f"{node.name}: attribute {name} added"


def _mutate_dim(model: onnx.ModelProto, rnd: random.Random) -> str:
    values = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    value = rnd.choice(values)
    dims = value.type.tensor_type.shape.dim
    if not dims or rnd.random() < 0.1:
        value.type.tensor_type.ClearField("shape")
        return f"{value.name}: shape cleared"
    dim = rnd.choice(list(dims))
    if rnd.random() < 0.25:
        dim.dim_param = rnd.choice(["N", "", "batch size"])
        return f"{value.name}: dim -> {dim.dim_param!r}"
    dim.dim_value = rnd.choice(_INTS)
    return f"{value.name}: dim -> {dim.dim_value}"


def _mutate_elem_type(model: onnx.ModelProto, rnd: random.Random) -> str:
    if rnd.random() < 0.5:
        value = rnd.choice(list(model.graph.input) + list(model.graph.output))
        value.type.tensor_type.elem_type = rnd.choice(_ELEM_TYPES)
        return f"{value.name}: elem_type -> {value.type.tensor_type.elem_type}"
    init = rnd.choice(list(model.graph.initializer))
    init.data_type = rnd.choice(_ELEM_TYPES)
    return f"initializer {init.name}: data_type -> {init.data_type}"


def _mutate_initializer(model: onnx.ModelProto, rnd: random.Random) -> str:
    init = rnd.choice(list(model.graph.initializer))
    choice = rnd.randrange(5)
    if choice == 0:
        dims = [rnd.choice([0, 1, 2, 3, 7, 1 << 40, -1]) for _ in range(rnd.choice([0, 1, 2, 3]))]
        del init.dims[:]
        init.dims.extend(dims)
        return f"initializer {init.name}: dims -> {dims}"
    if choice == 1 and init.raw_data:
        init.raw_data = init.raw_data[: rnd.randrange(len(init.raw_data))]
        return f"initializer {init.name}: raw_data truncated to {len(init.raw_data)} bytes"
    if choice == 2 and init.data_type == TensorProto.FLOAT:
        array = numpy_helper.to_array(init).copy()
        flat = array.reshape(-1)
        if flat.size:
            flat[rnd.randrange(flat.size)] = rnd.choice(_FLOATS)
        init.CopyFrom(numpy_helper.from_array(array, init.name))
        return f"initializer {init.name}: one value -> special"
    if choice == 3:
        init.data_location = TensorProto.EXTERNAL
        init.external_data.add(key="location", value=rnd.choice(["missing.bin", "../../etc/passwd", "/dev/zero"]))
        return f"initializer {init.name}: external data"
    model.graph.initializer.remove(init)
    return f"initializer {init.name} removed"


def _rewire(model: onnx.ModelProto, rnd: random.Random) -> str:
    node = rnd.choice(list(model.graph.node))
    names = _all_names(model.graph) + ["", "nowhere"]
    if node.input and rnd.random() < 0.7:
        slot = rnd.randrange(len(node.input))
        node.input[slot] = rnd.choice(names)
        return f"{node.name}: input {slot} -> {node.input[slot]!r}"
    if rnd.random() < 0.5:
        node.input.append(rnd.choice(names))
        return f"{node.name}: extra input {node.input[-1]!r}"
    node.output[0] = rnd.choice(names)
    return f"{node.name}: output -> {node.output[0]!r}"


def _drop_node(model: onnx.ModelProto, rnd: random.Random) -> str:
    node = rnd.choice(list(model.graph.node))
    model.graph.node.remove(node)
    return f"node {node.name} removed"


def _swap_op(model: onnx.ModelProto, rnd: random.Random) -> str:
    node = rnd.choice(list(model.graph.node))
    node.op_type = rnd.choice(_OPS)
    return f"{node.name}: op -> {node.op_type}"


def _mutate_opset(model: onnx.ModelProto, rnd: random.Random) -> str:
    if rnd.random() < 0.3:
        node = rnd.choice(list(model.graph.node))
        node.domain = rnd.choice(["com.example", "ai.onnx.ml", "com.microsoft"])
        return f"{node.name}: domain -> {node.domain}"
    if rnd.random() < 0.2:
        model.ir_version = rnd.choice([0, 1, 3, 99])
        return f"ir_version -> {model.ir_version}"
    model.opset_import[0].version = rnd.choice([1, 6, 9, 11, 13, 21, 23, 27, 99, 10000])
    return f"opset -> {model.opset_import[0].version}"


def _mutate_names(model: onnx.ModelProto, rnd: random.Random) -> str:
    if rnd.random() < 0.5:
        node = rnd.choice(list(model.graph.node))
        node.name = rnd.choice(_NAMES)
        return f"node renamed {node.name[:20]!r}"
    if rnd.random() < 0.5:
        model.graph.output.append(model.graph.output[0])
        return "graph output duplicated"
    if len(model.graph.input) and rnd.random() < 0.5:
        model.graph.input.remove(model.graph.input[0])
        return "graph input removed"
    new = rnd.choice(_NAMES[1:])
    old = model.graph.input[0].name if model.graph.input else "x"
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
    for value in model.graph.input:
        if value.name == old:
            value.name = new
    return f"input renamed {new[:20]!r}"


GRAPH_MUTATIONS = [_mutate_attribute, _drop_attribute, _add_attribute, _mutate_dim, _mutate_elem_type, _mutate_initializer,
                   _rewire, _drop_node, _swap_op, _mutate_opset, _mutate_names]


def mutate_graph(model: onnx.ModelProto, rnd: random.Random) -> tuple[bytes, tuple[str, ...]]:
    mutant = onnx.ModelProto()
    mutant.CopyFrom(model)
    if rnd.random() < 0.5:
        mutant.graph.ClearField("value_info")  # let hcc infer shapes itself
    done = []
    for _ in range(rnd.choice([1, 1, 1, 2, 3])):
        if not mutant.graph.node:
            break
        done.append(rnd.choice(GRAPH_MUTATIONS)(mutant, rnd))
    return mutant.SerializeToString(), tuple(done)


def mutate_bytes(data: bytes, rnd: random.Random) -> tuple[bytes, tuple[str, ...]]:
    blob = bytearray(data)
    choice = rnd.randrange(4)
    if choice == 0:
        spots = [rnd.randrange(len(blob)) for _ in range(rnd.choice([1, 2, 4, 8, 32]))]
        for at in spots:
            blob[at] ^= 1 << rnd.randrange(8)
        return bytes(blob), (f"{len(spots)} bit flips",)
    if choice == 1:
        at = rnd.randrange(len(blob))
        blob[at:at + 16] = bytes(min(16, len(blob) - at))
        return bytes(blob), (f"16 bytes zeroed at {at}",)
    if choice == 2:
        at = rnd.randrange(len(blob))
        blob[at:at] = rnd.randbytes(rnd.choice([1, 3, 17]))
        return bytes(blob), (f"bytes inserted at {at}",)
    cut = rnd.randrange(len(blob))
    return bytes(blob[:cut]), (f"truncated to {cut} bytes",)


# -- bundle mutations -------------------------------------------------------------------------------------------
_JSON_VALUES = [0, -1, 1, 2, 1 << 31, 1 << 62, -(1 << 62), 1.5, float("nan"), 1e308, "", "abort", "../../etc/passwd",
                "/etc/passwd", "x", "float64", "cpu-so", None, True, [], {}, [1, 2], [-1], [1 << 40, 1 << 40]]


def _leaves(node, path=()):
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from _leaves(value, path + (key,))
    elif isinstance(node, list):
        yield path, node
        for i, value in enumerate(node):
            yield from _leaves(value, path + (i,))
    else:
        yield path, node


def _strings(node) -> list[str]:
    return sorted({v for _p, v in _leaves(node) if isinstance(v, str) and len(v) < 200})


def mutate_manifest(manifest: dict, rnd: random.Random) -> str:
    paths = [p for p, _v in _leaves(manifest) if p]
    path = rnd.choice(paths)
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    key, old = path[-1], parent[path[-1]]
    where = "/".join(map(str, path))
    choice = rnd.randrange(6)
    if choice == 0:
        del parent[key]
        return f"{where} deleted"
    if choice == 1 and isinstance(parent, list):
        parent.insert(key, parent[key])
        return f"{where} duplicated"
    if choice == 2 and isinstance(old, int) and not isinstance(old, bool):
        parent[key] = old + rnd.choice([-1, 1, 4, -4])
        return f"{where}: {old} -> {parent[key]}"
    if choice == 3 and isinstance(old, str):
        parent[key] = rnd.choice(_strings(manifest))
        return f"{where}: {old[:30]!r} -> {parent[key][:30]!r}"
    if choice == 4:
        parent = manifest
        parent["unknown_field"] = rnd.choice(_JSON_VALUES)
        return "unknown top-level field"
    parent[key] = rnd.choice(_JSON_VALUES)
    return f"{where}: -> {parent[key]!r}"[:120]


def _reseal(bundle: Path) -> None:
    """What an attacker who edits the manifest does: recompute the manifest's checksum."""
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    (bundle / "manifest.sha256").write_text(f"{digest}  manifest.json\n")


def mutate_bundle(bundle: Path, rnd: random.Random) -> tuple[str, ...]:
    """Edit the bundle in place; returns what was done (the last entry says whether the manifest was resealed)."""
    if rnd.random() < 0.15:
        files = sorted(p for p in bundle.rglob("*") if p.is_file() and p.stat().st_size and p.name not in ("manifest.json", "manifest.sha256"))
        target = rnd.choice(files)
        if rnd.random() < 0.5:
            data = bytearray(target.read_bytes())
            data[rnd.randrange(len(data))] ^= 0x40
            target.write_bytes(bytes(data))
            return (f"byte flipped in {target.relative_to(bundle)}", "unsealed")
        target.unlink()
        target.symlink_to(rnd.choice(["/etc/passwd", "/dev/zero", str(files[0])]))
        return (f"{target.relative_to(bundle)} -> symlink", "unsealed")
    manifest = json.loads((bundle / "manifest.json").read_text())
    done = [mutate_manifest(manifest, rnd) for _ in range(rnd.choice([1, 1, 1, 2, 3]))]
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=1))
    if rnd.random() < 0.6:
        _reseal(bundle)
        return (*done, "resealed")
    return (*done, "unsealed")


# -- running and judging ----------------------------------------------------------------------------------------
def hcc_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "hcc.cli", *args]


def classify_failure(proc: subprocess.CompletedProcess | None, what: str) -> tuple[str, str]:
    """The verdict for a command that did not succeed: `refused` only for one clean `hcc: error:` line."""
    if proc is None:
        return "hang", f"{what} did not finish in time"
    if proc.returncode < 0:
        return "crash", f"{what} died of signal {-proc.returncode}: {proc.stderr.strip()[-300:]}"
    if "Traceback (most recent call last)" in proc.stderr:
        return "traceback", proc.stderr.strip()[-600:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("hcc: error:")]
    # the error line may be followed by indented details (a list of unsupported ops, say), nothing else
    tail = lines[errors[-1] + 1:] if errors else []
    noise = [line for line in lines[:errors[0] if errors else None] if not _BENIGN_STDERR.match(line)]
    if len(errors) != 1 or noise or any(not line.startswith(" ") for line in tail):
        return "untidy-error", f"{what} exit {proc.returncode}, stderr: {proc.stderr.strip()[-600:]}"
    return "refused", lines[errors[0]]


def _run(command: list[str], timeout: float, tmpdir: Path | None = None) -> subprocess.CompletedProcess | None:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    if tmpdir is not None:  # a failing MLIR pass's reproducer (hcc-repro-*) stays with its case, not in /tmp
        env["TMPDIR"] = str(tmpdir)
    try:
        return subprocess.run(command, capture_output=True, text=True, errors="replace", timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None


def judge_model(case_dir: Path) -> tuple[str, str]:
    bundle = case_dir / "bundle"
    proc = _run(hcc_command("compile", str(case_dir / "model.onnx"), "-o", str(bundle)), COMPILE_TIMEOUT_S, tmpdir=case_dir)
    if proc is None or proc.returncode != 0:
        return classify_failure(proc, "hcc compile")
    test = _run(hcc_command("test", str(bundle)), RUN_TIMEOUT_S)
    if test is not None and test.returncode == 0:
        return "correct", "compiled, hcc test passed"
    if test is not None and test.returncode == 2 and "INCONCLUSIVE" in test.stdout + test.stderr:
        return "inconclusive", test.stdout.strip()[-300:]
    if test is not None and test.returncode == 1 and "FAIL" in test.stdout:
        return "mismatch", test.stdout.strip()[-600:]
    return classify_failure(test, "hcc test")


@dataclasses.dataclass(frozen=True)
class BaseBundle:
    bundle: Path
    inputs: Path
    expected: dict[str, np.ndarray]
    rtol: float
    atol: float


def judge_bundle(case_dir: Path, base: BaseBundle, resealed: bool) -> tuple[str, str]:
    out = case_dir / "out.npz"
    proc = _run(hcc_command("run", str(case_dir / "bundle"), "--input", str(base.inputs), "-o", str(out)), RUN_TIMEOUT_S)
    if proc is None or proc.returncode != 0:
        return classify_failure(proc, "hcc run")
    if not resealed:
        return "accepted-unsealed", "an edited bundle whose checksums were not recomputed ran"
    with np.load(out) as got:
        for name, want in base.expected.items():
            if name not in got.files:
                return "mismatch", f"output {name!r} missing"
            have = got[name]
            if have.shape != want.shape or not np.allclose(have, want, rtol=base.rtol, atol=base.atol, equal_nan=True):
                return "mismatch", f"output {name!r}: {have.shape} vs {want.shape}, max diff " + (
                    f"{np.nanmax(np.abs(have.astype(np.float64) - want)):.3g}" if have.shape == want.shape else "n/a")
    return "correct", "ran with the expected outputs"


def build_bases(workdir: Path) -> tuple[dict[str, bytes], dict[str, BaseBundle]]:
    """Serialize the base models and compile each once (a failure here is a bug in hcc, reported as such)."""
    from hcc.artifacts.golden import run_onnxruntime

    models, bundles = {}, {}
    for name, model in base_models().items():
        path = workdir / "base" / f"{name}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, path)
        models[name] = path.read_bytes()
        bundle = workdir / "base" / f"{name}.bundle"
        proc = _run(hcc_command("compile", str(path), "-o", str(bundle)), COMPILE_TIMEOUT_S)
        if proc is None or proc.returncode != 0:
            raise RuntimeError(f"base model {name} does not compile: {classify_failure(proc, 'hcc compile')[1]}")
        manifest = json.loads((bundle / "manifest.json").read_text())
        with np.load(bundle / "golden" / "golden.npz") as golden:
            feeds = {k.split(":", 1)[1]: golden[k] for k in golden.files if k.startswith("input:")}
        inputs = workdir / "base" / f"{name}.inputs.npz"
        np.savez(inputs, **feeds)
        bundles[name] = BaseBundle(bundle, inputs, run_onnxruntime(str(path), feeds), manifest["golden"]["rtol"], manifest["golden"]["atol"])
    return models, bundles


def plan_cases(count: int, seed: int, only: str | None) -> list[tuple[Case, random.Random]]:
    families = {"models": ["model-bytes", "model-graph", "model-graph"], "bundles": ["bundle"]}
    pool = families[only] if only else families["models"] + ["bundle"] * 3
    cases = []
    for index in range(count):
        rnd = random.Random(f"{seed}:{index}")
        cases.append((Case(index, rnd.choice(pool), rnd.choice(sorted(base_models_names())), ()), rnd))
    return cases


def base_models_names() -> list[str]:
    return ["mlp", "cnn", "elementwise", "attention"]


def run_case(case: Case, rnd: random.Random, workdir: Path, models: dict[str, bytes], bases: dict[str, BaseBundle]) -> Outcome:
    case_dir = workdir / f"case{case.index:05d}"
    case_dir.mkdir(parents=True, exist_ok=True)
    if case.family == "bundle":
        shutil.copytree(bases[case.base].bundle, case_dir / "bundle", symlinks=True)
        mutations = mutate_bundle(case_dir / "bundle", rnd)
        verdict, detail = judge_bundle(case_dir, bases[case.base], resealed=mutations[-1] == "resealed")
    else:
        if case.family == "model-bytes":
            data, mutations = mutate_bytes(models[case.base], rnd)
        else:
            data, mutations = mutate_graph(onnx.load_from_string(models[case.base]), rnd)
        (case_dir / "model.onnx").write_bytes(data)
        verdict, detail = judge_model(case_dir)
    outcome = Outcome(dataclasses.replace(case, mutations=tuple(mutations)), verdict, detail, str(case_dir))
    if outcome.ok:
        shutil.rmtree(case_dir, ignore_errors=True)
    return outcome


def fuzz(count: int, seed: int, workdir: Path, jobs: int = 2, only: str | None = None, progress=None) -> list[Outcome]:
    models, bases = build_bases(workdir)
    outcomes = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(run_case, case, rnd, workdir, models, bases) for case, rnd in plan_cases(count, seed, only)]
        for future in concurrent.futures.as_completed(futures):
            outcomes.append(future.result())
            if progress:
                progress(outcomes[-1], len(outcomes), count)
    return sorted(outcomes, key=lambda o: o.case.index)


def summary(outcomes: list[Outcome]) -> str:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.verdict] = counts.get(o.verdict, 0) + 1
    lines = ["verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
    for o in outcomes:
        if not o.ok:
            lines.append(f"FINDING case {o.case.index} [{o.case.family} {o.case.base}] {o.verdict}: {'; '.join(o.case.mutations)}\n"
                         f"    {o.detail.replace(chr(10), chr(10) + '    ')}\n    kept in {o.path}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="cases to run (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="campaign seed; case i is replayed by (seed, i)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--only", choices=["models", "bundles"], help="only model or only bundle mutations")
    parser.add_argument("--workdir", help="where cases run; failing cases are kept there (default: a new temporary folder)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="hcc-fuzz-"))
    started = time.perf_counter()

    def progress(outcome: Outcome, done: int, total: int) -> None:
        mark = "." if outcome.ok else "F"
        print(mark, end="\n" if done % 50 == 0 or done == total else "", flush=True)

    outcomes = fuzz(args.count, args.seed, workdir, args.jobs, args.only, progress)
    print(summary(outcomes))
    print(f"{len(outcomes)} cases in {time.perf_counter() - started:.0f}s; workdir {workdir}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
