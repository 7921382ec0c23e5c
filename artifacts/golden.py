"""Reference outputs: the golden data stored in bundles and produced by `hcc golden`.

onnxruntime (CPU provider) is the reference hcc matches, NaN semantics included. Where it cannot run a model (an
op or type combination its kernels lack), `golden_outputs` falls back to onnx's reference evaluator
(`onnx.reference.ReferenceEvaluator`, the executable form of the ONNX spec), so that hcc can still compile and check
such a model; the outputs then say which reference made them (`source`), and when neither can run the model the
error gives both reasons. `run_onnxruntime` stays onnxruntime only: tests compare with it by name.

Golden files are npz archives with keys `input:<name>` and `output:<name>`; the same format is used inside bundles
and by `hcc golden`, so `hcc test --golden FILE` accepts either.
"""
from __future__ import annotations

import numpy as np
import onnx

from hcc.errors import HccError

DEFAULT_SEED = 0


def _integer_bound(model: onnx.ModelProto, name: str, shapes: dict[str, list[int]]) -> int:
    """Largest safe exclusive bound for an integer input: the size of the axis it indexes, if it feeds a Gather."""
    bound = 10
    for node in model.graph.node:
        if node.op_type == "Gather" and len(node.input) > 1 and node.input[1] == name:
            data_shape = shapes.get(node.input[0])
            if data_shape:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                bound = min(bound if bound != 10 else data_shape[axis], data_shape[axis])
    return max(bound, 1)


def random_inputs(model: onnx.ModelProto, inputs, seed: int = DEFAULT_SEED) -> dict[str, np.ndarray]:
    """Deterministic inputs: normal floats, valid indices for integer inputs that feed a Gather, 0/1 (nine in ten
    ones) for an integer input whose name says it is a mask (an attention mask of 1..9 turned a BERT encoder's
    additive mask into +inf and every golden output into NaN, a check that cannot fail), other integers positive,
    random bools."""
    rng = np.random.default_rng(seed)
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    for value in list(model.graph.value_info) + list(model.graph.input):
        shapes.setdefault(value.name, [d.dim_value for d in value.type.tensor_type.shape.dim])
    feeds = {}
    for info in inputs:
        dtype = np.dtype(info.dtype)
        if getattr(info, "element_type", None):  # a type numpy lacks, as its storage array (frontend/lowbit.py)
            from hcc.frontend.lowbit import random_storage

            feeds[info.name] = random_storage(info.element_type, info.shape, rng)
        elif dtype.kind == "f":
            feeds[info.name] = rng.standard_normal(info.shape).astype(dtype)
        elif dtype.kind in "iu":
            # Indices start at 0; other integers at 1, so that integer Div/Mod of random data never divides by zero.
            index = any(n.op_type == "Gather" and len(n.input) > 1 and n.input[1] == info.name for n in model.graph.node)
            if not index and "mask" in info.name.lower():
                feeds[info.name] = (rng.random(info.shape) < 0.9).astype(dtype)
                continue
            bound = _integer_bound(model, info.name, shapes)
            feeds[info.name] = rng.integers(0 if index else min(1, bound - 1), bound, size=info.shape).astype(dtype)
        elif dtype == np.bool_:  # an array even for a 0-d input (onnxruntime refuses a numpy.bool_ scalar)
            feeds[info.name] = np.asarray(rng.random(info.shape) < 0.5)
        else:
            raise HccError(f"cannot make random data for input '{info.name}' of dtype {info.dtype}; pass --input")
    return feeds


class GoldenOutputs(dict):
    """Reference outputs by output name (a plain dict to its users) and `source`: which reference computed them."""

    def __init__(self, outputs: dict[str, np.ndarray], source: str):
        super().__init__(outputs)
        self.source = source


def onnxruntime_int8_saturates() -> bool:
    """Whether onnxruntime's x86 u8 x s8 kernels add pairs of 8-bit products into int16 with saturation on this CPU
    (vpmaddubsw: AVX2 or AVX-512F without VNNI or AMX-INT8; the "saturation issue" of onnxruntime's and OpenVINO's
    quantization guides). There its int8 results are not ONNX's exact int32 sums, which hcc computes on every host.
    Measured on an AMD EPYC with AVX2: MatMulInteger off by up to 17,908."""
    import platform

    from hcc.runtime.devices.cpu import host_cpu_flags

    return platform.machine() in ("x86_64", "AMD64") and not host_cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"}


def as_tensor(value) -> np.ndarray:
    """An output as hcc stores it: a ZipMap's sequence of maps (frontend/zipmap.py) as its [N, C] float32 score
    matrix, columns in the maps' key order (the labels' order); any other value as an array."""
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        return np.array([list(row.values()) for row in value], dtype=np.float32)
    return np.asarray(value)


def run_onnxruntime(model: onnx.ModelProto | str, feeds: dict[str, np.ndarray], threads: int = 1,
                    structured: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """onnxruntime's outputs as arrays; those named in `structured` (sequences, optionals) as it returns them."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # fatal only: a failure becomes hcc's one-line error, not onnxruntime's log too
    ort.set_default_logger_severity(4)  # the session-independent logger (model loading, graph resolution)
    source = model if isinstance(model, str) else model.SerializeToString()
    try:
        session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return {name: value if name in structured else as_tensor(value) for name, value in zip(names, session.run(names, feeds))}
    except Exception as exc:
        raise HccError(f"onnxruntime could not run the model to make golden outputs: {_first_line(exc)}") from None


def run_reference_evaluator(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                            structured: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Outputs of onnx's reference evaluator, with the element types the model declares (it computes some ops in
    float64); those named in `structured` (sequences, optionals) as it returns them."""
    from onnx.reference import ReferenceEvaluator

    results = ReferenceEvaluator(model).run(None, feeds)
    outputs = {}
    for value, result in zip(model.graph.output, results):
        if value.name in structured:
            outputs[value.name] = result
            continue
        array = as_tensor(result)
        elem = value.type.tensor_type.elem_type if value.type.HasField("tensor_type") else 0
        declared = onnx.helper.tensor_dtype_to_np_dtype(elem) if elem else array.dtype
        outputs[value.name] = array.astype(declared, copy=False)
    return outputs


def _flat_outputs(name: str, layout, value, out: dict[str, np.ndarray]) -> None:
    """A reference's sequence / optional output `value` into the bundle's flat tensors of `layout`."""
    if isinstance(layout, str):
        out[layout] = np.asarray(value)
    elif "optional" in layout:
        if (value is None) != (layout["optional"] is None):
            raise HccError(f"output '{name}': the reference gives {'no' if value is None else 'a'} value, the compiled model "
                           f"{'none' if layout['optional'] is None else 'one'}")
        if value is not None:
            _flat_outputs(name, layout["optional"], value, out)
    else:
        items = layout["sequence"]
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            got = f"a sequence of {len(value)}" if isinstance(value, (list, tuple)) else type(value).__name__
            raise HccError(f"output '{name}': the reference gives {got}, the compiled model a sequence of {len(items)}")
        for item, element in zip(items, value):
            _flat_outputs(name, item, element, out)


def _boundary_outputs(model: onnx.ModelProto | str, feeds: dict[str, np.ndarray], threads: int, boundary) -> GoldenOutputs:
    """golden_outputs of a model with sequence / optional inputs or outputs (frontend/boundary.py): the references run
    on the model's own values (lists, None), their outputs are split into the bundle's flat tensors."""
    from hcc.runtime.boundary import structure

    model_feeds = {name: structure(boundary.values.get(name, name), feeds) for name in boundary.inputs}
    structured = frozenset(name for name in boundary.outputs if name in boundary.values)
    reference = _reference_outputs(model, model_feeds, threads, structured)
    flat: dict[str, np.ndarray] = {}
    for name in boundary.outputs:
        _flat_outputs(name, boundary.values.get(name, name), reference[name], flat)
    return GoldenOutputs(flat, reference.source)


def golden_outputs(model: onnx.ModelProto | str, feeds: dict[str, np.ndarray], threads: int = 1,
                   element_types: dict[str, str] | None = None, boundary=None) -> GoldenOutputs:
    """onnxruntime's outputs; onnx.reference's where onnxruntime cannot run the model (its `source` says so).
    `model` may be a path: the compiler gives the file as the user wrote it, so that the golden data does not
    share hcc's own rewrites (BatchNormalization folding, opset conversion) with the code it checks.
    `element_types` (LoadedModel.element_types): inputs/outputs of types numpy lacks, given and returned as their
    storage arrays; the references run on the ml_dtypes arrays the model's types need (frontend/lowbit.py).
    `boundary` (LoadedModel.boundary): sequence / optional inputs and outputs, given and returned as flat tensors."""
    if element_types:
        from hcc.frontend.lowbit import stored_outputs, typed_feeds

        return stored_outputs(golden_outputs(model, typed_feeds(feeds, element_types), threads, boundary=boundary), element_types)
    if boundary is not None:
        return _boundary_outputs(model, feeds, threads, boundary)
    return _reference_outputs(model, feeds, threads)


def _reference_outputs(model: onnx.ModelProto | str, feeds: dict, threads: int, structured: frozenset[str] = frozenset()) -> GoldenOutputs:
    """onnxruntime's outputs, else onnx.reference's (see golden_outputs)."""
    import onnxruntime

    try:
        return GoldenOutputs(run_onnxruntime(model, feeds, threads, structured), f"onnxruntime {onnxruntime.__version__}")
    except HccError as ort_error:
        ort_reason = ort_error.message.split(": ", 1)[-1]
    try:
        outputs = run_reference_evaluator(onnx.load(model) if isinstance(model, str) else model, feeds, structured)
    except Exception as exc:
        raise HccError(f"no reference can run the model to make golden outputs: onnxruntime: {ort_reason}; "
                       f"onnx.reference: {type(exc).__name__}: {_first_line(exc)}") from None
    return GoldenOutputs(outputs, f"onnx.reference {onnx.__version__} (onnxruntime {onnxruntime.__version__} cannot run the model: {ort_reason})")


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def save_golden(path, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
    arrays = {f"input:{k}": v for k, v in inputs.items()}
    arrays.update({f"output:{k}": v for k, v in outputs.items()})
    with open(path, "wb") as f:
        np.savez(f, **arrays)
