"""Small MLIR helpers shared by the GPU backend's modules (context, pass runs, op lookup, node names)."""
from __future__ import annotations

import re

from hcc.errors import HccError


def single_threaded_context():
    """An MLIR context without its thread pool: the worker process forks later (the CPU backend lowers in a forked
    child), and a fork while pool threads hold locks can deadlock the child. The GPU pipelines are small anyway."""
    from mlir import ir

    ctx = ir.Context()
    ctx.enable_multithreading(False)
    return ctx


def _run(module, pipeline: str, stage: str) -> None:
    """`pipeline` (passes on builtin.module) through the shared runner (passes/pass_runner.py): a failure raises
    HccError "GPU backend: <stage> failed" and leaves a reproducer."""
    from hcc.passes.pass_runner import run_pipeline

    run_pipeline(module, f"builtin.module({pipeline})", stage="gpu-" + re.sub(r"[^a-z0-9]+", "-", stage.lower()).strip("-"),
                 what=f"GPU backend: {stage}")


def _func(module, entry: str):
    from mlir import ir

    for op in module.body.operations:
        if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == entry:
            return op
    raise HccError(f"internal: GPU backend: function @{entry} not found")


def _top_ops(func_op) -> list:
    return list(func_op.regions[0].blocks[0].operations)


def node_names(op) -> list[str]:
    """ONNX node names an op came from (its location, fused when elementwise fusion merged several nodes)."""
    names: list[str] = []
    for name in re.findall(r'"((?:[^"\\]|\\.)*)"', str(op.location)):
        if name not in names and name not in ("-", ""):
            names.append(name)
    return names


def _op_where(op) -> str:
    """'linalg.generic (nodes "fc1/Gemm", "fc1/Relu")'."""
    names = node_names(op)
    if not names:
        return op.name
    shown = ", ".join(f'"{n}"' for n in names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return f"{op.name} (node{'s' if len(names) > 1 else ''} {shown})"


_COPY_LINE = re.compile(r"^(\s*)memref\.copy (%[\w.$-]+), (%[\w.$-]+) : (.*?) to (.*?)((?: loc\(.*\))?)$", re.M)


def copies_to_linalg(text: str) -> str:
    """memref.copy (from bufferization / out-params) -> linalg.copy, which the mapper turns into a kernel."""
    return _COPY_LINE.sub(r"\1linalg.copy ins(\2 : \4) outs(\3 : \5)\6", text)
