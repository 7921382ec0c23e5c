"""The FPGA backend's resource and latency formulas of an hls4ml-style layer: its estimate.json uses them
(estimate.py, per emitted loop nest), and so does the partitioner's cost model (planner/cost_model.py, per ONNX
node, before code generation), so that the plan and the generated project agree. The planner imports the
backend's formulas; nothing in backends/fpga imports the planner.

The model (research/hw-toolchains.md A4, hls4ml conventions) is spelled out in backends/fpga/estimate.py and
docs/backends/fpga.md. All figures are planning estimates, not synthesis results.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

LUT_MULT_BITS = 10  # products of operands at most this wide map to LUTs, not DSPs
LUTRAM_BITS = 1024  # arrays smaller than this go to LUTRAM, not BRAM
BRAM_BITS = 18432  # bits in one BRAM18K
BUFFER_IN_REGISTERS = 1024  # intermediate buffers up to this many elements are partitioned into registers
MAX_MULTIPLIERS = 4096  # Vivado/Vitis HLS refuse to unroll more than this per pipeline stage (hls4ml's limit)


@dataclass
class LayerEstimate:
    dsp: int = 0
    bram18k: int = 0
    lut: int = 0
    ff: int = 0
    latency_cycles: int = 0
    ii: int = 0  # cycles before the layer accepts the next sample
    multipliers: int = 0
    reuse_factor: int = 1
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def __add__(self, other: "LayerEstimate") -> "LayerEstimate":
        return LayerEstimate(self.dsp + other.dsp, self.bram18k + other.bram18k, self.lut + other.lut, self.ff + other.ff,
                             self.latency_cycles + other.latency_cycles, max(self.ii, other.ii), self.multipliers + other.multipliers)


def dsp_per_mult(wa: int, wb: int, dsp_width: int = 27, lut_bits: int = LUT_MULT_BITS) -> int:
    """DSP slices of one wa x wb multiplier: ceil(wa/A)*ceil(wb/18), the wider operand on the A port."""
    if max(wa, wb) <= lut_bits:
        return 0
    wa, wb = max(wa, wb), min(wa, wb)
    return math.ceil(wa / dsp_width) * math.ceil(wb / 18)


def bram_for(bits: int, banks: int = 1, depth: int | None = None, width: int | None = None) -> int:
    """BRAM18K blocks for an array (or `banks` banks of depth x width)."""
    if width is not None and depth is not None:
        if depth * width < LUTRAM_BITS:
            return 0
        per_bank = math.ceil(width / 36) * math.ceil(depth / 512) if width <= 36 else math.ceil(depth * width / BRAM_BITS)
        return banks * per_bank
    if bits < LUTRAM_BITS:
        return 0
    return math.ceil(bits / BRAM_BITS)


def mac_layer(block: int, iterations: int, wa: int, wb: int, acc_w: int, n_weights: int, weight_w: int,
              reuse_factor: int = 1, strategy: str = "latency", dsp_width: int = 27) -> LayerEstimate:
    """A multiply-accumulate layer (Dense/Conv/MatMul with constant weights)."""
    rf = max(1, min(reuse_factor, max(block, 1)))
    mults = math.ceil(block / rf)
    per = dsp_per_mult(wa, wb, dsp_width)
    lut = mults * (40 + (0 if per else wa * wb // 2)) + mults * acc_w + 60
    ff = mults * (acc_w + (wa + wb) // 2) + 60
    bram = 0
    if strategy == "resource" and n_weights:
        banks = math.ceil(n_weights / rf)
        bram = bram_for(0, banks=banks, depth=rf, width=weight_w)
    elif n_weights:
        lut += n_weights * weight_w // 8  # constants folded into the multipliers' logic
    latency = max(iterations, 1) * rf + math.ceil(math.log2(max(block, 2))) + 3
    return LayerEstimate(dsp=mults * per, bram18k=bram, lut=lut, ff=ff, latency_cycles=latency, ii=max(iterations, 1) * rf,
                         multipliers=mults, reuse_factor=rf)


def stream_layer(elements: int, width: int, lanes: int = 1, depth: int = 2, mults: int = 0, mult_widths=(16, 16),
                 table_bits: int = 0, reduce: int = 1, dsp_width: int = 27) -> LayerEstimate:
    """Elementwise / pooling / copy layers: `lanes` results per cycle, `reduce` inputs combined per result."""
    per = dsp_per_mult(*mult_widths, dsp_width) if mults else 0
    lut = lanes * (width * max(reduce, 1) + 30) + 60 + (0 if per else mults * mult_widths[0] * mult_widths[1] // 2)
    ff = lanes * width * 2 + 60
    latency = math.ceil(elements / max(lanes, 1)) + depth + math.ceil(math.log2(max(reduce, 1) + 1))
    return LayerEstimate(dsp=mults * per * lanes, bram18k=bram_for(table_bits), lut=lut, ff=ff, latency_cycles=latency,
                         ii=math.ceil(elements / max(lanes, 1)))
