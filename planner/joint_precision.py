"""Device and precision chosen together (issue 13 item 3): the placement picks, per op, a device AND a precision.

Why jointly: a GEMM that the accuracy budget lets run in bf16 is cheaper on the CPU than a placement priced at fp32
thinks; a layer too sensitive for a narrow fixed-point word needs a wide one on the FPGA (4 DSPs per multiplier at
32 bits instead of 1), which a DSP budget may not hold, so it belongs elsewhere. Choosing the precision after the
placement (as --cpu-precision auto and --gpu-precision auto still do) cannot see either.

How (`place_jointly`):
  1. Measure, once, each candidate op's end-to-end error alone at each precision (planner/precision.py for the CPU's
     bf16 GEMMs and convolutions and bf16x3 GEMMs, planner/fixed_precision.py for FPGA MAC layers at 8/12/16/18 bits), as a fraction
     of the budget (worst output and metric; top1 counts only the rows the error cannot flip).
  2. Give the partitioner one option per (op, device, precision): the time from the cost model at that precision
     (CPU bf16 / bf16x3 from the host's ISA, device_catalog.CPU_BF16_SPEEDUP / CPU_BF16X3_SPEEDUP on AMX; FPGA DSP/LUT/BRAM and latency from the
     backend's formulas at that width), and the error as a resource capped over all devices together at
     `margin` x the budget (CostModel.shared_limits). Summing the per-op fractions is the conservative composition of
     docs/precision.md (max_abs and rel add; a sum of worst cases bounds the worst case of the sum). fp32 on the CPU
     and 32-bit words on the FPGA cost nothing, so the cap never makes a placement impossible.
  3. The MILP (planner/placement_solver.py) minimises the predicted latency under the resource budgets and that cap;
     ties it leaves open (widths change FPGA resources, not time) go to the narrowest width that still fits
     (placement._leaner_precisions).
  4. Confirm with one end-to-end run of everything chosen, emulated together. If it exceeds the margin, the most
     sensitive chosen (op, precision) is taken away (bf16 -> fp32 or bf16x3; a width -> the next wider one) and the placement is
     solved again. Each round removes an option, so this ends.
  5. Verify on held-out inputs against the whole budget.
Deterministic: fixed inputs, single-threaded onnxruntime, the MILP's deterministic solve, graph order for ties.

GPU subgraphs keep their own step after placement (planner/subgraph_precision.py): the GPU backend lowers whole
subgraphs, so a per-op fp16 option would need the partitioner to cut subgraphs by precision; that step measures its
subgraphs together with everything chosen here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from hcc.planner import fixed_precision as fxp
from hcc.planner.cost_model import CostModel, analyze_model
from hcc.planner.precision import (
    CPU_CANDIDATES,
    DEFAULT_MARGIN,
    NOMINAL_SPEEDUP,
    AccuracyBudget,
    OpSensitivity,
    OutputError,
    PrecisionChoice,
    PrecisionPlan,
    _as_model,
    compare,
    compose,
    cpu_kernel_applies,
    emulate,
    measure_sensitivity,
    reference_outputs,
    run_model,
)


@dataclass
class JointResult:
    """What the joint placement chose, the rounds it took and the errors of everything chosen, emulated together."""

    budget: str
    margin: float
    cpu: PrecisionPlan | None  # per CPU op: bf16, bf16x3 or fp32 (with its predicted time saving)
    fpga: fxp.WidthPlan | None  # per FPGA MAC layer: its width and types
    calibration: dict[str, OutputError]
    held_out: dict[str, OutputError] | None
    calibration_ok: bool
    held_out_ok: bool | None
    rounds: list[str] = field(default_factory=list)  # one line per confirming run that widened something
    notes: list[str] = field(default_factory=list)


def emulate_choice(model: onnx.ModelProto, cpu_ops: dict[str, str], widths: dict[str, int], ranges: dict[str, fxp.LayerRange],
                   inputs: dict[str, str] | None = None, region: set[str] | None = None) -> onnx.ModelProto:
    """The model with the CPU ops' operands rounded (precision.emulate), the FPGA layers at their widths and the FPGA
    subgraphs' inputs converted to their types on entry."""
    lowered = emulate(model, cpu_ops, {}) if cpu_ops else model
    return fxp.emulate_widths(lowered, widths, ranges, inputs, region) if widths or inputs else lowered


def place_jointly(model: onnx.ModelProto, solve: Callable[[CostModel], object], base: CostModel, budget: AccuracyBudget | str,
                  calibration: list[dict[str, np.ndarray]], held_out: list[dict[str, np.ndarray]] | None, *, cpu: bool = True,
                  fpga: bool = True, cpu_spec=None, margin: float = DEFAULT_MARGIN, progress=None,
                  cpu_precisions: tuple[str, ...] = CPU_CANDIDATES) -> tuple:
    """Measure, place with (device, precision) options under the accuracy cap, confirm and widen (module docstring).
    `solve(cost_model)` places the model (returns a planner.plan.CompilePlan); `cpu_spec` prices the CPU's saving;
    `cpu_precisions`: the CPU's candidates (those its kernels run: bf16 alone on AVX512-BF16 dot products).
    Returns (plan, JointResult, the cost model of the final solve)."""
    say = progress or (lambda _m: None)
    budget = AccuracyBudget.parse(budget) if isinstance(budget, (str, list)) else budget
    proto = _as_model(model)
    cpu_sens: list[OpSensitivity] = (measure_sensitivity(proto, calibration, precisions=cpu_precisions, applies=cpu_kernel_applies)
                                     if cpu else [])
    if cpu_sens:
        say(f"precision: {len(cpu_sens)} GEMM/convolution op(s) measured alone at {', '.join(cpu_precisions)} (CPU candidates)")
    fx_sens = fxp.measure_widths(proto, calibration, progress=say) if fpga else []
    ranges = {s.node: s.range for s in fx_sens}
    reference = reference_outputs(proto, calibration, "calibration")
    cpu_cost = {s.node: {p: budget.cost(e, certain=True) for p, e in s.errors.items()} for s in cpu_sens}  # bf16x3: GEMMs only
    fx_cost = {s.node: {int(w): budget.cost(e, certain=True) for w, e in s.errors.items()} for s in fx_sens}
    banned: set[tuple[str, str]] = set()
    min_width: dict[str, int] = {}
    rounds: list[str] = []
    runs = 0
    input_width = fxp.INPUT_WIDTH
    while True:
        cm = replace(base)
        cm.cpu_precision_choices = {n: {p: c for p, c in costs.items() if (n, p) not in banned and c <= margin}
                                    for n, costs in cpu_cost.items()}
        cm.fpga_width_choices = {n: {**{w: c for w, c in costs.items() if w >= min_width.get(n, 0) and c <= margin}, fxp.WIDE_WIDTH: 0.0}
                                 for n, costs in fx_cost.items()}
        cm.shared_limits = {"accuracy": margin}
        plan = solve(cm)
        chosen = plan.placement.precisions
        cpu_ops = {n: p for n, p in chosen.items() if p in cpu_precisions}
        widths = {n: int(p[2:]) for n, p in chosen.items() if p.startswith("fx") and n in ranges}
        narrowed = {n: w for n, w in widths.items() if w != fxp.WIDE_WIDTH}
        regions = [set(sg.nodes) for sg in plan.subgraphs if sg.kind == "fpga"]
        region = set().union(*regions) if regions else set()
        inputs = fxp.input_types(proto, regions, calibration, input_width) if regions else {}
        if cpu_ops or widths or inputs:
            measured = compare(reference, run_model(emulate_choice(proto, cpu_ops, widths, ranges, inputs, region), calibration))
            runs += 1
        else:
            measured = compare(reference, reference)
        over = budget.violations(measured, margin, True)
        if over and not (cpu_ops or narrowed) and inputs and input_width < fxp.WIDE_WIDTH:
            input_width = fxp.WIDE_WIDTH  # the last thing left to widen: the FPGA subgraphs' input conversions
            rounds.append(f"confirming run {runs}: {'; '.join(over)}: FPGA subgraph inputs widened to {input_width} bits")
            say(f"precision: {rounds[-1]}")
            continue
        if not over or not (cpu_ops or narrowed):
            break
        suspects = [(cpu_cost[n][p], n, p) for n, p in cpu_ops.items()] + [(fx_cost[n][w], n, f"fx{w}") for n, w in narrowed.items()]
        _, node, precision = max(suspects, key=lambda t: (t[0], t[1]))
        if precision in cpu_precisions:
            banned.add((node, precision))
            step = f"{node} no longer {precision} (fp32 or another precision that fits)"
        else:
            min_width[node] = next((w for w in sorted(fx_cost[node]) if w > int(precision[2:])), fxp.WIDE_WIDTH)
            step = f"{node} widened to at least {min_width[node]} bits"
        rounds.append(f"confirming run {runs}: {'; '.join(over)}: {step}, the placement solved again")
        say(f"precision: {rounds[-1]}")
    held, held_ok = None, None
    if held_out and (cpu_ops or widths or inputs):
        held_ref = reference_outputs(proto, held_out, "held-out")
        held = compare(held_ref, run_model(emulate_choice(proto, cpu_ops, widths, ranges, inputs, region), held_out))
        held_ok = not budget.violations(held)
        runs += 1
    outputs = list(reference[0]) if reference else []
    outputs = [o for o in outputs if np.asarray(reference[0][o]).dtype.kind == "f"]
    predicted = compose([s.errors[cpu_ops[s.node]] for s in cpu_sens if s.node in cpu_ops]
                        + [s.errors[str(widths[s.node])] for s in fx_sens if widths.get(s.node, fxp.WIDE_WIDTH) != fxp.WIDE_WIDTH], outputs)
    calibration_ok = not budget.violations(measured)
    cpu_plan = _cpu_plan(cpu_sens, cpu_ops, budget, margin, measured, held, calibration_ok, held_ok, runs, predicted, base, cpu_spec, proto) \
        if cpu_sens else None
    fpga_plan = None
    placed = [s for s in fx_sens if s.node in widths]
    if placed:
        layers = []
        for s in placed:
            w = widths[s.node]
            reason = ("chosen with the placement: the narrowest width whose error, summed with the other choices, fits "
                      f"{margin:g} x the budget" if w != fxp.WIDE_WIDTH else
                      "no narrower width fits the accuracy cap with the other choices" if min(fx_cost[s.node].values()) <= margin else
                      "no candidate width fits: its narrowest error alone is over the margin")
            layers.append(fxp.LayerWidth(s.node, s.op_type, w, fxp.layer_types(s.range, w), fx_cost[s.node].get(w, 0.0), reason))
        fpga_plan = fxp.WidthPlan(str(budget), margin, layers, predicted, measured, held, calibration_ok, held_ok, list(rounds), runs, placed,
                                  notes=["errors are of the whole joint choice (CPU bf16 ops, FPGA widths and the FPGA subgraphs' input "
                                         "conversions emulated together); FPGA layers other than MAC layers keep their configured or "
                                         "default types, not emulated"], inputs=inputs, region=sorted(region))
        if all(lw.width == fxp.WIDE_WIDTH for lw in layers) and not any(w != fxp.WIDE_WIDTH for w in widths.values()):
            if all(min(fx_cost[s.node].values()) > margin for s in placed):
                fpga_plan.notes.append(f"budget {budget} is too tight for any candidate width ({', '.join(map(str, fxp.FIXED_WIDTHS))} bits): "
                                       f"every layer kept at {fxp.WIDE_WIDTH} bits")
    notes = [f"accuracy cap: the per-op errors (fractions of the budget) of every chosen lower precision sum to at most {margin:g}"]
    if not cpu_ops and not narrowed:
        own = [c for costs in cpu_cost.values() for c in costs.values()] + [c for costs in fx_cost.values() for c in costs.values()]
        if own and min(own) > margin:
            notes.append(f"budget {budget} is too tight for any lower precision (the least sensitive op alone costs {min(own):.2f} of it): "
                         f"everything stays fp32 (CPU) and {fxp.WIDE_WIDTH}-bit (FPGA)")
        else:
            notes.append("no lower precision chosen: " + (f"the confirming runs widened every choice ({len(rounds)} round(s))" if rounds else
                         "the ops that have one are placed where it is not offered (GPU) or where it saves no predicted time"))
    result = JointResult(str(budget), margin, cpu_plan, fpga_plan, measured, held, calibration_ok, held_ok, rounds, notes)
    return plan, result, cm


def _cpu_plan(sens: list[OpSensitivity], chosen: dict[str, str], budget: AccuracyBudget, margin: float, measured, held, calibration_ok,
              held_ok, runs: int, predicted, base: CostModel, cpu_spec, proto: onnx.ModelProto) -> PrecisionPlan:
    """The CPU part as a PrecisionPlan (what --cpu-precision auto records), each op with its predicted time saving."""
    info = analyze_model(proto) if cpu_spec is not None else None
    choices = []
    for s in sens:
        p = chosen.get(s.node, "fp32")
        saved = base.saving(info.by_name[s.node], cpu_spec, p) if info is not None and p != "fp32" and s.node in info.by_name else 0.0
        choices.append(PrecisionChoice(s.node, s.op_type, p, s.flops, s.flops * (1.0 - 1.0 / NOMINAL_SPEEDUP[p]),
                                       budget.cost(s.errors[p]) if p != "fp32" else 0.0, saved))
    notes = ["joint choice with the placement (planner/joint_precision.py): time_saved_s is the cost model's CPU saving; "
             "calibration/held_out are the whole joint choice's errors"]
    return PrecisionPlan(str(budget), margin, choices, predicted, measured, held, calibration_ok, held_ok, [], runs,
                         sum(s.flops for s in sens), sens, notes=notes)


def plan_jointly(loaded, options, feeds, budget: str, progress, *, cost_model: Callable, place: Callable, samples: Callable,
                 catalog: dict) -> tuple:
    """Placement with (device, precision) options (planner/joint_precision.py), then the plan re-priced at what was
    chosen; `hcc plan --precision auto` (driver.plan_with_precision, which passes its helpers: cost_model =
    driver.planner_cost_model, place = driver.plan_model, samples = driver._precision_samples). Returns (plan, precision
    plan, options naming the CPU's bf16 nodes)."""
    from dataclasses import replace

    from hcc.backends.fpga.config import from_options
    from hcc.backends.fpga.fixed_point import FixedType
    from hcc.devices import FPGA_DEFAULT_PRECISION
    from hcc.errors import HccError
    from hcc.options import CPU_AUTO, GPU_AUTO
    from hcc.planner import precision
    from hcc.planner.device_catalog import parse_device_mix
    from hcc.planner.plan import fmt_time, reprice
    from hcc.runtime.devices.cpu import cpu_low_precisions

    mix = parse_device_mix(options.planner.devices or "cpu", catalog)
    fpga = any(i.kind == "fpga" for i in mix)
    cpu = options.cpu.precision == CPU_AUTO
    if options.cpu.accuracy is not None and options.cpu.accuracy != budget:
        raise HccError(f"the CPU and FPGA accuracy budgets differ ({options.cpu.accuracy} and {budget}): a plan has one budget")
    # with --gpu-precision auto too, the joint choice takes half the margin and leaves the rest to the GPU subgraphs
    gpu_auto = options.gpu.precision == GPU_AUTO and any(i.kind == "gpu" for i in mix)
    margin = precision.DEFAULT_MARGIN / 2 if gpu_auto else precision.DEFAULT_MARGIN
    default_bits = FixedType.parse(options.fpga.precision if options.fpga.precision not in (None, "auto") else FPGA_DEFAULT_PRECISION).width
    base = cost_model(loaded.model, options.fpga, options.cpu, options.gpu)
    base.fpga_default_bits = default_bits
    fixed: set[str] = set()
    if fpga and options.fpga.config:  # the layers whose types the user's --fpga-config fixes keep them: no width options
        from hcc.frontend.names import node_names

        user = from_options(replace(options.fpga, planned_layers={}))
        op_types = dict(zip(node_names(loaded.model), (n.op_type for n in loaded.model.graph.node)))
        fixed = {n for n in op_types if user.lookup("weight", [n], op_types)[1].startswith(("node", "op_type"))}
    calibration, held_out = samples(loaded, feeds, options.golden.seed)
    # the CPU's candidates: what this host's kernels run (a host with none prices them at fp32 speed: never a saving)
    cpu_precisions = tuple(p for p in CPU_CANDIDATES if p in cpu_low_precisions()) or CPU_CANDIDATES
    progress(f"precision: device and precision together under {budget} ({margin:g} of it on {len(calibration)} calibration inputs): "
             + ", ".join(([f"CPU GEMM/conv fp32|bf16{' (GEMMs also bf16x3)' if 'bf16x3' in cpu_precisions else ''}"] if cpu else [])
                         + ([f"FPGA MAC layers {'|'.join(map(str, fxp.FIXED_WIDTHS))}|{fxp.WIDE_WIDTH} bits"] if fpga else [])))

    def solve(cm):
        cm.fpga_width_choices = {n: c for n, c in cm.fpga_width_choices.items() if n not in fixed}
        return place(loaded, options.planner, cm)

    plan, joint, _ = place_jointly(loaded.model, solve, base, budget, calibration, held_out, cpu=cpu, fpga=fpga,
                                   cpu_spec=catalog["cpu"], margin=margin, progress=progress, cpu_precisions=cpu_precisions)
    cpu_nodes = {n for s in plan.subgraphs if s.kind == "cpu" for n in s.nodes}
    low = {p: sorted(c.node for c in (joint.cpu.choices if joint.cpu else []) if c.precision == p and c.node in cpu_nodes)
           for p in CPU_CANDIDATES}
    if cpu:
        options = replace(options, cpu=replace(options.cpu, bf16_nodes=tuple(low["bf16"]), bf16x3_nodes=tuple(low["bf16x3"])))
    final = cost_model(loaded.model, options.fpga, options.cpu, options.gpu)
    if joint.fpga is not None:
        default = reprice(loaded, plan, final)  # the same placement at the default FPGA types: what the widths save
        final.fpga_node_configs = fxp.cost_configs(joint.fpga, loaded.model, final.fpga_node_configs, default_bits)
        plan = reprice(loaded, plan, final)
        was_time = {s.id: s.predicted_time for s in default.subgraphs}
        for sg in plan.subgraphs:
            if sg.kind == "fpga":
                was = default.placement.resources.get(sg.device, {})
                used = plan.placement.resources.get(sg.device, {})
                joint.fpga.notes.append(f"{sg.id}: predicted {fmt_time(was_time.get(sg.id))} at the default {default_bits}-bit types -> "
                                        f"{fmt_time(sg.predicted_time)} at the chosen widths; {sg.device} DSP {was.get('dsp', 0):g} -> "
                                        f"{used.get('dsp', 0):g}, LUT {was.get('lut', 0):g} -> {used.get('lut', 0):g} (cost model)")
    else:
        plan = reprice(loaded, plan, final)
    for note in [f"precision chosen with the placement under {budget}: per-op errors summed (conservative) within {margin:g} of "
                 "it, confirmed by one emulated run of everything chosen" + (f"; {len(joint.rounds)} widening round(s)" if joint.rounds else "")
                 + "; the plan re-priced at the chosen precisions"] + joint.notes[1:]:
        plan.notes.append(note)
        plan.placement.notes.append(note)  # kept when a later step re-prices the plan

    def worst(errors) -> str:
        return ", ".join(f"{name} max_abs {e.max_abs:.3g}" for name, e in (errors or {}).items()) or "-"

    widths = ", FPGA widths " + ", ".join(f"{lw.node} {lw.width}b" for lw in joint.fpga.layers) if joint.fpga else ""
    progress("precision: chosen " + ", ".join(f"{len(low[p])} CPU op(s) in {p}" for p in CPU_CANDIDATES) + widths
             + f": emulated together, calibration {worst(joint.calibration)}; held-out {worst(joint.held_out)}"
             + ("" if joint.held_out_ok in (None, True) else " (over budget on held-out inputs)"))
    precision_plan = joint.cpu or precision.PrecisionPlan(budget, margin, [], {}, joint.calibration, joint.held_out, joint.calibration_ok,
                                                          joint.held_out_ok, [], 0, 0, [])
    precision_plan.fpga = joint.fpga
    precision_plan.notes.extend(joint.notes)
    return plan, precision_plan, options


def fpga_config_with_widths(user, widths: fxp.WidthPlan, model: onnx.ModelProto | None = None) -> dict:
    """The FPGA configuration `hcc compile --precision auto` compiles with: the user's (`user`: an fpga.toml path, its
    table or None) with each chosen layer's types (`widths.fpga_config()`: [node."name"] weight/bias/result, and the
    FPGA subgraphs' input types as [tensor."name"]) added where the user's own sections leave them open. A layer whose
    types the user's config fixes had no width options in the placement (plan_jointly), so it is not in `widths`.
    `model`: when given, every named layer must be one of its nodes (an internal check)."""
    import copy
    import os

    from hcc.config_file import read_toml
    from hcc.errors import HccError

    if user is None:
        table: dict = {}
    elif isinstance(user, (str, os.PathLike)):
        table = read_toml(user, "FPGA config file")
    else:
        table = copy.deepcopy(dict(user))
    chosen = widths.fpga_config()
    if model is not None:
        from hcc.frontend.names import node_names

        unknown = sorted(set(chosen["node"]) - set(node_names(model)))
        if unknown:
            raise HccError(f"internal: FPGA widths chosen for nodes the model lacks: {', '.join(unknown)}")
    for section in ("node", "tensor"):
        for name, types in chosen.get(section, {}).items():
            mine = table.setdefault(section, {}).setdefault(name, {})
            for key, value in types.items():
                mine.setdefault(key, value)
    return table
