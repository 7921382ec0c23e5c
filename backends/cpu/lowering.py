"""Lower a subgraph from linalg-on-tensors to the LLVM dialect with the xtc (upstream LLVM 22) bindings.

ABI of the result (`bare-ptr-v1` in the manifest): `void <entry>(T0* in0, ..., Tn* out0, ...)`; every argument
is a dense, row-major buffer of a static shape; outputs are written in place by the callee (no allocation crosses
the boundary, so the runtime never frees memory it did not allocate).
"""
from __future__ import annotations

from dataclasses import dataclass

from hcc.errors import HccError

BUFFERIZE = (
    "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},"
    "buffer-results-to-out-params{hoist-static-allocs=1 modify-public-functions=1},"
    # Without canonicalize+cse every tile leaves a self-copy behind (research/mlir-bindings.md §4).
    "canonicalize,cse,canonicalize,"
    "buffer-deallocation-pipeline"
)
TO_LLVM = (
    "convert-linalg-to-loops,expand-strided-metadata,lower-affine,convert-scf-to-cf,canonicalize,"
    "finalize-memref-to-llvm,convert-arith-to-llvm,convert-math-to-llvm,convert-cf-to-llvm,"
    "convert-func-to-llvm{use-bare-ptr-memref-call-conv=1},reconcile-unrealized-casts"
)


@dataclass
class TensorType:
    shape: list[int]
    element: str  # MLIR element type: f32, i64, i1, ...


@dataclass
class Signature:
    inputs: list[TensorType]
    results: list[TensorType]


def _tensor_type(t) -> TensorType:
    from mlir import ir

    ranked = ir.RankedTensorType(t)
    if not ranked.has_static_shape:
        raise HccError(
            f"a tensor of type {t} has a dynamic shape after lowering",
            hint="give every dynamic input a concrete shape with --input-shape NAME=D1xD2x...",
        )
    return TensorType(list(ranked.shape), str(ranked.element_type))


def function_signature(linalg_text: str, entry: str) -> Signature:
    from mlir import ir

    with ir.Context():
        module = ir.Module.parse(linalg_text)
        for op in module.body.operations:
            if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == entry:
                ftype = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
                return Signature([_tensor_type(t) for t in ftype.inputs], [_tensor_type(t) for t in ftype.results])
    raise HccError(f"internal: function @{entry} not found after lowering")


def lower_to_llvm_ir(linalg_text: str) -> str:
    """linalg-on-tensors text -> LLVM IR text (for opt/llc)."""
    from mlir import ir, passmanager
    from mlir.dialects import llvm

    from hcc.passes.diagnostics import describe_mlir_error

    with ir.Context():
        module = ir.Module.parse(linalg_text)
        for stage, pipeline in (("bufferization", BUFFERIZE), ("lowering to LLVM", TO_LLVM)):
            try:
                passmanager.PassManager.parse(f"builtin.module({pipeline})").run(module.operation)
            except ir.MLIRError as exc:
                raise HccError(describe_mlir_error(exc, f"CPU backend: {stage}")) from None
        return llvm.translate_module_to_llvmir(module.operation)
