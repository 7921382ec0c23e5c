"""The partitioner's search (private to planner/placement.py): problem tables, MILP, greedy and local search.

Kept apart from placement.py so that the user-facing API (overrides, budgets, results, subgraph grouping) stays
readable. An assignment maps each node to an *option*: a device instance plus, on FPGAs, a design point (reuse
factor) with its own time and resources -- so the solver trades DSPs for speed under a budget instead of taking
one fixed estimate per layer.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, replace

import numpy as np

from hcc.errors import HccError
from hcc.planner.cost_model import STATIC_OPS, CostModel, GraphInfo
from hcc.planner.device_catalog import DeviceInstance

RESOURCES = ("mem", "dsp", "bram", "lut", "ff")
Assignment = dict[str, int]  # node name -> option index in Problem.opts[node]


@dataclass
class Option:
    d: int  # instance index (0 = host CPU)
    time: float  # s
    res: dict[str, float]  # resource -> amount
    reuse_factor: int = 0  # FPGA MAC layers: the design point (reuse factor and strategy); 0 / "" elsewhere
    strategy: str = ""
    precision: str = ""  # a joint precision choice (CostModel.cpu_precision_choices / fpga_width_choices): fp32, bf16, fx8..


@dataclass
class Tensor:
    name: str
    src: str | None  # producing node; None = graph input (on the host)
    consumers: list[str]  # placeable consumers
    is_output: bool
    link: list[float]  # per instance: one host-link hop for this tensor (0 on the host)
    nbytes: float
    # per instance: cost of bringing it in from another device: the hop, plus the time its consumer loses there
    # when it cannot fuse with its producer (Problem.unfused_penalty); None = link
    link_in: list[float] | None = None

    def __post_init__(self):
        if self.link_in is None:
            self.link_in = list(self.link)


class Problem:
    """Everything the solvers need, as plain numbers indexed by node name and instance index."""

    def __init__(self, info: GraphInfo, instances: list[DeviceInstance], objective: str, limits: list[dict[str, float]],
                 cm: CostModel, forced: dict[str, list[int]]):
        self.info, self.instances, self.objective, self.limits, self.forced = info, instances, objective, limits, dict(forced)
        # resources capped over all devices together (the accuracy budget a joint precision choice spends)
        self.shared: dict[str, float] = dict(cm.shared_limits)
        self.preferred: set[str] = set()  # pinned by a soft preference (placement._apply_preferences), not forced
        topo = info.topological()
        self.static = [n for n in topo if info.by_name[n].op_type in STATIC_OPS]
        self.names = [n for n in topo if info.by_name[n].op_type not in STATIC_OPS]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.D = len(instances)
        self.opts: dict[str, list[Option]] = {}
        self.allowed: dict[str, list[int]] = {}
        self.devices_of: dict[str, list[int]] = {}
        self.unfused_penalty: dict[str, dict[int, float]] = {}  # node -> FPGA instance -> s lost if its producer is elsewhere
        for n in self.names:
            node = info.by_name[n]
            opts = []
            for d, inst in enumerate(instances):
                if inst.kind == "fpga":
                    for est in cm.fpga_variants(node, inst.spec):
                        t = cm.predict(node, inst.spec, fpga=est)
                        if math.isfinite(t):
                            res = {"mem": cm.memory_bytes(node, inst.spec), "dsp": est.dsp, "bram": est.bram18k, "lut": est.lut, "ff": est.ff}
                            if est.accuracy > 0:
                                res["accuracy"] = est.accuracy
                            opts.append(Option(d, t, res, est.reuse_factor if est.strategy else 0, est.strategy,
                                               f"fx{est.width}" if est.width else ""))
                    if node.fusible_epilogue:  # its time assumes fusion into its producer on this FPGA
                        alone = cm.predict(replace(node, fusible_epilogue=False), inst.spec)
                        fused = min((o.time for o in opts if o.d == d), default=math.inf)
                        if math.isfinite(alone) and math.isfinite(fused) and alone > fused:
                            self.unfused_penalty.setdefault(n, {})[d] = alone - fused
                elif inst.kind == "cpu" and n in cm.cpu_precision_choices:  # fp32 and the lower precisions it may take
                    full = cm.predict(node, inst.spec, dtype="fp32")
                    for precision, accuracy in [("fp32", 0.0)] + sorted(cm.cpu_precision_choices[n].items()):
                        t = cm.predict(node, inst.spec, dtype=precision)
                        if math.isfinite(t) and (precision == "fp32" or t < full):  # no faster: it only costs accuracy
                            res = {"mem": cm.memory_bytes(node, inst.spec), **({"accuracy": accuracy} if accuracy > 0 else {})}
                            opts.append(Option(d, t, res, precision=precision))
                else:
                    t = cm.predict(node, inst.spec)
                    if math.isfinite(t):
                        opts.append(Option(d, t, {"mem": cm.memory_bytes(node, inst.spec)}))
            if not opts:
                raise HccError(f"no device in the mix can run node '{n}' ({node.op_type})")
            opts.sort(key=lambda o: (o.d, o.time, o.res.get("accuracy", 0.0)))
            self.opts[n] = opts
            self.unpin(n)
            if n in forced:
                if not any(o.d in forced[n] for o in opts):
                    names = sorted({instances[d].id for d in forced[n]})
                    raise HccError(f"node '{n}' ({node.op_type}) is forced onto {', '.join(names)}, which cannot run {node.op_type}",
                                   hint="remove or narrow the --place/--placement override for this node")
                self.pin(n, forced[n])
        self._build_tensors(info)

    def pin(self, n: str, devices: list[int]) -> None:
        """Restrict node `n` to the options on `devices` (it must have one there)."""
        self.forced[n] = list(devices)
        self.allowed[n] = [i for i, o in enumerate(self.opts[n]) if o.d in devices]
        self.devices_of[n] = sorted({self.opts[n][i].d for i in self.allowed[n]})

    def unpin(self, n: str) -> None:
        self.forced.pop(n, None)
        self.allowed[n] = list(range(len(self.opts[n])))
        self.devices_of[n] = sorted({o.d for o in self.opts[n]})

    def _build_tensors(self, info: GraphInfo) -> None:
        placeable = set(self.names)
        outputs = set(info.graph_outputs)
        self.tensors: list[Tensor] = []
        for name, tinfo in sorted(info.tensors.items()):
            if tinfo.kind not in ("input", "activation"):
                continue
            src = info.producer.get(name)
            if src is not None and src not in placeable:
                continue
            cons = [c for c in info.consumers.get(name, []) if c in placeable]
            if not cons and name not in outputs:
                continue
            link = [self.hop1(tinfo.nbytes, d) for d in range(self.D)]
            penalty = self.unfused_penalty.get(cons[0], {}) if len(cons) == 1 else {}
            link_in = [link[d] + penalty.get(d, 0.0) for d in range(self.D)]
            self.tensors.append(Tensor(name, src, cons, name in outputs, link, float(tinfo.nbytes), link_in))
        self.node_tensors: dict[str, list[int]] = {n: [] for n in self.names}
        for k, tensor in enumerate(self.tensors):
            for n in dict.fromkeys(([tensor.src] if tensor.src else []) + tensor.consumers):
                self.node_tensors[n].append(k)

    def hop1(self, nbytes: float, d: int) -> float:
        inst = self.instances[d]
        return 0.0 if inst.is_host or nbytes <= 0 else inst.spec.link_latency + nbytes / inst.spec.link_bandwidth

    def hop(self, nbytes: float, s: int, d: int) -> float:
        """Device s -> host -> device d."""
        return 0.0 if s == d else self.hop1(nbytes, s) + self.hop1(nbytes, d)

    def dev(self, a: Assignment, n: str) -> int:
        return self.opts[n][a[n]].d

    # -- evaluation
    def tensor_costs(self, k: int, a: Assignment) -> list[tuple[int, float]]:
        """(instance, seconds) charged for tensor k: one device->host copy if it leaves its producer's device,
        one host->device copy per other device that consumes it (graph outputs must reach the host)."""
        tensor = self.tensors[k]
        s = 0 if tensor.src is None else self.dev(a, tensor.src)
        dsts = {self.dev(a, c) for c in tensor.consumers}
        if tensor.is_output:
            dsts.add(0)
        dsts.discard(s)
        out = [(s, tensor.link[s])] if dsts and s != 0 else []
        out.extend((d, tensor.link_in[d]) for d in sorted(dsts) if d != 0)
        return out

    def busy(self, a: Assignment) -> list[float]:
        vec = [0.0] * self.D
        for n in self.names:
            o = self.opts[n][a[n]]
            vec[o.d] += o.time
        for k in range(len(self.tensors)):
            for d, c in self.tensor_costs(k, a):
                vec[d] += c
        return vec

    def key(self, busy: list[float]) -> tuple[float, float]:
        total = sum(busy)
        return (total, 0.0) if self.objective == "latency" else (max(busy), total)

    def usage(self, a: Assignment) -> list[dict[str, float]]:
        use = [dict.fromkeys(RESOURCES, 0.0) for _ in range(self.D)]
        for n in self.names:
            o = self.opts[n][a[n]]
            for res, v in o.res.items():
                use[o.d][res] = use[o.d].get(res, 0.0) + v
        return use

    def shared_ok(self, use: list[dict[str, float]], delta: dict[str, float] | None = None) -> bool:
        """Whether the resources capped over all devices together (self.shared) stay within their caps."""
        return all(sum(u.get(res, 0.0) for u in use) + (delta or {}).get(res, 0.0) <= lim * (1 + 1e-9) + 1e-12
                   for res, lim in self.shared.items())

    def feasible(self, a: Assignment) -> bool:
        use = self.usage(a)
        return all(use[d].get(res, 0.0) <= lim * (1 + 1e-9) for d in range(self.D) for res, lim in self.limits[d].items()) \
            and self.shared_ok(use)

    def fits(self, use: list[dict[str, float]], moves: dict[str, tuple[int, int]]) -> bool:
        """Would moving nodes from option old to option new keep every instance within its limits?"""
        delta: dict[tuple[int, str], float] = {}
        for n, (old, new) in moves.items():
            for sign, o in ((-1.0, self.opts[n][old]), (1.0, self.opts[n][new])):
                for res, v in o.res.items():
                    delta[(o.d, res)] = delta.get((o.d, res), 0.0) + sign * v
        if self.shared:
            total = {res: sum(v for (_, r), v in delta.items() if r == res) for res in self.shared}
            if any(v > 0 for v in total.values()) and not self.shared_ok(use, total):
                return False
        return all(use[d].get(res, 0.0) + v <= self.limits[d].get(res, math.inf) * (1 + 1e-9) for (d, res), v in delta.items() if v > 0)

    def moved_busy(self, a: Assignment, busy: list[float], moves: dict[str, int]) -> list[float]:
        """Busy vector after `moves` (node -> new option), recomputing only the tensors they touch."""
        affected = sorted({k for n in moves for k in self.node_tensors[n]})
        new = list(busy)
        for k in affected:
            for d, c in self.tensor_costs(k, a):
                new[d] -= c
        old = {n: a[n] for n in moves}
        for n, o in moves.items():
            before, after = self.opts[n][a[n]], self.opts[n][o]
            new[before.d] -= before.time
            new[after.d] += after.time
            a[n] = o
        for k in affected:
            for d, c in self.tensor_costs(k, a):
                new[d] += c
        a.update(old)
        return new

    def apply(self, a: Assignment, use: list[dict[str, float]], moves: dict[str, int]) -> None:
        for n, new in moves.items():
            for sign, o in ((-1.0, self.opts[n][a[n]]), (1.0, self.opts[n][new])):
                for res, v in o.res.items():
                    use[o.d][res] = use[o.d].get(res, 0.0) + sign * v
            a[n] = new

    def fastest_on(self, n: str, d: int) -> int | None:
        opts = [i for i in self.allowed[n] if self.opts[n][i].d == d]
        return min(opts, key=lambda i: (self.opts[n][i].time, i)) if opts else None

    def option_at(self, n: str, d: int, level: int) -> int | None:
        """The level-th fastest allowed option of n on d (clamped; -1 = the slowest, i.e. leanest design point)."""
        opts = sorted((i for i in self.allowed[n] if self.opts[n][i].d == d), key=lambda i: (self.opts[n][i].time, i))
        if not opts:
            return None
        return opts[max(-len(opts), min(level, len(opts) - 1))]

    def single_device(self, d: int, respect_overrides: bool) -> Assignment | None:
        """Everything on instance d; on an FPGA, the fastest uniform design point that fits its budget."""
        pools = {n: [i for i in (self.allowed[n] if respect_overrides else range(len(self.opts[n]))) if self.opts[n][i].d == d] for n in self.names}
        if not self.names or any(not pool for pool in pools.values()):
            return None
        depth = max(len(pool) for pool in pools.values())
        best = None
        for level in range(depth):
            a = {n: pool[min(level, len(pool) - 1)] for n, pool in pools.items()}
            if self.feasible(a) and (best is None or self.key(self.busy(a)) < self.key(self.busy(best))):
                best = a
        return best


# ---------------------------------------------------------------------------------------------------- MILP

def solve_milp(p: Problem, time_limit: float, rel_gap: float, objective: str | None = None) -> tuple[Assignment | None, str]:
    """The placement MILP for `objective` (default: the problem's own)."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    objective = objective or p.objective
    scale = 1e6  # microseconds keep HiGHS' absolute tolerances meaningful
    cost: list[float] = []
    busy_terms: list[list[tuple[int, float]]] = [[] for _ in range(p.D)]
    var: dict[tuple[str, int], int] = {}  # (node, option) -> column
    on: dict[tuple[str, int], list[int]] = {}  # (node, device) -> columns of its options there
    for n in p.names:
        for i in p.allowed[n]:
            o = p.opts[n][i]
            var[(n, i)] = len(cost)
            on.setdefault((n, o.d), []).append(len(cost))
            cost.append(0.0)
            busy_terms[o.d].append((var[(n, i)], o.time * scale))
    n_binary = len(cost)
    rows: list[list[tuple[int, float]]] = []
    lo: list[float] = []
    hi: list[float] = []

    def add(terms, lb, ub):
        rows.append(terms)
        lo.append(lb)
        hi.append(ub)

    def x(n, d, sign):
        return [(j, sign) for j in on.get((n, d), [])]

    for n in p.names:
        add([(var[(n, i)], 1.0) for i in p.allowed[n]], 1.0, 1.0)
    for tensor in p.tensors:
        src = tensor.src
        # y[v,d] >= x[c,d] - x[src,d]: v must be copied host -> d.
        for d in sorted({d for c in tensor.consumers for d in p.devices_of[c] if d != 0 and tensor.link_in[d] > 0}):
            if src is not None and p.devices_of[src] == [d]:
                continue
            y = len(cost)
            cost.append(0.0)
            busy_terms[d].append((y, tensor.link_in[d] * scale))
            for c in tensor.consumers:
                if (c, d) in on:
                    add([(y, 1.0)] + x(c, d, -1.0) + (x(src, d, 1.0) if src is not None else []), 0.0, np.inf)
        if src is None:
            continue
        # w[v,s] >= x[src,s] - x[c,s] (or >= x[src,s] for a graph output): v must be copied s -> host.
        for s in p.devices_of[src]:
            if s == 0 or tensor.link[s] <= 0 or not (tensor.is_output or any(p.devices_of[c] != [s] for c in tensor.consumers)):
                continue
            w = len(cost)
            cost.append(0.0)
            busy_terms[s].append((w, tensor.link[s] * scale))
            if tensor.is_output:
                add([(w, 1.0)] + x(src, s, -1.0), 0.0, np.inf)
            else:
                for c in tensor.consumers:
                    add([(w, 1.0)] + x(src, s, -1.0) + x(c, s, 1.0), 0.0, np.inf)
    for d in range(p.D):
        for res, lim in sorted(p.limits[d].items()):
            terms = [(var[(n, i)], p.opts[n][i].res.get(res, 0.0)) for n in p.names for i in p.allowed[n]
                     if p.opts[n][i].d == d and p.opts[n][i].res.get(res, 0.0) > 0]
            if terms and sum(v for _, v in terms) > lim:
                add(terms, -np.inf, lim)
    for res, lim in sorted(p.shared.items()):  # a cap over all devices together (the accuracy budget)
        terms = [(var[(n, i)], p.opts[n][i].res.get(res, 0.0)) for n in p.names for i in p.allowed[n] if p.opts[n][i].res.get(res, 0.0) > 0]
        if terms and sum(v for _, v in terms) > lim:
            add(terms, -np.inf, lim)
    if objective == "throughput":
        tvar = len(cost)
        cost.append(1.0)
        for d in range(p.D):
            add(busy_terms[d] + [(tvar, -1.0)], -np.inf, 0.0)
    eps = 1.0 if objective == "latency" else 1e-3  # throughput: among equal stages, prefer less total work
    for d in range(p.D):
        for j, v in busy_terms[d]:
            cost[j] += eps * v
    # Identical instances (same device, same limits): order them by busy time to cut symmetric branches.
    for d in range(1, p.D):
        if p.instances[d - 1].spec.name == p.instances[d].spec.name and p.limits[d - 1] == p.limits[d]:
            add(busy_terms[d - 1] + [(j, -v) for j, v in busy_terms[d]], 0.0, np.inf)
    data, ri, ci = [], [], []
    for r, terms in enumerate(rows):
        for j, v in terms:
            ri.append(r)
            ci.append(j)
            data.append(v)
    nvar = len(cost)
    matrix = coo_matrix((data, (ri, ci)), shape=(len(rows), nvar)).tocsr()
    integrality = np.zeros(nvar)
    integrality[:n_binary] = 1
    ub = np.ones(nvar)
    if objective == "throughput":
        ub[-1] = np.inf
    result = milp(np.array(cost), integrality=integrality, bounds=Bounds(np.zeros(nvar), ub),
                  constraints=[LinearConstraint(matrix, np.array(lo), np.array(hi))],
                  options={"time_limit": max(time_limit, 0.1), "mip_rel_gap": rel_gap, "disp": False})
    if result.x is None:
        return None, "milp (infeasible)" if result.status == 2 else f"milp (no solution: {result.message})"
    a = {n: max(p.allowed[n], key=lambda i: (result.x[var[(n, i)]], -i)) for n in p.names}
    return a, "milp (optimal)" if result.status == 0 else "milp (time limit)"


# ---------------------------------------------------------------------------------------------------- heuristic

def greedy(p: Problem) -> Assignment | None:
    """Topological greedy: each node takes the option with the least time + cost of fetching its inputs, within limits."""
    a: Assignment = {}
    use = [dict.fromkeys(RESOURCES, 0.0) for _ in range(p.D)]
    present: dict[str, set[int]] = {}
    for n in p.names:
        node = p.info.by_name[n]
        best = None
        for i in p.allowed[n]:
            o = p.opts[n][i]
            if any(use[o.d].get(res, 0.0) + v > p.limits[o.d].get(res, math.inf) for res, v in o.res.items()):
                continue
            if p.shared and not p.shared_ok(use, o.res):
                continue
            cost = o.time
            for tname in node.inputs:
                tinfo = p.info.tensors.get(tname)
                where = present.get(tname, {0} if p.info.producer.get(tname) is None else set())
                if tinfo is None or not where or o.d in where:
                    continue
                cost += p.hop1(tinfo.nbytes, o.d) + (0.0 if 0 in where else p.hop1(tinfo.nbytes, min(where)))
            if best is None or cost < best[0]:
                best = (cost, i)
        if best is None:
            return None
        o = p.opts[n][best[1]]
        a[n] = best[1]
        for res, v in o.res.items():
            use[o.d][res] = use[o.d].get(res, 0.0) + v
        for tname in node.inputs:
            present.setdefault(tname, {0} if p.info.producer.get(tname) is None else set()).add(o.d)
        for tname in node.outputs:
            present[tname] = {o.d}
    return a


def pipeline_split(p: Problem, level: int = 0) -> Assignment | None:
    """Throughput seed: cut the topological order into contiguous stages, one instance each, minimising the slowest
    stage (dynamic programming over cut positions x instances used; identical instances are interchangeable).

    A stage's time is its ops' fastest times on the instance plus the host-link time of the tensors live across its
    two cuts (approximate: the local search that follows uses the exact model). `level` picks each node's
    level-th fastest option per device (FPGA design points: 0 = fastest, -1 = leanest)."""
    n = len(p.names)
    if n == 0:
        return None
    live = np.zeros(n + 1)  # bytes live across the cut before position j
    pos = p.index
    for tensor in p.tensors:
        first = pos[tensor.src] + 1 if tensor.src is not None else 0
        last = max([pos[c] for c in tensor.consumers] + ([n] if tensor.is_output else []), default=first)
        if last >= first:
            live[first:last + 1] += tensor.nbytes
    specs: dict[str, list[int]] = {}
    for d, inst in enumerate(p.instances):
        specs.setdefault(inst.spec.name, []).append(d)
    groups = list(specs.values())
    prefix: list[np.ndarray] = []
    res_prefix: list[dict[str, np.ndarray]] = []
    choice: list[list[int | None]] = []
    for members in groups:
        d = members[0]
        picks = [p.option_at(name, d, level) for name in p.names]
        times = np.array([p.opts[name][i].time if i is not None else 1e30 for name, i in zip(p.names, picks)])
        prefix.append(np.concatenate([[0.0], np.cumsum(times)]))
        res_prefix.append({res: np.concatenate([[0.0], np.cumsum([p.opts[name][i].res.get(res, 0.0) if i is not None else 0.0
                                                                  for name, i in zip(p.names, picks)])]) for res in p.limits[d]})
        choice.append(picks)
    links = [np.array([p.hop1(b, g[0]) for b in live]) for g in groups]
    used_states = list(itertools.product(*[range(len(g) + 1) for g in groups]))
    val = {u: np.full(n + 1, np.inf) for u in used_states}
    back_i = {u: np.full(n + 1, -1, dtype=np.int64) for u in used_states}
    back_g = {u: np.full(n + 1, -1, dtype=np.int64) for u in used_states}
    zero = tuple(0 for _ in groups)
    val[zero][0] = 0.0
    for i in range(n):
        for u in used_states:
            v = val[u][i]
            if not np.isfinite(v):
                continue
            for g, members in enumerate(groups):
                if u[g] >= len(members):
                    continue
                d = members[0]
                seg = prefix[g][i + 1:] - prefix[g][i] + links[g][i] + links[g][i + 1:]
                seg[seg >= 1e29] = np.inf
                for res, lim in p.limits[d].items():
                    seg[res_prefix[g][res][i + 1:] - res_prefix[g][res][i] > lim * (1 + 1e-9)] = np.inf
                stage = np.maximum(seg, v)
                nu = tuple(x + (k == g) for k, x in enumerate(u))
                target = val[nu][i + 1:]
                better = stage < target - 1e-15
                target[better] = stage[better]
                back_i[nu][i + 1:][better] = i
                back_g[nu][i + 1:][better] = g
    finals = [u for u in used_states if np.isfinite(val[u][n])]
    if not finals:
        return None
    u = min(finals, key=lambda x: (val[x][n], x))
    a: Assignment = {}
    pos = n
    while pos > 0:
        i, g = int(back_i[u][pos]), int(back_g[u][pos])
        d = groups[g][u[g] - 1]
        for k in range(i, pos):
            a[p.names[k]] = p.option_at(p.names[k], d, level)
        u = tuple(x - (k == g) for k, x in enumerate(u))
        pos = i
    return a if all(v is not None for v in a.values()) and p.feasible(a) else None


def _components(p: Problem, a: Assignment) -> list[list[str]]:
    """Connected regions of nodes on the same instance (for whole-region moves)."""
    parent = {n: n for n in p.names}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for tensor in p.tensors:
        if tensor.src is None:
            continue
        for c in tensor.consumers:
            if p.dev(a, c) == p.dev(a, tensor.src):
                ra, rb = find(c), find(tensor.src)
                if ra != rb:
                    lo_, hi_ = sorted((ra, rb), key=p.index.__getitem__)
                    parent[hi_] = lo_
    groups: dict[str, list[str]] = {}
    for n in p.names:
        groups.setdefault(find(n), []).append(n)
    return [groups[r] for r in sorted(groups, key=p.index.__getitem__)]


def improve(p: Problem, a: Assignment, deadline: float, max_sweeps: int = 30) -> Assignment:
    """First-improvement local search: single-node option changes, then whole same-device regions moved at once.
    Bounded by sweeps (deterministic); the deadline is only a safety net."""
    a = dict(a)
    busy = p.busy(a)
    use = p.usage(a)
    current = p.key(busy)

    def better(key):
        return key[0] < current[0] - 1e-12 * max(current[0], 1e-9) or (key[0] <= current[0] and key[1] < current[1] - 1e-12 * max(current[1], 1e-9))

    for _ in range(max_sweeps):
        improved = False
        for n in p.names:
            if time.perf_counter() > deadline:
                return a
            for i in p.allowed[n]:
                if i == a[n] or not p.fits(use, {n: (a[n], i)}):
                    continue
                nb = p.moved_busy(a, busy, {n: i})
                key = p.key(nb)
                if better(key):
                    p.apply(a, use, {n: i})
                    busy, current, improved = nb, key, True
        for comp in _components(p, a):
            here = p.dev(a, comp[0])
            for d in range(p.D):
                if d == here or time.perf_counter() > deadline:
                    continue
                moves = {n: p.fastest_on(n, d) for n in comp}
                if any(i is None for i in moves.values()) or not p.fits(use, {n: (a[n], i) for n, i in moves.items()}):
                    continue
                nb = p.moved_busy(a, busy, moves)
                key = p.key(nb)
                if better(key):
                    p.apply(a, use, moves)
                    busy, current, improved = nb, key, True
                    break
        if not improved:
            break
    return a


def critical_path(p: Problem, a: Assignment) -> tuple[float, list[str]]:
    """Longest dependency path (op times + transfers on crossing edges, graph inputs/outputs via the host)."""
    finish: dict[str, float] = {}
    back: dict[str, str | None] = {}
    for n in p.names:
        start, prev = 0.0, None
        d = p.dev(a, n)
        for tname in p.info.by_name[n].inputs:
            tinfo = p.info.tensors.get(tname)
            src = p.info.producer.get(tname)
            placed = src in a
            ready = (finish[src] if placed else 0.0) + p.hop(tinfo.nbytes if tinfo else 0, p.dev(a, src) if placed else 0, d)
            if ready > start:
                start, prev = ready, src if placed else None
        finish[n] = start + p.opts[n][a[n]].time
        back[n] = prev
    outputs = set(p.info.graph_outputs)
    best, end = 0.0, None
    for n in p.names:
        out = max((p.hop(p.info.tensors[t].nbytes, p.dev(a, n), 0) for t in p.info.by_name[n].outputs if t in outputs and t in p.info.tensors),
                  default=0.0)
        if finish[n] + out > best:
            best, end = finish[n] + out, n
    path = []
    while end is not None:
        path.append(end)
        end = back[end]
    return best, path[::-1]
