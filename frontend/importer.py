"""Import a checked ONNX model into MLIR with torch-mlir's ONNX importer (no torch needed).

Each ONNX node becomes one `torch.operator "onnx.<Op>"` whose location is the node's name, so later diagnostics
and the partitioner can name nodes. The result is handed on as text (the contract between torch_mlir's LLVM and
the xtc `mlir` LLVM, guarded by tests/frontend/test_importer.py).
"""
from __future__ import annotations

import onnx

from hcc.errors import HccError


def import_to_torch_dialect(model: onnx.ModelProto) -> str:
    """Return the model as a torch-onnx dialect module (textual IR, with locations)."""
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_dialect
    from torch_mlir.extras import onnx_importer

    context = ir.Context()
    torch_dialect.register_dialect(context)
    try:
        info = onnx_importer.ModelInfo(model)
        module = info.create_module(context=context).operation
        onnx_importer.NodeImporter.define_function(info.main_graph, module).import_all()
    except onnx_importer.OnnxImportError as exc:
        raise HccError(f"ONNX import failed: {exc}") from None
    return module.get_asm(enable_debug_info=True, large_elements_limit=None)
