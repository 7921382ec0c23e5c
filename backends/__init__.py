"""Backends: turn one subgraph's linalg-on-tensors into artifacts for one device kind.

Contract (what worker.py calls): each backend module `hcc.backends.<kind>.backend` exposes

    compile_subgraph(linalg_text: str, spec: SubgraphSpec, bundle: Path, options: dict) -> list[ArtifactRecord]

writing its files under `bundle/<kind>/<spec.id>/` and returning manifest artifact records (paths relative to the
bundle). `options` carries compile flags (target_cpu, keep_ir, precision, ...). A backend raises HccError for what it
cannot compile, naming the subgraph and op. Non-CPU subgraphs also get a CPU fallback artifact from the CPU backend.
"""
from __future__ import annotations

import importlib

BACKEND_MODULES = {"cpu": "hcc.backends.cpu.backend", "gpu": "hcc.backends.gpu.backend", "fpga": "hcc.backends.fpga.backend"}


def device_kind(device: str) -> str:
    """'gpu:sm_90' -> 'gpu'."""
    return device.split(":", 1)[0]


def backend_for(device: str):
    from hcc.errors import HccError

    kind = device_kind(device)
    if kind not in BACKEND_MODULES:
        raise HccError(f"no backend for device '{device}' (known kinds: {', '.join(BACKEND_MODULES)})")
    try:
        return importlib.import_module(BACKEND_MODULES[kind])
    except ModuleNotFoundError as exc:
        if exc.name and BACKEND_MODULES[kind].startswith(exc.name):
            raise HccError(f"the {kind} backend is not available in this hcc build; `hcc plan` can still plan for '{device}'") from None
        raise
