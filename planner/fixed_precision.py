"""FPGA fixed-point widths per layer from measured sensitivity (issue 13 item 5), instead of a 16-bit default.

Why measured: the FPGA backend's `auto` types (backends/fpga/precision.py) are the narrowest that cannot overflow, and
its worst-case error bound is loose; neither says how much accuracy a narrower word costs end to end. So, as for the
CPU's bf16 and the GPU's fp16 (planner/precision.py, planner/subgraph_precision.py), every number here comes from
running the model with onnxruntime after rewriting ONE layer (or, to confirm, the chosen set) to the arithmetic the
backend generates for it, and comparing its outputs with fp32's.

What the backend computes for a MAC layer (Conv, ConvTranspose, Gemm, MatMul with a constant weight) given node
types `weight`, `bias`, `result` (the keys of an fpga.toml [node."name"] section): weights and bias rounded to their
types at compile time, exact products and an exact accumulator (`accum = auto`), the result (after a fused epilogue
such as ReLU) stored in the result type, which the next layers read; a padded convolution's pad op stores its input in
that result type too. The emulation reproduces exactly that:
  * weight and bias: rounded in numpy by the backend's own `fixed_point.from_float` / `to_float` (bit for bit the
    ap_fixed conversion), folded into new initializers;
  * result: the op's fp32 output goes through Cast(DOUBLE) -> Mul(2**F) -> Add(0.5) -> Floor -> Max/Min(codes) ->
    Mul(2**-F) -> Cast(FLOAT): AP_RND (round half up) and AP_SAT (clamp), in float64 so that every code is exact;
  * the product and sum run in fp32 (onnxruntime), where the backend's are exact: the difference is fp32 rounding,
    orders of magnitude below the LSBs of the widths here (it is why widths above 24 bits are not candidates).
Types for width W: ap_fixed<W, I, AP_RND, AP_SAT>, I (sign bit included) from the calibrated range: max |w| for
weights and biases, 2 x max |y| over the calibration inputs for results (one guard bit). AP_SAT because the range is calibrated: an
input outside it saturates (bounded error) instead of wrapping around (a sign flip).

Not emulated: the non-MAC layers between them (pooling, additions, Softmax), which keep the configured or default type
(ap_fixed<16,6>) as before, and the FPGA subgraph's input conversion. The choice's error is therefore the MAC layers'
share; the plan's notes say so.

The choice (`choose_widths`): every layer starts at WIDE_WIDTH (32 bits; effectively fp32 here). Greedy, like the
per-op CPU choice: repeatedly narrow the (layer, width) with the most multiplier area saved (MACs per iteration x W^2)
per unit of its own measured error whose errors, composed conservatively (precision.compose: max_abs and rel add),
still fit `margin` x the budget; then one end-to-end run of all chosen widths; while it is over the margin, widen the
most sensitive narrowed layer one step and run again; then verify on held-out inputs against the whole budget. A
budget no candidate fits keeps every layer at WIDE_WIDTH and says so. Deterministic: fixed inputs, graph order breaks
ties, one thread.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hcc.errors import HccError
from hcc.planner.precision import (
    DEFAULT_MARGIN,
    AccuracyBudget,
    OutputError,
    _as_model,
    _as_samples,
    _value_types,
    compare,
    compose,
    node_keys,
    output_errors_from_json,
    plan_fields_from_json,
    reference_outputs,
    run_model,
)

FIXED_WIDTHS = (8, 12, 16, 18)  # candidate word widths, narrowest first
# A result's range comes from a few calibration inputs; held-out inputs went past it (saturating: errors of 100x the
# calibration error on the test models without this). One guard bit, as the backend's `auto_mode = "observed"` has.
RESULT_HEADROOM = 2.0
INPUT_WIDTH = 18  # an FPGA subgraph's inputs, converted on entry (the widest candidate: a DSP port's 18 bits)
WIDE_WIDTH = 32  # where a layer stays when no candidate fits the budget (below fp32's resolution here)
MAC_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
FORMAT = "hcc-fixed-widths"
EMULATION = ("onnxruntime: weights and biases rounded by the backend's fixed_point.from_float, each layer's fp32 "
             "output rounded (AP_RND) and saturated (AP_SAT) to its result type in float64; products and sums in fp32")


@dataclass
class LayerRange:
    """Calibrated magnitudes of one MAC layer: its constants and its output over the calibration inputs."""

    weight_max: float
    bias_max: float | None
    out_lo: float
    out_hi: float


@dataclass
class LayerSensitivity:
    """One FPGA MAC layer's measured end-to-end error when it alone computes at each candidate width."""

    node: str
    op_type: str
    index: int
    mac_block: int  # multiplications per output iteration (the backend's fully parallel multiplier count)
    macs: int
    range: LayerRange
    errors: dict[str, dict[str, OutputError]]  # str(width) -> output -> error


@dataclass
class LayerWidth:
    """The width chosen for one layer, its types (what goes into the FPGA config) and why."""

    node: str
    op_type: str
    width: int
    types: dict[str, str]  # weight / bias / result -> ap_fixed<...>
    budget_cost: float  # its own measured error at this width as a fraction of the budget (0 at WIDE_WIDTH)
    reason: str


@dataclass
class WidthPlan:
    """Per-layer widths under a budget, confirmed end to end (calibration) and verified on held-out inputs."""

    budget: str
    margin: float
    layers: list[LayerWidth]
    predicted: dict[str, OutputError]  # composed (conservative) from the per-layer errors
    calibration: dict[str, OutputError]  # one run, every chosen width emulated together
    held_out: dict[str, OutputError] | None
    calibration_ok: bool
    held_out_ok: bool | None
    widened: list[str]  # node:width steps taken back after a confirming run exceeded the margin
    runs: int
    sensitivities: list[LayerSensitivity]
    emulation: str = EMULATION
    notes: list[str] = field(default_factory=list)
    inputs: dict[str, str] = field(default_factory=dict)  # FPGA subgraph input tensor -> its type on entry
    region: list[str] = field(default_factory=list)  # the FPGA nodes that read `inputs` converted

    def widths(self) -> dict[str, int]:
        return {lw.node: lw.width for lw in self.layers}

    def fixed(self) -> tuple[dict[str, int], dict[str, LayerRange], dict[str, str], set[str]]:
        """What `emulate_widths` needs to reproduce this choice: (widths, ranges, input types, region)."""
        return self.widths(), {s.node: s.range for s in self.sensitivities}, dict(self.inputs), set(self.region)

    def fpga_config(self) -> dict:
        """The chosen types as an fpga.toml table (backends/fpga/config.from_dict): one [node."name"] per layer, one
        [tensor."name"] per subgraph input."""
        table: dict = {"node": {lw.node: dict(lw.types) for lw in self.layers}}
        if self.inputs:
            table["tensor"] = {name: {"precision": t} for name, t in self.inputs.items()}
        return table

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WidthPlan:
        data = plan_fields_from_json(text, FORMAT, "fixed-point width plan")
        outs = output_errors_from_json
        sens = [LayerSensitivity(**{**s, "range": LayerRange(**s["range"]), "errors": {w: outs(e) for w, e in s["errors"].items()}})
                for s in data.pop("sensitivities")]
        return cls(**{**data, "layers": [LayerWidth(**lw) for lw in data["layers"]], "predicted": outs(data["predicted"]),
                      "calibration": outs(data["calibration"]), "held_out": outs(data["held_out"]), "sensitivities": sens})


# ---------------------------------------------------------------------------------------------------------------
# types


def integer_bits(magnitude: float, signed: bool) -> int:
    """Integer bits (sign included) so that `magnitude` fits: floor(log2 m) + 1, + 1 for the sign."""
    if not magnitude > 0 or not math.isfinite(magnitude):
        return 1
    return math.floor(math.log2(magnitude)) + 1 + (1 if signed else 0)


def fixed_type(width: int, magnitude: float, signed: bool = True) -> str:
    """ap_fixed<W, I, AP_RND, AP_SAT> holding +-`magnitude` (module docstring)."""
    kind = "ap_fixed" if signed else "ap_ufixed"
    return f"{kind}<{width},{integer_bits(magnitude, signed)},AP_RND,AP_SAT>"


def layer_types(r: LayerRange, width: int) -> dict[str, str]:
    """The FPGA config types of a layer at `width`: weight, bias (when it has one) and result."""
    types = {"weight": fixed_type(width, r.weight_max)}
    if r.bias_max is not None:
        types["bias"] = fixed_type(width, r.bias_max)
    types["result"] = fixed_type(width, RESULT_HEADROOM * max(abs(r.out_lo), abs(r.out_hi)))
    return types


def _quantize_array(values: np.ndarray, type_text: str) -> np.ndarray:
    from hcc.backends.fpga import fixed_point as fx

    t = fx.FixedType.parse(type_text)
    return fx.to_float(fx.from_float(values, t), t.frac).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# layers, ranges, emulation


def mac_layers(model: onnx.ModelProto, nodes: list[str] | None = None) -> list[tuple[int, str, onnx.NodeProto]]:
    """(index, key, node) of every float MAC layer with a constant weight (what the FPGA backend builds as a MAC
    layer), optionally only those named in `nodes`, in graph order."""
    types = _value_types(model)
    inits = {i.name for i in model.graph.initializer}
    wanted = None if nodes is None else set(nodes)
    found = []
    for i, (key, node) in enumerate(zip(node_keys(model), model.graph.node)):
        if node.op_type not in MAC_LAYER_OPS or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        if wanted is not None and key not in wanted:
            continue
        if node.input[1] in inits and types.get(node.input[0], (0,))[0] == TensorProto.FLOAT:
            found.append((i, key, node))
    return found


def _block_and_macs(node: onnx.NodeProto, types) -> tuple[int, int]:
    from hcc.planner.precision import op_flops

    shape = lambda name: types.get(name, (0, None))[1]  # noqa: E731
    w = shape(node.input[1]) or []
    macs = op_flops(node, types) // 2
    if node.op_type == "Conv" and len(w) >= 2:
        block = math.prod(w)
    elif node.op_type == "ConvTranspose" and len(w) >= 2:
        block = math.prod(w)
    elif len(w) >= 2:
        block = w[-2] * w[-1]
    else:
        block = max(math.prod(w), 1) if w else 1
    return int(block), int(macs)


# Elementwise ops the FPGA backend fuses into a MAC layer as its epilogue when they are the single consumer
# (backends/fpga/transforms.py: a bias Add folds into the initial value; ReLU/Clip stay in the epilogue); the layer's
# result type applies to the end of that chain, so the emulation rounds there. Mul/Div (a scale folded into the
# weights) end the chain: the loader folds BatchNorm into the weights before this sees the model.
EPILOGUE_OPS = ("Add", "Sub", "Relu", "Clip", "LeakyRelu", "Max", "Min")


def epilogue(model: onnx.ModelProto, node: onnx.NodeProto) -> tuple[list[onnx.NodeProto], str, list[str]]:
    """(the fused epilogue's nodes, the tensor at its end, the constants it adds) of a MAC layer `node`."""
    inits = {i.name for i in model.graph.initializer}
    outputs = {o.name for o in model.graph.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for name in dict.fromkeys(n.input):
            consumers.setdefault(name, []).append(n)
    chain, added, current = [], [], node.output[0]
    while current not in outputs and len(consumers.get(current, [])) == 1:
        c = consumers[current][0]
        acts = [i for i in c.input if i and i not in inits]
        if c.op_type not in EPILOGUE_OPS or acts != [current] or len(c.output) != 1:
            break
        if c.op_type in ("Add", "Sub"):
            if list(c.input).index(current) != 0 and c.op_type == "Sub":
                break  # const - x: not a bias
            added += [i for i in c.input if i in inits]
        chain.append(c)
        current = c.output[0]
    return chain, current, added


def calibrate_ranges(model: onnx.ModelProto, layers: list[tuple[int, str, onnx.NodeProto]],
                     samples: list[dict[str, np.ndarray]]) -> dict[str, LayerRange]:
    """Each layer's max |weight|, max |bias| (its own and the constants its epilogue adds) and the range of its
    result (the end of its fused epilogue) over the calibration inputs."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    ends = {key: epilogue(model, node) for _, key, node in layers}
    outs = list(dict.fromkeys(end for _, end, _ in ends.values()))
    for name in outs:
        if name not in existing:
            probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    runs = run_model(probe, samples, outputs=outs) if outs else []
    ranges = {}
    for _, key, node in layers:
        _, y, added = ends[key]
        lo = min(float(np.min(r[y])) for r in runs)
        hi = max(float(np.max(r[y])) for r in runs)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise HccError(f"FPGA widths: the output of node '{key}' is not finite on the calibration inputs")
        biases = ([node.input[2]] if len(node.input) > 2 and node.input[2] in inits else []) + added
        bias = sum(float(np.max(np.abs(inits[b]))) if inits[b].size else 0.0 for b in biases) if biases else None
        ranges[key] = LayerRange(float(np.max(np.abs(inits[node.input[1]]))) if inits[node.input[1]].size else 0.0, bias, lo, hi)
    return ranges


def _quantize_chain(src: str, dst: str, type_text: str, tag: str, out: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes computing `dst` = `src` rounded (AP_RND) and saturated (AP_SAT) to `type_text`, in float64."""
    from hcc.backends.fpga.fixed_point import FixedType

    t = FixedType.parse(type_text)
    consts = {"scale": float(2.0 ** t.frac), "half": 0.5, "lo": float(t.min_code), "hi": float(t.max_code), "inv": float(2.0 ** -t.frac)}
    for name, value in consts.items():
        out.graph.initializer.append(numpy_helper.from_array(np.array(value, dtype=np.float64), f"{tag}_{name}"))
    chain = [("Cast", [src], {"to": TensorProto.DOUBLE}), ("Mul", [None, f"{tag}_scale"], {}), ("Add", [None, f"{tag}_half"], {}),
             ("Floor", [None], {}), ("Max", [None, f"{tag}_lo"], {}), ("Min", [None, f"{tag}_hi"], {}),
             ("Mul", [None, f"{tag}_inv"], {}), ("Cast", [None], {"to": TensorProto.FLOAT})]
    nodes, previous = [], src
    for step, (op, ins, attrs) in enumerate(chain):
        result = dst if step == len(chain) - 1 else f"{tag}_q{step}"
        nodes.append(helper.make_node(op, [previous if i is None else i for i in ins], [result], name=f"{tag}_{op}{step}", **attrs))
        previous = result
    return nodes


def emulate_widths(model: onnx.ModelProto, widths: dict[str, int], ranges: dict[str, LayerRange],
                   inputs: dict[str, str] | None = None, region: set[str] | None = None) -> onnx.ModelProto:
    """A copy of `model` in which each layer of `widths` (key -> width) computes as the FPGA backend does with its
    `layer_types` (module docstring); with `inputs` (tensor -> type), the nodes of `region` (an FPGA subgraph's
    nodes) read those tensors converted to their types, as the subgraph's inputs are on entry."""
    keys = node_keys(model)
    unknown = sorted(set(widths) - set(keys))
    if unknown:
        raise HccError(f"FPGA widths name nodes the model lacks: {', '.join(unknown)}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    inputs = dict(inputs or {}) if region else {}
    converted: dict[str, str] = {}
    index = {k: i for i, k in enumerate(keys)}
    ends: dict[str, tuple[str, dict[str, str]]] = {}  # output of a layer's last epilogue node -> (layer, its types)
    bias_adds: dict[str, str] = {}  # output of an epilogue Add/Sub -> the bias type its constant is rounded to

    def _constant(name: str, type_text: str, new: str) -> str:
        out.graph.initializer.append(numpy_helper.from_array(_quantize_array(inits[name], type_text), new))
        return new

    nodes = []
    for key, node in zip(keys, model.graph.node):
        if key in (region or ()) and any(i in inputs for i in node.input):
            node = onnx.NodeProto.FromString(node.SerializeToString())
            for slot, name in enumerate(node.input):
                if name in inputs:
                    if name not in converted:
                        converted[name] = f"{name}__hcc_fxin"
                        nodes.extend(_quantize_chain(name, converted[name], inputs[name], f"{name}__hcc_fxin", out))
                    node.input[slot] = converted[name]
        if node.output and node.output[0] in ends:  # the last node of a layer's epilogue: its output is the layer's result
            key_of, types = ends.pop(node.output[0])
            node = onnx.NodeProto.FromString(node.SerializeToString())
            final, tag = node.output[0], f"{key_of}__hcc_fx"
            node.output[0] = f"{tag}_raw"
            nodes.append(node)
            nodes.extend(_quantize_chain(f"{tag}_raw", final, types["result"], tag, out))
            continue
        if node.output and node.output[0] in bias_adds:
            node = onnx.NodeProto.FromString(node.SerializeToString())
            for slot, name in enumerate(node.input):
                if name in inits:
                    node.input[slot] = _constant(name, bias_adds[node.output[0]], f"{name}__hcc_fxbias_{len(nodes)}")
        if key not in widths:
            nodes.append(node)
            continue
        types = layer_types(ranges[key], widths[key])
        node = onnx.NodeProto.FromString(node.SerializeToString())
        tag = f"{key}__hcc_fx{widths[key]}"
        if _padded(node):  # the backend's pad op for this node stores the padded input in the node's result type
            nodes.extend(_quantize_chain(node.input[0], f"{tag}_padded", types["result"], f"{tag}_pad", out))
            node.input[0] = f"{tag}_padded"
        for slot, role in ((1, "weight"), (2, "bias")):
            if len(node.input) > slot and node.input[slot] in inits and role in types:
                node.input[slot] = _constant(node.input[slot], types[role], f"{tag}_{role}")
        chain, _, _ = epilogue(model, model.graph.node[index[key]])
        for c in chain:
            if c.op_type in ("Add", "Sub") and "bias" in types:
                bias_adds[c.output[0]] = types["bias"]
        if chain:
            ends[chain[-1].output[0]] = (key, types)
            nodes.append(node)
            continue
        final = node.output[0]
        node.output[0] = f"{tag}_raw"
        nodes.append(node)
        nodes.extend(_quantize_chain(f"{tag}_raw", final, types["result"], tag, out))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    return out


def _padded(node: onnx.NodeProto) -> bool:
    """A convolution the FPGA backend gives a pad op (explicit non-zero pads, or SAME auto padding)."""
    if node.op_type not in ("Conv", "ConvTranspose"):
        return False
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    return any(attrs.get("pads", [])) or auto.startswith("SAME")


def boundary_inputs(model: onnx.ModelProto, region: set[str]) -> list[str]:
    """Float tensors the nodes of `region` read that no node of it produces (weights excluded): an FPGA subgraph's
    inputs, which the backend converts to fixed point on entry."""
    types = _value_types(model)
    inits = {i.name for i in model.graph.initializer}
    keys = node_keys(model)
    produced = {o for k, n in zip(keys, model.graph.node) if k in region for o in n.output}
    found: dict[str, None] = {}
    for k, n in zip(keys, model.graph.node):
        if k in region:
            for name in n.input:
                if name and name not in inits and name not in produced and types.get(name, (0,))[0] == TensorProto.FLOAT:
                    found.setdefault(name)
    return list(found)


def input_types(model: onnx.ModelProto, regions: list[set[str]], samples: list[dict[str, np.ndarray]],
                width: int = INPUT_WIDTH) -> dict[str, str]:
    """The type of each input of the FPGA subgraphs `regions` (their node sets): `width` bits, integer bits from
    2 x its calibrated magnitude, rounded and saturated (instead of the default ap_fixed<16,6>, which truncates and
    wraps above 32)."""
    names = list(dict.fromkeys(n for region in regions for n in boundary_inputs(model, region)))
    if not names:
        return {}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {o.name for o in probe.graph.output}
    for name in names:
        if name not in existing:
            probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    feeds = {i.name for i in model.graph.input}
    runs = run_model(probe, samples, outputs=[n for n in names if n not in feeds]) if any(n not in feeds for n in names) else [{} for _ in samples]
    types = {}
    for name in names:
        values = [s[name] for s in samples] if name in feeds else [r[name] for r in runs]
        magnitude = max(float(np.max(np.abs(v))) if np.asarray(v).size else 0.0 for v in values)
        types[name] = fixed_type(width, RESULT_HEADROOM * magnitude)
    return types


# ---------------------------------------------------------------------------------------------------------------
# sensitivity and choice


def measure_widths(model: onnx.ModelProto | str | os.PathLike, calibration: dict | list[dict], nodes: list[str] | None = None,
                   widths: tuple[int, ...] = FIXED_WIDTHS, progress=None) -> list[LayerSensitivity]:
    """Per FPGA MAC layer (optionally only `nodes`) and width: the end-to-end error with only that layer at that width."""
    proto = _as_model(model)
    samples = _as_samples(calibration)
    layers = mac_layers(proto, nodes)
    ranges = calibrate_ranges(proto, layers, samples)
    reference = reference_outputs(proto, samples, "calibration")
    types = _value_types(proto)
    result = []
    for index, key, node in layers:
        errors = {str(w): compare(reference, run_model(emulate_widths(proto, {key: w}, ranges), samples)) for w in widths}
        block, macs = _block_and_macs(node, types)
        result.append(LayerSensitivity(key, node.op_type, index, block, macs, ranges[key], errors))
        if progress is not None:
            worst = ", ".join(f"{w}b {max(e.max_abs for e in errors[str(w)].values()):.3g}" for w in widths)
            progress(f"precision: FPGA layer {key} alone at {worst} (max_abs) ({len(result)}/{len(layers)})")
    return result


def _area(s: LayerSensitivity, width: int) -> float:
    return float(s.mac_block) * width * width


def _outputs(sensitivities: list[LayerSensitivity]) -> list[str]:
    return list(next((e for s in sensitivities for e in s.errors.values()), {}))


def _zero(outputs: list[str]) -> dict[str, OutputError]:
    return {name: OutputError(0.0, 0.0, 1.0, 1.0, 1.0) for name in outputs}


def greedy_widths(sensitivities: list[LayerSensitivity], budget: AccuracyBudget, margin: float = DEFAULT_MARGIN) -> dict[str, int]:
    """Narrow, one step at a time, the (layer, width) with the most multiplier area saved per unit of its measured
    error whose composed error with the others still fits `margin` x the budget; ties go to the earlier layer."""
    outputs = _outputs(sensitivities)
    chosen = {s.node: WIDE_WIDTH for s in sensitivities}
    by_node = {s.node: s for s in sensitivities}

    def errors_at(node: str, width: int) -> dict[str, OutputError]:
        return by_node[node].errors[str(width)] if width != WIDE_WIDTH else _zero(outputs)

    while True:
        best = None
        for s in sensitivities:
            current = chosen[s.node]
            for w in sorted((int(k) for k in s.errors), reverse=True):
                if w >= current:
                    continue
                gain = _area(s, current) - _area(s, w)
                trial = {**chosen, s.node: w}
                if budget.cost(compose([errors_at(k, v) for k, v in trial.items()], outputs), margin, True) > 1.0:
                    continue
                extra = budget.cost(s.errors[str(w)]) - budget.cost(errors_at(s.node, current))
                key = (gain / max(extra, 1e-12), -s.index, -w)
                if best is None or key > best[0]:
                    best = (key, s.node, w)
        if best is None:
            return chosen
        chosen[best[1]] = best[2]


def _wider(width: int, widths: list[int]) -> int:
    return next((w for w in sorted(widths) if w > width), WIDE_WIDTH)


def choose_widths(sensitivities: list[LayerSensitivity], budget: AccuracyBudget | str, model: onnx.ModelProto | str | os.PathLike,
                  calibration: dict | list[dict], held_out: dict | list[dict] | None = None,
                  margin: float = DEFAULT_MARGIN, regions: list[set[str]] | None = None) -> WidthPlan:
    """Greedy widths under `margin` x `budget`, confirmed end to end (widening the most sensitive layer while over),
    verified on `held_out` inputs against the whole budget (module docstring). `regions`: the FPGA subgraphs' node
    sets, whose inputs are converted on entry (`input_types`) in the confirming and held-out runs."""
    budget = AccuracyBudget.parse(budget) if isinstance(budget, (str, list)) else budget
    proto = _as_model(model)
    samples = _as_samples(calibration)
    outputs = _outputs(sensitivities)
    by_node = {s.node: s for s in sensitivities}
    ranges = {s.node: s.range for s in sensitivities}
    chosen = greedy_widths(sensitivities, budget, margin)
    inputs = input_types(proto, regions, samples) if regions else {}
    region = set().union(*regions) if regions else set()
    errors_at = lambda n, w: by_node[n].errors[str(w)] if w != WIDE_WIDTH else _zero(outputs)  # noqa: E731
    predicted = compose([errors_at(n, w) for n, w in chosen.items()], outputs) if chosen else {}
    reference = reference_outputs(proto, samples, "calibration")
    widened, runs = [], 0
    while True:
        measured = compare(reference, run_model(emulate_widths(proto, chosen, ranges, inputs, region), samples)) if chosen else {}
        runs += 1 if chosen else 0
        narrowed = [n for n, w in chosen.items() if w != WIDE_WIDTH]
        if not budget.violations(measured, margin, True) or not narrowed:
            break
        worst = max(narrowed, key=lambda n: (budget.cost(errors_at(n, chosen[n])), -by_node[n].index))
        chosen[worst] = _wider(chosen[worst], [int(k) for k in by_node[worst].errors])
        widened.append(f"{worst}:{chosen[worst]}")
    held = None
    if held_out is not None and chosen:
        held_samples = _as_samples(held_out)
        held = compare(reference_outputs(proto, held_samples, "held-out"),
                       run_model(emulate_widths(proto, chosen, ranges, inputs, region), held_samples))
        runs += 1
    layers = []
    for s in sensitivities:
        w = chosen[s.node]
        if w == WIDE_WIDTH:
            own = min((budget.cost(e) for e in s.errors.values()), default=math.inf)
            reason = (f"no candidate width fits: the narrowest error alone is {own:.2f} of the budget" if own > margin
                      else "kept wide: narrowing it together with the others would exceed the margin")
        else:
            reason = f"narrowest width whose error, composed with the others, fits {margin:g} x the budget"
        layers.append(LayerWidth(s.node, s.op_type, w, layer_types(s.range, w), budget.cost(errors_at(s.node, w)), reason))
    notes = ["errors are the MAC layers' (weights, biases and results rounded as the backend does); other FPGA layers "
             "keep their configured or default types, not emulated"]
    if sensitivities and all(lw.width == WIDE_WIDTH for lw in layers):
        notes.append(f"budget {budget} is too tight for any candidate width ({', '.join(map(str, FIXED_WIDTHS))} bits): "
                     f"every layer kept at {WIDE_WIDTH} bits")
    return WidthPlan(str(budget), margin, layers, predicted, measured, held, not budget.violations(measured),
                     None if held is None else not budget.violations(held), widened, runs, sensitivities, notes=notes,
                     inputs=inputs, region=sorted(region))


def analyze_widths(model: onnx.ModelProto | str | os.PathLike, calibration: dict | list[dict], budget: AccuracyBudget | str,
                   held_out: dict | list[dict] | None = None, nodes: list[str] | None = None, margin: float = DEFAULT_MARGIN,
                   progress=None, regions: list[set[str]] | None = None) -> WidthPlan:
    """Sensitivity of the FPGA MAC layers (`nodes`, default all) then the budgeted choice, in one call."""
    proto = _as_model(model)
    sensitivities = measure_widths(proto, calibration, nodes, progress=progress)
    return choose_widths(sensitivities, budget, proto, calibration, held_out, margin, regions)


def cost_configs(plan: WidthPlan, model: onnx.ModelProto, base: dict | None = None, default_bits: int = 16) -> dict:
    """{node: FpgaCostConfig} with the chosen widths, for the cost model: weight bits = the layer's width; activation
    bits = the result width of the MAC layer that produces its input (through single-input non-MAC layers such as
    ReLU and pooling, which keep their input type), else `default_bits`. `base`: configs to start from."""
    from dataclasses import replace

    from hcc.planner.cost_model import FpgaCostConfig

    widths = plan.widths()
    keys = node_keys(model)
    producer = {o: (k, n) for k, n in zip(keys, model.graph.node) for o in n.output}
    inits = {i.name for i in model.graph.initializer}

    def act_bits(tensor: str) -> int:
        seen = 0
        while tensor in producer and seen < 64:
            key, node = producer[tensor]
            if key in widths:
                return widths[key]
            data = [i for i in node.input if i and i not in inits]
            if node.op_type in MAC_LAYER_OPS or len(data) != 1:
                return default_bits
            tensor, seen = data[0], seen + 1
        return default_bits

    configs = dict(base or {})
    for key, node in zip(keys, model.graph.node):
        if key in widths:
            start = configs.get(key, FpgaCostConfig())
            configs[key] = replace(start, weight_bits=widths[key], act_bits=act_bits(node.input[0]))
    return configs


def label(plan: WidthPlan, nodes: list[str], subgraph: str = "") -> tuple[str, str]:
    """(precision, note) of an FPGA subgraph for the plan report: the widths of its MAC layers and, per layer, its
    width, its own measured error and what the whole choice measured; then the plan's notes on `subgraph` (its
    predicted time and resources at the default types and at the chosen widths)."""
    mine = [lw for lw in plan.layers if lw.node in set(nodes)]
    if not mine:
        return "", ""
    widths = sorted({lw.width for lw in mine})
    text = f"ap_fixed {widths[0]}b" if len(widths) == 1 else f"ap_fixed {widths[0]}-{widths[-1]}b"
    by = {s.node: s for s in plan.sensitivities}

    def own(lw: LayerWidth) -> str:
        errs = by[lw.node].errors.get(str(lw.width))
        worst = max((e.max_abs for e in errs.values()), default=0.0) if errs else None
        return f"{lw.node} {lw.width}b" + (f" (alone max_abs {worst:.3g}, {lw.budget_cost:.2f} of the budget)" if worst is not None else " (wide)")

    def worst(errors) -> str:
        return ", ".join(f"{name} max_abs {e.max_abs:.3g}" for name, e in (errors or {}).items()) or "-"

    note = (f"widths from measured sensitivity under {plan.budget} (margin {plan.margin:.3g}): " + "; ".join(own(lw) for lw in mine)
            + f"; with every other lowered precision chosen, emulated together: calibration {worst(plan.calibration)}, "
            f"held-out {worst(plan.held_out)}"
            + ("" if plan.held_out_ok in (None, True) else " (over budget on held-out inputs)"))
    if any("too tight" in n for n in plan.notes):
        note += "; " + next(n for n in plan.notes if "too tight" in n)
    if subgraph:
        note += "".join(f"; {n[len(subgraph) + 2:]}" for n in plan.notes if n.startswith(f"{subgraph}: "))
    return text, note


def to_toml(plan: WidthPlan) -> str:
    """The chosen types as an fpga.toml that `hcc compile --fpga-config` reads (one [node."name"] table per layer)."""
    lines = [f"# FPGA ap_fixed types per MAC layer chosen by hcc plan under {plan.budget} (planner/fixed_precision.py)",
             f"# calibration: {', '.join(f'{k} max_abs {e.max_abs:.3g}' for k, e in plan.calibration.items())}"]
    for lw in plan.layers:
        lines.append("")
        lines.append(f"[node.{json.dumps(lw.node)}]")
        lines.extend(f"{role} = {json.dumps(text)}" for role, text in lw.types.items())
    for name, text in plan.inputs.items():
        lines += ["", f"[tensor.{json.dumps(name)}]", f"precision = {json.dumps(text)}"]
    return "\n".join(lines) + "\n"
