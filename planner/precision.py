"""Mixed precision, first slice (issue 13): measured per-op sensitivity and a choice under an accuracy budget.

Why measured: an error bound derived from formulas is either loose (the FPGA's worst case lets wrong answers pass) or
wrong; so every number here comes from running the model with onnxruntime (CPU) after rewriting it so that ONE op
(or, to confirm a choice, the chosen set) computes at a lower precision, and comparing its outputs with fp32's.

Emulation, exact for the rounding of the op's inputs, fp32 accumulation and fp32 outputs:
  * bf16 / fp16: each float data input of the op (activations and weights; not the bias, which fp32-accumulating
    kernels add in fp32) goes through Cast(to=BFLOAT16 / FLOAT16) -> Cast(to=FLOAT) in front of the op. onnxruntime's
    CPU Casts round to nearest even (checked against numpy bit for bit; also with its graph optimizer on).
  * bf16x3 (GEMMs only: the CPU's split-bfloat16 kernel): each operand x becomes hi = bf16(x) and lo = bf16(x - hi),
    and the op becomes three copies of itself, op(hi, hi) + op(hi, lo) + op(lo, hi) (the bias in the first only), the
    three products the kernel sums; only the order of the fp32 sums differs from the kernel's.
  * int8: weights (initializers) are fake-quantized in numpy, symmetric per output channel (scale = max|w| / 127,
    round half to even, clip to +-127); each activation input gets QuantizeLinear -> DequantizeLinear per tensor with a
    scale calibrated on the calibration inputs (max|x|: uint8 with zero point 0 for a non-negative tensor, else
    symmetric int8).
Sessions run with the graph optimizer off (the reference too), so no fusion can undo or reorder the emulation.

The choice is greedy in FLOPs saved per unit of measured error, composes per-op errors conservatively, then confirms
with one end-to-end run of the chosen set (and widens the most sensitive op until it passes), then reports the error
on held-out inputs the pass never saw. `hcc compile --cpu-precision auto` uses it with bf16, bf16x3 and (AMX-INT8
hosts, GEMMs of a 2-D weight) int8 as the candidates, the CPU's AMX kernels (without AMX: bf16 on AVX512-BF16 and int8
on AVX512-VNNI, no bf16x3: runtime/devices/cpu.py cpu_low_precisions), ranked by CPU_KERNEL_SPEEDUP
(CPU_DOT_KERNEL_SPEEDUP without AMX); fp16 has no CPU kernel.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hcc.errors import HccError

if TYPE_CHECKING:
    from hcc.planner.fixed_precision import WidthPlan
    from hcc.planner.subgraph_precision import SubgraphPrecisionResult

PRECISIONS = ("bf16", "fp16", "int8", "bf16x3")
CANDIDATE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
# The ops a precision applies to where its kernels exist for some of the candidates only (else: every candidate).
PRECISION_OPS = {"bf16x3": ("Gemm", "MatMul")}
# Nominal compute-throughput factors against fp32, used only to rank candidates (FLOPs saved); not a latency claim.
# bf16x3: three bf16 tile products; its C harness measured 1.8-2.7x fp32 on 128-row GEMMs (bf16: 2.3-5x).
NOMINAL_SPEEDUP = {"fp32": 1.0, "bf16": 2.0, "fp16": 2.0, "int8": 4.0, "bf16x3": 1.5}
# The same ranking for what hcc's CPU kernels measured (--cpu-precision auto). int8 is not reliably faster than bf16
# in models (interleaved, 1 thread, all-int8 vs all-bf16: recsys 0.19 vs 0.16 ms, its K of 269 padded to 320;
# MLP b64 0.21 vs 0.22; its A is quantized on every call) though it is in a C harness (128x768x768 with cold caches:
# 0.144 vs 0.162 ms), so it ranks between bf16 and bf16x3: taken where bf16 does not fit and int8 does, or where it
# costs far less error than bf16. With the nominal 4x it displaced bf16 ops and BERT h768's auto ran 1.57x instead
# of 1.86x hcc fp32.
CPU_KERNEL_SPEEDUP = {"fp32": 1.0, "bf16": 2.0, "bf16x3": 1.5, "int8": 1.8}
# ... on a CPU without AMX, where bf16 runs on AVX512-BF16 dot products and int8 on AVX512-VNNI (no bf16x3). There int8
# is the faster one, also in models (AMD EPYC Zen 4, 1 thread, interleaved with hcc fp32: a C harness's GEMMs int8
# 2.2-3.5x, bf16 1.6-2.0x; auto ranked this way took int8 for some ops: MLP b64 2.21x instead of 1.78x, the
# recommender 1.77x instead of 1.60x, BERT h768 unchanged at 1.08x).
CPU_DOT_KERNEL_SPEEDUP = {"fp32": 1.0, "bf16": 1.9, "int8": 3.0}
# What the CPU backend compiles below fp32 (its AMX kernels' entries; bf16x3 GEMMs only): the candidates on every host
# with AMX bf16 tiles (--cpu-precision auto, the joint choice; without AMX, runtime/devices/cpu.py cpu_low_precisions) ...
CPU_CANDIDATES = ("bf16", "bf16x3")
CPU_LOW_PRECISIONS = CPU_CANDIDATES + ("int8",)  # ... and int8 GEMMs of a weight where the host has AMX-INT8 (auto only)
_CAST_TO = {"bf16": TensorProto.BFLOAT16, "fp16": TensorProto.FLOAT16}
_DATA_SLOTS = (0, 1)  # the operands of the product; a bias (slot 2) stays fp32
PLAN_FORMAT = "hcc-precision-plan"
# Calibration error is an in-sample estimate: on the test models, held-out errors of a plan packed to the full budget
# on 6 calibration inputs were up to 6x larger (int8 activations clipped by scales calibrated on fewer values; a top1
# flip of a row with a small margin). So the choice fills only this share of the budget, and for top1 it counts a
# row as agreeing only when the measured error cannot change its argmax.
DEFAULT_MARGIN = 0.5


@dataclass
class OutputError:
    """Error of one model output against fp32 over a set of inputs (worst case over the samples)."""

    max_abs: float
    max_rel: float  # max_abs / (max - min of the fp32 output over all samples)
    cosine: float  # smallest per-sample cosine similarity of the flattened output
    top1: float | None  # argmax agreement over the last axis; None unless classifier-like ([classes] or [batch, classes])
    # rows whose argmax cannot change under the measured error: fp32's top1 - top2 margin > 2 x the row's max_abs error
    top1_certain: float | None = None


def output_errors_from_json(data: dict | None) -> dict[str, OutputError] | None:
    """Per-output errors as a plan file stores them (None where the plan measured none)."""
    return None if data is None else {name: OutputError(**error) for name, error in data.items()}


def plan_fields_from_json(text: str, plan_format: str, what: str) -> dict:
    """A plan file's fields once its format tag is checked: every plan kind starts this way."""
    data = json.loads(text)
    if data.pop("format", None) != plan_format:
        raise HccError(f"not a {what} (format is not '{plan_format}')")
    return data


@dataclass
class ActQuant:
    """Per-tensor int8 fake-quantization of one activation, calibrated on the calibration inputs."""

    scale: float
    zero_point: int
    signed: bool  # int8 (symmetric) or uint8 (non-negative tensor)


@dataclass
class OpSensitivity:
    """One op's measured end-to-end error when it alone runs at each precision."""

    node: str  # node name (or op_type_index when unnamed)
    op_type: str
    index: int  # position in the graph's node list
    flops: int
    errors: dict[str, dict[str, OutputError]]  # precision -> output name -> error
    act_quant: dict[str, ActQuant] = field(default_factory=dict)  # activation input -> int8 parameters


@dataclass
class AccuracyBudget:
    """What the user allows against fp32, per output: `max_abs=1e-2`, `rel=1e-3`, `cosine=0.999`, `top1=0.99`."""

    max_abs: float | None = None
    rel: float | None = None
    cosine: float | None = None
    top1: float | None = None

    @classmethod
    def parse(cls, text: str | list[str]) -> AccuracyBudget:
        """Parse "key=value[,key=value]" (or a list of such strings); errors name the bad item."""
        items = [p.strip() for t in ([text] if isinstance(text, str) else text) for p in t.split(",") if p.strip()]
        budget = cls()
        aliases = {"max_abs": "max_abs", "abs": "max_abs", "rel": "rel", "max_rel": "rel", "cosine": "cosine", "top1": "top1"}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or key.strip() not in aliases:
                raise HccError(f"accuracy budget '{item}': expected max_abs=, rel=, cosine= or top1= with a number")
            try:
                number = float(value)
            except ValueError:
                raise HccError(f"accuracy budget '{item}': '{value}' is not a number") from None
            name = aliases[key.strip()]
            if not math.isfinite(number) or number < 0 or (name in ("cosine", "top1") and number > 1):
                raise HccError(f"accuracy budget '{item}': must be finite, >= 0 (and <= 1 for cosine and top1)")
            setattr(budget, name, number)
        if not budget.metrics():
            raise HccError("accuracy budget is empty: give at least one of max_abs=, rel=, cosine=, top1=")
        return budget

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def __str__(self) -> str:
        return ",".join(f"{k}={v:g}" for k, v in self.metrics().items())

    def cost(self, errors: dict[str, OutputError], scale: float = 1.0, certain: bool = False) -> float:
        """Error as a fraction of `scale` x the budget (worst metric, worst output): <= 1 is within it. `certain`
        counts as agreeing only the rows whose argmax the error cannot change (top1_certain)."""
        worst = 0.0
        for err in errors.values():
            pairs = []  # (error, allowed), both as "distance from fp32"
            top1 = err.top1_certain if certain and err.top1_certain is not None else err.top1
            if self.max_abs is not None:
                pairs.append((err.max_abs, self.max_abs))
            if self.rel is not None:
                pairs.append((err.max_rel, self.rel))
            if self.cosine is not None:
                pairs.append((1.0 - err.cosine, 1.0 - self.cosine))
            if self.top1 is not None and top1 is not None:
                pairs.append((1.0 - top1, 1.0 - self.top1))
            for value, allowed in pairs:
                allowed *= scale
                if not math.isfinite(value):
                    return math.inf
                value = max(value, 0.0)
                worst = max(worst, value / allowed if allowed > 0 else (math.inf if value > 0 else 0.0))
        return worst

    def violations(self, errors: dict[str, OutputError], scale: float = 1.0, certain: bool = False) -> list[str]:
        """The outputs and metrics over `scale` x the budget, as readable strings (empty when within it)."""
        found = []
        for name, err in errors.items():
            top1 = err.top1_certain if certain and err.top1_certain is not None else err.top1
            if self.max_abs is not None and not err.max_abs <= self.max_abs * scale:
                found.append(f"{name}: max_abs {err.max_abs:.3g} > {self.max_abs * scale:g}")
            if self.rel is not None and not err.max_rel <= self.rel * scale:
                found.append(f"{name}: rel {err.max_rel:.3g} > {self.rel * scale:g}")
            if self.cosine is not None and not 1.0 - err.cosine <= (1.0 - self.cosine) * scale:
                found.append(f"{name}: cosine {err.cosine:.6f} < {1.0 - (1.0 - self.cosine) * scale:g}")
            if self.top1 is not None and top1 is not None and not 1.0 - top1 <= (1.0 - self.top1) * scale:
                found.append(f"{name}: top1 {top1:.4f} < {1.0 - (1.0 - self.top1) * scale:g}")
        return found


@dataclass
class PrecisionChoice:
    """The precision chosen for one candidate op, with what it predicts to save and what it measured to cost."""

    node: str
    op_type: str
    precision: str  # fp32 | bf16 | fp16 | int8 | bf16x3
    flops: int
    flops_saved: float  # flops * (1 - 1 / nominal speed-up of the precision)
    budget_cost: float  # the op's own measured error at this precision, as a fraction of the budget
    time_saved_s: float | None = None  # predicted by the cost model (the compile's choices); None: not predicted


@dataclass
class PrecisionPlan:
    """A budgeted precision per op, the errors it was confirmed with (calibration) and verified on (held-out)."""

    budget: str
    margin: float  # share of the budget the calibration error may use (the rest is headroom for unseen inputs)
    choices: list[PrecisionChoice]
    predicted: dict[str, OutputError]  # the chosen ops' errors composed conservatively
    calibration: dict[str, OutputError]  # one end-to-end run, all chosen ops emulated together
    held_out: dict[str, OutputError] | None
    calibration_ok: bool
    held_out_ok: bool | None
    reverted: list[str]  # ops put back to fp32 because the confirming run exceeded the budget
    confirm_runs: int
    total_flops: int
    sensitivities: list[OpSensitivity]
    extended: list[str] = field(default_factory=list)  # node:precision added by measured growth (choose(extend=True))
    notes: list[str] = field(default_factory=list)
    # --gpu-precision auto: the precision of each GPU subgraph (planner/subgraph_precision.py), with the errors of the
    # whole plan (this per-op choice's ops on the CPU and the chosen subgraphs, emulated together)
    gpu: SubgraphPrecisionResult | None = None
    # `hcc plan --precision auto`: the ap_fixed width of each FPGA MAC layer (planner/fixed_precision.py)
    fpga: WidthPlan | None = None

    def assignment(self) -> dict[str, str]:
        return {c.node: c.precision for c in self.choices if c.precision != "fp32"}

    def to_json(self) -> str:
        return json.dumps({"format": PLAN_FORMAT, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PrecisionPlan:
        data = plan_fields_from_json(text, PLAN_FORMAT, "precision plan")
        outs = output_errors_from_json
        sens = [OpSensitivity(**{**s, "errors": {p: outs(e) for p, e in s["errors"].items()},
                                 "act_quant": {k: ActQuant(**q) for k, q in s["act_quant"].items()}})
                for s in data.pop("sensitivities")]
        gpu = data.pop("gpu", None)
        fpga = data.pop("fpga", None)
        if fpga is not None:
            from hcc.planner.fixed_precision import WidthPlan

            fpga = WidthPlan.from_json(json.dumps({"format": "hcc-fixed-widths", **fpga}))
        if gpu is not None:
            from hcc.planner.subgraph_precision import SubgraphChoice, SubgraphPrecisionResult

            gpu = SubgraphPrecisionResult(**{**gpu, "choices": [SubgraphChoice(**{**c, "errors": outs(c["errors"])}) for c in gpu["choices"]],
                                             "calibration": outs(gpu["calibration"]), "held_out": outs(gpu["held_out"])})
        return cls(**{**data, "choices": [PrecisionChoice(**c) for c in data["choices"]], "predicted": outs(data["predicted"]),
                      "calibration": outs(data["calibration"]), "held_out": outs(data["held_out"]), "sensitivities": sens, "gpu": gpu, "fpga": fpga})


# ---------------------------------------------------------------------------------------------------------------
# model helpers


def _as_model(model: onnx.ModelProto | str | os.PathLike) -> onnx.ModelProto:
    """A shape-inferred copy (shapes give the FLOPs and the activation dtypes)."""
    proto = onnx.load(os.fspath(model)) if not isinstance(model, onnx.ModelProto) else model
    return onnx.shape_inference.infer_shapes(proto)


def _as_samples(inputs: dict[str, np.ndarray] | list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    samples = [inputs] if isinstance(inputs, dict) else list(inputs)
    if not samples:
        raise HccError("no calibration inputs")
    return samples


def node_keys(model: onnx.ModelProto) -> list[str]:
    """A stable unique key per node: its name, or op_type_index for an unnamed or duplicate one."""
    names = {n.name for n in model.graph.node}
    keys, seen = [], set()
    for i, node in enumerate(model.graph.node):
        key = node.name if node.name and node.name not in seen else f"{node.op_type}_{i}"
        while key in seen or (key != node.name and key in names):  # a generated key that another node is named
            key += "_"
        seen.add(key)
        keys.append(key)
    return keys


def _value_types(model: onnx.ModelProto) -> dict[str, tuple[int, list[int | None]]]:
    """name -> (elem_type, shape with None for unknown dims), from inputs, value_info, outputs and initializers."""
    info = {}
    for value in list(model.graph.input) + list(model.graph.value_info) + list(model.graph.output):
        t = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] if t.HasField("shape") else None
        info[value.name] = (t.elem_type, dims)
    for init in model.graph.initializer:
        info[init.name] = (init.data_type, list(init.dims))
    return info


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def op_flops(node: onnx.NodeProto, types: dict[str, tuple[int, list[int | None]]]) -> int:
    """Multiply-adds x 2 of a Conv/ConvTranspose/Gemm/MatMul from inferred shapes (0 when a shape is unknown)."""
    shape = lambda name: types.get(name, (0, None))[1]  # noqa: E731
    known = lambda s: s is not None and all(isinstance(d, int) and d > 0 for d in s)  # noqa: E731
    out, a, b = shape(node.output[0]), shape(node.input[0]), shape(node.input[1])
    if node.op_type == "Conv" and known(out) and known(b):
        return 2 * math.prod(out) * math.prod(b[1:])
    if node.op_type == "ConvTranspose" and known(a) and known(b):
        return 2 * math.prod(a) * math.prod(b[1:])
    if node.op_type == "Gemm" and known(out) and known(a):
        return 2 * math.prod(out) * (a[0] if _attr(node, "transA", 0) else a[1])
    if node.op_type == "MatMul" and known(out) and known(a):
        return 2 * math.prod(out) * a[-1]
    return 0


def candidate_ops(model: onnx.ModelProto, ops: tuple[str, ...] = CANDIDATE_OPS) -> list[tuple[int, str, onnx.NodeProto]]:
    """(index, key, node) of every float32 op whose precision the pass may lower, in graph order."""
    types = _value_types(model)
    found = []
    for i, (key, node) in enumerate(zip(node_keys(model), model.graph.node)):
        if node.op_type in ops and node.domain in ("", "ai.onnx") and len(node.input) >= 2:
            if all(types.get(node.input[s], (0,))[0] == TensorProto.FLOAT for s in _DATA_SLOTS):
                found.append((i, key, node))
    return found


def _weight_axis(node: onnx.NodeProto, slot: int, rank: int) -> int | None:
    """The output-channel axis of a weight operand (None: quantize per tensor)."""
    if slot != 1 or rank < 1:
        return None
    if node.op_type == "Conv":
        return 0
    if node.op_type == "ConvTranspose":
        return 1 if rank > 1 else None
    if node.op_type == "Gemm":
        return (0 if _attr(node, "transB", 0) else 1) if rank == 2 else None
    return rank - 1 if rank >= 2 else None  # MatMul: B is [..., K, N]


def fake_quantize_weight(w: np.ndarray, axis: int | None) -> np.ndarray:
    """Symmetric int8 (+-127, round half to even) per output channel (or per tensor), back to float32."""
    w = np.asarray(w, dtype=np.float32)
    reduce = tuple(i for i in range(w.ndim) if i != axis) if axis is not None else None
    amax = np.max(np.abs(w), axis=reduce, keepdims=True) if w.size else np.zeros(1, np.float32)
    scale = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    return (np.clip(np.rint(w / scale), -127, 127) * scale).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# running and comparing


def run_model(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]], outputs: list[str] | None = None,
              threads: int = 1) -> list[dict[str, np.ndarray]]:
    """Run with onnxruntime's CPU provider, graph optimizer off (so nothing fuses away an emulated rounding)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = outputs or [o.name for o in session.get_outputs()]
    feed_names = {i.name for i in session.get_inputs()}
    return [dict(zip(names, session.run(names, {k: v for k, v in s.items() if k in feed_names}))) for s in samples]


def reference_outputs(model: onnx.ModelProto, samples: list[dict[str, np.ndarray]], label: str) -> list[dict[str, np.ndarray]]:
    """fp32 outputs, refused when not finite: every error metric against a NaN reference is meaningless (a BERT
    attention mask of random integers > 1 makes its additive mask +inf and every output NaN)."""
    outputs = run_model(model, samples)
    for i, out in enumerate(outputs):
        for name, value in out.items():
            if np.asarray(value).dtype.kind == "f" and not np.all(np.isfinite(value)):
                raise HccError(f"the fp32 model's output '{name}' is not finite on {label} input {i}: no error can be measured "
                               "against it", hint="give inputs in the model's valid range (e.g. an attention mask of 0/1)")
    return outputs


def _is_classifier(shape: tuple[int, ...]) -> bool:
    return 1 <= len(shape) <= 2 and shape[-1] >= 2


def compare(reference: list[dict[str, np.ndarray]], actual: list[dict[str, np.ndarray]]) -> dict[str, OutputError]:
    """Per float output: worst max_abs, max_rel, cosine and the top1 agreement over all samples (float64 math)."""
    errors = {}
    for name in reference[0]:
        if np.asarray(reference[0][name]).dtype.kind != "f":
            continue
        refs = [np.asarray(r[name], dtype=np.float64) for r in reference]
        acts = [np.asarray(a[name], dtype=np.float64) for a in actual]
        span = max(float(r.max()) for r in refs) - min(float(r.min()) for r in refs) if refs[0].size else 0.0
        max_abs, cosine, agree, certain, rows = 0.0, 1.0, 0, 0, 0
        for r, a in zip(refs, acts):
            diff = np.abs(a - r)
            worst = float(diff.max()) if diff.size else 0.0
            max_abs = math.inf if math.isnan(worst) else max(max_abs, worst)
            nr, na = float(np.linalg.norm(r)), float(np.linalg.norm(a))
            cos = 1.0 if nr == na == 0 else (float(np.dot(r.ravel(), a.ravel())) / (nr * na) if nr * na > 0 else 0.0)
            cosine = min(cosine, cos if math.isfinite(cos) else -1.0)
            if _is_classifier(r.shape):
                agree += int(np.sum(np.argmax(r, axis=-1) == np.argmax(a, axis=-1)))
                top2 = np.sort(r, axis=-1)[..., -2:]
                certain += int(np.sum(top2[..., 1] - top2[..., 0] > 2 * diff.max(axis=-1)))
                rows += int(np.prod(r.shape[:-1]))
        max_rel = max_abs / span if span > 0 else (0.0 if max_abs == 0 else math.inf)
        errors[name] = OutputError(max_abs, max_rel, min(cosine, 1.0), agree / rows if rows else None,
                                   certain / rows if rows else None)
    return errors


def calibrate_activations(model: onnx.ModelProto, candidates: list[tuple[int, str, onnx.NodeProto]],
                          samples: list[dict[str, np.ndarray]]) -> dict[str, ActQuant]:
    """int8 parameters of every non-constant operand of the candidates, from its range over the calibration inputs."""
    constants = {i.name for i in model.graph.initializer}
    tensors = sorted({n.input[s] for _, _, n in candidates for s in _DATA_SLOTS if n.input[s] not in constants})
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in existing:
            probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    runs = run_model(probe, samples, outputs=tensors) if tensors else []
    params = {}
    for name in tensors:
        lo = min(float(np.min(r[name])) for r in runs)
        hi = max(float(np.max(r[name])) for r in runs)
        signed = lo < 0
        amax = max(abs(lo), abs(hi))
        scale = amax / (127.0 if signed else 255.0) if amax > 0 and math.isfinite(amax) else 1.0
        params[name] = ActQuant(float(np.float32(scale)), 0, signed)
    return params


# ---------------------------------------------------------------------------------------------------------------
# emulation: rewrite the model so that the assigned ops see their operands at the assigned precision


def _rewrite_operand(node: onnx.NodeProto, key: str, slot: int, precision: str, inits: dict[str, np.ndarray],
                     act_quant: dict[str, ActQuant]) -> tuple[str, list[onnx.NodeProto], list[onnx.TensorProto]]:
    """The name the op reads instead of its operand `slot`, with the nodes and initializers that compute it."""
    name = node.input[slot]
    tag = f"{name}__hcc_{precision}_{key}_{slot}"
    if precision in _CAST_TO:
        low = helper.make_node("Cast", [name], [tag + "_low"], to=_CAST_TO[precision], name=tag + "_cast_low")
        back = helper.make_node("Cast", [tag + "_low"], [tag], to=TensorProto.FLOAT, name=tag + "_cast_back")
        return tag, [low, back], []
    if precision != "int8":
        raise HccError(f"unknown precision '{precision}' for node '{key}' (expected one of {', '.join(PRECISIONS)})")
    if name in inits:  # a weight: per-channel symmetric fake-quantization, folded into a new initializer
        w = inits[name]
        return tag, [], [numpy_helper.from_array(fake_quantize_weight(w, _weight_axis(node, slot, w.ndim)), tag)]
    q = act_quant.get(name)
    if q is None:
        raise HccError(f"no int8 calibration for '{name}', an input of node '{key}'")
    zp_type = TensorProto.INT8 if q.signed else TensorProto.UINT8
    scale = numpy_helper.from_array(np.array(q.scale, dtype=np.float32), tag + "_scale")
    zero = helper.make_tensor(tag + "_zp", zp_type, [], [q.zero_point])
    qnode = helper.make_node("QuantizeLinear", [name, scale.name, zero.name], [tag + "_q"], name=tag + "_quantize")
    dnode = helper.make_node("DequantizeLinear", [tag + "_q", scale.name, zero.name], [tag], name=tag + "_dequantize")
    return tag, [qnode, dnode], [scale, zero]


def _split_bf16(name: str, tag: str) -> tuple[str, str, list[onnx.NodeProto]]:
    """hi = bf16(x), lo = bf16(x - hi), both as float tensors, with the nodes that compute them."""
    def rounded(source: str, out: str) -> list[onnx.NodeProto]:
        return [helper.make_node("Cast", [source], [out + "_low"], to=TensorProto.BFLOAT16, name=out + "_cast_low"),
                helper.make_node("Cast", [out + "_low"], [out], to=TensorProto.FLOAT, name=out + "_cast_back")]
    hi, rest, lo = tag + "_hi", tag + "_rest", tag + "_lo"
    return hi, lo, rounded(name, hi) + [helper.make_node("Sub", [name, hi], [rest], name=rest)] + rounded(rest, lo)


def _split_products(node: onnx.NodeProto, key: str) -> list[onnx.NodeProto]:
    """bf16x3 emulation: the op as op(hi, hi) + op(hi, lo) + op(lo, hi) of its split operands (bias in the first)."""
    halves = [_split_bf16(node.input[s], f"{node.input[s]}__hcc_bf16x3_{key}_{s}") for s in _DATA_SLOTS]
    nodes = [n for _, _, made in halves for n in made]
    (a_hi, a_lo, _), (b_hi, b_lo, _) = halves
    parts = []
    for number, (a, b) in enumerate(((a_hi, b_hi), (a_hi, b_lo), (a_lo, b_hi))):
        part = onnx.NodeProto.FromString(node.SerializeToString())
        part.input[0], part.input[1] = a, b
        if number:
            del part.input[2:]  # the bias (Gemm's C, Conv's B) once
        part.name = f"{node.name or key}__hcc_bf16x3_{number}"
        del part.output[:]
        part.output.append(f"{part.name}_out")
        parts.append(part)
    partial = f"{node.name or key}__hcc_bf16x3_sum"
    nodes += parts
    nodes.append(helper.make_node("Add", [parts[0].output[0], parts[1].output[0]], [partial], name=partial))
    nodes.append(helper.make_node("Add", [partial, parts[2].output[0]], [node.output[0]], name=partial + "_2"))
    return nodes


def emulate(model: onnx.ModelProto, assignment: dict[str, str], act_quant: dict[str, ActQuant]) -> onnx.ModelProto:
    """A copy of `model` in which each node of `assignment` (key -> precision) reads rounded operands."""
    unknown = sorted(set(assignment) - set(node_keys(model)))
    if unknown:
        raise HccError(f"precision assignment names nodes the model lacks: {', '.join(unknown)}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    keys = node_keys(model)
    operands = {n.input[s] for k, n in zip(keys, model.graph.node) if k in assignment for s in _DATA_SLOTS}
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer if i.name in operands}
    nodes = []
    for key, node in zip(keys, model.graph.node):
        precision = assignment.get(key, "fp32")
        if precision == "bf16x3":
            nodes.extend(_split_products(node, key))
            continue
        if precision != "fp32":
            node = onnx.NodeProto.FromString(node.SerializeToString())
            for slot in _DATA_SLOTS:
                new_name, extra_nodes, extra_inits = _rewrite_operand(node, key, slot, precision, inits, act_quant)
                node.input[slot] = new_name
                nodes.extend(extra_nodes)
                out.graph.initializer.extend(extra_inits)
        nodes.append(node)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


# ---------------------------------------------------------------------------------------------------------------
# sensitivity, composition, choice


def cpu_kernel_applies(model: onnx.ModelProto, node: onnx.NodeProto, precision: str) -> bool:
    """Whether the CPU backend has a kernel for `node` at `precision`: bf16 for every candidate, bf16x3 for GEMMs,
    int8 for GEMMs whose B is a 2-D weight (quantized per column once; A per tensor with the calibrated step)."""
    if precision == "int8":
        weights = {i.name: i for i in model.graph.initializer}
        return node.op_type in PRECISION_OPS["bf16x3"] and len(weights.get(node.input[1], onnx.TensorProto()).dims) == 2
    return node.op_type in PRECISION_OPS.get(precision, CANDIDATE_OPS)


def measure_sensitivity(model: onnx.ModelProto | str | os.PathLike, calibration: dict | list[dict],
                        precisions: tuple[str, ...] = PRECISIONS, ops: tuple[str, ...] = CANDIDATE_OPS,
                        progress=None, applies=None) -> list[OpSensitivity]:
    """Per candidate op and precision: the end-to-end error of the model with only that op lowered (one
    onnxruntime session per pair, every calibration sample), against the fp32 model on the same inputs.
    `applies(model, node, precision)`: which pairs to measure (default: PRECISION_OPS; the compiler passes
    cpu_kernel_applies, what its kernels take)."""
    proto = _as_model(model)
    samples = _as_samples(calibration)
    candidates = candidate_ops(proto, ops)
    types = _value_types(proto)
    act_quant = calibrate_activations(proto, candidates, samples) if "int8" in precisions else {}
    reference = reference_outputs(proto, samples, "calibration")
    result = []
    for index, key, node in candidates:
        errors = {p: compare(reference, run_model(emulate(proto, {key: p}, act_quant), samples)) for p in precisions
                  if (applies(proto, node, p) if applies is not None else node.op_type in PRECISION_OPS.get(p, ops))}
        own = {node.input[s]: act_quant[node.input[s]] for s in _DATA_SLOTS if node.input[s] in act_quant}
        result.append(OpSensitivity(key, node.op_type, index, op_flops(node, types), errors, own))
        if progress is not None:
            progress(result[-1], len(result), len(candidates))
    return result


def compose(errors: list[dict[str, OutputError]], outputs: list[str]) -> dict[str, OutputError]:
    """A conservative bound on several ops' errors together: max_abs and rel add (the triangle inequality, to first
    order); the angles add (sqrt(1 - cos) grows like |e| / |y|); top1 disagreements add (a union bound)."""
    composed = {}
    for name in outputs:
        per_op = [e[name] for e in errors]
        angle = sum(math.sqrt(max(0.0, 1.0 - e.cosine)) for e in per_op)
        union = lambda tops: None if any(t is None for t in tops) else max(0.0, 1.0 - sum(1.0 - t for t in tops))  # noqa: E731
        composed[name] = OutputError(sum(e.max_abs for e in per_op), sum(e.max_rel for e in per_op), 1.0 - angle * angle,
                                     union([e.top1 for e in per_op]), union([e.top1_certain for e in per_op]))
    return composed


def _outputs_of(sensitivities: list[OpSensitivity]) -> list[str]:
    first = next((e for s in sensitivities for e in s.errors.values()), {})
    return list(first)


def _worst_rel(errors: dict[str, OutputError]) -> float:
    return max((e.max_rel for e in errors.values()), default=0.0)


def _saving(flops: int, precision: str, speedup: dict[str, float]) -> float:
    return flops * (1.0 - 1.0 / speedup[precision])


def greedy_assignment(sensitivities: list[OpSensitivity], budget: AccuracyBudget, speedup: dict[str, float] = NOMINAL_SPEEDUP,
                      margin: float = DEFAULT_MARGIN) -> dict[str, str]:
    """Lower, one step at a time, the (op, precision) with the most FLOPs saved per unit of measured error (as a
    fraction of the budget) whose composed error still fits in `margin` x the budget; ties go to the earlier op."""
    outputs = _outputs_of(sensitivities)
    by_node = {s.node: s for s in sensitivities}
    chosen: dict[str, str] = {}
    while True:
        best = None
        for s in sensitivities:
            current = chosen.get(s.node, "fp32")
            current_cost = budget.cost(s.errors[current]) if current != "fp32" else 0.0
            for precision in s.errors:
                gain = _saving(s.flops, precision, speedup) - _saving(s.flops, current, speedup)
                if gain <= 0:
                    continue
                trial = {**chosen, s.node: precision}
                if budget.cost(compose([by_node[k].errors[p] for k, p in trial.items()], outputs), margin, True) > 1.0:
                    continue
                # ties (a budget metric no single op moves, e.g. top1) go to the smaller relative error
                key = (gain / max(budget.cost(s.errors[precision]) - current_cost, 1e-12), -_worst_rel(s.errors[precision]))
                if best is None or key > best[0]:
                    best = (key, s.node, precision)
        if best is None:
            return chosen
        chosen[best[1]] = best[2]


def _confirm(proto: onnx.ModelProto, sensitivities: list[OpSensitivity], assignment: dict[str, str], budget: AccuracyBudget,
             samples: list[dict], reference: list[dict], margin: float) -> tuple[dict[str, OutputError], list[str], int]:
    """One end-to-end run of the chosen set; while over `margin` x the budget, put the most sensitive chosen op
    back to fp32 and run again."""
    by_node = {s.node: s for s in sensitivities}
    act_quant = {k: q for s in sensitivities for k, q in s.act_quant.items()}
    reverted, runs = [], 0
    while True:
        if not assignment:
            return compare(reference, reference), reverted, runs
        measured = compare(reference, run_model(emulate(proto, assignment, act_quant), samples))
        runs += 1
        if not budget.violations(measured, margin, True):
            return measured, reverted, runs
        errors_of = lambda k: by_node[k].errors[assignment[k]]  # noqa: E731
        worst = max(assignment, key=lambda k: (budget.cost(errors_of(k)), _worst_rel(errors_of(k)), -by_node[k].index))
        del assignment[worst]
        reverted.append(worst)


def _extend(proto: onnx.ModelProto, sensitivities: list[OpSensitivity], assignment: dict[str, str], budget: AccuracyBudget,
            samples: list[dict], reference: list[dict], margin: float, speedup: dict[str, float],
            measured: dict[str, OutputError]) -> tuple[dict[str, OutputError], list[str], int]:
    """Measured growth past the conservative bound: each (op, precision) the composition left out, most FLOPs saved
    per unit of error first, is kept only if one end-to-end run of the whole set stays within `margin` x the budget."""
    act_quant = {k: q for s in sensitivities for k, q in s.act_quant.items()}
    order = sorted(((-_saving(s.flops, p, speedup) / max(budget.cost(s.errors[p]), 1e-12), s.index, PRECISIONS.index(p), s.node, p)
                    for s in sensitivities for p in s.errors if s.flops > 0), key=lambda t: t[:3])
    added, runs = [], 0
    for *_, node, precision in order:
        if _saving(1, precision, speedup) <= _saving(1, assignment.get(node, "fp32"), speedup):
            continue
        trial = {**assignment, node: precision}
        errors = compare(reference, run_model(emulate(proto, trial, act_quant), samples))
        runs += 1
        if not budget.violations(errors, margin, True):
            assignment[node] = precision
            measured = errors
            added.append(f"{node}:{precision}")
    return measured, added, runs


def choose(sensitivities: list[OpSensitivity], budget: AccuracyBudget | str, model: onnx.ModelProto | str | os.PathLike,
           calibration: dict | list[dict], held_out: dict | list[dict] | None = None,
           speedup: dict[str, float] = NOMINAL_SPEEDUP, margin: float = DEFAULT_MARGIN, extend: bool = False) -> PrecisionPlan:
    """Greedy choice under `margin` x `budget`, confirmed end to end on the calibration inputs (`extend`: then grown
    op by op, each step measured), then verified against the full budget on `held_out` (inputs it never saw)."""
    budget = AccuracyBudget.parse(budget) if isinstance(budget, (str, list)) else budget
    proto = _as_model(model)
    samples = _as_samples(calibration)
    assignment = greedy_assignment(sensitivities, budget, speedup, margin)
    outputs = _outputs_of(sensitivities)
    predicted = compose([s.errors[assignment[s.node]] for s in sensitivities if s.node in assignment], outputs)
    reference = reference_outputs(proto, samples, "calibration")
    calibration_errors, reverted, runs = _confirm(proto, sensitivities, assignment, budget, samples, reference, margin)
    extended = []
    if extend:
        calibration_errors, extended, more = _extend(proto, sensitivities, assignment, budget, samples, reference, margin, speedup,
                                                     calibration_errors)
        runs += more
    held = None
    if held_out is not None:
        held_samples = _as_samples(held_out)
        act_quant = {k: q for s in sensitivities for k, q in s.act_quant.items()}
        lowered = emulate(proto, assignment, act_quant)
        held = compare(reference_outputs(proto, held_samples, "held-out"), run_model(lowered, held_samples))
    choices = []
    for s in sensitivities:
        p = assignment.get(s.node, "fp32")
        choices.append(PrecisionChoice(s.node, s.op_type, p, s.flops, _saving(s.flops, p, speedup),
                                       budget.cost(s.errors[p]) if p != "fp32" else 0.0))
    notes = [("flops_saved uses nominal speed-ups " if speedup is NOMINAL_SPEEDUP else "flops_saved uses the CPU kernels' ranking ")
             + ", ".join(f"{k} {v:g}x" for k, v in speedup.items()) + " (a ranking, not a latency prediction)"]
    return PrecisionPlan(str(budget), margin, choices, predicted, calibration_errors, held, not budget.violations(calibration_errors),
                         None if held is None else not budget.violations(held), reverted, runs,
                         sum(s.flops for s in sensitivities), sensitivities, extended, notes)


def analyze(model: onnx.ModelProto | str | os.PathLike, calibration: dict | list[dict], budget: AccuracyBudget | str,
            held_out: dict | list[dict] | None = None, precisions: tuple[str, ...] = PRECISIONS,
            ops: tuple[str, ...] = CANDIDATE_OPS, progress=None) -> PrecisionPlan:
    """Sensitivity analysis then the budgeted choice, in one call."""
    proto = _as_model(model)
    sensitivities = measure_sensitivity(proto, calibration, precisions, ops, progress)
    return choose(sensitivities, budget, proto, calibration, held_out)
