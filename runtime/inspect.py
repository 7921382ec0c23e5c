"""`hcc inspect`: a readable summary of a bundle (numpy only)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hcc.devices import isa_entry
from hcc.runtime.bundle import read_manifest
from hcc.runtime.session import zipmap_note


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _schedule_lines(record: list[dict] | None) -> list[str]:
    """The CPU code's schedule per op kind (share of the arithmetic), then every op left to plain loops."""
    if not record:
        return []
    shares: dict[str, float] = {}
    counts: dict[str, int] = {}
    for entry in record:
        if entry["kind"] == "module":
            continue
        kind = entry["kind"] if entry["ok"] else "loops"
        shares[kind] = shares.get(kind, 0.0) + entry["share"]
        counts[kind] = counts.get(kind, 0) + 1
    summary = ", ".join(f"{kind} {counts[kind]} ops ({shares[kind]:.0%})" for kind in sorted(shares, key=lambda k: -shares[k]))
    lines = [f"    cpu schedule: {summary}"]
    across = [e for e in record if e.get("threads")]
    if across:  # the kernels always use every thread; these are the generated (MLIR) loops that do too
        lines.append(f"    generated loops across threads: {len(across)} elementwise/reduction ops "
                     f"({sum(e['share'] for e in across):.0%} of the arithmetic); other generated loops run on one thread")
    lines += [f"    fallback: {entry['note']}" for entry in record if entry["kind"] == "module"]
    for entry in record:
        if entry["kind"] != "module" and (entry["kind"] == "loops" or not entry["ok"]) and entry["share"] >= 0.001:
            lines.append(f"    plain loops: {entry['node'] or '?'} ({entry['share']:.1%}): {entry['note']}")
    return lines


def _errors(errors: dict | None) -> str:
    return ", ".join(f"{name} max_abs {e['max_abs']:.3g}" for name, e in (errors or {}).items()) or "-"


def _precision_plan(bundle: Path, files) -> dict | None:
    """plan/precision.json (--cpu-precision auto / --gpu-precision auto), when the bundle has one."""
    if "plan/precision.json" not in files:
        return None
    return json.loads((bundle / "plan" / "precision.json").read_text())


def _gpu_choice_lines(choice: dict, factor: float) -> list[str]:
    """--gpu-precision auto: one subgraph's choice, its reason and its emulated error (no GPU measured it)."""
    return [f"    precision auto: {choice['precision']} ({choice['reason']})",
            f"    fp16 alone, emulated in onnxruntime (not measured on a GPU): {_errors(choice['errors'])} "
            f"(counted x{factor:g}: {choice['budget_cost']:.2f} of the budget); predicted {choice['time_fp32_s'] * 1e6:.1f} us at fp32, "
            f"{choice['time_low_s'] * 1e6:.1f} us at fp16"]


def _precision_summary(plan: dict, cpu_nodes: set[str]) -> list[str]:
    gpu = plan.get("gpu")
    lines = [f"precision plan: plan/precision.json, budget {plan['budget']}"]
    if plan.get("choices"):
        low = [c for c in plan["choices"] if c["precision"] != "fp32"]
        placed = sum(c["node"] in cpu_nodes for c in low)
        kinds = sorted({c["precision"] for c in low})
        per = ", ".join(f"{sum(c['precision'] == k for c in low)} {k}" for k in kinds) or "none"
        saved = [c.get("time_saved_s") for c in low]
        model = next((n.split(", ", 1)[1] for n in plan.get("notes", []) if n.startswith("time_saved_s: the cost model")), "cost model")
        predicted = (f"; predicted saving {sum(saved) * 1e3:.3g} ms ({model})" if low and all(t is not None for t in saved) else "")
        lines.append(f"  CPU: {len(low)} of {len(plan['choices'])} GEMM/convolution ops chosen for lower precision ({per}; {placed} "
                     f"of them in CPU subgraphs){predicted}; measured (onnxruntime emulation) calibration {_errors(plan['calibration'])}; "
                     f"held-out {_errors(plan['held_out'])}")
        for c in low[:12]:  # each choice: its precision, predicted saving and its own measured error cost
            time = f", predicted -{c['time_saved_s'] * 1e6:.0f} us" if c.get("time_saved_s") is not None else ""
            lines.append(f"    {c['node']}: {c['precision']}{time}, alone {c['budget_cost']:.2f} of the budget")
        if len(low) > 12:
            lines.append(f"    ... and {len(low) - 12} more (plan/precision.json)")
    if gpu:
        low = [c["id"] for c in gpu["choices"] if c["precision"] != "fp32"]
        lines.append(f"  GPU: {len(low)} of {len(gpu['choices'])} subgraph(s) in fp16 ({', '.join(low) or 'none'}); whole plan, "
                     f"emulated: calibration {_errors(gpu['calibration'])}; held-out {_errors(gpu['held_out'])}"
                     + ("" if gpu.get("held_out_ok") in (None, True) else " (OVER the budget)"))
        lines.append(f"  emulation: {gpu['emulation']}; its errors count x{gpu['error_factor']:g} against the budget (the kernels' "
                     "error over the emulation's, measured up to 2.3x on the test models: docs/precision.md)")
    return lines


def program_lines(bundle: Path, program) -> list[str]:
    """The program of a bundle with run-time control flow: its steps in order, indented into branches and bodies,
    each compiled piece with its size (docs/control-flow.md)."""
    lines: list[str] = [f"program ({program.format}): {len(program.parts())} compiled pieces"]

    def piece(rel: str) -> str:
        files = [p for p in (bundle / rel).rglob("*.so")]
        return f"{rel} [{_size(sum(p.stat().st_size for p in files))} native code]"

    def block(b, indent: str) -> None:
        for c in b.constants:
            lines.append(f"{indent}constant {c.name}: {c.dtype} {c.shape} ({c.file})")
        for step in b.steps:
            if step.kind == "segment":
                lines.append(f"{indent}segment {piece(step.bundle)} from '{step.node}': ({', '.join(step.inputs)}) -> ({', '.join(step.outputs)})")
            elif step.kind == "if":
                lines.append(f"{indent}if '{step.node}' on {step.inputs[0]} -> ({', '.join(step.outputs)})")
                for label, sub in (("then", step.then_branch), ("else", step.else_branch)):
                    lines.append(f"{indent}  {label}: returns ({', '.join(sub.outputs)})")
                    block(sub, indent + "    ")
            elif step.kind == "fail":
                lines.append(f"{indent}not compiled, an error if taken: {step.message}")
            elif step.kind == "host":
                lines.append(f"{indent}host (numpy) {step.op} '{step.node}': ({', '.join(n or '-' for n in step.inputs)}) -> "
                             f"({', '.join(n or '-' for n in step.outputs)})")
            else:
                trip, cond, *carried = step.inputs
                scans = f", {len(step.scans)} stacked scan output(s)" if step.scans else ""
                lines.append(f"{indent}loop '{step.node}': trip count {trip or 'none'}, condition {cond or 'none'}, carried "
                             f"({', '.join(carried)}) -> ({', '.join(step.outputs)}){scans}")
                lines.append(f"{indent}  body({', '.join(step.body.inputs)}): returns ({', '.join(step.body.outputs)})")
                block(step.body, indent + "    ")

    block(program.main, "  ")
    return lines


def describe(bundle_dir: str | os.PathLike) -> str:
    bundle = Path(bundle_dir)
    m = read_manifest(bundle)
    precision_plan = _precision_plan(bundle, m.files)
    gpu_choices = {c["id"]: c for c in ((precision_plan or {}).get("gpu") or {}).get("choices", [])}
    tensors = {t.name: t for t in m.tensors}
    lines = [
        f"bundle {bundle}  (format {m.format} v{m.format_version}, hcc {m.compiler_version})",
        f"model  {m.model_name}  sha256 {m.model_sha256[:16]}...",
        f"devices required: {', '.join(m.devices_required)}" + (f"; optional: {', '.join(m.devices_optional)}" if m.devices_optional else ""),
        "inputs:",
        *[f"  {n}: {tensors[n].dtype} {tensors[n].shape}"
          + (f" (model: {tensors[n].symbolic_shape})" if tensors[n].symbolic_shape and tensors[n].symbolic_shape != tensors[n].shape else "")
          for n in m.inputs],
        "outputs:",
        *[f"  {n}: {tensors[n].dtype} {tensors[n].shape}{zipmap_note(tensors[n].zipmap_keys)}" for n in m.outputs],
        f"subgraphs ({len(m.subgraphs)}), schedule {' -> '.join(m.schedule)}:",
    ]
    if m.program is not None:  # run-time control flow: the code is in the program's pieces
        lines[-1] = "subgraphs: none at the top level; the compiled code is in the program's pieces (parts/*, each a bundle)"
        lines += program_lines(bundle, m.program)
    for sg in m.subgraphs:
        arts = ", ".join(f"{a.file} [{a.kind}, entry {a.entry}, {_size((bundle / a.file).stat().st_size)}]" for a in sg.artifacts)
        lines.append(f"  {sg.id}: device {sg.device}#{sg.device_index}, {sg.precision}, {len(sg.nodes)} ops, {len(sg.inputs)} inputs, "
                     f"{len(sg.outputs)} outputs")
        lines.append(f"    artifacts: {arts}")
        if sg.id in gpu_choices:
            lines += _gpu_choice_lines(gpu_choices[sg.id], precision_plan["gpu"]["error_factor"])
        for artifact in sg.artifacts + ([sg.fallback] if sg.fallback else []):
            lines += _schedule_lines(artifact.meta.get("schedule"))
            variants = artifact.meta.get("isa_variants")
            if variants:  # its generated code for wider ISAs too, bound at load where the CPU has them
                base, entries = m.toolchain.get("target_cpu", "?"), ", ".join(isa_entry(artifact.entry, v) for v in variants)
                lines.append(f"    generated code: {base}, and {', '.join(variants)} (entry {entries}) used where the CPU has it")
            for precision, what in (("bf16", "AMX tiles or AVX512-BF16 dot products"), ("bf16x3", "split-bf16 GEMMs on AMX tiles"),
                                    ("int8", "int8 GEMMs on AMX-INT8 tiles or AVX512-VNNI")):
                low = artifact.meta.get(f"{precision}_nodes")
                if low:  # --cpu-precision bf16/bf16x3/auto: the GEMMs and convolutions that call those kernels
                    names = ", ".join(low[:8]) + (", ..." if len(low) > 8 else "")
                    lines.append(f"    {precision} ({what} where the CPU has them): {len(low)} ops: {names}")
    if precision_plan is not None:
        lines += _precision_summary(precision_plan, {n for sg in m.subgraphs if sg.device.split(":")[0] == "cpu" for n in sg.nodes})
    weight_bytes = sum(w.nbytes for w in m.weights)
    params = sum(int(np.prod(tensors[w.name].shape)) for w in m.weights)
    lines.append(f"weights: {len(m.weights)} tensors, {params:,} values, {_size(weight_bytes)}")
    if m.golden:
        lines.append(f"golden: {m.golden.file} ({m.golden.source}; rtol={m.golden.rtol:g} atol={m.golden.atol:g})")
        for name, acc in m.golden.outputs.items():
            measured = (f"measured max abs error {acc.golden_max_abs:.3g} (golden), {acc.held_out_max_abs:.3g} ({acc.held_out_samples} held-out)"
                        if acc.golden_max_abs is not None else "not measured on this host")
            agreement = f", argmax agreement {acc.argmax_agreement:.0%}" if acc.argmax_agreement is not None else ""
            lines.append(f"  {name}: rtol={acc.rtol:g} atol={acc.atol:.3g}; {measured}{agreement}" + (f"; {acc.note}" if acc.note else ""))
    from hcc.runtime.signing import signer_of

    signer = signer_of(bundle)
    lines.append(f"signed by public key {signer} (check it with --trust)" if signer else "not signed")
    total = sum((bundle / f).stat().st_size for f in m.files)
    lines.append(f"files: {len(m.files)} ({_size(total)}), all sha256-verified")
    lines.append("toolchain: " + ", ".join(f"{k}={v}" for k, v in m.toolchain.items()))
    return "\n".join(lines)
