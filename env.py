"""hcc's environment variables, read in one place: `read_env()` parses every `HCC_*` knob into one typed record.

Why: the knobs used to be read at ten sites with three true/false conventions ("0" is false; "0/false/no/off" are
false; anything but "" and "0" is true), four of them documented, and the ones that change the generated code left no
trace in the bundle. Now there is one table (`KNOBS`: name, effect, default; the README's table is this one), one
convention for switches, and `code_knobs()` gives the effective values of the knobs that change generated code,
which the compile driver records in the bundle manifest (`toolchain`).

Switches: "1", "true", "yes", "on" are true and "0", "false", "no", "off" are false (any case); unset or empty means
the default; anything else is an error naming the variable. The compiler reads the environment once per compile
(the driver, into `CompileOptions.env`, which travels to the worker in its request); the runtime reads it when it
loads the CUDA driver or runs a GPU subgraph.

Stdlib only and importing nothing of hcc but `errors`: the deployable runtime (numpy alone) reads it too.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from hcc.errors import HccError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
# The CPU backend's schedule kinds (backends/cpu/lowering.py, schedule.py) that HCC_CPU_KINDS may name.
CPU_SCHEDULE_KINDS = ("ukernel", "contraction", "conv", "elementwise", "reduction")
CPU_SCHEDULES = ("auto", "loops")


@dataclass(frozen=True)
class Knob:
    """One environment variable: the record field it fills, what it does, its default (as documented), and whether
    it changes the generated code (then its effective value is recorded in the bundle manifest)."""

    name: str
    field: str
    effect: str
    default: str
    changes_code: bool = False
    side: str = "compiler"  # who reads it: compiler | runtime


KNOBS: tuple[Knob, ...] = (
    Knob("HCC_CPU_SCHEDULE", "cpu_schedule", "`loops`: CPU subgraphs as plain loops only (no micro-kernels, no vector "
         "schedules: the baseline benchmarks compare against)", "auto", changes_code=True),
    Knob("HCC_CPU_KINDS", "cpu_kinds", "comma list of the CPU schedule kinds to use (ukernel, contraction, conv, "
         "elementwise, reduction); the others' ops become plain loops", "all", changes_code=True),
    Knob("HCC_CPU_FORK", "cpu_fork", "switch: lower each CPU function in a forked child (an MLIR assertion then costs "
         "speed, not the compile); off lowers in-process (debugging)", "on"),
    Knob("HCC_CPU_SCHEDULE_TIMEOUT", "cpu_schedule_timeout_s", "seconds the forked vector code generation of one "
         "function may take before it is retried with simpler code", "120"),
    Knob("HCC_GPU_SHARED", "gpu_shared", "switch: shared-memory tiling of matmul-like and convolution GPU kernels",
         "on", changes_code=True),
    Knob("HCC_AP_TYPES", "ap_types", "folder holding Xilinx's ap_fixed.h for the FPGA C simulation",
         "the da4ml wheel's headers", changes_code=True),
    Knob("HCC_CUDA_HOME", "cuda_home", "CUDA toolkit folder whose ptxas and libdevice the GPU backend uses",
         "the nvidia pip wheels, then $CUDA_HOME, /usr/local/cuda", changes_code=True),
    Knob("HCC_CACHE_DIR", "cache_dir", "cache of the CPU support objects and the `hcc devices --calibrate` profile",
         "~/.cache/hcc"),
    Knob("HCC_LIBCUDA", "libcuda", "the CUDA driver library the runtime loads", "libcuda.so.1", side="runtime"),
    Knob("HCC_CUDA_SYNC", "cuda_sync", "switch: synchronize after every GPU kernel launch, so that a failing kernel is "
         "named (debugging)", "off", side="runtime"),
)


@dataclass(frozen=True)
class HccEnv:
    """The effective value of every knob (field docs: `KNOBS`)."""

    cpu_schedule: str = "auto"
    cpu_kinds: tuple[str, ...] | None = None  # None: every kind
    cpu_fork: bool = True
    cpu_schedule_timeout_s: float = 120.0
    gpu_shared: bool = True
    ap_types: str | None = None
    cuda_home: str | None = None
    cache_dir: str | None = None
    libcuda: str = "libcuda.so.1"
    cuda_sync: bool = False

    @property
    def cache_root(self) -> Path:
        """The cache folder: $HCC_CACHE_DIR, else ~/.cache/hcc."""
        return Path(self.cache_dir) if self.cache_dir else Path.home() / ".cache" / "hcc"

    def code_knobs(self) -> dict[str, str]:
        """The knobs that change generated code, by variable name, as strings (for the manifest's `toolchain`)."""
        return {k.name: _show(getattr(self, k.field), k) for k in KNOBS if k.changes_code}

    def to_dict(self) -> dict:
        """Plain JSON data (the compile worker's request)."""
        data = asdict(self)
        data["cpu_kinds"] = list(self.cpu_kinds) if self.cpu_kinds is not None else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> HccEnv:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise HccError(f"environment record: unknown field(s) {', '.join(unknown)}")
        values = dict(data)
        if values.get("cpu_kinds") is not None:
            values["cpu_kinds"] = tuple(values["cpu_kinds"])
        return cls(**values)


def _show(value, knob: Knob) -> str:
    if value is None:
        return "all" if knob.field == "cpu_kinds" else "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def _switch(name: str, text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise HccError(f"environment variable {name}={text!r}: expected a switch ({'/'.join(TRUE_WORDS)} or {'/'.join(FALSE_WORDS)})")


def _parse(knob: Knob, text: str):
    """The typed value of one set, non-empty variable."""
    name = knob.name
    if knob.field in ("cpu_fork", "gpu_shared", "cuda_sync"):
        return _switch(name, text)
    if knob.field == "cpu_schedule":
        if text.strip() not in CPU_SCHEDULES:
            raise HccError(f"environment variable {name}={text!r}: expected one of {', '.join(CPU_SCHEDULES)}")
        return text.strip()
    if knob.field == "cpu_kinds":
        kinds = tuple(k.strip() for k in text.split(",") if k.strip())
        unknown = [k for k in kinds if k not in CPU_SCHEDULE_KINDS]
        if unknown or not kinds:
            raise HccError(f"environment variable {name}={text!r}: unknown schedule kind(s) {', '.join(unknown) or '(none given)'} "
                           f"(known: {', '.join(CPU_SCHEDULE_KINDS)})")
        return kinds
    if knob.field == "cpu_schedule_timeout_s":
        try:
            seconds = float(text)
        except ValueError:
            seconds = float("nan")
        if not seconds > 0 or seconds == float("inf"):
            raise HccError(f"environment variable {name}={text!r}: expected a positive number of seconds")
        return seconds
    return text  # paths and library names, as given


def read_env(environ: Mapping[str, str] | None = None) -> HccEnv:
    """Every HCC_* knob of `environ` (default: os.environ), parsed and checked; unset or empty ones keep their default."""
    environ = os.environ if environ is None else environ
    values = {}
    for knob in KNOBS:
        text = environ.get(knob.name, "")
        if text.strip():
            values[knob.field] = _parse(knob, text)
    return HccEnv(**values)


def markdown_table() -> str:
    """The README's table of knobs (a test keeps the README in step with `KNOBS`)."""
    lines = ["| variable | read by | effect | default | in the manifest |", "|---|---|---|---|---|"]
    for k in KNOBS:
        lines.append(f"| `{k.name}` | {k.side} | {k.effect} | {k.default} | {'yes' if k.changes_code else 'no'} |")
    return "\n".join(lines)
