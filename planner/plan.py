"""A compile plan: placement + subgraphs + transfers + predicted times, as a report (`hcc plan`, `--explain`) and JSON.

Why a separate layer: the same plan feeds three consumers -- the compiler (subgraphs to outline, in order), the
bundle manifest (predicted times, cost-model report) and the user (what-if answers without the hardware) -- so it is
computed once here from the placement and rendered in each form. Everything in it is a model prediction.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from hcc.errors import HccError
from hcc.planner import DEFAULT_TIME_LIMIT_S
from hcc.planner.cost_model import CostModel
from hcc.planner.device_catalog import DeviceInstance, DeviceSpec, builtin_catalog, parse_device_mix
from hcc.planner.placement import Override, Placement, group_subgraphs, parse_budgets, place

PLAN_FORMAT = "hcc-plan"


@dataclass
class SubgraphPlan:
    id: str
    device: str  # instance id
    kind: str  # cpu | gpu | fpga
    nodes: list[str]
    inputs: list[str]
    outputs: list[str]
    predicted_time: float  # s, sum of its ops' predicted times
    precision: str = ""  # what it computes in: fp32, fp16 (GPU), fp32+bf16 (CPU), ap_fixed<W,I> (FPGA); "" until set_precisions
    precision_note: str = ""  # why (--gpu-precision auto: the reason and the emulated error)


@dataclass
class TransferPlan:
    """One tensor moved to one device (through the host). `time` counts the device->host leg only on the first
    record of a tensor, as the runtime copies it to the host once."""

    tensor: str
    nbytes: int
    src: str  # instance id
    dst: str
    time: float


@dataclass
class CompilePlan:
    """The partitioner's plan of a whole compile (placement, subgraphs in order, transfers, predictions); not the
    CPU backend's per-op schedule (backends/cpu/schedule.py: Plan)."""

    model_name: str
    objective: str
    devices: list[str]
    placement: Placement
    subgraphs: list[SubgraphPlan]
    transfers: list[TransferPlan]
    predicted_latency: float  # s, one inference run sequentially (subgraphs + transfers)
    predicted_stage_time: float  # s, slowest device when pipelined
    critical_path: float  # s
    utilisation: dict[str, float]  # instance id -> busy / (latency or stage time, per objective)
    resources: dict[str, dict[str, tuple[float, float]]]  # instance id -> resource -> (used, limit)
    single_device: dict[str, float | None]  # device name -> predicted objective with everything on it
    notes: list[str] = field(default_factory=list)

    @property
    def predicted_throughput(self) -> float:
        """Inferences per second when the subgraphs run as a pipeline over the instances."""
        return 1.0 / self.predicted_stage_time if self.predicted_stage_time > 0 else math.inf


def make_plan(loaded_model, device_mix: str | list[DeviceInstance] = "cpu", objective: str = "latency",
              budgets: dict[str, float | str] | list[str] | None = None, overrides: list[Override] | None = None, *,
              catalog: dict[str, DeviceSpec] | None = None, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
              cost_model: CostModel | None = None) -> CompilePlan:
    """Plan `loaded_model` (a LoadedModel or a shape-inferred ModelProto) on `device_mix` ("4xgpu:sm_90+cpu" or instances)."""
    if isinstance(device_mix, str):
        instances = parse_device_mix(device_mix, catalog if catalog is not None else builtin_catalog())
    else:
        instances = list(device_mix)
    if isinstance(budgets, (list, tuple)):
        budgets = parse_budgets(list(budgets))
    proto = getattr(loaded_model, "model", loaded_model)
    placement = place(proto, instances, objective, budgets, overrides, time_limit_s=time_limit_s, cost_model=cost_model)
    return plan_from_placement(proto, placement, getattr(loaded_model, "name", None) or proto.graph.name or "model")


def plan_from_placement(model, placement: Placement, model_name: str = "model") -> CompilePlan:
    """Subgraphs, transfers and totals for an existing placement (e.g. one loaded from a file and re-placed)."""
    proto = getattr(model, "model", model)
    info = placement.info
    if info is None:
        raise HccError("internal: placement carries no graph info")
    by_id = {i.id: i for i in placement.instances}
    host = placement.instances[0]
    groups = group_subgraphs(proto, placement)
    explanations = placement.explanations
    subgraphs = []
    where: dict[str, str] = {}
    for g in groups:
        time_ = sum(explanations_time(explanations[n], by_id[g.device].spec.name) for n in g.node_names)
        subgraphs.append(SubgraphPlan(g.id, g.device, by_id[g.device].kind, list(g.node_names), list(g.inputs), list(g.outputs), time_))
        for t in g.outputs:
            where[t] = g.device
    transfers: list[TransferPlan] = []
    left_host: set[str] = set()
    moved: set[tuple[str, str]] = set()

    def move(tensor: str, src: str, dst: str) -> None:
        if src == dst or (tensor, dst) in moved:
            return
        moved.add((tensor, dst))
        nbytes = info.tensors[tensor].nbytes
        t = 0.0
        if not by_id[src].is_host and tensor not in left_host:
            left_host.add(tensor)
            t += _hop(nbytes, by_id[src])
        t += _hop(nbytes, by_id[dst])
        transfers.append(TransferPlan(tensor, int(nbytes), src, dst, t))

    for g in groups:
        for t in g.inputs:
            tinfo = info.tensors.get(t)
            if tinfo is None or tinfo.kind not in ("input", "activation"):
                continue  # weights are loaded onto their device once, not per run
            move(t, where.get(t, host.id), g.device)
    for t in info.graph_outputs:
        if t in where:
            move(t, where[t], host.id)
    latency = sum(s.predicted_time for s in subgraphs) + sum(x.time for x in transfers)
    base = placement.latency if placement.objective == "latency" else placement.stage_time
    utilisation = {i: (b / base if base > 0 else 0.0) for i, b in placement.busy.items()}
    resources = {i: {r: (placement.resources.get(i, {}).get(r, 0.0), lim) for r, lim in sorted(placement.limits[i].items())}
                 for i in placement.limits}
    notes = list(placement.notes)
    if abs(latency - placement.latency) > 1e-9 + 1e-6 * placement.latency:
        notes.append(f"subgraph-level latency {latency:.6g}s differs from the placement model's {placement.latency:.6g}s")
    return CompilePlan(model_name, placement.objective, [i.id for i in placement.instances], placement, subgraphs, transfers,
                latency, placement.stage_time, placement.critical_path, utilisation, resources, dict(placement.single_device), notes)


def reprice(loaded_model, plan: CompilePlan, cost_model: CostModel) -> CompilePlan:
    """The same placement (every node on its device) with times from `cost_model` (e.g. after --gpu-precision auto
    put some GPU subgraphs back to fp32: the placement was solved with them at fp16). The placement is not solved
    again, so the subgraphs are exactly the ones whose precision was measured; each node keeps its reason."""
    old = plan.placement
    forced = [Override(re.escape(n), d, match="name") for n, d in old.devices.items()]
    budgets = {f"{i}.{r}": v for i, lims in old.limits.items() for r, v in lims.items() if math.isfinite(v)}
    proto = getattr(loaded_model, "model", loaded_model)
    placement = place(proto, old.instances, old.objective, budgets, forced, cost_model=cost_model)
    for n, e in placement.explanations.items():
        if n in old.explanations:
            e.reason = old.explanations[n].reason
    placement.notes = list(old.notes)
    new = plan_from_placement(proto, placement, plan.model_name)
    if [(s.id, s.device, s.nodes) for s in new.subgraphs] != [(s.id, s.device, s.nodes) for s in plan.subgraphs]:
        raise HccError("internal: re-pricing the placement changed its subgraphs")
    new.single_device = dict(plan.single_device)  # the what-if comparison keeps the placement's own figures
    return new


def set_precisions(plan: CompilePlan, per_subgraph: dict[str, tuple[str, str]]) -> None:
    """Record each subgraph's precision (id -> (precision, note)) in the plan, for the report and the JSON."""
    for s in plan.subgraphs:
        if s.id in per_subgraph:
            s.precision, s.precision_note = per_subgraph[s.id]


def explanations_time(expl, spec_name: str) -> float:
    value = expl.times.get(spec_name)
    return value if value is not None else 0.0


def _hop(nbytes: float, inst: DeviceInstance) -> float:
    if inst.is_host or nbytes <= 0:
        return 0.0
    return inst.spec.link_latency + nbytes / inst.spec.link_bandwidth


# ---------------------------------------------------------------------------------------------------- rendering

def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if not math.isfinite(seconds):
        return "inf"
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} us"


def fmt_bytes(n: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def _fmt_resource(res: str, used: float, limit: float) -> str:
    if res == "mem":
        return f"mem {fmt_bytes(used)}/{fmt_bytes(limit)}"
    return f"{res} {used:.0f}/{limit:.0f}"


def format_plan(plan: CompilePlan) -> str:
    """A readable report: totals, comparison with single-device plans, subgraphs, transfers, devices."""
    p = plan.placement
    lines = [f"hcc plan for {plan.model_name}: {' + '.join(plan.devices)}",
             f"  objective {plan.objective}; solver {p.solver} ({p.solve_time:.2f} s); {len(p.order)} ops in {len(plan.subgraphs)} subgraph(s)",
             f"  predicted latency {fmt_time(plan.predicted_latency)}; slowest pipeline stage {fmt_time(plan.predicted_stage_time)} "
             f"({plan.predicted_throughput:,.0f} inferences/s pipelined); critical path {fmt_time(plan.critical_path)}"]
    singles = {k: v for k, v in plan.single_device.items()}
    feasible = [v for v in singles.values() if v is not None]
    text = ", ".join(f"{k} {fmt_time(v) if v is not None else 'infeasible'}" for k, v in singles.items())
    lines.append(f"  all on one device ({'latency' if plan.objective == 'latency' else 'stage time'}): {text}")
    if feasible:
        best = min(feasible)
        mine = p.cost
        lines.append(f"  this plan: {fmt_time(mine)} = {best / mine:.2f}x faster than the best single device" if mine > 0 else "")
    lines.append("subgraphs (execution order):")
    for s in plan.subgraphs:
        span = s.nodes[0] if len(s.nodes) == 1 else f"{s.nodes[0]} .. {s.nodes[-1]}"
        lines.append(f"  {s.id:<5} {s.device:<16} {s.precision or '-':<16} {len(s.nodes):>4} ops {fmt_time(s.predicted_time):>10}   {span}")
        if s.precision_note:
            lines.append(f"        {s.precision_note}")
    if plan.transfers:
        total = sum(t.time for t in plan.transfers)
        lines.append(f"transfers ({len(plan.transfers)}, {fmt_bytes(sum(t.nbytes for t in plan.transfers))}, {fmt_time(total)}):")
        for t in plan.transfers[:40]:
            lines.append(f"  {t.tensor:<32} {fmt_bytes(t.nbytes):>9}  {t.src} -> {t.dst}  {fmt_time(t.time)}")
        if len(plan.transfers) > 40:
            lines.append(f"  ... {len(plan.transfers) - 40} more")
    lines.append("devices:")
    for inst in plan.devices:
        res = ", ".join(_fmt_resource(r, u, lim) for r, (u, lim) in plan.resources.get(inst, {}).items())
        lines.append(f"  {inst:<16} busy {fmt_time(p.busy.get(inst, 0.0)):>10} ({plan.utilisation.get(inst, 0.0):4.0%})  {res}")
    for note in plan.notes:
        lines.append(f"note: {note}")
    lines.append("(all times are cost-model predictions)")
    return "\n".join(line for line in lines if line)


def format_explanation(placement: Placement) -> str:
    """Per-op table for `--explain`: predicted time on each device, transfers, chosen device and why."""
    specs = list(dict.fromkeys(i.spec.name for i in placement.instances))
    width = max([len(n) for n in placement.order] + [4])
    width = min(width, 40)
    header = f"{'node':<{width}} {'op':<18} " + " ".join(f"{s:>12}" for s in specs) + f" {'in':>9} {'out':>9}  {'device':<16} reason"
    lines = [header, "-" * len(header)]
    for n in placement.order:
        e = placement.explanations[n]
        name = n if len(n) <= width else "..." + n[-(width - 3):]
        times = " ".join(f"{fmt_time(e.times.get(s)):>12}" for s in specs)
        rf = placement.reuse_factors.get(n)
        reason = e.reason + (f" (reuse factor {rf}, {placement.strategies.get(n, 'latency')})" if rf else "")
        lines.append(f"{name:<{width}} {e.op_type:<18} {times} {fmt_time(e.transfer_in):>9} {fmt_time(e.transfer_out):>9}  {e.device:<16} {reason}")
    lines.append(f"total: latency {fmt_time(placement.latency)}, slowest stage {fmt_time(placement.stage_time)}, "
                 f"critical path {fmt_time(placement.critical_path)} ({' -> '.join(placement.critical_path_nodes[:3])}"
                 f"{' -> ...' if len(placement.critical_path_nodes) > 3 else ''})")
    return "\n".join(lines)


def _num(x: float | None) -> float | None:
    if x is None:
        return None
    return x if math.isfinite(x) else None


def plan_to_json(plan: CompilePlan, include_timing: bool = False) -> dict:
    """A JSON-able dict of the plan. Solver wall time is left out unless asked for, so equal plans give equal JSON."""
    p = plan.placement
    data = {
        "format": PLAN_FORMAT, "version": 1, "model": plan.model_name, "objective": plan.objective, "devices": plan.devices,
        "solver": p.solver,
        "predicted": {"latency_s": plan.predicted_latency, "stage_time_s": plan.predicted_stage_time,
                      "throughput_per_s": _num(plan.predicted_throughput), "critical_path_s": plan.critical_path,
                      "critical_path_nodes": p.critical_path_nodes},
        "single_device": {k: _num(v) for k, v in plan.single_device.items()},
        "subgraphs": [{"id": s.id, "device": s.device, "kind": s.kind, "nodes": s.nodes, "inputs": s.inputs, "outputs": s.outputs,
                       "predicted_time_s": s.predicted_time, "precision": s.precision or None,
                       **({"precision_note": s.precision_note} if s.precision_note else {})} for s in plan.subgraphs],
        "transfers": [{"tensor": t.tensor, "bytes": t.nbytes, "from": t.src, "to": t.dst, "time_s": t.time} for t in plan.transfers],
        "devices_detail": {i: {"busy_s": p.busy.get(i, 0.0), "utilisation": plan.utilisation.get(i, 0.0),
                               "resources": {r: {"used": u, "limit": _num(lim)} for r, (u, lim) in plan.resources.get(i, {}).items()}}
                           for i in plan.devices},
        "placement": [{"node": n, "op_type": p.explanations[n].op_type, "device": p.devices[n], "reason": p.explanations[n].reason,
                       "times_s": {k: _num(v) for k, v in p.explanations[n].times.items()},
                       "transfer_in_s": p.explanations[n].transfer_in, "transfer_out_s": p.explanations[n].transfer_out,
                       **({"reuse_factor": p.reuse_factors[n], "strategy": p.strategies.get(n, "latency")} if n in p.reuse_factors else {})}
                      for n in p.order],
        "notes": plan.notes,
    }
    if include_timing:
        data["solve_time_s"] = p.solve_time
    return data
