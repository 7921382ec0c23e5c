"""Backends: turn one subgraph's linalg-on-tensors into artifacts for one device kind.

Contract (what worker.py calls): each backend module `hcc.backends.<kind>.backend` exposes

    compile_subgraph(linalg_text: str, spec: SubgraphSpec, bundle: Path, options: CompileOptions,
                     files: ModelFiles | None = None) -> list[ArtifactRecord]

writing its files under `bundle/<kind>/<spec.id>/` and returning manifest artifact records (paths relative to the
bundle). `options` (hcc.options.CompileOptions) is the compile's typed options, its section per device kind
(`options.cpu`, `.gpu`, `.fpga`), `debug` (keep_ir) and `env` (the HCC_* knobs as the compile read them); `files`
the lifted model and weights the worker wrote (the FPGA backend reads them). A backend raises HccError for what it
cannot compile, naming the subgraph and op. Non-CPU subgraphs also get a CPU fallback artifact from the CPU backend.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from hcc.devices import KINDS, parse_device


def backend_for(device: str) -> ModuleType:
    """The backend module of `device`'s kind (hcc.devices names it), imported on first use: a build without, say,
    the GPU toolchain still compiles CPU subgraphs."""
    from hcc.errors import HccError

    name = parse_device(device)
    if name.facts is None:
        raise HccError(f"no backend for device '{device}' (known kinds: {', '.join(KINDS)})")
    module = name.facts.backend
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise HccError(f"the {name.kind} backend is not available in this hcc build; `hcc plan` can still plan for '{device}'") from None
        raise
