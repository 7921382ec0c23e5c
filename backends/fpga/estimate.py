"""Static resource and latency estimates of the emitted HLS layers (no vendor tools): the numbers in estimate.json.
The per-layer formulas live in resources.py, where the partitioner's cost model uses them too.

The model (research/hw-toolchains.md A4, hls4ml conventions):
  multipliers      M = ceil(block / RF), block = multiplications per output iteration (Dense: n_in*n_out,
                   Conv: Cin/g*kh*kw*Cout), RF = reuse factor
  DSP              M * ceil(wa / A) * ceil(wb / 18) with A = 27 (DSP48E2, UltraScale+) or 25 (DSP48E1, 7-series),
                   wa >= wb the operand widths; products whose operands are all <= lut_mult_bits (10) go to LUTs
  BRAM18K          weights: strategy "resource" stores them in P = ceil(n_w / RF) banks, RF deep and W wide:
                   P * ceil(W / 36) * ceil(RF / 512) blocks, unless a bank is under 1 Kbit (then LUTRAM);
                   strategy "latency" keeps them in logic (0 BRAM). Activation buffers over 1024 elements:
                   ceil(bits / 18432) each (x2 under DATAFLOW, ping-pong); lookup tables the same way
  LUT / FF         rough: per multiplier 40 LUT (+ wa*wb/2 when it is built from LUTs), one adder per multiplier
                   (acc width LUT), control 60 LUT per op; FF ~ pipeline registers, acc width per multiplier
  latency (cycles) MAC: iterations * RF + ceil(log2 block) + 3; streaming ops: elements / lanes + depth;
                   Softmax: rows * (length + divider width); a subgraph is the sum over its ops (one sample);
                   its initiation interval is the slowest op under DATAFLOW, else the sum.
All figures are estimates for planning (documented in docs/backends/fpga.md), not synthesis results.
"""
from __future__ import annotations

import math

from hcc.backends.fpga.fixed_point import FixedType
from hcc.backends.fpga.resources import (  # noqa: F401 (used by tests)
    BRAM_BITS,
    BUFFER_IN_REGISTERS,
    LUT_MULT_BITS,
    LUTRAM_BITS,
    LayerEstimate,
    bram_for,
    dsp_per_mult,
    mac_layer,
    stream_layer,
)
from hcc.devices import fpga_part_by_number


def buffer_estimate(elements: int, width: int, dataflow: bool) -> LayerEstimate:
    if elements <= BUFFER_IN_REGISTERS:
        return LayerEstimate(ff=elements * width)
    return LayerEstimate(bram18k=bram_for(elements * width) * (2 if dataflow else 1))


# ------------------------------------------------------------------------------------------------------ programs
def estimate_op(op, dsp_width: int = 27) -> LayerEstimate:
    """Estimate of one typed loop op (after precision.resolve)."""
    from hcc.backends.fpga.precision import expr_type, mac_block, mac_dims, mac_parts, reduction_size

    res: FixedType = op.types["result"]
    if op.kind == "mac":
        p, wi = mac_parts(op)
        pt = expr_type(p, op, op.types)
        w = op.ins[wi]
        outer, _ = mac_dims(op)
        iterations = int(math.prod(op.dims[d] for d in outer)) if outer else 1
        return mac_layer(mac_block(op), iterations, pt.width, w.type.width, op.types["acc"].width, int(w.array.size), w.type.width,
                         op.reuse_factor, op.strategy, dsp_width)
    points = int(math.prod(op.out.buf.shape))
    if op.kind == "reduce":
        n = reduction_size(op)
        mults = sum(1 for x in op.epilogue.walk() if x.op == "mul") if op.epilogue is not None else 0
        return stream_layer(int(math.prod(op.dims[d] for d in op.parallel)), op.types["acc"].width, reduce=n, mults=mults,
                            mult_widths=(op.types["acc"].width, 18), dsp_width=dsp_width)
    if op.kind == "eltwise":
        mults = sum(1 for x in op.body.walk() if x.op == "mul")
        tables = sum(1 for x in op.body.walk() if x.op in ("sigmoid", "tanh"))
        return stream_layer(points, res.width, mults=mults, mult_widths=(res.width, res.width), table_bits=tables * 4096 * 18,
                            dsp_width=dsp_width)
    if op.kind == "softmax":
        length = op.dims[op.attrs["axis"]]
        rows = max(points // max(length, 1), 1)
        est = stream_layer(rows, 18, lanes=1, depth=length + 40, mults=2 * length, mult_widths=(18, 18), reduce=length,
                           dsp_width=dsp_width)
        est.latency_cycles = rows * (length + 40) + 3
        est.ii = rows * (length + 40)
        return est
    return stream_layer(points, res.width)  # pad / concat / copies


def estimate_program(prog, part: str = "", clock_ns: float = 5.0, dataflow: bool = True) -> dict:
    from hcc.backends.fpga.config import dsp_width_for_part

    width = dsp_width_for_part(part) if part else 27
    layers = []
    total = LayerEstimate()
    for op in prog.ops:
        e = estimate_op(op, width)
        e.reuse_factor = op.reuse_factor
        layers.append({"op": op.id, "kind": op.kind, "nodes": op.nodes, "strategy": op.strategy, **e.as_dict()})
        total = total + e
    buffers = LayerEstimate()
    for b in prog.buffers:
        if b.kind == "temp":
            buffers = buffers + buffer_estimate(b.size, b.type.width, dataflow)
    total.bram18k += buffers.bram18k
    total.ff += buffers.ff
    ii = max((lay["ii"] for lay in layers), default=0) if dataflow else sum(lay["ii"] for lay in layers)
    out = {
        "model": "static estimate (hcc backends/fpga/estimate.py); not a synthesis report",
        "part": part, "clock_ns": clock_ns, "dsp_width": width, "dataflow": dataflow,
        "total": {"dsp": total.dsp, "bram18k": total.bram18k, "lut": total.lut, "ff": total.ff,
                  "latency_cycles": total.latency_cycles, "ii_cycles": ii,
                  "latency_s": total.latency_cycles * clock_ns * 1e-9, "throughput_per_s": (1e9 / (ii * clock_ns)) if ii else None},
        "buffers": {"bram18k": buffers.bram18k, "ff": buffers.ff},
        "layers": layers,
    }
    budget = part_budget(part)
    if budget:
        out["utilization"] = {k: round(100.0 * out["total"][k] / v, 3) for k, v in budget.items() if v}
        out["budget"] = budget
    return out


def part_budget(part: str) -> dict | None:
    """DSP/BRAM/LUT/FF of a known part (hcc.devices), or None."""
    known = fpga_part_by_number(part)
    return {"dsp": known.dsp, "bram18k": known.bram18k, "lut": known.lut, "ff": known.ff} if known else None


# ------------------------------------------------------------------------------------------------------ per ONNX node
def _widths(precision) -> int:
    if isinstance(precision, FixedType):
        return precision.width
    if isinstance(precision, int):
        return precision
    if precision in (None, "auto"):
        return 16
    return FixedType.parse(precision).width


def estimate_node(op_type: str, input_shapes: list[list[int]], output_shape: list[int], *, weight_shape: list[int] | None = None,
                  attrs: dict | None = None, precision="ap_fixed<16,6>", weight_precision=None, accum_width: int | None = None,
                  reuse_factor: int = 1, strategy: str = "latency", dsp_width: int = 27, max_multipliers: int = 4096) -> LayerEstimate:
    """Estimate one ONNX node as an hcc FPGA layer, from shapes alone (for the partitioner's cost model).

    `precision`: activation type (ap_fixed string, FixedType or bit width); `weight_precision` defaults to it;
    `reuse_factor` is raised when the layer would need more than `max_multipliers` multipliers (as the backend does).
    Returns a LayerEstimate (dsp, bram18k, lut, ff, latency_cycles, ii, multipliers, reuse_factor)."""
    attrs = attrs or {}
    wa = _widths(precision)
    wb = _widths(weight_precision if weight_precision is not None else precision)
    out_elems = int(math.prod(output_shape)) if output_shape else 1
    x = input_shapes[0] if input_shapes else []
    block = iterations = 0
    n_w = 0
    if op_type == "Conv" and weight_shape:
        k = int(math.prod(weight_shape[2:]))
        block = weight_shape[1] * k * weight_shape[0]
        iterations = output_shape[0] * int(math.prod(output_shape[2:]))
        group = int(attrs.get("group", 1))
        if group > 1:  # depthwise / grouped: one group's block, groups side by side
            block = weight_shape[1] * k * weight_shape[0]
        n_w = int(math.prod(weight_shape))
    elif op_type in ("Gemm", "MatMul") and weight_shape:
        kdim = weight_shape[0] if op_type == "MatMul" or not attrs.get("transB") else weight_shape[1]
        n = output_shape[-1]
        block = kdim * n
        iterations = max(out_elems // max(n, 1), 1)
        n_w = int(math.prod(weight_shape))
    if block:
        rf = max(reuse_factor, math.ceil(block / max_multipliers))
        acc = accum_width or min(wa + wb + math.ceil(math.log2(max(block // max(output_shape[1] if len(output_shape) > 1 else 1, 1), 2))), 48)
        est = mac_layer(block, iterations, wa, wb, acc, n_w, wb, rf, strategy, dsp_width)
        if rf != reuse_factor:
            est.notes.append(f"reuse factor raised from {reuse_factor} to {rf} ({block} multiplications per iteration)")
        return est
    if op_type in ("MaxPool", "AveragePool"):
        kernel = attrs.get("kernel_shape") or [1]
        return stream_layer(out_elems, wa, reduce=int(math.prod(kernel)), dsp_width=dsp_width)
    if op_type in ("GlobalAveragePool", "GlobalMaxPool"):
        n = int(math.prod(x[2:])) if len(x) > 2 else 1
        return stream_layer(out_elems, wa + math.ceil(math.log2(max(n, 2))), reduce=n, dsp_width=dsp_width)
    if op_type == "Softmax":
        axis = int(attrs.get("axis", -1))
        length = output_shape[axis] if output_shape else 1
        rows = max(out_elems // max(length, 1), 1)
        est = stream_layer(rows, 18, depth=length + 40, mults=2 * length, mult_widths=(18, 18), reduce=length, dsp_width=dsp_width)
        est.latency_cycles = rows * (length + 40) + 3
        est.ii = rows * (length + 40)
        return est
    if op_type in ("Sigmoid", "Tanh"):
        return stream_layer(out_elems, wa, table_bits=4096 * 18, dsp_width=dsp_width)
    if op_type in ("Mul", "BatchNormalization"):
        return stream_layer(out_elems, wa, mults=1, mult_widths=(wa, wb), dsp_width=dsp_width)
    if op_type in ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Constant"):
        return LayerEstimate()
    return stream_layer(out_elems, wa, dsp_width=dsp_width)
