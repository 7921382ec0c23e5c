"""Lower the torch-onnx dialect to linalg-on-tensors with torch-mlir's own pipelines."""
from __future__ import annotations

from hcc.errors import HccError
from hcc.passes import nan_semantics
from hcc.passes.diagnostics import describe_mlir_error
from hcc.passes.pass_runner import run_pipeline

# Elementwise fusion right after conversion: besides saving memory traffic, it removes the bool (i1) tensors that
# comparisons feed to selects (they become SSA values inside one generic), which LLVM 22's memref-to-LLVM
# lowering cannot store (it asserts on sub-byte element types).
TORCH_TO_LINALG = "builtin.module(torch-onnx-to-torch-backend-pipeline,torch-backend-to-linalg-on-tensors-backend-pipeline)"
FUSE = "builtin.module(func.func(linalg-fuse-elementwise-ops),canonicalize,cse)"
WHAT = "lowering ONNX ops to linalg"  # tools/conformance.py files failures under this phrase


def _duplicate_shared_bool_producers(module) -> int:
    """Give each consumer of a bool-valued elementwise generic its own copy, so that fusion (which only fuses
    single-use producers) can absorb every one of them; recomputing a comparison is cheaper than storing it."""
    from torch_mlir import ir

    duplicated = 0
    for func_op in module.body.operations:
        if func_op.operation.name != "func.func":
            continue
        for op in list(func_op.regions[0].blocks[0].operations):
            if op.operation.name != "linalg.generic" or len(op.results) != 1:
                continue
            result = op.results[0]
            if not str(result.type).startswith("tensor<") or not str(result.type).endswith("xi1>"):
                continue
            uses = [(use.owner, use.operand_number) for use in result.uses]
            for owner, index in uses[1:]:
                with ir.InsertionPoint(op):
                    clone = op.operation.clone()
                owner.operands[index] = clone.results[0]
                duplicated += 1
    return duplicated


def lower_to_linalg(torch_text: str, contraction_barriers: bool = False) -> str:
    """torch-onnx text -> linalg/tensor/arith text (parsed by the xtc `mlir` bindings downstream).

    `contraction_barriers` (CPU subgraphs): keep elementwise producers out of contractions (fusion_barriers.py)."""
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_dialect

    from hcc.passes.fusion_barriers import insert_contraction_barriers

    context = ir.Context()
    torch_dialect.register_dialect(context)
    with context:
        module = ir.Module.parse(torch_text)
        try:
            # onnxruntime's NaN/Inf semantics: some nodes are isolated before the conversion and given their own body
            bodies = nan_semantics.isolate(module, torch_text, nan_semantics.nchwc_block_size())
            run_pipeline(module, nan_semantics.without_contract_check(TORCH_TO_LINALG), stage="torch-to-linalg", what=WHAT)
            nan_semantics.apply(module, bodies)
            if contraction_barriers:
                insert_contraction_barriers(module)
            run_pipeline(module, FUSE, stage="linalg-fuse", what=WHAT)
            for _round in range(8):  # each round pushes bool producers one level into their consumers
                if not _duplicate_shared_bool_producers(module):
                    break
                run_pipeline(module, FUSE, stage="linalg-fuse", what=WHAT)
        except ir.MLIRError as exc:  # outside a pipeline (isolating nodes, giving them bodies)
            raise HccError(describe_mlir_error(exc, WHAT)) from None
        return module.operation.get_asm(enable_debug_info=True, large_elements_limit=None)
