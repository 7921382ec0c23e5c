"""Lower the torch-onnx dialect to linalg-on-tensors with torch-mlir's own pipelines."""
from __future__ import annotations

from hcc.errors import HccError
from hcc.passes.diagnostics import describe_mlir_error

TORCH_TO_LINALG = "builtin.module(torch-onnx-to-torch-backend-pipeline,torch-backend-to-linalg-on-tensors-backend-pipeline)"


def lower_to_linalg(torch_text: str) -> str:
    """torch-onnx text -> linalg/tensor/arith text (parsed by the xtc `mlir` bindings downstream)."""
    from torch_mlir import ir, passmanager
    from torch_mlir.dialects import torch as torch_dialect

    context = ir.Context()
    torch_dialect.register_dialect(context)
    with context:
        module = ir.Module.parse(torch_text)
        try:
            passmanager.PassManager.parse(TORCH_TO_LINALG).run(module.operation)
        except ir.MLIRError as exc:
            raise HccError(describe_mlir_error(exc, "lowering ONNX ops to linalg")) from None
        return module.operation.get_asm(enable_debug_info=True, large_elements_limit=None)
