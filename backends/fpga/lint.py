"""Synthesizability lint of emitted HLS C++ (no vendor tools): what Vitis HLS would refuse or what hcc promises.

Checks on the firmware files:
  - pragmas: only known `#pragma HLS` directives, with known options;
  - loops: every `for` has the form `for (int i = <literal>; i < <literal>; i++)` (static trip counts), no while/do;
  - no dynamic memory (new/delete/malloc/free), no recursion (call-graph cycle), no STL or iostream, no
    `__SYNTHESIS__` branches (one code path), no system headers but ap_int/ap_fixed/stdint.
"""
from __future__ import annotations

import re

PRAGMAS: dict[str, set[str]] = {
    "INTERFACE": {"m_axi", "s_axilite", "ap_memory", "ap_none", "ap_vld", "ap_ctrl_hs", "ap_ctrl_none", "axis", "bram", "mode",
                  "port", "offset", "bundle", "depth", "slave", "off", "direct", "register", "latency", "max_widen_bitwidth",
                  "return", "storage_type"},
    "PIPELINE": {"II", "off", "rewind", "style", "enable_flush"},
    "UNROLL": {"factor", "skip_exit_check", "off"},
    "ARRAY_PARTITION": {"variable", "type", "complete", "cyclic", "block", "factor", "dim", "off"},
    "ARRAY_RESHAPE": {"variable", "type", "complete", "cyclic", "block", "factor", "dim", "object", "off"},
    "DATAFLOW": {"disable_start_propagation"},
    "INLINE": {"off", "recursive"},
    "ALLOCATION": {"operation", "function", "instances", "limit"},
    "BIND_STORAGE": {"variable", "type", "impl", "latency"},
    "BIND_OP": {"variable", "op", "impl", "latency"},
    "LOOP_TRIPCOUNT": {"min", "max", "avg"},
    "LATENCY": {"min", "max"},
    "STREAM": {"variable", "depth", "type", "off"},
    "LOOP_FLATTEN": {"off"},
    "LOOP_MERGE": {"force"},
    "EXPRESSION_BALANCE": {"off"},
}
ALLOWED_INCLUDES = {"ap_fixed.h", "ap_int.h", "stdint.h"}
_FOR_OK = re.compile(r"for\s*\(\s*int\s+(\w+)\s*=\s*-?\d+\s*;\s*\1\s*<\s*\d+\s*;\s*\1\+\+\s*\)")
_FUNC_DEF = re.compile(r"^(?:static\s+|inline\s+|template\s*<[^>]*>\s*)*[\w:<>,\s]+?\b(\w+)\s*\([^;{]*\)\s*\{", re.M)
_CALL = re.compile(r"\b(\w+)\s*\(")


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)


def lint_source(path: str, text: str) -> list[str]:
    problems: list[str] = []
    code = _strip_comments(text)
    for n, line in enumerate(code.splitlines(), start=1):
        s = line.strip()
        where = f"{path}:{n}"
        if s.startswith("#pragma"):
            parts = s.split()
            if len(parts) < 3 or parts[1] != "HLS":
                problems.append(f"{where}: not an HLS pragma: {s}")
                continue
            directive = parts[2].upper()
            if directive not in PRAGMAS:
                problems.append(f"{where}: unknown HLS directive {parts[2]}")
                continue
            for opt in parts[3:]:
                key = opt.split("=", 1)[0]
                if key not in PRAGMAS[directive]:
                    problems.append(f"{where}: unknown option '{key}' for #pragma HLS {directive}")
        elif s.startswith("#include"):
            m = re.match(r'#include\s*[<"]([^>"]+)[>"]', s)
            name = m.group(1) if m else s
            if s.split()[1].startswith("<") and name not in ALLOWED_INCLUDES:
                problems.append(f"{where}: system header <{name}> in firmware (only {', '.join(sorted(ALLOWED_INCLUDES))})")
        elif s.startswith("#if") and "__SYNTHESIS__" in s:
            problems.append(f"{where}: __SYNTHESIS__ branch (hcc emits one code path)")
        if re.search(r"\bfor\s*\(", s) and not _FOR_OK.search(s):
            problems.append(f"{where}: loop without a static trip count: {s}")
        if re.search(r"\b(while|do)\b", s):
            problems.append(f"{where}: while/do loop: {s}")
        if (re.search(r"\b(new|delete|malloc|calloc|realloc|free)\b\s*[\(\[]?", s)
                and re.search(r"\b(new\s+\w|delete\b|malloc\s*\(|calloc\s*\(|realloc\s*\(|free\s*\()", s)):
            problems.append(f"{where}: dynamic memory: {s}")
        if "std::" in s:
            problems.append(f"{where}: standard library use in firmware: {s}")
        if re.search(r"\bgoto\b", s):
            problems.append(f"{where}: goto")
    problems += _recursion(path, code)
    return problems


def _recursion(path: str, code: str) -> list[str]:
    bodies: dict[str, str] = {}
    matches = list(_FUNC_DEF.finditer(code))
    for i, m in enumerate(matches):
        name = m.group(1)
        if name in ("if", "for", "while", "switch"):
            continue
        end = matches[i + 1].start() if i + 1 < len(matches) else len(code)
        bodies[name] = code[m.end():end]
    graph = {f: {c for c in _CALL.findall(b) if c in bodies} for f, b in bodies.items()}
    problems = []
    state: dict[str, int] = {}

    def visit(f: str, stack: list[str]) -> None:
        state[f] = 1
        for g in graph.get(f, ()):
            if state.get(g) == 1:
                problems.append(f"{path}: recursion: {' -> '.join(stack + [f, g])}")
            elif g not in state:
                visit(g, stack + [f])
        state[f] = 2

    for f in graph:
        if f not in state:
            visit(f, [])
    return problems


def lint_project(files: dict[str, str], top: str) -> list[str]:
    """Lint every firmware file (path -> text); the top function must exist."""
    problems: list[str] = []
    for path, text in sorted(files.items()):
        if path.endswith((".h", ".cpp")):
            problems += lint_source(path, text)
    top_file = files.get(f"firmware/{top}.cpp", "")
    if not re.search(rf"\bvoid\s+{re.escape(top)}\s*\(", top_file):
        problems.append(f"firmware/{top}.cpp: top function {top} not found")
    if "#pragma HLS INTERFACE" not in top_file:
        problems.append(f"firmware/{top}.cpp: the top function has no INTERFACE pragma")
    return problems
