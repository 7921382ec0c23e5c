"""The partitioner's decision: which device instance runs each ONNX node.

Model (why it looks like this): hcc's runtime runs subgraphs one at a time and moves every tensor that crosses a
device boundary through host memory (device -> host once, host -> device once per destination device). So with
busy(d) = op times on d + host-link time of the tensors d sends and receives:
  * `latency`    = sum over devices of busy(d)            (the sequential run time)
  * `throughput` = max over devices of busy(d)            (the slowest stage of a pipeline over the instances;
                   identical instances, e.g. 4 GPUs, share the work as separate stages)
Constraints: op support per device, user overrides (regex on op type / node name, onnx-mlir style), and per-instance
resource budgets (memory: weights + output activations of its ops; FPGA: DSP, BRAM18K, LUT, FF from the cost model).

Solver (planner/placement_solver.py): a node's options are (instance, FPGA design point); for `latency` a MILP
(scipy.optimize.milp / HiGHS, 0.5% gap) with one binary per option and continuous edge-cut variables linearised as
y[v,d] >= x[c,d] - x[p,d] (tensor v needed on d) and w[v,s] >= x[p,s] - x[c,s] (v leaves s); identical instances are
collapsed when capacity allows, or ordered by busy time. `throughput` (whose min-max LP relaxation is too weak for
HiGHS to finish with several instances) uses the MILP only on small graphs, otherwise a pipeline split (DP over cuts
of the topological order) + greedy + local search (single-node and whole-region moves); graphs above
`max_milp_nodes` and solver failures use the same heuristic. Every feasible single-device plan is evaluated too and
the best plan by the model wins, so the result is never worse than running everything on one device. Ties break
deterministically (objective, fewer nodes off the host, lowest option indices in node order); the same inputs give
the same plan unless the wall-clock `time_limit_s` cuts a search short (the plan's notes say so).
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field

import onnx

from hcc.errors import HccError
from hcc.planner import DEFAULT_TIME_LIMIT_S
from hcc.planner.cost_model import STATIC_OPS, CostModel, GraphInfo, analyze_model
from hcc.planner.device_catalog import DeviceInstance, parse_bytes
from hcc.planner.placement_solver import RESOURCES, Problem, critical_path, greedy, improve, pipeline_split, solve_milp

REASONS = ("faster", "only device that supports it", "budget exhausted", "forced by the user", "preferred by the user",
           "avoids transfers", "balances pipeline stages")
OBJECTIVES = ("latency", "throughput")
PLACEMENT_FORMAT = "hcc-placement"


# ---------------------------------------------------------------------------------------------------- overrides

@dataclass(frozen=True)
class Override:
    """Force nodes onto a device. `pattern` is a regex matched in FULL against the op type or node name
    (`match` = "any" | "type" | "name"); `type_pattern` additionally restricts the op type (onnx-mlir records
    carry both). `device` is an instance id ("gpu:sm_90#1"), a device name ("gpu:sm_90") or a kind ("gpu").
    When several overrides match a node, the last one wins (pass file overrides first, command-line ones after).
    `soft` (`--prefer`): the device is preferred, not forced: matched nodes go there as far as the budgets allow,
    and the rest move to wherever the partitioner finds best (a hard override of the same node wins)."""

    pattern: str
    device: str
    match: str = "any"
    type_pattern: str | None = None
    soft: bool = False

    def matches(self, name: str, op_type: str) -> bool:
        if self.type_pattern is not None and not re.fullmatch(self.type_pattern, op_type):
            return False
        if self.match == "type":
            return re.fullmatch(self.pattern, op_type) is not None
        if self.match == "name":
            return re.fullmatch(self.pattern, name) is not None
        return re.fullmatch(self.pattern, op_type) is not None or re.fullmatch(self.pattern, name) is not None


def parse_place_option(text: str, soft: bool = False) -> Override:
    """`--place 'Conv|Gemm=fpga'` -> Override('Conv|Gemm', 'fpga') (the last '=' separates the device);
    `soft=True` for `--prefer`."""
    flag = "--prefer" if soft else "--place"
    pattern, sep, device = text.rpartition("=")
    if not sep or not pattern or not device.strip():
        raise HccError(f"{flag} {text!r}: expected REGEX=DEVICE (e.g. 'Conv|Gemm=fpga' or 'layer1/.*=gpu:sm_90#0')")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise HccError(f"{flag} {text!r}: bad regular expression: {exc}") from None
    return Override(pattern, device.strip(), soft=soft)


def parse_budgets(items: list[str] | tuple[str, ...] | str) -> dict[str, float]:
    """['fpga.dsp=4000', 'gpu.mem=16GB'] (or one comma-separated string) -> {'fpga.dsp': 4000.0, 'gpu.mem': 16e9}."""
    if isinstance(items, str):
        items = [items]
    items = [p for item in items for p in item.split(",") if p.strip()]  # `--budget a=1,b=2` and repeated --budget
    budgets: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or "." not in key:
            raise HccError(f"--budget {item!r}: expected DEVICE.RESOURCE=VALUE (e.g. fpga.dsp=4000, gpu.mem=16GB)")
        budgets[key] = _budget_value(key, value)
    return budgets


def _budget_value(key: str, value: str | float) -> float:
    resource = key.rpartition(".")[2]
    if resource not in RESOURCES:
        raise HccError(f"budget {key!r}: unknown resource {resource!r} (known: {', '.join(RESOURCES)})")
    return parse_bytes(value, f"budget {key}") if resource == "mem" else float(parse_bytes(value, f"budget {key}"))


def save_placement(path: str | os.PathLike, placement: "Placement") -> None:
    """Write every node's device as records `{node_name, node_type, device}` that `load_placement` reads back.

    As in onnx-mlir's placement files, node_name and node_type are regexes matched in full, so names are saved
    escaped (`conv.1` -> `conv\\.1`); edit a record into a pattern (`layer1/.*`) to move many nodes at once."""
    info = placement.info
    records = [{"node_name": re.escape(n), "node_type": info.by_name[n].op_type, "device": placement.devices[n]} for n in placement.order]
    data = {"format": PLACEMENT_FORMAT, "version": 1, "objective": placement.objective,
            "devices": [i.id for i in placement.instances], "placement": records}
    with open(path, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def load_placement(path: str | os.PathLike) -> list[Override]:
    """Records -> overrides, in file order: `node_name` and/or `node_type` regexes (both must match when both are
    given); `"prefer": true` makes a record a soft preference (`--prefer`)."""
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise HccError(f"{path}: no such placement file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise HccError(f"{path}: not a readable placement file ({exc})") from None
    records = data.get("placement") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise HccError(f"{path}: expected {{\"placement\": [{{\"node_name\", \"node_type\", \"device\"}}, ...]}}")
    overrides = []
    for i, rec in enumerate(records):
        texts = isinstance(rec, dict) and all(isinstance(rec.get(k, ""), str) for k in ("device", "node_name", "node_type"))
        if not texts or not isinstance(rec.get("device"), str) or not (rec.get("node_name") or rec.get("node_type")):
            raise HccError(f"{path}: record {i} needs a device and a node_name or node_type (strings): {rec!r}")
        try:
            if rec.get("node_name"):
                type_pattern = rec.get("node_type") or None
                overrides.append(Override(rec["node_name"], rec["device"], "name", type_pattern, soft=bool(rec.get("prefer"))))
                if type_pattern:
                    re.compile(type_pattern)
            else:
                overrides.append(Override(rec["node_type"], rec["device"], "type", soft=bool(rec.get("prefer"))))
            re.compile(overrides[-1].pattern)
        except re.error as exc:
            raise HccError(f"{path}: record {i}: bad regular expression: {exc}") from None
    return overrides


# ---------------------------------------------------------------------------------------------------- results

@dataclass
class NodeExplanation:
    """Why a node went where it did."""

    node: str
    op_type: str
    device: str  # chosen instance id
    reason: str  # one of REASONS
    times: dict[str, float | None]  # device name -> predicted op time (s); None where it cannot run
    transfer_in: float  # s to bring its inputs from their producers' devices (under this placement)
    transfer_out: float  # s to send its outputs to the devices that consume them (and the host for graph outputs)


@dataclass
class Placement:
    """A device instance per node (by stable node name, see frontend/names.py) and the model's view of it."""

    devices: dict[str, str]  # node name -> instance id
    order: list[str]  # node names, topological
    instances: list[DeviceInstance]
    objective: str
    latency: float  # s, sum of busy times (sequential execution)
    stage_time: float  # s, max busy time (pipeline stage; 1/throughput)
    busy: dict[str, float]  # instance id -> s (op times + its transfers)
    critical_path: float  # s, longest dependency path including transfers
    critical_path_nodes: list[str]
    explanations: dict[str, NodeExplanation]
    resources: dict[str, dict[str, float]]  # instance id -> resource -> used
    limits: dict[str, dict[str, float]]  # instance id -> resource -> allowed
    single_device: dict[str, float | None]  # device name -> objective value of the all-on-it plan (None: infeasible)
    solver: str  # "milp (optimal)", "milp (time limit)", "heuristic", "single device"
    solve_time: float
    notes: list[str] = field(default_factory=list)
    # FPGA MAC layers: the design point chosen (hls4ml ReuseFactor and Strategy); the driver passes it to the backend
    reuse_factors: dict[str, int] = field(default_factory=dict)
    strategies: dict[str, str] = field(default_factory=dict)
    # a joint precision choice (CostModel.cpu_precision_choices / fpga_width_choices): node -> fp32, bf16, fx8, ...
    precisions: dict[str, str] = field(default_factory=dict)
    info: GraphInfo | None = field(default=None, repr=False, compare=False)

    @property
    def cost(self) -> float:
        return self.latency if self.objective == "latency" else self.stage_time


# ---------------------------------------------------------------------------------------------------- entry point

def _resolve_device(text: str, instances: list[DeviceInstance]) -> list[int]:
    text = text.strip()
    for selector in (lambda i: i.id == text, lambda i: i.spec.name == text, lambda i: i.kind == text):
        hits = [d for d, inst in enumerate(instances) if selector(inst)]
        if hits:
            return hits
    raise HccError(f"override device {text!r} is not in the device mix ({', '.join(i.id for i in instances)})",
                   hint="name an instance (gpu:sm_90#0), a device (gpu:sm_90) or a kind (gpu) of --devices")


def _limits(instances: list[DeviceInstance], budgets: dict[str, float | str] | None, notes: list[str]) -> list[dict[str, float]]:
    limits = []
    for inst in instances:
        spec = inst.spec
        lim = {"mem": float(spec.capacity_bytes)}
        if spec.kind == "fpga":
            lim.update(dsp=float(spec.dsp), bram=float(spec.bram18k))
            if spec.lut:
                lim["lut"] = float(spec.lut)
            if spec.ff:
                lim["ff"] = float(spec.ff)
        limits.append(lim)
    for key, value in sorted((budgets or {}).items()):
        selector, _, resource = key.rpartition(".")
        amount = _budget_value(key, value)
        hits = [d for d, inst in enumerate(instances) if selector in (inst.kind, inst.spec.name, inst.id)]
        if not hits:  # a typo would otherwise be ignored in silence
            raise HccError(f"--budget {key}: {selector!r} names no device of the mix ({', '.join(i.id for i in instances)})",
                           hint="name a kind (fpga), a device (fpga:xcu250) or an instance (fpga:xcu250#0) of --devices")
        for d in hits:
            limits[d][resource] = min(limits[d].get(resource, math.inf), amount)
    return limits


def place(model, instances: list[DeviceInstance], objective: str = "latency", budgets: dict[str, float | str] | None = None,
          overrides: list[Override] | None = None, time_limit_s: float = DEFAULT_TIME_LIMIT_S, cost_model: CostModel | None = None,
          max_milp_nodes: int = 400) -> Placement:
    """Place every node of `model` (a shape-inferred onnx.ModelProto, or a LoadedModel) on one of `instances`.

    `instances` come from device_catalog.parse_device_mix (host CPU first). `budgets`: {"fpga.dsp": 4000,
    "gpu.mem": "16GB", "gpu:sm_90#1.mem": ...} per instance of a kind, device name or instance id. `overrides`: later
    ones win. Raises HccError for impossible overrides or budgets no plan can meet.
    """
    started = time.perf_counter()
    deadline = started + time_limit_s
    if objective not in OBJECTIVES:
        raise HccError(f"unknown objective {objective!r}; choose {' or '.join(OBJECTIVES)}")
    if not instances or not instances[0].is_host:
        raise HccError("internal: the device mix must start with the host CPU (use parse_device_mix)")
    proto = getattr(model, "model", model)
    if not isinstance(proto, onnx.ModelProto):
        raise HccError("place() needs an onnx.ModelProto or a LoadedModel")
    info = analyze_model(proto)
    cm = cost_model or CostModel()
    notes: list[str] = []
    limits = _limits(instances, budgets, notes)
    forced: dict[str, list[int]] = {}
    preferred: dict[str, list[int]] = {}
    for o in sorted(overrides or [], key=lambda o: not o.soft):  # stable: preferences first, hard overrides win
        devices = _resolve_device(o.device, instances)
        hits = [n for n in info.nodes if n.op_type not in STATIC_OPS and o.matches(n.name, n.op_type)]
        for node in hits:
            (preferred if o.soft else forced)[node.name] = devices
            if not o.soft:
                preferred.pop(node.name, None)
        if not hits:  # a typo would otherwise be ignored in silence
            what = "--prefer" if o.soft else "--place"
            if any(o.matches(n.name, n.op_type) for n in info.nodes):
                continue  # it names only shape-only ops (Reshape, Shape, ...), which run wherever their consumer does
            by = {"name": "name", "type": "op type"}.get(o.match, "op type or name")
            raise HccError(f"{what} {o.pattern}={o.device} (or a placement-file record) matches no node of the model by {by}",
                           hint="patterns are regular expressions over node names (NAME=DEV) or op types (Conv=DEV); `hcc plan --explain` lists both")
    p = Problem(info, instances, objective, limits, cm, forced)
    _apply_preferences(p, preferred, notes)
    candidates, single = _search(p, objective, deadline, time_limit_s, max_milp_nodes, notes)
    if not candidates and p.names and p.preferred:
        notes.append(f"no plan keeps the {len(p.preferred)} remaining preferred node(s) on their device under the budgets; "
                     "they were placed freely")
        for n in sorted(p.preferred):
            p.unpin(n)
        p.preferred.clear()
        candidates, single = _search(p, objective, deadline, time_limit_s, max_milp_nodes, notes)
    if not candidates and p.names:
        raise HccError(_infeasible_message(p), hint="raise a --budget, add a device, or drop an override")

    def rank(c):  # objective, then fewer nodes off the host, then the lexicographically smallest option vector
        a, _ = c
        return p.key(p.busy(a)), sum(p.dev(a, n) != 0 for n in p.names), [a[n] for n in p.names]

    best, how = min(candidates, key=rank) if candidates else ({}, "empty graph")
    if p.shared and best:
        best = _leaner_precisions(p, best)
    return _finish(p, best, how, single, notes, started)


def _leaner_precisions(p: Problem, a: dict[str, int]) -> dict[str, int]:
    """Ties the solver leaves open: an FPGA width changes resources, not time. Narrow, one step at a time, the layer
    with the most multiplier area saved (MACs per iteration x W^2) per unit of added error to an option on the same
    device that is no slower, while every budget and the shared accuracy cap hold. Deterministic (graph order)."""
    a = dict(a)
    use = p.usage(a)
    while True:
        best = None
        for n in p.names:
            cur = p.opts[n][a[n]]
            if not cur.precision.startswith("fx"):
                continue
            for i in p.allowed[n]:
                o = p.opts[n][i]
                if i == a[n] or o.d != cur.d or not o.precision.startswith("fx") or o.time > cur.time * (1 + 1e-9) + 1e-15:
                    continue
                new, old = int(o.precision[2:]), int(cur.precision[2:])
                if new >= old or not p.fits(use, {n: (a[n], i)}):
                    continue
                saved = (old * old - new * new) * max(p.info.by_name[n].mac_block, 1.0)
                extra = o.res.get("accuracy", 0.0) - cur.res.get("accuracy", 0.0)
                key = (saved / max(extra, 1e-12), -p.index[n], -new)
                if best is None or key > best[0]:
                    best = (key, n, i)
        if best is None:
            return a
        p.apply(a, use, {best[1]: best[2]})


def _apply_preferences(p: Problem, preferred: dict[str, list[int]], notes: list[str]) -> None:
    """Pin the preferred nodes their device can run, then unpin, heaviest first, those that overflow a budget even
    at their leanest design point (the solver then places them freely)."""
    unsupported = []
    for n, devices in preferred.items():
        if n in p.opts and any(o.d in devices for o in p.opts[n]):
            p.pin(n, devices)
            p.preferred.add(n)
        elif n in p.opts:
            unsupported.append(n)
    if unsupported:
        notes.append(f"preferred device cannot run {len(unsupported)} node(s), placed freely: {', '.join(unsupported[:8])}"
                     + (" ..." if len(unsupported) > 8 else ""))
    moved: dict[tuple[str, str], list[str]] = {}
    while True:
        over = _lean_overflow(p)
        if over is None:
            break
        d, res = over
        mine = [n for n in p.preferred if p.devices_of[n] == [d]]
        if not mine:
            break  # hard overrides alone overflow: the error names them
        def weight(n: str):  # most of the resource first; on a tie, the node that gains least from the device
            lean = _leanest(p, n, d)
            elsewhere = min((o.time for o in p.opts[n] if o.d != d), default=math.inf)
            return lean.res.get(res, 0.0), lean.time - elsewhere, n

        heaviest = max(mine, key=weight)
        p.unpin(heaviest)
        p.preferred.discard(heaviest)
        moved.setdefault((p.instances[d].id, res), []).append(heaviest)
    for (inst, res), names in moved.items():
        notes.append(f"{len(names)} preferred node(s) did not fit the {res} budget of {inst} and were placed freely: "
                     + ", ".join(names[:8]) + (" ..." if len(names) > 8 else ""))


def _leanest(p: Problem, n: str, d: int):
    """The option of `n` on instance `d` that uses the smallest largest fraction of any of d's limits."""
    limits = {r: v for r, v in p.limits[d].items() if v > 0}
    return min((p.opts[n][i] for i in p.allowed[n] if p.opts[n][i].d == d),
               key=lambda o: (max((o.res.get(r, 0.0) / v for r, v in limits.items()), default=0.0), o.time))


def _lean_overflow(p: Problem) -> tuple[int, str] | None:
    """(instance, resource) that the nodes pinned to that one instance overflow at their leanest options, or None."""
    for d in range(p.D):
        pinned = [n for n in p.names if p.devices_of[n] == [d]]
        if not pinned:
            continue
        lean = [_leanest(p, n, d) for n in pinned]
        for res, lim in sorted(p.limits[d].items()):
            if sum(o.res.get(res, 0.0) for o in lean) > lim * (1 + 1e-9):
                return d, res
    return None


def _search(p: Problem, objective: str, deadline: float, time_limit_s: float, max_milp_nodes: int, notes: list[str]):
    """Candidate assignments: single-device plans, the MILP's (latency, or small graphs) and the heuristic's."""
    candidates: list[tuple[dict[str, int], str]] = []
    single: dict[str, float | None] = {}
    for d, inst in enumerate(p.instances):
        if inst.spec.name not in single:
            a = p.single_device(d, respect_overrides=False)
            single[inst.spec.name] = p.key(p.busy(a))[0] if a is not None else None
        a = p.single_device(d, respect_overrides=True) if d == 0 or inst.spec.name != p.instances[d - 1].spec.name else None
        if a is not None:  # (an identical instance's single-device plan is the same plan)
            candidates.append((a, "single device"))
    # Latency: the MILP proves optimality (to 0.5%) in well under a second for typical models. Throughput's min-max
    # LP relaxation is weak and the MILP rarely finishes with several instances, so it is used only on small
    # graphs; otherwise a pipeline split + greedy + local search (deterministic) decide.
    small = len(p.names) * p.D <= 100
    use_milp = 0 < len(p.names) <= max_milp_nodes and (objective == "latency" or small)
    if use_milp and objective == "latency":
        _collapse_identical(p, notes)
    if use_milp:
        a, how = solve_milp(p, deadline - time.perf_counter(), 5e-3 if objective == "latency" else 1e-3)
        if a is not None and p.feasible(a):
            if how != "milp (optimal)":
                notes.append(f"{how}: polished by local search; a longer --time-limit may find a better plan")
                a = improve(p, a, max(deadline, time.perf_counter() + 1.0))
            candidates.append((a, how))
        else:
            notes.append(f"the MILP gave no usable plan ({how}); used the heuristic")
            use_milp = False
    if not use_milp and p.names:
        seeds = [greedy(p)] + ([pipeline_split(p, 0), pipeline_split(p, -1)] if objective == "throughput" else [])
        if objective == "throughput" and len(p.names) <= max_milp_nodes:
            seeds.append(_latency_optimum(p, deadline))  # a good start: its busiest device bounds the stage time
        seeds += [c[0] for c in candidates]  # single-device plans (and a time-limited MILP's answer)
        seeds = sorted((a for a in seeds if a is not None and p.feasible(a)), key=lambda a: (p.key(p.busy(a)), [a[n] for n in p.names]))
        unique = [a for i, a in enumerate(seeds) if all(a != b for b in seeds[:i])]
        for start in unique:
            candidates.append((improve(p, start, max(deadline, time.perf_counter() + 1.0)), "heuristic"))
    if time.perf_counter() > deadline and p.names:
        notes.append(f"the {time_limit_s:g} s time limit cut the search short; plans may differ between runs")
    return candidates, single


def _latency_optimum(p: Problem, deadline: float):
    """The latency MILP's assignment (fast and usually optimal), as a seed for the throughput heuristic."""
    a, _ = solve_milp(p, max(0.5, min(3.0, (deadline - time.perf_counter()) / 3)), 5e-3, objective="latency")
    return a


def _infeasible_message(p: Problem) -> str:
    """Name the instance and resource that the forced nodes alone overflow, when that is the cause."""
    for d, inst in enumerate(p.instances):
        pinned = [n for n in p.names if p.devices_of[n] == [d]]
        for res, lim in sorted(p.limits[d].items()):
            need = sum(min(p.opts[n][i].res.get(res, 0.0) for i in p.allowed[n]) for n in pinned)
            if need > lim:
                return (f"the {len(pinned)} node(s) forced onto {inst.id} need at least {res} {need:g}, "
                        f"but {inst.id} allows {res} {lim:g}")
        # No resource overflows alone, but FPGA design points trade one for another (weights in LUTs or in BRAM):
        # take each node's leanest option (smallest largest fraction of a limit) and report what still overflows.
        limits = {r: v for r, v in p.limits[d].items() if v > 0}

        def leanest(n: str):
            return min((p.opts[n][i] for i in p.allowed[n]), key=lambda o: max((o.res.get(r, 0.0) / v for r, v in limits.items()), default=0.0))

        lean = [leanest(n) for n in pinned]
        for res, lim in sorted(limits.items()):
            need = sum(o.res.get(res, 0.0) for o in lean)
            if pinned and need > lim:
                return (f"the {len(pinned)} node(s) forced onto {inst.id} need {res} {need:g} with each layer's leanest "
                        f"design point, but {inst.id} allows {res} {lim:g}")
    return "no placement satisfies the budgets and overrides: " + "; ".join(
        f"{inst.id}: " + ", ".join(f"{r}<={v:g}" for r, v in sorted(p.limits[d].items())) for d, inst in enumerate(p.instances))


def _collapse_identical(p: Problem, notes: list[str]) -> None:
    """For latency, identical instances only matter when one alone could run out of a resource: sequential execution
    makes a plan that uses #1 no faster than the same plan merged onto #0. When even the heaviest option of every
    node fits on #0 at once, drop the other instances' options (exact, and it removes the MILP's symmetry)."""
    by_spec: dict[str, list[int]] = {}
    for d, inst in enumerate(p.instances):
        by_spec.setdefault(inst.spec.name, []).append(d)
    for members in by_spec.values():
        first, rest = members[0], members[1:]
        if not rest or any(p.limits[d] != p.limits[first] for d in rest):
            continue
        if any(d in p.forced.get(n, ()) for n in p.names for d in rest):
            continue
        heaviest = {res: sum(max((o.res.get(res, 0.0) for o in p.opts[n] if o.d == first), default=0.0) for n in p.names)
                    for res in p.limits[first]}
        if all(heaviest[res] <= lim for res, lim in p.limits[first].items()):
            for n in p.names:
                p.allowed[n] = [i for i in p.allowed[n] if p.opts[n][i].d not in rest]
                p.devices_of[n] = [d for d in p.devices_of[n] if d not in rest]


def _finish(p: Problem, a: dict[str, int], solver: str, single: dict[str, float | None], notes: list[str], started: float) -> Placement:
    info, instances = p.info, p.instances
    dev = {n: p.dev(a, n) for n in p.names}
    for n in p.static:  # compile-time ops follow their first consumer (or stay on the host)
        consumers = [c for t in info.by_name[n].outputs for c in info.consumers.get(t, []) if c in a]
        dev[n] = dev[min(consumers, key=p.index.__getitem__)] if consumers else 0
    busy = p.busy(a)
    use = p.usage(a)
    explanations = {}
    specs = list(dict.fromkeys(inst.spec.name for inst in instances))
    for n in info.topological():
        node = info.by_name[n]
        d = dev[n]
        if n in p.static:
            explanations[n] = NodeExplanation(n, node.op_type, instances[d].id, "avoids transfers", dict.fromkeys(specs, 0.0), 0.0, 0.0)
            continue
        chosen = p.opts[n][a[n]]
        times: dict[str, float | None] = dict.fromkeys(specs)
        for o in p.opts[n]:
            name = instances[o.d].spec.name
            times[name] = o.time if times[name] is None else min(times[name], o.time)
        producer = info.producer.get(node.inputs[0]) if node.inputs else None
        unfused = d in p.unfused_penalty.get(n, {}) and producer in dev and dev[producer] != d
        times[instances[d].spec.name] = chosen.time + (p.unfused_penalty[n][d] if unfused else 0.0)  # (not fused: see Tensor.link_in)
        t_in = sum(p.hop(info.tensors[t].nbytes, dev.get(info.producer.get(t), 0), d) for t in node.inputs if t in info.tensors)
        t_out = sum(c for k in p.node_tensors[n] if p.tensors[k].src == n for _, c in p.tensor_costs(k, a))
        faster = [i for i in p.allowed[n] if p.opts[n][i].time < chosen.time * (1 - 1e-9)]
        if n in p.preferred:
            reason = "preferred by the user"
        elif n in p.forced:
            reason = "forced by the user"
        elif len(p.devices_of[n]) == 1 and len({p.opts[n][i].d for i in range(len(p.opts[n]))}) == 1:
            reason = "only device that supports it"
        elif not faster:
            reason = "faster"
        elif not any(p.fits(use, {n: (a[n], i)}) for i in faster):
            reason = "budget exhausted"
        elif p.objective == "throughput" and all(
                sum(p.moved_busy(a, busy, {n: i})) - sum(busy) <= p.opts[n][i].time - chosen.time + 1e-15 for i in faster):
            reason = "balances pipeline stages"
        else:
            reason = "avoids transfers"
        explanations[n] = NodeExplanation(n, node.op_type, instances[d].id, reason, times, t_in, t_out)
    cp, cp_nodes = critical_path(p, a) if a else (0.0, [])
    order = info.topological()
    return Placement(
        devices={n: instances[dev[n]].id for n in order}, order=order, instances=list(instances),
        objective=p.objective, latency=sum(busy), stage_time=max(busy) if busy else 0.0,
        busy={inst.id: busy[d] for d, inst in enumerate(instances)}, critical_path=cp, critical_path_nodes=cp_nodes,
        explanations=explanations, resources={inst.id: {r: v for r, v in use[d].items() if v} for d, inst in enumerate(instances)},
        limits={inst.id: dict(p.limits[d]) for d, inst in enumerate(instances)}, single_device=single, solver=solver,
        solve_time=time.perf_counter() - started, notes=notes, info=info,
        reuse_factors={n: p.opts[n][a[n]].reuse_factor for n in p.names if p.opts[n][a[n]].reuse_factor},
        strategies={n: p.opts[n][a[n]].strategy for n in p.names if p.opts[n][a[n]].strategy},
        precisions={n: p.opts[n][a[n]].precision for n in p.names if p.opts[n][a[n]].precision},
    )


# ---------------------------------------------------------------------------------------------------- subgraphs

@dataclass
class PlacedSubgraph:
    """A convex run of same-device nodes: one outlined function / artifact, with the tensors that cross into and out
    of it. The driver hands its id, device, nodes and device_index to the outliner (passes/outline.py:
    SubgraphGroup, which carries just those)."""

    id: str  # "sg0", "sg1", ... in execution order
    device: str  # instance id
    node_names: list[str]  # topological order
    inputs: list[str]  # produced outside (other groups, graph inputs, weights), in order of first use
    outputs: list[str]  # consumed by later groups or graph outputs, in order of production

    @property
    def nodes(self) -> list[str]:  # the name passes/outline.py uses
        return self.node_names

    @property
    def device_index(self) -> int:
        """The instance number: 1 for "gpu:sm_90#1"."""
        return int(self.device.rpartition("#")[2] or 0)


def group_subgraphs(model, placement: Placement) -> list[PlacedSubgraph]:
    """Cut the placement into subgraphs, in execution order.

    A list schedule keeps running nodes of the current device while any is ready (ties: graph order) and switches
    device only when none is; maximal same-device runs of that order become the groups. A run of a topological order
    is convex (a path between two of its nodes passes only through nodes between them, hence inside the run), so no
    tensor leaves a subgraph and comes back; groups are in a valid execution order by construction.
    """
    proto = getattr(model, "model", model)
    info = analyze_model(proto)  # the model given (e.g. after weight lifting), matched to the placement by node name
    position = {n.name: i for i, n in enumerate(info.nodes)}
    device: dict[str, str] = {}
    for node in info.topological()[::-1]:
        if node in placement.devices:
            device[node] = placement.devices[node]
        elif info.by_name[node].op_type in STATIC_OPS:  # a constant the placement did not see: join its first user
            users = [c for t in info.by_name[node].outputs for c in info.consumers.get(t, []) if c in device]
            device[node] = device[min(users, key=position.__getitem__)] if users else placement.instances[0].id
        else:
            raise HccError(f"internal: node '{node}' ({info.by_name[node].op_type}) has no device in the placement",
                           hint="name the nodes (frontend/names.py) before placing, and group the same model")
    preds: dict[str, set[str]] = {n.name: {info.producer[t] for t in n.inputs + n.weights if t in info.producer} for n in info.nodes}
    waiting = {n: len(p) for n, p in preds.items()}
    succs: dict[str, list[str]] = {n.name: [] for n in info.nodes}
    for n, ps in preds.items():
        for q in ps:
            succs[q].append(n)
    ready = sorted((n for n, c in waiting.items() if c == 0), key=position.__getitem__)
    order: list[str] = []
    current = None
    while ready:
        same = [n for n in ready if device[n] == current]
        if same:
            pick = same[0]
        else:  # switch: prefer a node that consumes computed values over a free-standing constant
            pick = next((n for n in ready if preds[n] or info.by_name[n].op_type not in STATIC_OPS), ready[0])
            current = device[pick]
        ready.remove(pick)
        order.append(pick)
        for s in succs[pick]:
            waiting[s] -= 1
            if waiting[s] == 0:
                ready.append(s)
        ready.sort(key=position.__getitem__)
    runs: list[list[str]] = []
    for n in order:
        if runs and device[runs[-1][-1]] == device[n]:
            runs[-1].append(n)
        else:
            runs.append([n])
    group_of = {n: g for g, run in enumerate(runs) for n in run}
    outputs = set(info.graph_outputs)
    groups = []
    for g, run in enumerate(runs):
        produced = {t for n in run for t in info.by_name[n].outputs}
        ins: dict[str, None] = {}
        for n in run:
            for t in (i for i in _node_inputs(proto, info, n)):
                if t not in produced:
                    ins.setdefault(t)
        outs: dict[str, None] = {}
        for n in run:
            for t in info.by_name[n].outputs:
                if t in outputs or any(group_of[c] != g for c in info.consumers.get(t, [])):
                    outs.setdefault(t)
        groups.append(PlacedSubgraph(f"sg{g}", device[run[0]], run, list(ins), list(outs)))
    return groups


def _node_inputs(proto: onnx.ModelProto, info: GraphInfo, name: str) -> list[str]:
    """All non-empty inputs of a node in operand order (activations, weights and static values alike)."""
    return [t for t in proto.graph.node[info.by_name[name].index].input if t]
