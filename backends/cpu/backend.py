"""CPU backend entry point (see hcc.backends for the contract)."""
from __future__ import annotations

from pathlib import Path

from hcc.artifacts.manifest import ArtifactRecord, native_signature
from hcc.backends.cpu import lowering, toolchain
from hcc.devices import WIDER_ISA_VARIANTS
from hcc.options import CompileOptions, ModelFiles

BF16_CALL = "_bf16 micro-kernel call"  # the schedule note of a kernel call through a bf16 entry (lowering.py)
BF16X3_CALL = "_bf16x3 micro-kernel call"  # ... through the split-bf16 GEMM entry
INT8_CALL = "_int8 micro-kernel call"  # ... through the int8 GEMM entry

# A slow (plain-loop) op holding at least this share of its function's arithmetic is warned about by name.
MATERIAL_SHARE = 0.02
# ... and at least this many scalar operations: an op alone in a small function (a comparison between control-flow
# pieces) is all of that function's arithmetic, but costs a microsecond as loops
MATERIAL_WORK = 4096


# Bytes per element of each MLIR element type a subgraph boundary may have (i1 crosses as a byte).
ELEMENT_BYTES = {"f64": 8, "f32": 4, "f16": 2, "bf16": 2, "i64": 8, "i32": 4, "i16": 2, "i8": 1, "ui8": 1, "i1": 1}


def compile_subgraph(linalg_text: str, spec, bundle: Path, options: CompileOptions, files: ModelFiles | None = None) -> list[ArtifactRecord]:
    """libSG.so for `options.cpu.target_cpu`, scheduled as the environment knobs read for this compile say."""
    rel = f"cpu/{spec.id}/lib{spec.id}.so"
    log: list[lowering.OpReport] = []
    target = options.cpu.target_cpu
    nodes: list[str] = []
    llvm_ir = lowering.lower_to_llvm_ir(linalg_text, log, nodes, env=options.env, cpu=options.cpu,
                                        constant_args=weight_arguments(spec.inputs, files))
    wider = WIDER_ISA_VARIANTS.get(target, ())
    toolchain.build_shared_object(llvm_ir, bundle / rel, cpu=target, signature=embedded_signature(linalg_text, spec.id, target),
                                  profile_nodes=nodes, variants={isa: spec.id for isa in wider}, entry=spec.id)
    if options.debug.keep_ir:
        (bundle / f"cpu/{spec.id}/{spec.id}.linalg.mlir").write_text(linalg_text)
    meta = {"schedule": schedule_record(log)}
    if wider:  # the runtime binds the widest entry the CPU runs (devices.isa_entry)
        meta["isa_variants"] = list(wider)
    # what was emitted, not what was asked: a function that fell back to plain loops computes fp32
    for precision, note in (("bf16x3", BF16X3_CALL), ("bf16", BF16_CALL), ("int8", INT8_CALL)):  # the coarsest names the subgraph
        calls = sorted({r.node for r in log if r.ok and note in r.note})
        if calls:
            meta["precision_default"], meta[f"{precision}_nodes"] = precision, calls
    return [ArtifactRecord(kind="cpu-so", file=rel, entry=spec.id, meta=meta)]


def weight_arguments(inputs: list[str], files: ModelFiles | None) -> frozenset[int]:
    """The subgraph's argument positions that are bundle weights (their values never change between calls)."""
    names = files.weight_names if files is not None else frozenset()
    return frozenset(i for i, name in enumerate(inputs) if name in names)


def schedule_record(log: list[lowering.OpReport]) -> list[dict]:
    """Per op: node, schedule kind, whether it applied, why, its share of the function's arithmetic and whether its
    generated loop runs across threads; whole-function failures (and the retry they caused) come first as kind
    'module'."""
    total = sum(r.work for r in log if r.index != -1) or 1
    entries = [{"node": r.node, "kind": r.kind, "ok": r.ok, "note": r.note, "share": round(r.work / total, 4), "work": r.work,
                "threads": r.ok and r.threads} for r in log]
    return sorted(entries, key=lambda e: e["kind"] != "module")


def schedule_warnings(subgraph: str, record: list[dict]) -> list[str]:
    """One line per whole-function fallback and per slow op that holds a material share of the arithmetic."""
    lines = [f"{subgraph}: vector code generation failed: {e['note']}" for e in record if e["kind"] == "module"]
    for e in record:
        slow = e["kind"] == "loops" or not e["ok"]
        if e["kind"] != "module" and slow and e["share"] >= MATERIAL_SHARE and e.get("work", MATERIAL_WORK) >= MATERIAL_WORK:
            what = e["note"] if e["kind"] == "loops" else f"its {e['kind']} schedule failed: {e['note']}"
            lines.append(f"{subgraph}: node '{e['node'] or '?'}' runs as plain loops ({e['share']:.0%} of the arithmetic): {what}")
    return lines


def embedded_signature(linalg_text: str, entry: str, target_cpu: str) -> str:
    """The signature the .so carries (artifacts.manifest.native_signature), from the lowered function's types."""
    signature = lowering.function_signature(linalg_text, entry)

    def args(types):
        return [(t.shape, ELEMENT_BYTES.get(t.element, 0)) for t in types]

    return native_signature(entry, target_cpu, args(signature.inputs), args(signature.results))
