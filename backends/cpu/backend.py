"""CPU backend entry point (see hcc.backends for the contract)."""
from __future__ import annotations

from pathlib import Path

from hcc.artifacts.manifest import ArtifactRecord
from hcc.backends.cpu import lowering, toolchain


def compile_subgraph(linalg_text: str, spec, bundle: Path, options: dict) -> list[ArtifactRecord]:
    rel = f"cpu/{spec.id}/lib{spec.id}.so"
    llvm_ir = lowering.lower_to_llvm_ir(linalg_text)
    toolchain.build_shared_object(llvm_ir, bundle / rel, cpu=options.get("target_cpu", "x86-64-v3"))
    if options.get("keep_ir"):
        (bundle / f"cpu/{spec.id}/{spec.id}.linalg.mlir").write_text(linalg_text)
    return [ArtifactRecord(kind="cpu-so", file=rel, entry=spec.id)]
