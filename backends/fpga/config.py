"""FPGA precision/parallelism configuration (`fpga.toml`), hls4ml-style: model defaults, then per ONNX op type,
then per ONNX node name (most specific wins).

    [model]
    precision = "ap_fixed<16,6>"   # default type of inputs, weights, biases and results; "auto" infers them
    accum = "auto"                 # accumulators; "auto" = exact products, integer bits that cannot overflow
    reuse_factor = 1               # multiplications per multiplier (1 = fully parallel)
    strategy = "latency"           # latency | resource
    max_width = 32                 # cap on any inferred width
    auto_mode = "bound"            # bound: worst case from weights and input ranges | observed: calibration ranges
    table_size = 4096              # sigmoid/tanh lookup table entries (a power of two)

    [op_type.Conv]
    weight = "ap_fixed<8,3>"
    reuse_factor = 4

    [node."features.1/conv"]
    result = "ap_fixed<18,8>"
    accum = "ap_fixed<32,14>"

    [tensor.x]                     # a subgraph input
    precision = "ap_fixed<12,4>"

Keys per section: precision (sets input/weight/bias/result at once), input, weight, bias, result, accum, table,
reuse_factor, strategy. A value is an `ap_fixed<W,I[,Q,O]>`/`ap_ufixed<...>` type or "auto".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from hcc.backends.fpga.fixed_point import FixedType
from hcc.config_file import read_toml
from hcc.devices import FPGA_DEFAULT_PRECISION
from hcc.errors import HccError
from hcc.options import FpgaOptions

ROLES = ("input", "weight", "bias", "result", "accum", "table")
LAYER_KEYS = set(ROLES) | {"precision", "reuse_factor", "strategy"}
MODEL_KEYS = LAYER_KEYS | {"max_width", "auto_mode", "table_size", "auto_base"}
STRATEGIES = ("latency", "resource")
DEFAULT_PRECISION = FPGA_DEFAULT_PRECISION


@dataclass
class FpgaConfig:
    model: dict = field(default_factory=dict)
    op_type: dict[str, dict] = field(default_factory=dict)
    node: dict[str, dict] = field(default_factory=dict)
    tensor: dict[str, dict] = field(default_factory=dict)
    source: str = "defaults"

    # -- model-wide knobs ----------------------------------------------------------------------------------------
    @property
    def max_width(self) -> int:
        return int(self.model.get("max_width", 32))

    @property
    def auto_mode(self) -> str:
        return self.model.get("auto_mode", "bound")

    @property
    def table_size(self) -> int:
        return int(self.model.get("table_size", 4096))

    @property
    def auto_base(self) -> FixedType:
        return FixedType.parse(self.model.get("auto_base", DEFAULT_PRECISION))

    # -- lookups -------------------------------------------------------------------------------------------------
    def lookup(self, key: str, nodes: list[str], op_types: dict[str, str], last_wins: bool = False):
        """Value of `key` for an op implementing `nodes` (most specific section wins; "precision" is the fallback
        for type roles)."""
        keys = [key] + (["precision"] if key in ("input", "weight", "bias", "result") else [])
        ordered = list(reversed(nodes)) if last_wins else list(nodes)
        for k in keys:
            for n in ordered:
                if k in self.node.get(n, {}):
                    return self.node[n][k], f"node {n}"
            for n in ordered:
                t = op_types.get(n)
                if t and k in self.op_type.get(t, {}):
                    return self.op_type[t][k], f"op_type {t}"
            if k in self.model:
                return self.model[k], "model"
        if key == "accum":
            return "auto", "default"
        if key in ("input", "weight", "bias", "result"):
            return DEFAULT_PRECISION, "default"
        return None, "default"

    def tensor_type(self, name: str):
        sec = self.tensor.get(name, {})
        for k in ("input", "precision", "result"):
            if k in sec:
                return sec[k], f"tensor {name}"
        return None


def _check_value(key: str, value, where: str):
    if key in ROLES or key == "precision":
        if not isinstance(value, str):
            raise HccError(f"{where}: {key} must be a string such as \"ap_fixed<16,6>\" or \"auto\"")
        if value != "auto":
            try:
                FixedType.parse(value)
            except ValueError as exc:
                raise HccError(f"{where}: {key} = {value!r}: {exc}") from None
    elif key == "reuse_factor":
        if not isinstance(value, int) or value < 1:
            raise HccError(f"{where}: reuse_factor must be a positive integer")
    elif key == "strategy":
        if value not in STRATEGIES:
            raise HccError(f"{where}: strategy must be one of {', '.join(STRATEGIES)}")
    elif key == "max_width":
        if not isinstance(value, int) or not 2 <= value <= 64:
            raise HccError(f"{where}: max_width must be an integer in 2..64")
    elif key == "auto_mode":
        if value not in ("bound", "observed"):
            raise HccError(f"{where}: auto_mode must be bound or observed")
    elif key == "table_size":
        if not isinstance(value, int) or value < 16 or value & (value - 1) or value > (1 << 16):
            raise HccError(f"{where}: table_size must be a power of two in 16..65536")
    elif key == "auto_base":
        try:
            FixedType.parse(value)
        except (ValueError, TypeError) as exc:
            raise HccError(f"{where}: auto_base: {exc}") from None


def _section(table: dict, allowed: set[str], where: str) -> dict:
    if not isinstance(table, dict):
        raise HccError(f"{where}: expected a table")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise HccError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    for k, v in table.items():
        _check_value(k, v, f"{where}.{k}")
    return dict(table)


def from_dict(data: dict | None, source: str = "fpga config") -> FpgaConfig:
    data = dict(data or {})
    cfg = FpgaConfig(source=source)
    model = {k: data.pop(k) for k in list(data) if k in MODEL_KEYS}  # top-level keys act as [model]
    model.update(_section(data.pop("model", {}), MODEL_KEYS, f"{source}: [model]"))
    cfg.model = _section(model, MODEL_KEYS, f"{source}: [model]")
    for name, sec in data.pop("op_type", {}).items():
        cfg.op_type[name] = _section(sec, LAYER_KEYS, f"{source}: [op_type.{name}]")
    for name, sec in data.pop("node", {}).items():
        cfg.node[name] = _section(sec, LAYER_KEYS, f"{source}: [node.\"{name}\"]")
    for name, sec in data.pop("tensor", {}).items():
        cfg.tensor[name] = _section(sec, {"precision", "input", "result"}, f"{source}: [tensor.\"{name}\"]")
    if data:
        raise HccError(f"{source}: unknown section(s) {', '.join(sorted(data))} (allowed: model, op_type, node, tensor)")
    return cfg


def load(path: str | Path) -> FpgaConfig:
    return from_dict(read_toml(path, "FPGA config file"), str(path))


def from_options(fpga: FpgaOptions) -> FpgaConfig:
    """The configuration `options.fpga` (hcc.options.FpgaOptions) describes: its config file or table, then the
    command-line values as model defaults, then the partitioner's design points where the config leaves them open."""
    raw = fpga.config
    if isinstance(raw, (str, Path)):
        cfg = load(raw)
    else:
        cfg = from_dict(raw, "fpga config")
    for key in ("precision", "reuse_factor", "strategy", "max_width"):  # command-line values set the model default
        value = getattr(fpga, key)
        if value is not None:
            _check_value(key, value, f"fpga option {key}")
            cfg.model[key] = value
    # The partitioner's design point per MAC layer (driver: only where the user's config leaves it open), so the
    # generated layer uses the DSP/BRAM the plan budgeted.
    for name, layer in (fpga.planned_layers or {}).items():
        section = cfg.node.setdefault(name, {})
        for key in ("reuse_factor", "strategy"):
            if key in layer and key not in section:
                _check_value(key, layer[key], f"planned layer {name}: {key}")
                section[key] = layer[key]
    return cfg


def dsp_width_for_part(part: str) -> int:
    """Multiplier A-port width: 27 on UltraScale/UltraScale+ (DSP48E2), 25 on 7-series (DSP48E1)."""
    p = part.lower()
    if p.startswith(("xc7", "xa7", "xq7")):
        return 25
    return 27


def ceil_log2(n: int) -> int:
    return max(0, math.ceil(math.log2(max(n, 1))))
