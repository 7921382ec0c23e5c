"""hcc: a heterogeneous ahead-of-time compiler for ONNX models.

Importing `hcc` is cheap and needs numpy alone: the compiler packages (onnx, MLIR) are imported only when
`hcc.compile` is called, so `hcc.runtime` deploys without them.
"""
from __future__ import annotations

from hcc.errors import HccError

__version__ = "0.1.0"
__all__ = ["HccError", "compile", "__version__"]


def compile(model_path, bundle_dir, **options):  # noqa: A001 - mirrors the CLI verb
    """Compile an ONNX model into a bundle folder; see `hcc.driver.compile_model` for the options."""
    from hcc.driver import compile_model

    return compile_model(model_path, bundle_dir, **options)
