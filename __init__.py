"""hcc: a heterogeneous ahead-of-time compiler for ONNX models.

Importing `hcc` is cheap and needs numpy alone: the compiler packages (onnx, MLIR) are imported only when
`hcc.compile` is called, so `hcc.runtime` deploys without them.
"""
from __future__ import annotations

from hcc.errors import HccError

__version__ = "0.1.0"
__all__ = ["HccError", "compile", "__version__"]


def compile(model_path, bundle_dir, options=None, *, progress=None, **keywords):  # noqa: A001 - mirrors the CLI verb
    """Compile an ONNX model into a bundle folder and return its manifest.

    `options`: an `hcc.options.CompileOptions`; or the keywords hcc.compile has always taken (input_shapes,
    golden_inputs, seed, target_cpu, keep_ir, devices, objective, budgets, overrides, placement_file, save_placement,
    device_file, plan_time_limit_s, gpu_precision, fpga, sign_key, save_temps), not both. `progress`: called with
    each progress line."""
    from hcc.driver import compile_model
    from hcc.options import CompileOptions

    if options is not None and keywords:
        raise HccError(f"hcc.compile: pass options= or keywords ({', '.join(sorted(keywords))}), not both")
    if options is None:
        options = CompileOptions.from_keywords(**keywords)
    elif not isinstance(options, CompileOptions):
        raise HccError(f"hcc.compile: options must be an hcc.options.CompileOptions, got {type(options).__name__}")
    return compile_model(model_path, bundle_dir, options, **({"progress": progress} if progress is not None else {}))
