"""Turn MLIR diagnostics into messages that name the ONNX node (its name is the op's location)."""
from __future__ import annotations

import re

_LOC = re.compile(r'loc\("([^"]*)"')


def describe_mlir_error(exc: Exception, stage: str, detail: str = "") -> str:
    """Summarise an MLIRError: the first diagnostics, with the node names their locations carry. `detail` goes
    after "failed" on the first line (the pass runner names the stage and the reproducer there)."""
    diagnostics = getattr(exc, "error_diagnostics", None) or []
    lines = []
    for diag in diagnostics[:5]:
        where = str(diag.location)
        match = _LOC.search(where)
        node = f"node '{match.group(1)}': " if match else ""
        lines.append(f"  {node}{diag.message}")
        for note in list(diag.notes)[:2]:
            lines.append(f"    note: {note.message}")
    if not lines:
        lines.append("  " + str(exc).strip().splitlines()[0])
    return f"{stage} failed{detail}:\n" + "\n".join(lines)
