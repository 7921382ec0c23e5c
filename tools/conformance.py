#!/usr/bin/env python
"""hcc against the ONNX backend node suite: how much of ONNX hcc compiles correctly, measured, not claimed.

    python tools/conformance.py [--ops Conv,Relu] [--match REGEX] [--limit N] [--sample N] [--jobs 2] [--timeout S]
                                [--check-baseline] [--update-baseline] [--write-docs] [--json FILE] [--replay FILE] [--note TEXT]

Why: `hcc ops` lists what hcc is meant to compile, tests/frontend/test_op_coverage.py proves it on models written
here. The node suite shipped in the pinned onnx 1.22.0 (onnx/backend/test/data/node: 1,765 single-op models, each
with inputs and the expected outputs of the ONNX reference) is the denominator every ONNX backend reports against,
including the attributes, types and corner cases nobody here thought of.

Each case runs in its own process (`--one`, started by a pool of --jobs threads, killed with its process group
after --timeout), through hcc.onnx_backend: compile with the case's inputs as golden inputs, run with hcc.runtime,
compare every output with onnx's expected one (shape, dtype, then |actual - expected| <= atol + rtol*|expected|
with the suite's rtol 1e-3, atol 1e-7 or the case's own). Each case is one of:

    pass         every output matches
    fail         hcc returned a result and it is wrong (this number must be zero: a wrong result is never hidden)
    unsupported  hcc refused with a clear HccError (the first line is the reason)
    crash        anything else: a traceback, a compiler-worker crash, a dead case process, a timeout

`--write-docs` writes docs/conformance.md (totals, pass rate over all cases and over CORE_OPS, reasons, per-op
table, and a history table kept across runs); `--update-baseline` records the passing cases in
tests/conformance_baseline.txt; `--check-baseline` exits 1 when a case listed there no longer passes.
tests/test_conformance.py runs a fixed sample of the baseline in the default test run; `make conformance` runs
everything. A full run compiles about a thousand models: run it niced, with at most 2 jobs on a shared machine.
"""
from __future__ import annotations

import argparse
import collections
import datetime
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DOC = REPO / "docs" / "conformance.md"
DEFAULT_BASELINE = REPO / "tests" / "conformance_baseline.txt"
STATUSES = ("pass", "fail", "unsupported", "crash")
DEFAULT_TIMEOUT_S = 300
HISTORY_START, HISTORY_END = "<!-- history:start -->", "<!-- history:end -->"

# The ops real vision and NLP exports are made of (research/conformance-notes.md): their pass rate is the number
# that says whether hcc compiles the models users bring. Quantized ops are left out: hcc compiles float models.
CORE_OPS: frozenset[str] = frozenset(
    """
    Conv ConvTranspose MatMul Gemm Add Sub Mul Div Pow Sqrt Relu LeakyRelu Sigmoid Tanh Gelu Erf Softmax LogSoftmax
    LayerNormalization BatchNormalization InstanceNormalization MaxPool AveragePool GlobalAveragePool GlobalMaxPool
    Concat Reshape Transpose Flatten Squeeze Unsqueeze Gather Slice Split Expand Where Cast Clip Shape Resize
    ReduceMean ReduceSum ReduceMax ConstantOfShape Range Pad Identity Constant Equal Less Greater Not And Neg Exp Log
    Abs Min Max TopK ArgMax CumSum Einsum Tile HardSigmoid HardSwish Dropout DepthToSpace SpaceToDepth LSTM GRU
    """.split()
)


@dataclass(frozen=True)
class Case:
    """One model of the suite: its folder, the op it tests and the default-domain opset it declares."""

    name: str
    model_dir: str
    op: str
    opset: int | None
    rtol: float
    atol: float

    @property
    def core(self) -> bool:
        return self.op in CORE_OPS


@dataclass
class CaseResult:
    name: str
    op: str
    status: str  # one of STATUSES
    reason: str  # "" for a pass; otherwise the first line of what went wrong
    seconds: float
    detail: str = ""  # a traceback's tail or a worker's last messages, for crashes


# ---------------------------------------------------------------------------------------------------- the cases


def _default_opset(model) -> int | None:
    return next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), None)


def _tested_op(name: str, model, ops_by_name: dict[str, str]) -> str:
    """The op a case tests: an `_expanded` case tests the op of its twin (its nodes are the op's function body)."""
    twin = re.sub(r"_expanded(_ver\d+)?$", "", name)
    if twin != name and twin in ops_by_name:
        return ops_by_name[twin]
    ops = [n.op_type for n in model.graph.node if n.op_type != "Constant"] or [n.op_type for n in model.graph.node]
    return ops[0] if ops else "?"


def discover_cases() -> list[Case]:
    """Every node case of the installed onnx, sorted by name."""
    import onnx
    from onnx.backend.test.loader import load_model_tests

    tests = sorted(load_model_tests(kind="node"), key=lambda t: t.name)
    models = {t.name: onnx.load(os.path.join(t.model_dir, "model.onnx"), load_external_data=False) for t in tests}
    ops: dict[str, str] = {}
    for t in sorted(tests, key=lambda t: "_expanded" in t.name):  # twins first
        ops[t.name] = _tested_op(t.name, models[t.name], ops)
    return [Case(t.name, t.model_dir, ops[t.name], _default_opset(models[t.name]), t.rtol, t.atol) for t in tests]


def evenly_spaced(names: list[str], count: int) -> list[str]:
    """A deterministic sample: `count` names spread evenly over the sorted list."""
    names = sorted(names)
    if count >= len(names):
        return names
    return [names[(i * len(names)) // count] for i in range(count)]


def select_cases(cases: list[Case], ops: set[str] | None = None, match: str | None = None, names: Iterable[str] | None = None,
                 limit: int | None = None) -> list[Case]:
    chosen = [c for c in cases if (not ops or c.op in ops) and (not match or re.search(match, c.name))]
    if names is not None:
        wanted = set(names)
        chosen = [c for c in chosen if c.name in wanted]
    return chosen[:limit] if limit else chosen


# ------------------------------------------------------------------------------------ one case (in its process)


def _load_value(path: str, type_proto):
    """A test input/output file as onnx's runner reads it: a tensor, a sequence (list) or an optional."""
    import onnx
    from onnx import numpy_helper

    data = Path(path).read_bytes()
    if type_proto.HasField("sequence_type"):
        proto = onnx.SequenceProto()
        proto.ParseFromString(data)
        return numpy_helper.to_list(proto)
    if type_proto.HasField("optional_type"):
        proto = onnx.OptionalProto()
        proto.ParseFromString(data)
        return numpy_helper.to_optional(proto)
    proto = onnx.TensorProto()
    proto.ParseFromString(data)
    return numpy_helper.to_array(proto)


def load_data_sets(model, model_dir: str) -> list[tuple[list, list]]:
    """(inputs, expected outputs) of every test_data_set_* folder, in order."""
    sets = []
    for folder in sorted(Path(model_dir).glob("test_data_set_*")):
        count_in, count_out = len(list(folder.glob("input_*.pb"))), len(list(folder.glob("output_*.pb")))
        inputs = [_load_value(str(folder / f"input_{i}.pb"), model.graph.input[i].type) for i in range(count_in)]
        outputs = [_load_value(str(folder / f"output_{i}.pb"), model.graph.output[i].type) for i in range(count_out)]
        sets.append((inputs, outputs))
    return sets


def mismatch(expected, actual, rtol: float, atol: float, where: str = "output") -> str | None:
    """Why `actual` is not `expected` within tolerance (None when it is), element-wise into sequences."""
    import numpy as np

    if isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)) or len(actual) != len(expected):
            return f"{where}: expected a sequence of {len(expected)}, got {type(actual).__name__}"
        return next((m for i, (e, a) in enumerate(zip(expected, actual)) if (m := mismatch(e, a, rtol, atol, f"{where}[{i}]"))), None)
    expected, actual = np.asarray(expected), np.asarray(actual)
    if actual.shape != expected.shape:
        return f"{where}: shape {list(actual.shape)}, expected {list(expected.shape)}"
    if expected.dtype == object:
        return None if np.array_equal(actual, expected) else f"{where}: strings differ"
    if actual.dtype != expected.dtype:
        return f"{where}: dtype {actual.dtype}, expected {expected.dtype}"
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    bad = ~np.isclose(a, e, rtol=rtol, atol=atol, equal_nan=True)
    if not bad.any():
        return None
    diff = np.abs(a - e)[bad]
    worst = float(np.max(np.where(np.isnan(diff), np.inf, diff)))  # a NaN where a number was expected: inf
    return f"{where}: {int(bad.sum())}/{bad.size} elements differ (max abs err {worst:.3g})"


def compare_outputs(expected: list, actual: list, rtol: float, atol: float) -> str | None:
    if len(actual) != len(expected):
        return f"{len(actual)} outputs, expected {len(expected)}"
    return next((m for i, (e, a) in enumerate(zip(expected, actual)) if (m := mismatch(e, a, rtol, atol, f"output {i}"))), None)


def _unsupported_ops(message: str) -> str | None:
    """'unsupported op: A, B' from hcc's multi-line unsupported-op error (its first line names only a count)."""
    if "unsupported op type(s):" not in message:
        return None
    ops = [line.strip().split(":")[0] for line in message.splitlines()[1:] if line.startswith("  ")]
    return "unsupported op: " + ", ".join(ops)


def _headline(message: str) -> str:
    """The first line; when it only announces what follows ("... failed:"), with the next line joined to it."""
    lines = [line.strip() for line in message.splitlines() if line.strip()] or ["HccError"]
    return f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]


def classify_error(exc: BaseException) -> tuple[str, str, str]:
    """(status, reason, detail) of an exception raised while compiling or running a case."""
    from hcc.errors import HccError

    if isinstance(exc, HccError):
        message = exc.message.strip()
        first = _unsupported_ops(message) or _headline(message)
        first = re.sub(r"^\S*/model\.onnx: ", "model.onnx: ", first)  # the compile's temporary copy of the model
        crashed = message.startswith(("code generation crashed", "internal")) or "internal compiler error" in first
        return ("crash" if crashed else "unsupported"), first, "\n".join(message.splitlines()[-12:]) if crashed else ""
    first = (str(exc).strip().splitlines() or [""])[0]
    return "crash", f"{type(exc).__name__}: {first}", "".join(traceback.format_exception(exc)[-6:])


def run_case_here(model_dir: str, rtol: float, atol: float, threads: int = 1) -> tuple[str, str, str]:
    """(status, reason, detail) of one case, run in this process."""
    import onnx

    from hcc.onnx_backend import HccBackend

    model = onnx.load(os.path.join(model_dir, "model.onnx"))
    rep = None
    try:
        rep = HccBackend.prepare(model, "CPU", threads=threads)
        for inputs, expected in load_data_sets(model, model_dir):
            problem = compare_outputs(expected, list(rep.run(inputs)), rtol, atol)
            if problem:
                return "fail", problem, ""
        return "pass", "", ""
    except Exception as exc:  # every failure is classified, none escapes
        return classify_error(exc)
    finally:
        if rep is not None:
            rep.close()


def _one(args: argparse.Namespace) -> int:
    status, reason, detail = run_case_here(args.one, args.rtol, args.atol)
    Path(args.result).write_text(json.dumps({"status": status, "reason": reason, "detail": detail}))
    return 0


# ------------------------------------------------------------------------------------------ the pool (parent)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the case process and the compiler worker it started
    except ProcessLookupError:
        pass
    proc.wait()


def run_case(case: Case, timeout: float) -> CaseResult:
    """Run one case in a fresh process group; a timeout or a dead process is a crash."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hcc-conformance-") as tmp:
        result_path = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--one", case.model_dir, "--result", str(result_path),
               "--rtol", repr(case.rtol), "--atol", repr(case.atol)]
        env = dict(os.environ, OMP_NUM_THREADS="1", TMPDIR=tmp)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env)
        try:
            output, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return CaseResult(case.name, case.op, "crash", f"timeout after {timeout:g}s", time.perf_counter() - start)
        seconds = time.perf_counter() - start
        if not result_path.exists():
            how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
            tail = "\n".join(output.strip().splitlines()[-12:])
            return CaseResult(case.name, case.op, "crash", f"case process died ({how})", seconds, tail)
        result = json.loads(result_path.read_text())
    return CaseResult(case.name, case.op, result["status"], result["reason"], seconds, result["detail"])


def run_cases(cases: list[Case], jobs: int, timeout: float, report: Callable[[CaseResult, int], None]) -> list[CaseResult]:
    """All cases, `jobs` at a time, in the order given (results too)."""
    finished = itertools.count(1)  # next() on a count is atomic: the pool's threads share it

    def one(case: Case) -> CaseResult:
        result = run_case(case, timeout)
        report(result, next(finished))
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, cases))


# ------------------------------------------------------------------------------------------------- reporting


def reason_key(reason: str) -> str:
    """A reason with its case-specific parts (paths, quoted names, numbers, shapes) blanked, for grouping."""
    text = re.sub(r"^\S+\.onnx: ", "", reason)
    text = re.sub(r"(/[\w.\-+]+)+/?", "<path>", text)
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r"\[[^\[\]]*\]", "[…]", text)
    text = re.sub(r"\b\d+(\.\d+)?(e-?\d+)?\b", "N", text)
    return text[:140]


@dataclass
class Totals:
    cases: int
    counts: dict[str, int]

    @property
    def rate(self) -> float:
        return self.counts["pass"] / self.cases if self.cases else 0.0


def totals(results: list[CaseResult]) -> Totals:
    counts = collections.Counter(r.status for r in results)
    return Totals(len(results), {s: counts.get(s, 0) for s in STATUSES})


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        return (rev or "?") + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def history_row(results: list[CaseResult], core: list[CaseResult], note: str) -> str:
    t, c = totals(results), totals(core)
    date = datetime.date.today().isoformat()
    counts = " | ".join(str(t.counts[s]) for s in STATUSES)
    return f"| {date} | {_git_revision()} | {t.cases} | {counts} | {t.rate:.1%} | {c.rate:.1%} ({c.counts['pass']}/{c.cases}) | {_md(note)} |"


def read_history(doc: Path) -> list[str]:
    if not doc.exists():
        return []
    text = doc.read_text()
    if HISTORY_START not in text or HISTORY_END not in text:
        return []
    block = text.split(HISTORY_START, 1)[1].split(HISTORY_END, 1)[0]
    return [line for line in block.splitlines() if line.startswith("| 2")]


# Broad kinds of reasons, first match wins: what a reader needs to see which work would pass the most cases.
REASON_CATEGORIES: tuple[tuple[str, str], ...] = (
    ("opset outside the accepted range", r"opset \d+ is outside the supported range"),
    ("opset conversion refused: op added after opset 22", r"cannot be converted to opset \d+: .* not exist in opset"),
    ("opset conversion refused: type or attribute opset 22 lacks", r"cannot be converted to opset"),
    ("op not supported by hcc (`hcc ops`)", r"^unsupported op:"),
    ("element type not supported by hcc", r"element type"),
    ("sequence / optional / non-tensor values", r"is a (list|NoneType|dict|tuple)\b|not a tensor|sequences"),
    ("op outside the default domain (ai.onnx.ml, training)", r"does not import the default ONNX opset"),
    ("lowering to linalg failed", r"lowering ONNX ops to linalg failed"),
    ("onnxruntime cannot run the model (golden data)", r"onnxruntime could not run|no reference can run"),
    ("compiler worker crashed", r"code generation crashed|internal"),
    ("timeout or dead case process", r"^timeout|case process died"),
)


def reason_category(result: CaseResult) -> str:
    if result.status == "fail":
        return "wrong result"
    return next((name for name, pattern in REASON_CATEGORIES if re.search(pattern, result.reason)), "other")


def _category_table(results: list[CaseResult]) -> list[str]:
    failing = [r for r in results if r.status != "pass"]
    counter = collections.Counter(reason_category(r) for r in failing)
    example = {reason_category(r): r for r in reversed(failing)}
    lines = ["| kind of reason | cases | example |", "|---|---|---|"]
    lines += [f"| {kind} | {n} | `{example[kind].name}`: {_md(example[kind].reason[:120])} |" for kind, n in counter.most_common()]
    return lines


def _reason_table(results: list[CaseResult], top: int) -> list[str]:
    counter = collections.Counter((r.status, reason_key(r.reason)) for r in results if r.status != "pass")
    lines = ["| status | reason | cases |", "|---|---|---|"]
    lines += [f"| {status} | {_md(reason)} | {n} |" for (status, reason), n in counter.most_common(top)]
    return lines


def _op_table(results: list[CaseResult]) -> list[str]:
    by_op: dict[str, list[CaseResult]] = collections.defaultdict(list)
    for r in results:
        by_op[r.op].append(r)
    lines = ["| op | core | cases | pass | fail | unsupported | crash | most common reason |", "|---|---|---|---|---|---|---|---|"]
    for op in sorted(by_op, key=str.lower):
        t = totals(by_op[op])
        reasons = collections.Counter(reason_key(r.reason) for r in by_op[op] if r.status != "pass")
        top = f"{reasons.most_common(1)[0][0]} ({reasons.most_common(1)[0][1]})" if reasons else ""
        counts = " | ".join(str(t.counts[s]) for s in STATUSES)
        lines.append(f"| {op} | {'yes' if op in CORE_OPS else ''} | {t.cases} | {counts} | {_md(top)} |")
    return lines


def render_markdown(results: list[CaseResult], history: list[str], command: str, selection: str) -> str:
    import onnx

    core = [r for r in results if r.op in CORE_OPS]
    t, c = totals(results), totals(core)
    wrong = [r for r in results if r.status == "fail"]
    lines = [
        "# Conformance: the ONNX backend node suite",
        "",
        f"hcc against the {t.cases} node cases{selection} of onnx {onnx.__version__} (`onnx/backend/test/data/node`), "
        "generated by `tools/conformance.py` (its docstring says how cases are run and classified). Reproduce: "
        f"`{command}`.",
        "",
        "| | cases | pass | fail (wrong result) | unsupported | crash | pass rate |",
        "|---|---|---|---|---|---|---|",
        f"| all cases | {t.cases} | " + " | ".join(str(t.counts[s]) for s in STATUSES) + f" | {t.rate:.1%} |",
        f"| core vision/NLP ops | {c.cases} | " + " | ".join(str(c.counts[s]) for s in STATUSES) + f" | {c.rate:.1%} |",
        "",
        "Core ops (`CORE_OPS` in tools/conformance.py): " + ", ".join(sorted(CORE_OPS)) + ".",
        "An `_expanded` case (the op's function body in primitive ops) counts for the op it expands.",
        "",
        "## History",
        "",
        HISTORY_START,
        "| date | revision | cases | pass | fail | unsupported | crash | pass rate | core pass rate | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *history,
        HISTORY_END,
        "",
        "## Wrong results",
        "",
        "A case where hcc returned outputs that differ from onnx's expected ones. This list must be empty.",
        "",
        *([f"- `{r.name}` ({r.op}): {_md(r.reason)}" for r in wrong] or ["None."]),
        "",
        "## Why cases do not pass",
        "",
        *_category_table(results),
        "",
        "The 30 most common reasons (case-specific names, numbers and shapes blanked):",
        "",
        *_reason_table(results, 30),
        "",
        "## Per op",
        "",
        *_op_table(results),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------- baseline


def read_baseline(path: Path) -> set[str]:
    if not path.exists():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def write_baseline(path: Path, old: set[str], results: list[CaseResult]) -> set[str]:
    """Cases not run keep their entry; the cases run are listed exactly when they passed."""
    ran = {r.name for r in results}
    names = (old - ran) | {r.name for r in results if r.status == "pass"}
    header = ("# Cases of the ONNX node suite (onnx 1.22.0) that hcc passes; `python tools/conformance.py "
              "--check-baseline` fails when one stops passing.\n# Regenerate with --update-baseline after a full run.\n")
    path.write_text(header + "".join(f"{n}\n" for n in sorted(names)))
    return names


def regressions(baseline: set[str], results: list[CaseResult]) -> list[CaseResult]:
    return [r for r in results if r.name in baseline and r.status != "pass"]


# ------------------------------------------------------------------------------------------------------ main


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", help="comma-separated op types: only their cases")
    parser.add_argument("--match", help="only cases whose name matches this regular expression")
    parser.add_argument("--limit", type=int, help="only the first N selected cases (by name)")
    parser.add_argument("--sample", type=int, help="N baseline cases spread evenly over the baseline (regression smoke run)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds per case before it counts as a crash")
    parser.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE)
    parser.add_argument("--check-baseline", action="store_true", help="exit 1 when a baseline case no longer passes")
    parser.add_argument("--update-baseline", action="store_true", help="record this run's passing cases in the baseline")
    parser.add_argument("--write-docs", action="store_true", help="write the report (--doc)")
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC)
    parser.add_argument("--json", type=Path, help="write every case's result to this file")
    parser.add_argument("--note", default="", help="note for this run's history row")
    parser.add_argument("--quiet", action="store_true", help="no line per case")
    parser.add_argument("--replay", type=Path, help="report the results of an earlier run's --json file instead of running")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case folder in this process
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--rtol", type=float, default=1e-3, help=argparse.SUPPRESS)
    parser.add_argument("--atol", type=float, default=1e-7, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _selected(args: argparse.Namespace) -> tuple[list[Case], str]:
    cases = discover_cases()
    ops = set(args.ops.split(",")) if args.ops else None
    names = evenly_spaced(sorted(read_baseline(args.baseline)), args.sample) if args.sample else None
    chosen = select_cases(cases, ops, args.match, names, args.limit)
    filters = [f"{k}={v}" for k, v in (("ops", args.ops), ("match", args.match), ("sample", args.sample), ("limit", args.limit)) if v]
    return chosen, (f" selected by {', '.join(filters)}" if filters else "")


def _print_result(result: CaseResult, done: int, total: int) -> None:
    reason = f"  {result.reason}" if result.reason else ""
    print(f"[{done}/{total}] {result.status:<11} {result.name} ({result.seconds:.1f}s){reason}", flush=True)


def _command_line(args: argparse.Namespace, selection: str) -> str:
    if not selection:
        return "make conformance"  # the whole suite, niced, 2 jobs, --check-baseline --write-docs
    flags = [a for a in sys.argv[1:] if a != "--quiet" and not a.startswith("--replay")]
    return "python tools/conformance.py " + " ".join(flags)


def _results(args: argparse.Namespace, cases: list[Case]) -> list[CaseResult]:
    """Run the cases, or (--replay) read their results from an earlier run's --json file."""
    if args.replay:
        recorded = {r["name"]: CaseResult(**r) for r in json.loads(args.replay.read_text())}
        return [recorded[c.name] for c in cases if c.name in recorded]
    quiet = args.quiet
    return run_cases(cases, args.jobs, args.timeout, lambda r, done: quiet or _print_result(r, done, len(cases)))


def _write_report(args: argparse.Namespace, results: list[CaseResult], selection: str) -> None:
    if selection and args.doc == DEFAULT_DOC:
        print(f"not rewriting {args.doc} with a partial run ({selection.strip()}); pass --doc FILE for its report")
        return
    core = [r for r in results if r.op in CORE_OPS]
    history = read_history(args.doc) + ([history_row(results, core, args.note)] if not selection else [])
    args.doc.write_text(render_markdown(results, history, _command_line(args, selection), selection))
    print(f"wrote {args.doc}")


def _baseline_actions(args: argparse.Namespace, results: list[CaseResult]) -> int:
    baseline = read_baseline(args.baseline)
    if args.update_baseline:
        print(f"wrote {args.baseline}: {len(write_baseline(args.baseline, baseline, results))} passing cases")
    if not args.check_baseline:
        return 0
    lost = regressions(baseline, results)
    for r in lost:
        print(f"REGRESSION {r.name}: {r.status}: {r.reason}")
    if not lost:
        print(f"baseline: all {sum(r.name in baseline for r in results)} listed cases among those run still pass")
    return 1 if lost else 0


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.one:
        return _one(args)
    cases, selection = _selected(args)
    if not cases:
        print("conformance: no case matches the selection", file=sys.stderr)
        return 2
    results = _results(args, cases)
    t, c = totals(results), totals([r for r in results if r.op in CORE_OPS])
    print(f"{t.cases} cases: " + ", ".join(f"{t.counts[s]} {s}" for s in STATUSES)
          + f"; pass rate {t.rate:.1%}, core {c.rate:.1%} ({c.counts['pass']}/{c.cases})")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    if args.write_docs:
        _write_report(args, results, selection)
    return _baseline_actions(args, results)


if __name__ == "__main__":
    sys.exit(main())
