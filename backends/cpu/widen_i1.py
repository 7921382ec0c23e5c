"""Store booleans as bytes: rewrite i1 memrefs to i8 after bufferization, before memref-to-LLVM.

LLVM 22's memref-to-LLVM lowering asserts on loads/stores of sub-byte elements, and upstream's own ownership-based
deallocation keeps its i1 ownership flags in memrefs when a loop yields buffers (LSTM time loops do). Upstream's
narrow-type emulation is a test-only pass, so this small rewrite does the same for the one case we need: after
`convert-linalg-to-loops` only scalar `memref.load`/`memref.store` touch elements, so widening every i1 memref type
to i8 and adding `arith.trunci`/`arith.extui` around those accesses is exact (0/1 bytes, as numpy and C store bools).
"""
from __future__ import annotations

import re

_MEMREF_I1 = re.compile(r"(memref<(?:[0-9?]+x)*)i1([,>])")
_LOAD = re.compile(r"^(\s*)(%[\w.$-]+) = memref\.load (.*) : (memref<[^\n]*i1[,>][^\n]*)$")
_STORE = re.compile(r"^(\s*)memref\.store (%[\w.$#-]+), (.*) : (memref<[^\n]*i1[,>][^\n]*)$")


def widen_i1_memrefs(text: str) -> str:
    """Rewrite printed MLIR (pretty form, locations allowed after the type) so no memref holds i1."""
    if "xi1" not in text and "memref<i1>" not in text:
        return text
    out, counter = [], 0
    for line in text.splitlines():
        body, loc = line, ""
        if " loc(" in line:
            body, loc = line[: line.rindex(" loc(")], line[line.rindex(" loc("):]
        load, store = _LOAD.match(body), _STORE.match(body)
        if load and _is_i1_memref(load.group(4)):
            indent, result, access, mtype = load.groups()
            counter += 1
            wide = f"%hcc_w{counter}"
            out.append(f"{indent}{wide} = memref.load {access} : {_widen(mtype)}{loc}")
            out.append(f"{indent}{result} = arith.trunci {wide} : i8 to i1{loc}")
        elif store and _is_i1_memref(store.group(4)):
            indent, value, access, mtype = store.groups()
            counter += 1
            wide = f"%hcc_ext{counter}"
            out.append(f"{indent}{wide} = arith.extui {value} : i1 to i8{loc}")
            out.append(f"{indent}memref.store {wide}, {access} : {_widen(mtype)}{loc}")
        elif "memref.global" in body and _is_i1_memref(body):
            # Constant bool buffers: their dense initializer spells true/false, which i8 spells 1/0.
            widened = re.sub(r"\btrue\b", "1", re.sub(r"\bfalse\b", "0", body))
            out.append(_widen(widened) + loc)
        else:
            out.append(_widen(line))
    return "\n".join(out) + "\n"


def _is_i1_memref(mtype: str) -> bool:
    return bool(_MEMREF_I1.search(mtype)) or mtype.startswith("memref<i1")


def _widen(text: str) -> str:
    return _MEMREF_I1.sub(r"\1i8\2", text.replace("memref<i1>", "memref<i8>").replace("memref<i1,", "memref<i8,"))
