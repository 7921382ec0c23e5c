"""GPU backend entry point (see hcc.backends for the contract; docs/backends/gpu.md for the artifact format).

Writes under `bundle/gpu/<sg>/`:
  kernels.ptx            every kernel of the subgraph (PTX ISA <= 9.0, `.target sm_80`, JIT-able on newer GPUs)
  kernels.sm_80.cubin    ptxas -arch=sm_80 of that PTX (and sm_90; plus the subgraph's own arch when it is another)
  constants.bin          constant tensors the kernels read (small weights folded into the IR), uploaded at load
  launch.json            the launch table (`hcc-launch-v1`): buffers, kernel launches with grid/block/parameters,
                         per-kernel registers/spills/shared memory from `ptxas -v` and the static shared memory of
                         the kernel IR (`static_shared_bytes`; launches pass no dynamic shared memory), toolchain versions
  (with keep_ir)         <sg>.linalg.mlir, bufferized.mlir, host.mlir, kernels.mlir, mapping.mlir
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from hcc.artifacts.manifest import ArtifactRecord
from hcc.backends.gpu import launch_table, lowering, shared_tiling, toolchain
from hcc.backends.gpu.mlir_util import single_threaded_context
from hcc.devices import DEVICE_KINDS, LAUNCH_ABI, parse_device
from hcc.errors import HccError
from hcc.options import CompileOptions, ModelFiles

CONSTANT_ALIGNMENT = 256
PRECISIONS = DEVICE_KINDS["gpu"].precisions


def target_archs(device: str) -> list[str]:
    """Cubin architectures to build: sm_80 and sm_90 always, plus the subgraph's own (e.g. gpu:sm_86)."""
    archs = list(toolchain.CUBIN_ARCHS)
    arch = parse_device(device).target
    if arch:
        match = re.fullmatch(r"sm_(\d+)(a?)", arch)
        if not match:
            raise HccError(f"GPU backend: device '{device}' does not name an SM architecture (expected e.g. gpu:sm_90)")
        if int(match.group(1)) < 80:
            raise HccError(f"GPU backend: {arch} is older than sm_80 (Ampere), the oldest architecture hcc generates code for")
        if arch not in archs:
            archs.append(arch)
    return archs


def _add_noalias(kernels_text: str, kernel_roots: dict[str, list[int]]) -> str:
    """Mark a kernel's memref arguments `llvm.noalias` when they all live in different buffers (each kernel is
    launched exactly once, so this is known at compile time); lets LLVM keep accumulators in registers."""
    from mlir import ir

    with single_threaded_context():
        module = ir.Module.parse(kernels_text)
        gpu_module = module.body.operations[0]
        for fn in gpu_module.regions[0].blocks[0].operations:
            if fn.operation.name != "gpu.func":
                continue
            name = ir.StringAttr(fn.attributes["sym_name"]).value
            roots = kernel_roots.get(name, [])
            if not roots or len(set(roots)) != len(roots):
                continue
            ftype = ir.FunctionType(ir.TypeAttr(fn.attributes["function_type"]).value)
            attrs = []
            for t in ftype.inputs:
                if isinstance(t, ir.MemRefType):
                    attrs.append(ir.DictAttr.get({"llvm.noalias": ir.UnitAttr.get()}))
                else:
                    attrs.append(ir.DictAttr.get({}))
            fn.attributes["arg_attrs"] = ir.ArrayAttr.get(attrs)
        return module.operation.get_asm(large_elements_limit=None)


def _check_ptx(ptx: str, table: dict, where: str) -> None:
    version = toolchain.ptx_version(ptx)
    if version > toolchain.MAX_PTX_VERSION:
        raise HccError(f"GPU backend: {where}: PTX ISA {version[0]}.{version[1]} is newer than 9.0, which the CUDA 13.0 toolchain and driver accept")
    entries = {e.name: e for e in toolchain.ptx_entries(ptx)}
    for name, kernel in table["kernels"].items():
        entry = entries.get(name)
        if entry is None:
            raise HccError(f"internal: GPU backend: {where}: kernel {name} is missing from the PTX")
        families = [toolchain.TABLE_PARAM_FAMILY[k] for k in kernel["params"]]
        if families != [toolchain.ptx_param_kind(t) for t in entry.params]:
            raise HccError(f"internal: GPU backend: {where}: launch table parameters of {name} {kernel['params']} "
                           f"do not match the PTX .entry {entry.params}")


def compile_subgraph(linalg_text: str, spec, bundle: Path, options: CompileOptions, files: ModelFiles | None = None) -> list[ArtifactRecord]:
    """PTX, cubins, constants and the launch table of one GPU subgraph (module docstring)."""
    precision = options.gpu.precision_of(spec.id)  # fp32 | fp16, per subgraph (--gpu-precision auto chooses per subgraph)
    archs = target_archs(spec.device)
    keep_ir = options.debug.keep_ir
    rel_dir = f"gpu/{spec.id}"
    out_dir = bundle / rel_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    where = f"subgraph {spec.id}"

    lowered = lowering.lower_to_kernels(linalg_text, spec.id, precision, keep=keep_ir, shared=options.env.gpu_shared)
    table, const_arrays, kernel_roots = launch_table.build(
        lowered.host_text, spec.id, len(spec.inputs), len(spec.outputs), lowered.kernel_names, list(spec.inputs), list(spec.outputs)
    )
    kernels_text = _add_noalias(lowered.kernels_text, kernel_roots)
    toolkit = toolchain.toolkit_root()
    ptx = lowering.kernels_to_ptx(kernels_text, str(toolkit))
    _check_ptx(ptx, table, where)
    ptx_path = out_dir / "kernels.ptx"
    ptx_path.write_text(ptx)

    # Constant tensors: one file, each 256-byte aligned.
    blob = bytearray()
    for buf in table["buffers"]:
        if buf["role"] != "constant":
            continue
        array = const_arrays[buf["name"]]
        pad = (-len(blob)) % CONSTANT_ALIGNMENT
        blob.extend(b"\0" * pad)
        buf["file"], buf["offset"] = f"{rel_dir}/constants.bin", len(blob)
        blob.extend(array.tobytes(order="C"))
    if blob:
        (out_dir / "constants.bin").write_bytes(bytes(blob))

    cubins: dict[str, str] = {}
    resources: dict[str, dict[str, dict]] = {}
    for arch in archs:
        rel = f"{rel_dir}/kernels.{arch}.cubin"
        report = toolchain.assemble(ptx_path, arch, bundle / rel)
        cubins[arch] = rel
        for kname, res in report.items():
            resources.setdefault(kname, {})[arch] = res.to_dict()
    static_shared = shared_tiling.workgroup_bytes(kernels_text)
    for kname, kernel in table["kernels"].items():
        kernel["resources"] = resources.get(kname, {})
        # static shared memory (workgroup buffers of the shared-memory tiled kernels): part of the cubin/PTX, so the
        # launch passes no dynamic shared memory (the steps' shared_bytes stay 0)
        kernel["static_shared_bytes"] = static_shared.get(kname, 0)
        for arch, res in kernel["resources"].items():
            if res["shared_bytes"] < kernel["static_shared_bytes"]:
                raise HccError(f"internal: GPU backend: {where}: ptxas reports {res['shared_bytes']} bytes of shared memory "
                               f"for {kname} on {arch}, less than its {kernel['static_shared_bytes']} bytes of workgroup buffers")
    spills = sorted({k for k, per in resources.items() for r in per.values() if r["spill_stores"] or r["spill_loads"]})

    plans = {f"{spec.id}_k{i}": p for i, p in enumerate(lowered.plans)}
    for step in table["steps"]:
        plan = plans.get(step["kernel"])
        if plan is not None:
            step["source"] = plan.where
    version = toolchain.ptx_version(ptx)
    table.update({
        "precision": precision,
        "io_dtype": "as declared (fp16 subgraphs convert at the kernel boundary: inputs and outputs stay fp32)",
        "module": {"ptx": f"{rel_dir}/kernels.ptx", "ptx_version": f"{version[0]}.{version[1]}",
                   "ptx_target": toolchain.ptx_target(ptx), "cubins": cubins},
        "image_choice": "cubin for the exact SM, else a cubin of the same major and lower minor, else PTX JIT",
        "calling_convention": "bare pointers: one base address per buffer argument (static offsets/sizes/strides are compiled in)",
        "toolchain": toolchain.versions(),
        "spilling_kernels": spills,
    })
    (out_dir / "launch.json").write_text(json.dumps(table, indent=1) + "\n")

    if keep_ir:
        (out_dir / f"{spec.id}.linalg.mlir").write_text(linalg_text)
        (out_dir / "host.mlir").write_text(lowered.host_text)
        (out_dir / "kernels.mlir").write_text(kernels_text)
        for stage, text in lowered.stages.items():
            (out_dir / f"{stage}.mlir").write_text(text)

    meta = {
        "launch_table": f"{rel_dir}/launch.json",
        "ptx": f"{rel_dir}/kernels.ptx",
        "cubins": cubins,
        "precision": precision,
        "kernels": len(table["kernels"]),
        "ptx_version": table["module"]["ptx_version"],
    }
    if blob:
        meta["constants"] = f"{rel_dir}/constants.bin"
    return [ArtifactRecord(kind=DEVICE_KINDS["gpu"].artifact_kinds[0], file=f"{rel_dir}/launch.json", entry=spec.id, abi=LAUNCH_ABI, meta=meta)]
