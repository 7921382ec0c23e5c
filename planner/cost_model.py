"""Per-op cost model: work (FLOPs, bytes) of every ONNX node, predicted time on a device, transfers, FPGA resources.

Why this shape: placement needs one number per (op, device) and per crossing tensor, cheap enough to evaluate for
thousands of candidates. We follow onnx-mlir's per-op model `t = a*work + b` where calibration has measured a and b
(the host CPU), and a roofline `max(flops/(peak*eff), bytes/(bw*mem_eff)) + overhead` from published figures
elsewhere (GPUs, FPGAs, an uncalibrated CPU). FPGA time and resources come from the FPGA backend's own layer
formulas (backends/fpga/resources.py: reuse factor, DSPs per multiplier, BRAM for weights), per node, with the
precision and reuse factor the user's FPGA config sets; the reuse factor the partitioner picks goes to the backend.

Node names: placement and subgraphs refer to nodes by name, the names frontend/names.py gives (`node_names`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import onnx

from hcc.backends.fpga.resources import BUFFER_IN_REGISTERS, MAX_MULTIPLIERS, bram_for, mac_layer, stream_layer
from hcc.frontend.names import node_names
from hcc.planner.device_catalog import DeviceInstance, DeviceSpec

ELEM_BYTES = {
    onnx.TensorProto.FLOAT: 4, onnx.TensorProto.DOUBLE: 8, onnx.TensorProto.FLOAT16: 2, onnx.TensorProto.BFLOAT16: 2,
    onnx.TensorProto.INT64: 8, onnx.TensorProto.INT32: 4, onnx.TensorProto.INT16: 2, onnx.TensorProto.INT8: 1,
    onnx.TensorProto.UINT8: 1, onnx.TensorProto.BOOL: 1,
}
ELEM_DTYPE = {onnx.TensorProto.FLOAT16: "fp16", onnx.TensorProto.BFLOAT16: "fp16", onnx.TensorProto.INT8: "int8", onnx.TensorProto.UINT8: "int8"}

OP_CLASS: dict[str, str] = {}
for _cls, _ops in {
    "matmul": "MatMul Gemm Einsum",
    "conv": "Conv ConvTranspose",
    "rnn": "LSTM GRU RNN",
    "reduction": "ReduceMax ReduceMean ReduceMin ReduceSum ArgMax ArgMin",
    "softmax": "Softmax LogSoftmax",
    "normalization": "BatchNormalization LayerNormalization InstanceNormalization",
    "pool": "MaxPool AveragePool GlobalAveragePool GlobalMaxPool",
    "data": "Concat Transpose Slice Gather Split Pad Expand Tile Resize Where ConstantOfShape Range",
    "view": "Reshape Flatten Squeeze Unsqueeze Identity Dropout",
    "shape": "Shape Constant",
}.items():
    for _op in _ops.split():
        OP_CLASS[_op] = _cls
# Everything else (unary/binary math, activations, Cast, comparisons) is "elementwise".

# Which measure of work the calibrated `t = a*work + b` uses per class: compute-bound classes use FLOPs,
# memory-bound classes use bytes moved.
WORK_METRIC = {"matmul": "flops", "conv": "flops", "rnn": "flops", "elementwise": "bytes", "reduction": "bytes",
               "softmax": "bytes", "normalization": "bytes", "pool": "bytes", "data": "bytes", "view": "bytes", "shape": "bytes"}

# FLOPs per output element of elementwise ops (transcendentals cost several).
_ELEMENTWISE_FLOPS = {"Exp": 4, "Log": 4, "Tanh": 6, "Sigmoid": 4, "Erf": 8, "Gelu": 10, "Softplus": 6, "Pow": 6, "Sqrt": 2,
                      "Sin": 6, "Cos": 6, "HardSwish": 3, "HardSigmoid": 2, "Elu": 4, "Div": 2, "Reciprocal": 2, "Clip": 2}
# Ops whose outputs are compile-time constants: they cost nothing and their outputs never cross a device boundary.
STATIC_OPS = frozenset({"Constant", "Shape"})


@dataclass
class TensorInfo:
    name: str
    shape: list[int] | None  # None when shape inference could not tell
    elem_type: int
    nbytes: int  # 0 for unknown shapes
    kind: str  # "input" | "weight" | "activation" | "static"


@dataclass
class NodeCost:
    """The work of one node; everything the cost model and the partitioner need to know about it."""

    name: str
    index: int  # position in graph.node
    op_type: str
    op_class: str
    dtype: str  # "fp32" | "fp16" | "int8": the precision its arithmetic runs in
    flops: float
    macs: float
    bytes_read: float  # activations + weights
    bytes_written: float
    weight_bytes: float  # initializers (and static tensors) it reads
    inputs: list[str]  # activation tensors it reads (graph inputs or node outputs; no weights, no static values)
    weights: list[str]  # initializer / static inputs
    outputs: list[str]
    out_elements: float = 0.0
    mac_block: float = 0.0  # MACs per output iteration (Dense: n_in*n_out; Conv: Cin/g*k*k*Cout); 0 if not a MAC op
    iterations: float = 0.0  # output iterations (Dense: rows; Conv: output pixels)
    line_buffer_elements: float = 0.0  # activation elements a sliding-window op buffers on chip
    reduce_length: float = 0.0  # inputs combined into one output: pooling window, Softmax axis length
    # An elementwise node that is its producer's only consumer: the FPGA backend fuses it into the producer's loop
    # (epilogue of a MAC / pooling layer, or a chain of elementwise ops), so there it adds no cycles of its own.
    fusible_epilogue: bool = False
    output_fused: bool = False  # its only consumer is a fusible epilogue: on an FPGA its output needs no buffer
    padded_elements: float = 0.0  # Conv/pooling with pads: elements of the padded input copy the FPGA backend makes
    # bytes of float32 activations it reads and writes (not weights): what a GPU fp16 subgraph stores as f16
    float_activation_bytes: float = 0.0

    @property
    def bytes(self) -> float:
        return self.bytes_read + self.bytes_written

    def work(self) -> float:
        return self.flops if WORK_METRIC.get(self.op_class, "bytes") == "flops" else self.bytes


@dataclass
class GraphInfo:
    """A model's dataflow: nodes (with costs) in graph order, tensors, producers and consumers."""

    nodes: list[NodeCost]
    tensors: dict[str, TensorInfo]
    producer: dict[str, str]  # tensor -> node name
    consumers: dict[str, list[str]]  # tensor -> node names in graph order (deduplicated)
    graph_inputs: list[str]
    graph_outputs: list[str]
    by_name: dict[str, NodeCost] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.by_name = {n.name: n for n in self.nodes}

    def topological(self) -> list[str]:
        """Node names in a topological order (ONNX requires graph order to be one; we check and fall back to Kahn)."""
        position = {n.name: i for i, n in enumerate(self.nodes)}
        ok = all(position[self.producer[t]] < position[n.name] for n in self.nodes for t in n.inputs if t in self.producer)
        if ok:
            return [n.name for n in self.nodes]
        indegree = {n.name: len({self.producer[t] for t in n.inputs if t in self.producer}) for n in self.nodes}
        ready = sorted((position[n], n) for n, d in indegree.items() if d == 0)
        order = []
        while ready:
            _, name = ready.pop(0)
            order.append(name)
            for succ in self.successors(name):
                indegree[succ] -= 1
                if indegree[succ] == 0:
                    ready.append((position[succ], succ))
                    ready.sort()
        return order

    def successors(self, name: str) -> list[str]:
        seen: dict[str, None] = {}
        for t in self.by_name[name].outputs:
            for c in self.consumers.get(t, []):
                seen.setdefault(c)
        return list(seen)


def _shape_of(value: onnx.ValueInfoProto) -> list[int] | None:
    if not value.type.HasField("tensor_type") or not value.type.tensor_type.HasField("shape"):
        return None
    dims = []
    for d in value.type.tensor_type.shape.dim:
        if not d.HasField("dim_value"):
            return None
        dims.append(int(d.dim_value))
    return dims


def _numel(shape: list[int] | None) -> int:
    return math.prod(shape) if shape is not None else 0


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def analyze_model(model: onnx.ModelProto) -> GraphInfo:
    """Shapes, bytes and FLOPs of every node (the model must have been shape-inferred, as load_model does)."""
    graph = model.graph
    tensors: dict[str, TensorInfo] = {}
    for init in graph.initializer:
        shape = list(init.dims)
        tensors[init.name] = TensorInfo(init.name, shape, init.data_type, _numel(shape) * ELEM_BYTES.get(init.data_type, 4), "weight")
    for value, kind in [(v, "input") for v in graph.input] + [(v, "activation") for v in list(graph.value_info) + list(graph.output)]:
        if value.name in tensors or not value.type.HasField("tensor_type"):
            continue
        shape = _shape_of(value)
        elem = value.type.tensor_type.elem_type
        tensors[value.name] = TensorInfo(value.name, shape, elem, _numel(shape) * ELEM_BYTES.get(elem, 4), kind)
    names = node_names(model)
    producer: dict[str, str] = {}
    static: set[str] = {t for t, info in tensors.items() if info.kind == "weight"}
    for node, name in zip(graph.node, names):
        for out in node.output:
            if out:
                producer[out] = name
                if out not in tensors:
                    tensors[out] = TensorInfo(out, None, onnx.TensorProto.FLOAT, 0, "activation")
                if node.op_type in STATIC_OPS:
                    tensors[out].kind = "static"
                    static.add(out)
    consumers: dict[str, list[str]] = {}
    nodes = []
    for index, (node, name) in enumerate(zip(graph.node, names)):
        for t in dict.fromkeys(i for i in node.input if i):
            consumers.setdefault(t, []).append(name)
        nodes.append(_node_cost(node, name, index, tensors, static))
    by_name = {n.name: n for n in nodes}
    for n in nodes:
        if n.op_class in ("elementwise", "normalization") and len(n.inputs) == 1 and n.inputs[0] in producer:
            src = by_name[producer[n.inputs[0]]]
            n.fusible_epilogue = src.op_class not in ("view", "shape", "data") and len(src.outputs) == 1 and consumers.get(n.inputs[0]) == [n.name]
            src.output_fused = src.output_fused or n.fusible_epilogue
    graph_inputs = [v.name for v in graph.input if v.name in tensors and tensors[v.name].kind == "input"]
    return GraphInfo(nodes, tensors, producer, consumers, graph_inputs, [v.name for v in graph.output])


def _node_cost(node: onnx.NodeProto, name: str, index: int, tensors: dict[str, TensorInfo], static: set[str]) -> NodeCost:
    op = node.op_type
    cls = OP_CLASS.get(op, "elementwise")
    ins = [i for i in node.input if i]
    shapes = [tensors[i].shape if i in tensors else None for i in node.input]
    out_shapes = [tensors[o].shape if o in tensors else None for o in node.output if o]
    out0 = out_shapes[0] if out_shapes else None
    out_elems = float(_numel(out0))
    in0 = shapes[0] if shapes else None
    weights = [i for i in dict.fromkeys(ins) if i in static]
    acts = [i for i in dict.fromkeys(ins) if i not in static]
    weight_bytes = float(sum(tensors[w].nbytes for w in weights if w in tensors))
    read = float(sum(tensors[i].nbytes for i in dict.fromkeys(ins) if i in tensors))
    written = float(sum(tensors[o].nbytes for o in node.output if o in tensors))
    first_out = next((o for o in node.output if o), "")
    elem = tensors[first_out].elem_type if first_out in tensors else onnx.TensorProto.FLOAT
    dtype = ELEM_DTYPE.get(elem, "fp32")
    macs = 0.0
    flops = 0.0
    mac_block = iterations = line_buffer = reduce_length = 0.0
    pads = _attr(node, "pads", None) or []
    padded = float(in0[0] * in0[1] * math.prod(d + pads[i] + pads[i + len(in0) - 2] for i, d in enumerate(in0[2:]))) \
        if op in ("Conv", "MaxPool", "AveragePool") and in0 and any(pads) and len(pads) == 2 * (len(in0) - 2) else 0.0
    if op == "Conv" and in0 and len(shapes) > 1 and shapes[1] and out0:
        w = shapes[1]  # [Cout, Cin/g, k...]
        k = math.prod(w[2:])
        mac_block = float(w[1] * k * w[0])
        iterations = float(out0[0] * math.prod(out0[2:]))
        macs = mac_block * iterations
        flops = 2 * macs + (out_elems if len(ins) > 2 else 0)
        if len(in0) >= 4 and len(w) >= 4:
            line_buffer = float((w[2] - 1) * in0[1] * in0[-1] + k * in0[1])
    elif op == "ConvTranspose" and in0 and len(shapes) > 1 and shapes[1]:
        w = shapes[1]  # [Cin, Cout/g, k...]
        mac_block = float(w[1] * math.prod(w[2:]) * w[0])
        iterations = float(in0[0] * math.prod(in0[2:]))
        macs = mac_block * iterations
        flops = 2 * macs
    elif op == "Gemm" and in0 and out0:
        k = in0[0] if _attr(node, "transA", 0) else in0[-1]
        mac_block = float(k * out0[-1])
        iterations = float(out0[0])
        macs = mac_block * iterations
        flops = 2 * macs + (out_elems if len(ins) > 2 else 0)
    elif op == "MatMul" and in0 and out0:
        k = in0[-1]
        n = out0[-1] if len(out0) >= 1 else 1
        mac_block = float(k * n)
        iterations = out_elems / max(n, 1)
        macs = out_elems * k
        flops = 2 * macs
    elif op == "Einsum":
        equation = _attr(node, "equation", b"")
        macs = _einsum_macs(equation.decode() if isinstance(equation, bytes) else str(equation), shapes)
        flops = 2 * macs
    elif op in ("LSTM", "GRU", "RNN") and in0 and len(shapes) > 2 and shapes[2]:
        gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[op]
        seq, batch, inp = in0[0], in0[1], in0[2]
        dirs, hidden_size = shapes[2][0], shapes[2][-1]  # R: [directions, gates*hidden, hidden]
        macs = float(dirs * seq * batch * gates * hidden_size * (inp + hidden_size))
        flops = 2 * macs + 10.0 * dirs * seq * batch * hidden_size
    elif cls == "pool" and in0:
        if op.startswith("Global"):
            flops = float(_numel(in0))
            reduce_length = float(math.prod(in0[2:]))
        else:
            kernel = _attr(node, "kernel_shape", []) or [1]
            flops = out_elems * math.prod(kernel)
            reduce_length = float(math.prod(kernel))
            if len(in0) >= 4:
                line_buffer = float((kernel[0] - 1) * in0[1] * in0[-1] + math.prod(kernel) * in0[1])
    elif cls == "reduction" and in0:
        flops = float(_numel(in0))
    elif cls == "softmax" and in0:
        flops = 5.0 * _numel(in0)
        reduce_length = float(in0[int(_attr(node, "axis", -1))]) if in0 else 0.0
    elif cls == "normalization" and in0:
        flops = (2.0 if op == "BatchNormalization" else 8.0) * _numel(in0)
    elif cls in ("data", "view", "shape"):
        flops = 0.0
    else:  # elementwise
        flops = out_elems * _ELEMENTWISE_FLOPS.get(op, 1)
    float_acts = float(sum(tensors[t].nbytes for t in list(dict.fromkeys(acts)) + [o for o in node.output if o]
                           if t in tensors and tensors[t].elem_type == onnx.TensorProto.FLOAT))
    if cls in ("view", "shape"):
        read = written = float_acts = 0.0  # aliases / metadata: no data moves
    return NodeCost(name=name, index=index, op_type=op, op_class=cls, dtype=dtype, flops=float(flops), macs=float(macs),
                    bytes_read=read, bytes_written=written, weight_bytes=weight_bytes, inputs=acts, weights=weights,
                    outputs=[o for o in node.output if o], out_elements=out_elems, mac_block=mac_block, iterations=iterations,
                    line_buffer_elements=line_buffer, reduce_length=reduce_length, padded_elements=padded,
                    float_activation_bytes=float_acts)


def _einsum_macs(equation: str, shapes: list[list[int] | None]) -> float:
    """Product of the sizes of every distinct index letter (the loop nest a naive einsum runs)."""
    lhs = equation.replace(" ", "").split("->")[0]
    sizes: dict[str, int] = {}
    for term, shape in zip(lhs.split(","), shapes):
        letters = re.sub(r"[^A-Za-z]", "", term)
        if shape is None or "..." in term or len(letters) != len(shape):
            continue
        for letter, dim in zip(letters, shape):
            sizes[letter] = max(sizes.get(letter, 1), dim)
    return float(math.prod(sizes.values())) if sizes else 0.0


# ---------------------------------------------------------------------------------------------------- FPGA estimate

@dataclass(frozen=True)
class FpgaCostConfig:
    """How the partitioner sees an ONNX node as an FPGA layer of the backend (hls4ml conventions). The defaults are
    the backend's: ap_fixed<16,6> everywhere, strategy latency. The driver derives per-node configs from the user's
    --fpga-precision / fpga.toml (fpga_node_configs); that config itself is the backend's
    backends/fpga/config.py: FpgaConfig."""

    weight_bits: int = 16
    act_bits: int = 16
    # latency: weights in logic (LUTs); resource: weights in BRAM banks. None: the partitioner picks per layer
    # (estimates without a choice use latency, the backend's default).
    strategy: str | None = None
    reuse_factor: int | None = None  # fixed by the user's config; None: the partitioner picks a design point
    max_mults_per_node: int = 1024  # the single design point `fpga_estimate` reports when none is fixed
    # Design points the partitioner may choose from per MAC layer (multiplier caps x strategies): fewer multipliers
    # = higher reuse factor = fewer DSPs and more cycles; resource strategy = BRAM instead of LUTs for weights. This
    # is how FPGA resources trade against speed in placement. The chosen reuse factor and strategy go to the
    # backend, so the generated layer is the one that was planned.
    variant_mults: tuple[int, ...] = (4096, 1024, 256, 64, 16)
    stream_lanes: int = 1  # results per cycle of non-MAC layers: the backend pipelines them at II=1


def fpga_node_configs(cfg, nodes: list[tuple[str, str]]) -> dict[str, FpgaCostConfig]:
    """What the cost model must know of the user's FPGA config (`cfg`, the backend's backends.fpga.config.FpgaConfig
    from --fpga-precision / fpga.toml): per node (name, op type) the operand widths, and the strategy and reuse factor
    where the user fixed them (else the partitioner chooses). Returns {node name: FpgaCostConfig} for the nodes that differ
    from the cost model's defaults. "auto" precision is decided after calibration, at code generation: the plan
    assumes 16-bit operands for it."""
    from hcc.backends.fpga.fixed_point import FixedType

    op_types = dict(nodes)
    default = FpgaCostConfig()
    out = {}
    for name, _ in nodes:
        widths = []
        for role in ("input", "weight"):
            value, _ = cfg.lookup(role, [name], op_types)
            widths.append(16 if value in (None, "auto") else FixedType.parse(value).width)
        rf, rf_from = cfg.lookup("reuse_factor", [name], op_types)
        strategy, strategy_from = cfg.lookup("strategy", [name], op_types)
        config = FpgaCostConfig(act_bits=widths[0], weight_bits=widths[1],
                            strategy=strategy if strategy_from != "default" else None,
                            reuse_factor=int(rf) if rf_from != "default" else None)
        if config != default:
            out[name] = config
    return out


@dataclass(frozen=True)
class FpgaEstimate:
    """Resources and latency of one node as an FPGA layer; `source` tells model estimates from backend reports."""

    dsp: int
    bram18k: int
    lut: int
    ff: int
    latency_cycles: float
    reuse_factor: int = 1
    source: str = "model"
    strategy: str = ""  # MAC layers: the strategy the estimate assumes
    width: int = 0  # a width candidate of a joint precision choice (CostModel.fpga_width_choices); 0: the config's types
    accuracy: float = 0.0  # that width's measured error as a fraction of the accuracy budget (planner/joint_precision.py)


MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def _buffer_bram(elements: float, bits: int) -> int:
    return 2 * bram_for(int(elements * bits)) if elements > BUFFER_IN_REGISTERS else 0


def estimate_fpga(node: NodeCost, spec: DeviceSpec, config: FpgaCostConfig = FpgaCostConfig(), max_mults: int | None = None,
                  strategy: str | None = None) -> FpgaEstimate | None:
    """The node as the FPGA backend would build it, with the backend's own formulas (backends/fpga/resources.py):
    RF = the fixed reuse factor, else ceil(MACs per iteration / `max_mults`); DSP = multipliers x DSP per multiplier;
    BRAM18K = weight banks (strategy resource) + line buffers + lookup tables; latency = iterations x RF + adder
    tree (MAC layers) or elements / lanes (streaming layers). None when the device or the backend cannot run it
    (MAC layers need constant weights: the backend keeps them on chip)."""
    if spec.kind != "fpga" or not spec.supports(node.op_type):
        return None
    if node.op_class == "view":
        return FpgaEstimate(0, 0, 0, 0, 0.0)
    width = spec.dsp_width or 27
    act, wbits = config.act_bits, config.weight_bits
    if node.op_type in MAC_OPS:
        if node.mac_block <= 0 or not node.weights:
            return None
        block = int(node.mac_block)
        rf = config.reuse_factor if config.reuse_factor and max_mults is None else math.ceil(block / (max_mults or config.max_mults_per_node))
        rf = max(1, rf, math.ceil(block / MAX_MULTIPLIERS))
        acc = min(act + wbits + math.ceil(math.log2(max(block, 2))), 48)
        strategy = strategy or config.strategy or "latency"
        e = mac_layer(block, int(max(node.iterations, 1)), act, wbits, acc, int(node.weight_bytes / 4), wbits, rf, strategy, width)
    elif node.op_type == "Softmax":  # backends/fpga/estimate.py: exp table + divider per row
        length = int(max(node.reduce_length, 1))
        rows = max(int(node.out_elements) // length, 1)
        e = stream_layer(rows, 18, depth=length + 40, mults=2 * length, mult_widths=(18, 18), reduce=length, dsp_width=width)
        e.latency_cycles = rows * (length + 40) + 3
    else:
        e = stream_layer(int(max(node.out_elements, 1)), act, lanes=config.stream_lanes,
                         mults=1 if node.op_type in ("Mul", "BatchNormalization") else 0, mult_widths=(act, wbits),
                         table_bits=4096 * 18 if node.op_type in ("Sigmoid", "Tanh") else 0,
                         reduce=int(max(node.reduce_length, 1)), dsp_width=width)
        if node.fusible_epilogue:  # runs inside its producer's pipeline (assumed on the same FPGA): depth only
            e.latency_cycles -= e.ii
    bram = e.bram18k + bram_for(int(node.line_buffer_elements * act))
    # On-chip buffers as the backend lays them out (estimate.buffer_estimate): a padded copy of the input and the
    # output, each in ping-pong BRAM under DATAFLOW when over BUFFER_IN_REGISTERS elements, else in registers.
    if node.padded_elements:
        e.latency_cycles += int(node.padded_elements) + 3  # the backend's pad layer copies the input once
        bram += _buffer_bram(node.padded_elements, act)
    if not node.output_fused:
        bram += _buffer_bram(node.out_elements, act)
    return FpgaEstimate(dsp=e.dsp, bram18k=bram, lut=e.lut, ff=e.ff, latency_cycles=float(e.latency_cycles),
                        reuse_factor=e.reuse_factor, strategy=strategy if node.op_type in MAC_OPS else "")


# ---------------------------------------------------------------------------------------------------- time

def _spec(device: DeviceSpec | DeviceInstance) -> DeviceSpec:
    return device.spec if isinstance(device, DeviceInstance) else device


def predict(node: NodeCost, device: DeviceSpec | DeviceInstance, dtype: str | None = None,
            fpga: FpgaEstimate | None = None) -> float:
    """Predicted seconds for `node` on `device` (math.inf when the device cannot run it). `dtype` defaults to the
    node's own precision; `fpga` is an estimate to use instead of the built-in one (the backend's report)."""
    spec = _spec(device)
    if not spec.supports(node.op_type) and node.op_type not in STATIC_OPS:
        return math.inf
    if node.op_class == "shape":
        return 0.0
    dtype = dtype or node.dtype
    if spec.kind == "fpga":
        est = fpga or estimate_fpga(node, spec)
        if est is None:
            return math.inf
        moves_data = node.op_class != "view" and not node.fusible_epilogue  # a fused epilogue reads its producer's registers
        offchip = (node.bytes - node.weight_bytes) / (spec.mem_bandwidth * spec.mem_efficiency) if moves_data else 0.0
        overhead = spec.efficiency.get(node.op_class, (1.0, 0.0))[1]
        return max(est.latency_cycles / spec.clock_hz, offchip) + overhead
    if node.op_class in spec.linear:  # a calibrated fit (fp32 kernels): other precisions scale by the peak ratio
        a, b = spec.linear[node.op_class]
        return a * node.work() * spec.peak("fp32") / spec.peak(dtype or "fp32") + b
    eff, overhead = spec.efficiency.get(node.op_class, (0.5, 0.0))
    compute = node.flops / (spec.peak(dtype) * max(eff, 1e-6))
    memory = node.bytes / (spec.mem_bandwidth * max(spec.mem_efficiency, 1e-6))
    return max(compute, memory) + overhead


# hcc's GPU fp16 subgraphs (backends/gpu/precision.py) run no tensor cores (docs/backends/gpu.md: no mma/wgmma):
# contractions extend their f16 operands and multiply-add in f32 on the SIMT units, so their compute runs at the
# fp32 peak, not at the catalog's fp16 tensor-core peak. What fp16 saves is memory traffic: f32 activations are
# stored as f16 (half the bytes); weights stay f32 in device memory and are truncated on every run, so they are
# read at full size. Set to True only for a backend that emits tensor-core instructions.
GPU_FP16_TENSOR_CORES = False


def predict_gpu_fp16(node: NodeCost, device: DeviceSpec | DeviceInstance) -> float:
    """Predicted seconds for `node` in an fp16 GPU subgraph of hcc's backend (see GPU_FP16_TENSOR_CORES)."""
    spec = _spec(device)
    if spec.kind != "gpu":
        raise ValueError(f"predict_gpu_fp16: {spec.name} is not a GPU")
    if not spec.supports(node.op_type) and node.op_type not in STATIC_OPS:
        return math.inf
    if node.op_class == "shape":
        return 0.0
    peak = spec.peak("fp16" if GPU_FP16_TENSOR_CORES else "fp32")
    nbytes = node.bytes - node.float_activation_bytes / 2
    if node.op_class in spec.linear:  # a calibrated fp32 fit: scale the work the fit is linear in
        a, b = spec.linear[node.op_class]
        flops_metric = WORK_METRIC.get(node.op_class, "bytes") == "flops"
        work = node.flops * spec.peak("fp32") / peak if flops_metric else nbytes
        return a * work + b
    eff, overhead = spec.efficiency.get(node.op_class, (0.5, 0.0))
    compute = node.flops / (peak * max(eff, 1e-6))
    memory = nbytes / (spec.mem_bandwidth * max(spec.mem_efficiency, 1e-6))
    return max(compute, memory) + overhead


def link_time(nbytes: float, device: DeviceSpec | DeviceInstance) -> float:
    """One hop between `device` and host memory (0 for the host CPU itself)."""
    spec = _spec(device)
    if spec.kind == "cpu" or nbytes <= 0:
        return 0.0
    return spec.link_latency + nbytes / spec.link_bandwidth


def transfer_time(nbytes: float, src: DeviceSpec | DeviceInstance, dst: DeviceSpec | DeviceInstance) -> float:
    """Seconds to move a tensor from `src` to `dst` through host memory (device -> host -> device).
    Zero when both are the same instance (or the same spec object when specs are given) or both are the host."""
    if src is dst or (isinstance(src, DeviceInstance) and isinstance(dst, DeviceInstance) and src.id == dst.id):
        return 0.0
    return link_time(nbytes, src) + link_time(nbytes, dst)


@dataclass
class CostModel:
    """Cost model with the knobs the partitioner passes around: FPGA estimate config and per-node overrides.

    `fpga_node_configs` maps a node name to its own FpgaCostConfig (precision, strategy, a fixed reuse factor from the
    user's FPGA config); other nodes use `fpga_config`. `fpga_overrides` maps a node name to an FpgaEstimate (e.g.
    from a synthesis report); it wins over the model for every FPGA device. `time_overrides` maps (node name,
    device spec name) to seconds (measured), and wins over everything. `cpu_dtypes` maps a node name to the precision
    it computes in on a CPU (bf16 for the GEMMs and convolutions of --cpu-precision bf16/auto); others: the node's own.
    `gpu_precision` is the precision of GPU subgraphs ("fp16": the backend's fp16 rewrite, priced by predict_gpu_fp16;
    --gpu-precision fp16, or auto while placing: every GPU subgraph may become fp16) and `gpu_dtypes` overrides it per
    node (after --gpu-precision auto decided per subgraph).
    """

    fpga_config: FpgaCostConfig = field(default_factory=FpgaCostConfig)
    fpga_node_configs: dict[str, FpgaCostConfig] = field(default_factory=dict)
    fpga_overrides: dict[str, FpgaEstimate] = field(default_factory=dict)
    time_overrides: dict[tuple[str, str], float] = field(default_factory=dict)
    cpu_dtypes: dict[str, str] = field(default_factory=dict)
    gpu_precision: str = "fp32"
    gpu_dtypes: dict[str, str] = field(default_factory=dict)
    # Joint choice of device and precision (planner/joint_precision.py): per node, the precisions the placement may
    # choose on a CPU (fp32 always; e.g. bf16) and the ap_fixed widths on an FPGA, each with its measured error as a
    # fraction of the accuracy budget; `shared_limits` caps such a resource summed over all devices ({"accuracy": m}).
    cpu_precision_choices: dict[str, dict[str, float]] = field(default_factory=dict)
    fpga_width_choices: dict[str, dict[int, float]] = field(default_factory=dict)
    shared_limits: dict[str, float] = field(default_factory=dict)
    fpga_default_bits: int = 16  # activation width a width candidate assumes for its input (conservative: at least this)

    def fpga_config_for(self, node: NodeCost) -> FpgaCostConfig:
        return self.fpga_node_configs.get(node.name, self.fpga_config)

    def fpga_estimate(self, node: NodeCost, device: DeviceSpec | DeviceInstance) -> FpgaEstimate | None:
        spec = _spec(device)
        if spec.kind != "fpga" or not spec.supports(node.op_type):
            return None
        return self.fpga_overrides.get(node.name) or estimate_fpga(node, spec, self.fpga_config_for(node))

    def fpga_variants(self, node: NodeCost, device: DeviceSpec | DeviceInstance) -> list[FpgaEstimate]:
        """Design points (reuse factors) of a node on an FPGA, fastest first; just one when the reuse factor is
        fixed (user config) or an override is given."""
        spec = _spec(device)
        if spec.kind != "fpga" or not spec.supports(node.op_type):
            return []
        if node.name in self.fpga_overrides:
            return [self.fpga_overrides[node.name]]
        config = self.fpga_config_for(node)
        if node.op_type not in MAC_OPS:
            est = estimate_fpga(node, spec, config)
            return [est] if est else []
        caps = [None] if config.reuse_factor else sorted(set(config.variant_mults), reverse=True)
        # a width candidate multiplies its own weights by an input of at least the default width: the producer's
        # width is not known while placing, so DSPs are counted for the wider of the two (an upper bound)
        widths = self.fpga_width_choices.get(node.name, {0: 0.0})
        seen: dict[tuple, FpgaEstimate] = {}
        for width, accuracy in sorted(widths.items()):
            wconfig = config if not width else replace(config, weight_bits=width, act_bits=max(width, self.fpga_default_bits))
            for strategy in [config.strategy] if config.strategy else ["latency", "resource"]:
                for cap in caps:
                    est = estimate_fpga(node, spec, wconfig, cap, strategy)
                    if est is not None:
                        est = replace(est, width=width, accuracy=accuracy) if width else est
                        seen.setdefault((est.width, est.dsp, est.bram18k, est.lut, est.latency_cycles), est)
        return sorted(seen.values(), key=lambda e: (e.latency_cycles, e.accuracy, e.dsp, e.bram18k, e.lut, e.width))

    def predict(self, node: NodeCost, device: DeviceSpec | DeviceInstance, dtype: str | None = None,
                fpga: FpgaEstimate | None = None) -> float:
        spec = _spec(device)
        key = (node.name, spec.name)
        if key in self.time_overrides:
            return self.time_overrides[key]
        if spec.kind == "cpu" and dtype is None:
            dtype = self.cpu_dtypes.get(node.name)
        if spec.kind == "gpu" and dtype is None and self.gpu_dtypes.get(node.name, self.gpu_precision) == "fp16":
            return predict_gpu_fp16(node, spec)
        return predict(node, spec, dtype, (fpga or self.fpga_estimate(node, spec)) if spec.kind == "fpga" else None)

    def saving(self, node: NodeCost, device: DeviceSpec | DeviceInstance, dtype: str) -> float:
        """Seconds predicted saved by computing `node` at `dtype` instead of fp32 on `device` (0 where either time is
        not finite): a precision choice's predicted saving (the joint choice and --cpu-precision auto record it)."""
        saved = self.predict(node, device, dtype="fp32") - self.predict(node, device, dtype=dtype)
        return saved if math.isfinite(saved) else 0.0

    def memory_bytes(self, node: NodeCost, device: DeviceSpec | DeviceInstance) -> float:
        """Bytes `node` keeps in device memory: its weights and its outputs (no reuse of activation buffers)."""
        return node.weight_bytes + node.bytes_written
