"""Typed compile options: the one record `hcc compile`, `hcc.compile(...)` and the compile worker agree on.

Why: options used to travel as an 18-keyword signature, an untyped `options: dict` in every backend (the worker's
whole request, read with `.get` and silent defaults) and a `fpga: dict`; a misspelt key was ignored. Here every option
has one name, one type and one check, made when the record is built (`__post_init__`), so a bad value is one
`hcc: error:` line naming the option before any work is done. The CLI builds a `CompileOptions`, the Python API
builds one from its keywords (`from_keywords`, the names `hcc.compile` has always taken), the driver sends it to the
worker as plain data (`to_dict`/`from_dict`, versioned) and every backend takes it.

Sections: `golden` (golden inputs, seed), `cpu` (target CPU), `gpu` (precision), `fpga` (precision, per-layer config,
calibration data, part, clock, the planner's chosen design points), `planner` (devices, objective, budgets, placement
overrides and files, time limit), `debug` (keep_ir, save_temps), and `env`: the HCC_* environment knobs, read once
when the record is built (hcc/env.py). Top level: `precision` ("auto": every device's precision chosen with the
placement under `accuracy`, `hcc compile --precision auto`; the driver turns it into the sections' fields).
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from hcc.artifacts.golden import DEFAULT_SEED
from hcc.devices import DEVICE_KINDS
from hcc.env import HccEnv, read_env
from hcc.errors import HccError
from hcc.planner import DEFAULT_TIME_LIMIT_S

OPTIONS_VERSION = 1  # bump when a field changes meaning; the worker refuses a request of another version
DEFAULT_TARGET_CPU = "x86-64-v3"
MAX_TIME_LIMIT_S = 3600.0
OBJECTIVES = ("latency", "throughput")
FPGA_STRATEGIES = ("latency", "resource")
_CPU_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")


def _path(value, option: str) -> str | None:
    """A file or folder option as a string (None stays None)."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise HccError(f"{option}: expected a file name, got {value!r}")
    return os.fspath(value)


def _set(record, name: str, value) -> None:
    object.__setattr__(record, name, value)  # normalising a frozen record in __post_init__


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class GoldenOptions:
    """The bundle's golden data: `inputs` an npz keyed by input name (default: random inputs from `seed`)."""

    inputs: str | None = None
    seed: int = DEFAULT_SEED

    def __post_init__(self):
        _set(self, "inputs", _path(self.inputs, "--golden-input"))
        if not _is_int(self.seed) or not 0 <= self.seed < 2**32:
            raise HccError(f"--seed {self.seed!r}: expected an integer in 0..{2**32 - 1}")


PRECISION_AUTO = "auto"  # --precision auto: device and precision chosen together under one accuracy budget (driver)
PRECISIONS = ("fp32", PRECISION_AUTO)
CPU_AUTO = "auto"  # --cpu-precision auto: bf16 for the GEMMs and convolutions an accuracy budget allows, fp32 for the rest


def _check_precision(options, kind: str, auto: str, budget_without_auto: str, chosen: str, what: str) -> None:
    """The CPU's and GPU's precision fields alike: `precision` one of the device kind's or auto; auto if and only if an
    accuracy budget (stored normalized); `chosen` (the names auto picked, set by the driver) a tuple of strings."""
    choices = DEVICE_KINDS[kind].precisions + (auto,)
    if options.precision not in choices:
        raise HccError(f"--{kind}-precision {options.precision!r}: unsupported (choose one of {', '.join(choices)})")
    if (options.precision == auto) != (options.accuracy is not None):
        raise HccError(f"--{kind}-precision auto needs --accuracy (e.g. max_abs=1e-2), and {budget_without_auto}")
    if options.accuracy is not None:
        from hcc.planner.precision import AccuracyBudget

        _set(options, "accuracy", str(AccuracyBudget.parse(options.accuracy)))  # errors name the bad item
    _check_names(options, kind, chosen, what)


def _check_names(options, kind: str, chosen: str, what: str) -> None:
    """A field of names that auto picked (set by the driver): a tuple of strings, stored as a tuple."""
    names = getattr(options, chosen)
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise HccError(f"{kind} {chosen} {names!r}: expected {what}")
    _set(options, chosen, tuple(names))


@dataclass(frozen=True)
class Int8Gemm:
    """A GEMM that --cpu-precision auto put in int8 (its B a bundle weight, quantized per column by the kernel), with
    the quantization step of its A operand calibrated at compile time and whether A is signed (else uint8)."""

    node: str
    step: float
    signed: bool

    def __post_init__(self):
        ok = isinstance(self.node, str) and isinstance(self.step, (int, float)) and math.isfinite(self.step) and self.step > 0
        if not ok or not isinstance(self.signed, bool):
            raise HccError(f"cpu int8 node {self!r}: expected a node name, a positive finite step and a bool")
        _set(self, "step", float(self.step))


@dataclass(frozen=True)
class CpuOptions:
    """`precision` bf16: GEMMs and convolutions multiply bfloat16-rounded operands with fp32 sums (AMX tiles, else
    AVX512-BF16 dot products); bf16x3 (AMX only): GEMMs multiply each operand as two bfloat16 halves, three tile
    products (about 2^-16 of each product, convolutions stay fp32); auto: per GEMM / convolution, what `accuracy` (a
    budget such as "max_abs=1e-2", planner/precision.py) allows among the host's kernels (runtime/devices/cpu.py
    cpu_low_precisions: bf16, bf16x3 on AMX, or for a GEMM with a constant weight int8 where the host has AMX-INT8 or,
    without AMX, AVX512-VNNI).
    `bf16_nodes`, `bf16x3_nodes`, `int8_nodes`: the nodes auto chose (set by the driver, not by users)."""

    target_cpu: str = DEFAULT_TARGET_CPU  # x86-64-v2/v3/v4 or an llc -mcpu name ('native', 'skylake-avx512')
    precision: str = DEVICE_KINDS["cpu"].default_precision
    accuracy: str | None = None
    bf16_nodes: tuple[str, ...] = ()
    bf16x3_nodes: tuple[str, ...] = ()
    int8_nodes: tuple[Int8Gemm, ...] = ()

    def __post_init__(self):
        if not isinstance(self.target_cpu, str) or not _CPU_NAME.fullmatch(self.target_cpu):
            raise HccError(f"--target-cpu {self.target_cpu!r}: expected a CPU name such as x86-64-v3 or native")
        _check_precision(self, "cpu", CPU_AUTO, "--accuracy needs --cpu-precision auto", "bf16_nodes", "node names")
        _check_names(self, "cpu", "bf16x3_nodes", "node names")
        if isinstance(self.int8_nodes, (str, dict)):
            raise HccError(f"cpu int8_nodes {self.int8_nodes!r}: expected a list of {{node, step, signed}}")
        _set(self, "int8_nodes", tuple(n if isinstance(n, Int8Gemm) else Int8Gemm(**n) for n in self.int8_nodes))

    def bf16(self) -> bool | frozenset[str]:
        """What the CPU backend runs in bf16: every GEMM and convolution (True), the named nodes, or none (False)."""
        if self.precision == "bf16":
            return True
        return frozenset(self.bf16_nodes) if self.precision == CPU_AUTO and self.bf16_nodes else False

    def int8(self) -> tuple[tuple[str, float, bool], ...]:
        """The GEMMs the CPU backend runs in int8, each with its A's quantization step and sign."""
        return tuple((n.node, n.step, n.signed) for n in self.int8_nodes) if self.precision == CPU_AUTO else ()

    def int8_step(self, node: str) -> tuple[float, bool]:
        """An int8 GEMM's (A's quantization step, A signed)."""
        return next((step, signed) for name, step, signed in self.int8() if name == node)

    def precision_of(self, node: str) -> str | None:
        """The lower precision ONNX node `node`'s GEMM or convolution is asked to run in (None: fp32): int8, else
        bf16x3, else bf16. A precision its kernel lacks (bf16x3 or int8 for a convolution) leaves it in fp32."""
        if any(name == node for name, _, _ in self.int8()):
            return "int8"
        for precision, which in (("bf16x3", self.bf16x3()), ("bf16", self.bf16())):
            if which is True or (which and node in which):
                return precision
        return None

    def bf16x3(self) -> bool | frozenset[str]:
        """What the CPU backend runs in bf16x3 (GEMMs only): every GEMM (True), the named nodes, or none (False)."""
        if self.precision == "bf16x3":
            return True
        return frozenset(self.bf16x3_nodes) if self.precision == CPU_AUTO and self.bf16x3_nodes else False


GPU_AUTO = "auto"  # --gpu-precision auto: fp16 for the GPU subgraphs an accuracy budget allows, fp32 for the rest


@dataclass(frozen=True)
class GpuOptions:
    """`precision` fp16: every GPU subgraph in fp16 with fp32 accumulation (backends/gpu/precision.py); auto: per GPU
    subgraph, fp16 where its emulated error fits `accuracy` (planner/subgraph_precision.py). `fp16_subgraphs`: the
    subgraph ids auto chose (set by the driver, not by users)."""

    precision: str = DEVICE_KINDS["gpu"].default_precision
    accuracy: str | None = None
    fp16_subgraphs: tuple[str, ...] = ()

    def __post_init__(self):
        _check_precision(self, "gpu", GPU_AUTO, "a GPU accuracy budget needs --gpu-precision auto", "fp16_subgraphs", "subgraph ids")

    def precision_of(self, subgraph: str) -> str:
        """The precision GPU subgraph `subgraph` (an id such as sg1) is compiled at: fp32 or fp16."""
        if self.precision == GPU_AUTO:
            return "fp16" if subgraph in self.fp16_subgraphs else "fp32"
        return self.precision


@dataclass(frozen=True)
class FpgaOptions:
    """FPGA code generation (backends/fpga/config.py turns this into the per-layer configuration).

    `precision`: the default type ('ap_fixed<W,I>') or 'auto'; `config`: an fpga.toml path or its parsed table;
    `calibration_file`: npz of inputs for 'auto'; `reuse_factor`, `strategy`, `max_width`: model-wide defaults;
    `part`, `clock_ns`: override the device's; `planned_layers`: {node: {reuse_factor, strategy}} that the
    partitioner chose where the config leaves them open (set by the driver, not by users); `accuracy`: a budget
    (`hcc plan --precision auto`): each FPGA MAC layer's ap_fixed width is chosen from its measured end-to-end error
    (planner/fixed_precision.py) instead of the default type."""

    precision: str | None = None
    config: str | dict | None = None
    calibration_file: str | None = None
    reuse_factor: int | None = None
    strategy: str | None = None
    max_width: int | None = None
    part: str | None = None
    clock_ns: float | None = None
    planned_layers: dict = field(default_factory=dict)
    accuracy: str | None = None

    def __post_init__(self):
        if self.accuracy is not None:
            from hcc.planner.precision import AccuracyBudget

            _set(self, "accuracy", str(AccuracyBudget.parse(self.accuracy)))  # errors name the bad item
        if self.config is not None and not isinstance(self.config, dict):
            _set(self, "config", _path(self.config, "--fpga-config"))
        _set(self, "calibration_file", _path(self.calibration_file, "--calib"))
        if self.precision is not None:
            from hcc.backends.fpga.fixed_point import FixedType

            if not isinstance(self.precision, str):
                raise HccError(f"--fpga-precision {self.precision!r}: expected 'ap_fixed<W,I>' or auto")
            if self.precision != "auto":
                try:
                    FixedType.parse(self.precision)
                except ValueError as exc:
                    raise HccError(f"--fpga-precision {self.precision!r}: {exc}") from None
        if self.reuse_factor is not None and (not _is_int(self.reuse_factor) or self.reuse_factor < 1):
            raise HccError(f"fpga option reuse_factor {self.reuse_factor!r}: expected a positive integer")
        if self.strategy is not None and self.strategy not in FPGA_STRATEGIES:
            raise HccError(f"fpga option strategy {self.strategy!r}: expected one of {', '.join(FPGA_STRATEGIES)}")
        if self.max_width is not None and (not _is_int(self.max_width) or not 2 <= self.max_width <= 64):
            raise HccError(f"fpga option max_width {self.max_width!r}: expected an integer in 2..64")
        if self.part is not None and (not isinstance(self.part, str) or not self.part):
            raise HccError(f"fpga option part {self.part!r}: expected a part name such as xcu250-figd2104-2L-e")
        if self.clock_ns is not None and (isinstance(self.clock_ns, bool) or not isinstance(self.clock_ns, (int, float))
                                          or not 0 < self.clock_ns < 1e6):
            raise HccError(f"fpga option clock_ns {self.clock_ns!r}: expected a positive clock period in ns")
        if not isinstance(self.planned_layers, dict):
            raise HccError("fpga option planned_layers: expected {node: {reuse_factor, strategy}}")

    @property
    def given(self) -> bool:
        """Whether any option was set (the planner's cost model then prices FPGA layers with them)."""
        return any(getattr(self, f.name) not in (None, {}) for f in fields(self))


@dataclass(frozen=True)
class PlannerOptions:
    """The partitioner's inputs. `overrides`: hcc.planner.placement.Override records (`--place`, `--prefer`)."""

    devices: str | None = None
    objective: str = "latency"
    budgets: tuple[str, ...] = ()
    overrides: tuple = ()
    placement_file: str | None = None
    save_placement: str | None = None
    device_file: str | None = None
    time_limit_s: float = DEFAULT_TIME_LIMIT_S

    def __post_init__(self):
        if self.devices is not None and (not isinstance(self.devices, str) or not self.devices.strip()):
            raise HccError(f"--devices {self.devices!r}: expected a device list such as cpu,gpu:sm_90,fpga:xcu250")
        if self.objective not in OBJECTIVES:
            raise HccError(f"--objective {self.objective!r}: expected one of {', '.join(OBJECTIVES)}")
        budgets = (self.budgets,) if isinstance(self.budgets, str) else tuple(self.budgets or ())
        if not all(isinstance(b, str) for b in budgets):
            raise HccError(f"--budget {list(budgets)!r}: expected strings such as fpga.dsp=4000")
        _set(self, "budgets", budgets)
        _set(self, "overrides", tuple(self.overrides or ()))
        for name, option in (("placement_file", "--placement"), ("save_placement", "--save-placement"), ("device_file", "--device-file")):
            _set(self, name, _path(getattr(self, name), option))
        limit = self.time_limit_s
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not 0.1 <= limit <= MAX_TIME_LIMIT_S:
            raise HccError(f"--time-limit {limit!r}: expected seconds in 0.1..{MAX_TIME_LIMIT_S:g}")

    @property
    def active(self) -> bool:
        """Whether the partitioner runs (else the whole model is one CPU subgraph)."""
        return bool(self.devices or self.overrides or self.placement_file)


@dataclass(frozen=True)
class DebugOptions:
    """`keep_ir`: write each subgraph's IR into the bundle; `save_temps`: a new or empty folder that keeps every MLIR
    pass pipeline's input (passes/pass_runner.py)."""

    keep_ir: bool = True
    save_temps: str | None = None

    def __post_init__(self):
        if not isinstance(self.keep_ir, bool):
            raise HccError(f"keep_ir {self.keep_ir!r}: expected True or False")
        _set(self, "save_temps", _path(self.save_temps, "--save-temps"))


@dataclass(frozen=True)
class CompileOptions:
    """Every option of a compile (sections above). `input_shapes`: {input: [dims]} for dynamic dimensions ([[dims], ...]
    for a sequence input, None for an absent optional one: frontend/boundary.py);
    `sign_key`: an Ed25519 secret key (a .key file or 64 hex digits) that signs the bundle."""

    input_shapes: dict[str, list[int] | list[list[int]] | None] | None = None
    golden: GoldenOptions = field(default_factory=GoldenOptions)
    cpu: CpuOptions = field(default_factory=CpuOptions)
    gpu: GpuOptions = field(default_factory=GpuOptions)
    fpga: FpgaOptions = field(default_factory=FpgaOptions)
    planner: PlannerOptions = field(default_factory=PlannerOptions)
    debug: DebugOptions = field(default_factory=DebugOptions)
    sign_key: str | None = None
    env: HccEnv = field(default_factory=read_env)
    precision: str = "fp32"  # "auto": --precision auto (check_precision_auto says what it may be combined with)
    accuracy: str | None = None  # its budget (--accuracy), e.g. "max_abs=1e-2"

    def __post_init__(self):
        for f in fields(self):
            expected = _SECTIONS.get(f.name)
            if expected is not None and not isinstance(getattr(self, f.name), expected):
                raise HccError(f"compile option {f.name}: expected a {expected.__name__}, got {type(getattr(self, f.name)).__name__}")
        if self.input_shapes is not None:
            def dims(v) -> bool:
                return isinstance(v, (list, tuple)) and all(_is_int(d) for d in v)

            # a tensor: [dims]; a sequence (frontend/boundary.py): [[dims], ...]; an absent optional: None
            ok = isinstance(self.input_shapes, Mapping) and all(
                isinstance(k, str) and (v is None or dims(v) or (isinstance(v, (list, tuple)) and all(dims(e) for e in v)))
                for k, v in self.input_shapes.items())
            if not ok:
                raise HccError(f"--input-shape {self.input_shapes!r}: expected {{input name: [dims]}} ([[dims], ...] for a "
                               "sequence, None for an absent optional)")
            _set(self, "input_shapes", {k: None if v is None else [list(e) if isinstance(e, (list, tuple)) else e for e in v]
                                        for k, v in self.input_shapes.items()})
        if self.sign_key is not None and not isinstance(self.sign_key, (str, os.PathLike)):
            raise HccError(f"--sign {self.sign_key!r}: expected a key file or 64 hex digits")
        if self.sign_key is not None:
            _set(self, "sign_key", os.fspath(self.sign_key))
        self.check_precision_auto()

    def check_precision_auto(self) -> None:
        """--precision auto chooses every device's precision under one budget, so a per-device precision that fixes one
        (--cpu-precision bf16, --gpu-precision fp16, --fpga-precision TYPE) or another budget contradicts it: an error
        naming both. The per-device `auto`s and their budget, when equal, agree with it (the driver sets them)."""
        if self.precision not in PRECISIONS:
            raise HccError(f"--precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}")
        if self.precision != PRECISION_AUTO:
            if self.accuracy is not None:
                raise HccError("the top-level accuracy budget needs --precision auto (precision = \"auto\")")
            return
        if self.accuracy is None:
            raise HccError("--precision auto needs --accuracy (e.g. max_abs=1e-2)")
        from hcc.planner.precision import AccuracyBudget

        _set(self, "accuracy", str(AccuracyBudget.parse(self.accuracy)))  # errors name the bad item
        why = "--precision auto chooses each op's precision with its device under --accuracy"
        for kind, section, auto in (("cpu", self.cpu, CPU_AUTO), ("gpu", self.gpu, GPU_AUTO)):
            if section.precision not in (DEVICE_KINDS[kind].default_precision, auto):
                raise HccError(f"--precision auto and --{kind}-precision {section.precision} contradict: {why}; give one of them")
        if self.fpga.precision is not None:
            raise HccError(f"--precision auto and --fpga-precision {self.fpga.precision} contradict: {why} (each FPGA MAC layer's "
                           "ap_fixed width); give one of them (per-layer types that must stay fixed: --fpga-config)")
        for option, budget in (("--cpu-precision auto", self.cpu.accuracy), ("--gpu-precision auto", self.gpu.accuracy),
                               ("the FPGA", self.fpga.accuracy)):
            if budget is not None and budget != self.accuracy:
                raise HccError(f"--precision auto under {self.accuracy} and {option} under {budget} contradict: a compile has one budget")

    @classmethod
    def from_keywords(cls, **keywords: Any) -> CompileOptions:
        """The keywords `hcc.compile` has always taken (input_shapes, golden_inputs, seed, target_cpu, keep_ir, devices,
        objective, budgets, overrides, placement_file, save_placement, device_file, plan_time_limit_s, gpu_precision, cpu_precision, accuracy,
        fpga (a dict of FpgaOptions fields), sign_key, save_temps) as a CompileOptions. (--precision auto: build the record,
        CompileOptions(precision="auto", accuracy=...).)"""
        sections: dict[str, dict] = {name: {} for name in _SECTIONS}
        top: dict[str, Any] = {}
        for name, value in keywords.items():
            if name not in KEYWORDS:
                hint = "to fix the subgraphs by hand (tests, tools) use hcc.driver.compile_groups" if name == "groups" else None
                raise HccError(f"hcc.compile: unknown option '{name}' (options: {', '.join(sorted(KEYWORDS))})", hint=hint)
            section, key = KEYWORDS[name]
            if name == "fpga":
                if not isinstance(value, (Mapping, FpgaOptions)) and value is not None:
                    raise HccError(f"hcc.compile: fpga={value!r}: expected a dict of FPGA options or an FpgaOptions")
                top["fpga"] = value if isinstance(value, FpgaOptions) else _fpga_from_dict(value or {})
            elif section is None:
                top[key] = value
            else:
                sections[section][key] = value
        if "accuracy" in keywords and sections["gpu"].get("precision") == GPU_AUTO:  # the one budget goes where auto is
            if sections["cpu"].get("precision") != CPU_AUTO:
                sections["cpu"].pop("accuracy")
            sections["gpu"]["accuracy"] = keywords["accuracy"]
        built = {name: _SECTIONS[name](**values) for name, values in sections.items() if values and name != "fpga"}
        return cls(**built, **top)

    def to_dict(self) -> dict:
        """Plain JSON data (the compile worker's request)."""
        data = {f.name: asdict(getattr(self, f.name)) if f.name in _SECTIONS else getattr(self, f.name) for f in fields(self)}
        data["env"] = self.env.to_dict()
        return {"version": OPTIONS_VERSION, **data}

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> CompileOptions:
        """A compile configuration file (TOML): the sections as tables ([cpu], [gpu], [fpga], [planner], [debug],
        [golden]) and the top-level `input_shapes` table and `sign_key`, with the names of the fields here; the
        environment knobs come from the environment, never from the file. Errors name the file."""
        from hcc.config_file import read_toml

        data = read_toml(path, "compile configuration file")
        if "env" in data or "version" in data:
            raise HccError(f"{os.fspath(path)}: '{'env' if 'env' in data else 'version'}' cannot be set in a compile configuration file")
        try:
            return cls.from_dict({"version": OPTIONS_VERSION, **data})
        except HccError as exc:
            raise HccError(f"{os.fspath(path)}: {exc.message}", hint=exc.hint) from None

    @classmethod
    def from_dict(cls, data: Mapping) -> CompileOptions:
        """Inverse of to_dict; refuses another version or an unknown field."""
        data = dict(data)
        version = data.pop("version", None)
        if version != OPTIONS_VERSION:
            raise HccError(f"compile options version {version!r} is not {OPTIONS_VERSION}: the compiler and its worker differ")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise HccError(f"compile options: unknown field(s) {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "env":
                values[name] = HccEnv.from_dict(value)
            elif name == "fpga":
                values[name] = _fpga_from_dict(value)
            elif name == "planner":
                values[name] = _planner_from_dict(value)
            elif name in _SECTIONS:
                values[name] = _section(name, value)
            else:
                values[name] = value
        return cls(**values)

    def with_fpga(self, **changes: Any) -> CompileOptions:
        return replace(self, fpga=replace(self.fpga, **changes))


_SECTIONS: dict[str, type] = {"golden": GoldenOptions, "cpu": CpuOptions, "gpu": GpuOptions, "fpga": FpgaOptions,
                              "planner": PlannerOptions, "debug": DebugOptions}

# hcc.compile's keyword -> (section, field); section None: a top-level field.
KEYWORDS: dict[str, tuple[str | None, str]] = {
    "input_shapes": (None, "input_shapes"), "sign_key": (None, "sign_key"), "fpga": (None, "fpga"),
    "golden_inputs": ("golden", "inputs"), "seed": ("golden", "seed"), "target_cpu": ("cpu", "target_cpu"),
    "gpu_precision": ("gpu", "precision"), "cpu_precision": ("cpu", "precision"), "accuracy": ("cpu", "accuracy"),
    "keep_ir": ("debug", "keep_ir"),
    "save_temps": ("debug", "save_temps"),
    "devices": ("planner", "devices"), "objective": ("planner", "objective"), "budgets": ("planner", "budgets"),
    "overrides": ("planner", "overrides"), "placement_file": ("planner", "placement_file"),
    "save_placement": ("planner", "save_placement"), "device_file": ("planner", "device_file"),
    "plan_time_limit_s": ("planner", "time_limit_s"),
}


def _section(name: str, data) -> Any:
    cls = _SECTIONS[name]
    if not isinstance(data, Mapping):
        raise HccError(f"compile option {name}: expected a table of options, got {data!r}")
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise HccError(f"compile option {name}: unknown option(s) {', '.join(unknown)} (known: {', '.join(f.name for f in fields(cls))})")
    return cls(**data)


def _fpga_from_dict(data) -> FpgaOptions:
    return _section("fpga", data)


def _planner_from_dict(data) -> PlannerOptions:
    from hcc.planner.placement import Override

    data = dict(data)
    data["overrides"] = tuple(o if isinstance(o, Override) else Override(**o) for o in data.get("overrides") or ())
    return _section("planner", data)


@dataclass(frozen=True)
class ModelFiles:
    """What a backend gets besides the options: the lifted model (`model`, ONNX) and its lifted weights (`weights`,
    npz; written only when a non-CPU subgraph needs them); the FPGA backend reads both (op types, calibration,
    weights baked into the firmware); the CPU backend reads `weight_names` (kernels keep packed copies of those)."""

    model: str | None = None
    weights: str | None = None
    weight_names: frozenset[str] = frozenset()  # the lifted weights (subgraph inputs whose values never change)
