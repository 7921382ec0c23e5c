"""Precision per subgraph (issue 13 item 5): which GPU subgraphs run at fp16, from their emulated end-to-end error.

`--gpu-precision auto --accuracy BUDGET` decides per GPU subgraph, not per bundle. The GPU backend's fp16 rewrite
(backends/gpu/precision.py) stores every f32 value of a subgraph as f16 and accumulates contractions and reductions in
f32; the subgraph keeps an fp32 boundary. The emulation here rounds the same tensors the same way, in onnxruntime:
  * every float32 tensor a node of the subgraph reads from outside it (graph inputs, weights, other subgraphs'
    outputs) goes through Cast(to=FLOAT16) -> Cast(to=FLOAT) before that node (the rewrite's truncf at entry);
  * every float32 tensor a node of the subgraph produces is rounded the same way right after the node, so its
    consumers inside the subgraph and out of it see the f16 value (the rewrite stores it as f16, and extends it
    back to f32 at the boundary);
  * each node itself computes in fp32 (onnxruntime's kernels), which is what fp32 accumulation gives for the
    contractions and reductions; for an elementwise op, computing in fp32 and rounding once to f16 is what a
    correctly rounded f16 operation gives.
What it does NOT reproduce (so the numbers are an emulation, recorded as such, never called a GPU measurement): the
f16 intermediates inside an ONNX op that the GPU lowers to several kernels (Softmax's exponentials, LayerNorm's
centred values, a Gelu's polynomial), the GPU's summation order, and fp16 transcendental approximations. A range
overflow (|x| > 65504 becomes inf) IS reproduced, since Cast rounds exactly as truncf does.

How far off that is, measured: the test suite's host emulation of the compiled fp16 kernels (tests/backends/gpu:
the kernels' own MLIR compiled to C with _Float16 arithmetic, run through the stub libcuda) against onnxruntime fp32,
compared with this emulation's error on the same inputs (3 inputs each): the kernels' max_abs error was the
emulation's on 3x3 convolutions with bias and ReLU (1.00x), 1.0-1.3x it on a small CNN, 1.0-1.13x on fused matmuls,
1.0-1.5x on an MLP (a Gemm's bias is added after the product is rounded to f16), 1.24-1.47x and 1.44-2.27x on two
attention blocks (LayerNorm and Softmax intermediates in f16). So every emulated error counts KERNEL_ERROR_FACTOR times against
the budget (max_abs and rel times the factor, 1 - cosine times its square; top1 as emulated), and the recorded
figures are the emulated ones with the factor beside them.

The choice (`choose_gpu_subgraphs`) is measured step by step, not composed: candidates in order of predicted time
saved per unit of their own error (each subgraph alone at fp16, a share of the budget); a subgraph is kept only if
an end-to-end run of the model with everything chosen so far -- the CPU's bf16 ops included -- stays within the
margin of the budget; the result is verified on held-out inputs against the full budget. Every subgraph left at fp32
gets its reason (no saving predicted, its own error over the margin, or the measured run with it over the margin).
Deterministic: fixed inputs, ties broken by subgraph order.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper

from hcc.errors import HccError
from hcc.planner.precision import (
    DEFAULT_MARGIN,
    AccuracyBudget,
    OutputError,
    _value_types,
    compare,
    compose,
    emulate,
    node_keys,
    reference_outputs,
    run_model,
)

SUBGRAPH_PRECISIONS = ("fp16",)
# The fp16 kernels' error over this emulation's, at most 2.27x measured (module docstring); rounded up.
KERNEL_ERROR_FACTOR = 2.5
_CAST_TO = {"fp16": TensorProto.FLOAT16}
EMULATION = ("onnxruntime: every float32 tensor a subgraph reads from outside or produces rounded to f16 "
             "(Cast->Cast, nearest even); ops compute in fp32 like the backend's fp32 accumulators")


@dataclass
class SubgraphCandidate:
    """A placed subgraph that may run at a lower precision, with its predicted time at fp32 and at that precision."""

    id: str
    device: str  # instance id, e.g. gpu:sm_90#0
    nodes: list[str]
    time_fp32_s: float
    time_low_s: float
    precision: str = "fp16"

    @property
    def saving_s(self) -> float:
        return self.time_fp32_s - self.time_low_s


@dataclass
class SubgraphChoice:
    """The precision chosen for one subgraph, why, what it was predicted to save and its emulated error alone."""

    id: str
    device: str
    nodes: int
    first_node: str
    last_node: str
    precision: str  # the chosen one: fp16 or fp32
    candidate: str  # the precision that was considered (fp16)
    reason: str
    time_fp32_s: float
    time_low_s: float  # predicted at the candidate precision
    errors: dict[str, OutputError]  # the subgraph alone at the candidate precision (calibration inputs, emulated)
    budget_cost: float  # its own error as a fraction of the budget (<= margin to be considered)
    emulated: bool = True  # the errors come from the onnxruntime emulation (EMULATION), not from the device

    @property
    def saving_s(self) -> float:
        return self.time_fp32_s - self.time_low_s


@dataclass
class SubgraphPrecisionResult:
    """The per-subgraph choice and the errors of the whole plan (every lowered precision emulated together)."""

    choices: list[SubgraphChoice]
    calibration: dict[str, OutputError]  # end to end, the CPU's bf16 ops and the chosen subgraphs together
    held_out: dict[str, OutputError] | None
    calibration_ok: bool
    held_out_ok: bool | None
    runs: int  # end-to-end onnxruntime runs of the choice (besides one per candidate for its own error)
    error_factor: float = KERNEL_ERROR_FACTOR  # the emulated errors count this many times against the budget
    emulation: str = EMULATION
    notes: list[str] = field(default_factory=list)

    def precisions(self) -> dict[str, str]:
        """Subgraph id -> chosen precision (fp16 or fp32), every candidate included."""
        return {c.id: c.precision for c in self.choices}

    def lowered(self) -> list[str]:
        return [c.id for c in self.choices if c.precision != "fp32"]


# ---------------------------------------------------------------------------------------------------------------
# emulation


def round_subgraphs(model: onnx.ModelProto, subgraphs: dict[str, tuple[list[str], str]]) -> onnx.ModelProto:
    """A copy of `model` in which each subgraph (id -> (node names, precision)) reads and produces its float32 tensors
    rounded to that precision (module docstring). Node names are `node_keys` (the loader's names)."""
    keys = node_keys(model)
    known = set(keys)
    owner: dict[str, tuple[str, str]] = {}
    for sg, (nodes, precision) in subgraphs.items():
        if precision not in _CAST_TO:
            raise HccError(f"subgraph {sg}: no emulation of precision '{precision}' (known: {', '.join(_CAST_TO)})")
        missing = sorted(set(nodes) - known)
        if missing:
            raise HccError(f"subgraph {sg} names nodes the model lacks: {', '.join(missing[:5])}")
        for n in nodes:
            owner[n] = (sg, precision)
    types = _value_types(model)
    if any(o and o not in types for k, n in zip(keys, model.graph.node) if k in owner for o in list(n.output) + list(n.input)):
        types = _value_types(onnx.shape_inference.infer_shapes(model))  # a model not shape-inferred yet
    is_float = lambda name: types.get(name, (0,))[0] == TensorProto.FLOAT  # noqa: E731
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph_inputs = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer}
    producer_sg = {o: owner.get(k, (None,))[0] for k, n in zip(keys, model.graph.node) for o in n.output if o}
    rounded_in: dict[tuple[str, str], str] = {}  # (tensor, subgraph) -> the rounded copy that subgraph reads
    nodes: list[onnx.NodeProto] = []

    def casts(src: str, dst: str, precision: str, tag: str) -> list[onnx.NodeProto]:
        low = f"{dst}__hcc_{precision}_low"
        return [helper.make_node("Cast", [src], [low], to=_CAST_TO[precision], name=f"{tag}_cast_low"),
                helper.make_node("Cast", [low], [dst], to=TensorProto.FLOAT, name=f"{tag}_cast_back")]

    for key, node in zip(keys, model.graph.node):
        if key not in owner:
            nodes.append(node)
            continue
        sg, precision = owner[key]
        node = onnx.NodeProto.FromString(node.SerializeToString())
        for slot, name in enumerate(node.input):
            from_outside = name and (name in graph_inputs or producer_sg.get(name) != sg)
            if from_outside and is_float(name):
                if (name, sg) not in rounded_in:
                    rounded_in[(name, sg)] = f"{name}__hcc_{sg}_{precision}_in"
                    nodes.extend(casts(name, rounded_in[(name, sg)], precision, f"{name}__hcc_{sg}_in"))
                node.input[slot] = rounded_in[(name, sg)]
        after = []
        for slot, name in enumerate(node.output):
            if name and is_float(name):
                raw = f"{name}__hcc_{sg}_raw"
                node.output[slot] = raw
                after.extend(casts(raw, name, precision, f"{name}__hcc_{sg}_out"))
        nodes.append(node)
        nodes.extend(after)
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def emulate_plan(model: onnx.ModelProto, op_assignment: dict[str, str], subgraphs: dict[str, tuple[list[str], str]],
                 act_quant: dict | None = None, fixed: tuple | None = None) -> onnx.ModelProto:
    """Per-op operand rounding (the CPU's bf16 GEMMs/convolutions, precision.emulate), FPGA layers at their ap_fixed
    widths (`fixed`: fixed_precision.WidthPlan.fixed(): widths, ranges, input types, FPGA region) and per-subgraph
    rounding together. The ops of `op_assignment` and `fixed` must lie outside `subgraphs` (a node runs on one device)."""
    from hcc.planner.fixed_precision import emulate_widths

    inside = {n for nodes, _ in subgraphs.values() for n in nodes}
    both = sorted((set(op_assignment) | set(fixed[0] if fixed else {})) & inside)
    if both:
        raise HccError(f"internal: nodes both in a per-op and in a per-subgraph precision: {', '.join(both[:5])}")
    lowered = emulate(model, op_assignment, act_quant or {}) if op_assignment else model
    lowered = emulate_widths(lowered, *fixed) if fixed and (fixed[0] or fixed[2:3] and fixed[2]) else lowered
    return round_subgraphs(lowered, subgraphs) if subgraphs else lowered


# ---------------------------------------------------------------------------------------------------------------
# candidates


def gpu_candidates(model: onnx.ModelProto, groups: list[dict], catalog: dict, cost_model) -> list[SubgraphCandidate]:
    """The GPU subgraphs of `groups` ({id, device (a catalog name such as gpu:sm_90), nodes}, in execution order) with
    their predicted times at fp32 (`cost_model`, which must price GPU nodes at fp32) and at fp16 (the backend's fp16
    rewrite: cost_model.predict_gpu_fp16). Transfers are left out: a subgraph's boundary stays fp32 either way."""
    from hcc.planner.cost_model import analyze_model, predict_gpu_fp16
    from hcc.planner.device_catalog import resolve_spec

    info = analyze_model(model)
    found = []
    for g in groups:
        spec = resolve_spec(g["device"].partition("#")[0], catalog)
        if spec.kind != "gpu":
            continue
        nodes = [info.by_name[n] for n in g["nodes"] if n in info.by_name]
        t32 = sum(cost_model.predict(n, spec) for n in nodes)
        t16 = sum(predict_gpu_fp16(n, spec) for n in nodes)
        found.append(SubgraphCandidate(g["id"], g["device"], list(g["nodes"]), t32, t16))
    return found


# ---------------------------------------------------------------------------------------------------------------
# choice


def inflate(errors: dict[str, OutputError], factor: float) -> dict[str, OutputError]:
    """Errors `factor` times larger: max_abs and rel scale, 1 - cosine scales with the square, top1 is kept."""
    return {name: OutputError(e.max_abs * factor, e.max_rel * factor, 1.0 - (1.0 - e.cosine) * factor * factor, e.top1, e.top1_certain)
            for name, e in errors.items()}


def _fmt(errors: dict[str, OutputError] | None) -> str:
    return ", ".join(f"{name} max_abs {e.max_abs:.3g}" for name, e in (errors or {}).items()) or "-"


def choose_gpu_subgraphs(model: onnx.ModelProto, candidates: list[SubgraphCandidate], budget: AccuracyBudget | str,
                         calibration: list[dict[str, np.ndarray]], held_out: list[dict[str, np.ndarray]] | None = None,
                         op_assignment: dict[str, str] | None = None, margin: float = DEFAULT_MARGIN,
                         error_factor: float = KERNEL_ERROR_FACTOR, progress=None,
                         fixed: tuple | None = None) -> SubgraphPrecisionResult:
    """Per candidate subgraph: fp16 or fp32 under `margin` x `budget` (module docstring). `op_assignment`: node ->
    precision of the per-op choice already made (the CPU's bf16 ops, whose emulation is exact). What counts against
    the budget: the chosen subgraphs' emulated error together x `error_factor`, plus (composed conservatively:
    precision.compose) the per-op choice's own error; the recorded figures are one run of everything together.
    `fixed`: FPGA layers at their chosen ap_fixed widths (planner/fixed_precision.py), counted with the per-op part."""
    budget = AccuracyBudget.parse(budget) if isinstance(budget, (str, list)) else budget
    model = onnx.shape_inference.infer_shapes(model)
    ops = dict(op_assignment or {})
    fixed = fixed if fixed and (fixed[0] or fixed[2:3] and fixed[2]) else None
    reference = reference_outputs(model, calibration, "calibration")
    outputs = [name for name in reference[0] if np.asarray(reference[0][name]).dtype.kind == "f"]

    def run(with_ops: bool, chosen: dict[str, SubgraphCandidate], samples, ref) -> dict[str, OutputError]:
        if not chosen and not (with_ops and (ops or fixed)):
            return compare(ref, ref)
        lowered = emulate_plan(model, ops if with_ops else {}, {c.id: (c.nodes, c.precision) for c in chosen.values()},
                               fixed=fixed if with_ops else None)
        return compare(ref, run_model(lowered, samples))

    def counted(per_op: dict[str, OutputError], subgraphs: dict[str, OutputError]) -> dict[str, OutputError]:
        """What counts against the budget: the subgraphs' emulated error x the factor, plus the per-op choice's."""
        return compose([per_op, inflate(subgraphs, error_factor)], outputs) if ops or fixed else inflate(subgraphs, error_factor)

    own: dict[str, dict[str, OutputError]] = {}
    for i, c in enumerate(candidates):
        own[c.id] = run(False, {c.id: c}, calibration, reference)
        if progress is not None:
            progress(f"precision: {c.id} ({c.device}, {len(c.nodes)} ops) alone at {c.precision}: {_fmt(own[c.id])} "
                     f"({i + 1}/{len(candidates)})")
    per_op = run(True, {}, calibration, reference)
    runs = 1 if ops or fixed else 0
    reasons: dict[str, str] = {}
    chosen: dict[str, SubgraphCandidate] = {}
    if (ops or fixed) and budget.violations(per_op, margin, True):
        what = "the CPU's bf16 ops" + (" and the FPGA widths" if fixed else "") if ops else "the FPGA widths"
        reasons.update({c.id: f"{what} alone already use the margin: " + "; ".join(budget.violations(per_op, margin, True))
                        for c in candidates})
    cost = {c.id: budget.cost(inflate(own[c.id], error_factor)) for c in candidates}
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i].saving_s / max(cost[candidates[i].id], 1e-12), i))
    for i in order:
        c = candidates[i]
        if c.id in reasons:
            continue
        if c.saving_s <= 0:
            reasons[c.id] = "no predicted saving at fp16"
            continue
        alone = counted(per_op, own[c.id])
        if budget.cost(alone, margin, True) > 1.0:
            reasons[c.id] = (f"alone at {c.precision} its emulated error x {error_factor:g} is over {margin:g} x the budget: "
                             + "; ".join(budget.violations(alone, margin, True)))
            continue
        trial = run(False, {**chosen, c.id: c}, calibration, reference)
        runs += 1
        over = budget.violations(counted(per_op, trial), margin, True)
        if over:
            reasons[c.id] = (f"with the subgraphs chosen before it, the emulated error x {error_factor:g} is over "
                             f"{margin:g} x the budget: " + "; ".join(over))
            continue
        chosen[c.id] = c
        reasons[c.id] = f"with the subgraphs chosen before it, emulated error x {error_factor:g} within {margin:g} x the budget"
    together = run(True, chosen, calibration, reference)  # the figures recorded: everything lowered at once
    calibration_ok = not budget.violations(counted(per_op, run(False, chosen, calibration, reference)))
    held, held_ok = None, None
    if held_out:
        held_ref = reference_outputs(model, held_out, "held-out")
        held = run(True, chosen, held_out, held_ref)
        held_ok = not budget.violations(counted(run(True, {}, held_out, held_ref), run(False, chosen, held_out, held_ref)))
    runs += 2 + (3 if held_out else 0)
    choices = []
    for c in candidates:
        choices.append(SubgraphChoice(c.id, c.device, len(c.nodes), c.nodes[0] if c.nodes else "", c.nodes[-1] if c.nodes else "",
                                      c.precision if c.id in chosen else "fp32", c.precision, reasons[c.id], c.time_fp32_s,
                                      c.time_low_s, own[c.id], cost[c.id]))
    notes = [f"budget {budget}; emulated subgraph errors count {error_factor:g}x; the choice fills {margin:g} of the budget on "
             f"{len(calibration)} calibration inputs" + (f"; verified against all of it on {len(held_out)} held-out inputs" if held_out else "")]
    return SubgraphPrecisionResult(choices, together, held, calibration_ok, held_ok, runs, error_factor, notes=notes)
