"""Lower one subgraph from linalg-on-tensors to GPU kernels with the xtc (upstream LLVM/MLIR 22) bindings.

Stages (all in the compiler's worker process, because a bad pipeline can abort the interpreter):
  1. tensors:   unroll static loops (LSTM time loops), drop cf.assert guards, [fp16 rewrite], elementwise ops ->
                linalg, linalg-fuse-elementwise-ops (elementwise chains become one op), one fill per consumer
  2. buffers:   one-shot-bufferize (identity layouts at the boundary) -> results become out-params; every
                remaining memref.copy becomes linalg.copy so that it runs on the GPU too; named ops are generalized
  3. kernels:   consecutive ops over the same output space with element-aligned accesses share a kernel (fill +
                matmul + bias + ReLU); a generated transform-dialect script tiles each kernel's ops twice with
                scf.forall (blocks, then threads), fuses the sibling loops and maps them to a gpu.launch; reduction
                loops stay sequential inside a thread; kernels with a large enough matmul-like contraction (or a
                convolution, whose weight alone is staged) are tiled through shared memory instead (plan_shared:
                16x16 blocks, K steps whose operand tiles are copied into workgroup buffers by the block's
                threads, with barriers; HCC_GPU_SHARED=0 turns it off); then linalg -> scf loops inside the kernels
  4. outlining: gpu-kernel-outlining -> a host function (allocs, views, gpu.launch_func) + one gpu.module per kernel;
                the kernels are renamed `<sg>_k<N>`, merged into one gpu.module, and get fastmath<contract> (FMA);
                workgroup buffers become workgroup attributions (static shared memory)
  5. codegen:   gpu.module -> NVVM (bare-pointer kernel arguments) -> PTX (nvvm-attach-target chip=sm_80 +ptx81,
                gpu-module-to-binary format=isa, libdevice linked from the pinned toolkit)
The host function is not lowered: hcc.backends.gpu.launch_table reads it and writes the launch table instead.
See docs/backends/gpu.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from hcc.backends.gpu.mapping import (
    VIEW_OPS,
    OpInfo,
    OpPlan,
    _op_info,
    _wrap_in_foralls,
    group_ops,
    plan_group,
    shared_block_script,
    transform_script,
)
from hcc.backends.gpu.mlir_util import _func, _op_where, _run, _top_ops, copies_to_linalg, single_threaded_context
from hcc.backends.gpu.shared_tiling import _stage_operands, plan_shared, shared_enabled, workgroup_attributions
from hcc.errors import HccError

PTX_CHIP = "sm_80"  # PTX `.target`: JIT-able on every GPU from Ampere on; cubins are built from it per SM
PTX_FEATURES = "+ptx81"  # PTX ISA 8.1 (<= 9.0, which the CUDA 13.0 driver/ptxas accept): kernel parameters up to 32764 bytes

FUSE = "convert-elementwise-to-linalg,linalg-fuse-elementwise-ops,canonicalize,cse"
BUFFERIZE = (
    "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map},"
    "buffer-results-to-out-params{hoist-static-allocs=1 modify-public-functions=1},"
    "canonicalize,cse,canonicalize"
)
GENERALIZE = "linalg-generalize-named-ops,canonicalize"
AFTER_MAPPING = "transform-interpreter,convert-linalg-to-loops,canonicalize,cse"
OUTLINE = "gpu-launch-sink-index-computations,gpu-kernel-outlining,canonicalize,cse"


def kernel_to_ptx_pipeline(toolkit: str | None, chip: str = PTX_CHIP, features: str = PTX_FEATURES) -> str:
    """The device half of upstream `gpu-lower-to-nvvm-pipeline`, applied to a module holding only gpu.modules."""
    toolkit_opt = f" toolkit={toolkit}" if toolkit else ""
    return (
        "convert-nvgpu-to-nvvm,convert-vector-to-scf,convert-scf-to-cf,expand-strided-metadata,"
        f"nvvm-attach-target{{chip={chip} features={features} O=3}},"
        "lower-affine,convert-arith-to-llvm,convert-index-to-llvm,canonicalize,cse,"
        "gpu.module(convert-gpu-to-nvvm{use-bare-ptr-memref-call-conv=1},canonicalize,cse,reconcile-unrealized-casts),"
        f"gpu-module-to-binary{{format=isa{toolkit_opt}}}"
    )


# -- the stages ------------------------------------------------------------------------------------------------------
@dataclass
class Lowered:
    host_text: str  # the outlined module: host function + gpu.modules (for the launch table)
    kernels_text: str  # one gpu.module holding every kernel, renamed <sg>_k<N> (input of NVVM codegen)
    kernel_names: dict[str, str]  # "<module>::<func>" in host_text -> final kernel name
    plans: list[OpPlan]
    stages: dict[str, str] = field(default_factory=dict)  # IR after each stage (kept with --keep-ir)


MAX_UNROLL = 1024


def _drop_asserts(module) -> None:
    """torch-mlir guards some ops with `cf.assert` (Reciprocal: "tensor with zero element"). A kernel cannot report
    an assertion (it would trap the whole context), and ONNX defines these cases (1/0 = inf, as onnxruntime gives), so
    the GPU code drops the checks."""
    doomed = []

    def visit(block) -> None:
        for op in block.operations:
            if op.operation.name == "cf.assert":
                doomed.append(op.operation)
            for region in op.regions:
                for inner in region.blocks:
                    visit(inner)

    for top in module.body.operations:
        for region in top.regions:
            for block in region.blocks:
                visit(block)
    for op in doomed:
        op.erase()


def _unroll_loops(module, entry: str) -> None:
    """Loops on tensors (an LSTM's time loop) are unrolled completely: a launch table is straight-line, and every
    iteration becomes its own kernels. Only loops with constant bounds, up to MAX_UNROLL iterations in all."""
    from mlir import ir

    loops = []

    def visit(block) -> None:
        for op in block.operations:
            if op.operation.name.startswith("linalg."):  # loops inside an op's body run inside its kernel
                continue
            for region in op.regions:
                for inner in region.blocks:
                    visit(inner)
            if op.operation.name == "scf.for":
                loops.append(op)

    visit(_func(module, entry).regions[0].blocks[0])
    if not loops:
        return
    i64 = ir.IntegerType.get_signless(64)
    lines = ["module attributes {transform.with_named_sequence} {",
             "transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {"]
    total = 0
    for n, loop in enumerate(loops):  # innermost first (post-order)
        bounds = []
        for value in list(loop.operands)[:3]:
            owner = value.owner
            op = None if isinstance(owner, ir.Block) else (owner.operation if hasattr(owner, "operation") else owner)
            if op is None or op.name != "arith.constant":
                raise HccError(f"GPU backend: {_op_where(loop.operation)} has non-constant bounds; the GPU backend only unrolls static loops")
            bounds.append(int(ir.IntegerAttr(op.attributes["value"]).value))
        lb, ub, step = bounds
        trips = max(0, -(-(ub - lb) // step))
        total += trips
        if total > MAX_UNROLL:
            raise HccError(f"GPU backend: {_op_where(loop.operation)} would unroll to more than {MAX_UNROLL} iterations; place it on the CPU")
        loop.attributes["hcc.loop"] = ir.IntegerAttr.get(i64, n)
        if trips > 1:
            lines.append(f'%l{n} = transform.structured.match ops{{["scf.for"]}} attributes{{hcc.loop = {n} : i64}} in %root '
                         ': (!transform.any_op) -> !transform.any_op')
            lines.append(f"transform.loop.unroll %l{n} {{ factor = {trips} }} : !transform.any_op")
    lines += ["transform.yield", "}", "}"]
    script = ir.Module.parse("\n".join(lines))
    module.operation.attributes["transform.with_named_sequence"] = ir.UnitAttr.get()
    for op in script.body.operations:
        module.body.append(op.operation.clone())
    _run(module, "transform-interpreter,canonicalize,cse", "unrolling loops")
    for op in list(module.body.operations):
        if op.operation.name == "transform.named_sequence":
            op.operation.erase()
    del module.operation.attributes["transform.with_named_sequence"]


def _duplicate_shared_fills(module, entry: str) -> None:
    """A fill feeding several consumers (the zero init of two matmuls) would bufferize to one buffer plus a copy
    kernel per extra consumer; one fill per consumer writes each init in place instead."""
    from mlir import ir

    for op in _top_ops(_func(module, entry)):
        if op.operation.name != "linalg.fill" or len(op.results) != 1:
            continue
        uses = [(use.owner, use.operand_number) for use in op.results[0].uses]
        for owner, index in uses[1:]:
            with ir.InsertionPoint(op):
                clone = op.operation.clone()
            owner.operands[index] = clone.results[0]


def _sanitize(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"k_{cleaned}"


def _hoist_buffers_and_views(func_op) -> None:
    """Move allocations, constant buffers and views to the top of the function (they have no data effects), so that
    the linalg ops are adjacent and consecutive ones can be fused into one kernel."""
    ops = _top_ops(func_op)
    movable = [op for op in ops if op.operation.name in ("memref.alloc", "memref.alloca", "memref.get_global", "arith.constant") + VIEW_OPS]
    anchor = next((op for op in ops if op not in movable), None)
    if anchor is None:
        return
    for op in movable:
        op.operation.move_before(anchor.operation)


def _apply_script(module, script_text: str, pipeline: str, stage: str) -> None:
    """Run a transform-dialect script (text) on `module` with `pipeline` (which holds transform-interpreter)."""
    from mlir import ir

    script = ir.Module.parse(script_text)
    module.operation.attributes["transform.with_named_sequence"] = ir.UnitAttr.get()
    for op in script.body.operations:
        module.body.append(op.operation.clone())
    _run(module, pipeline, stage)
    for op in list(module.body.operations):
        if op.operation.name == "transform.named_sequence":
            op.operation.erase()
    del module.operation.attributes["transform.with_named_sequence"]


def lower_to_kernels(linalg_text: str, entry: str, precision: str = "fp32", keep: bool = False, fuse_kernels: bool = True,
                     shared: bool | None = None) -> Lowered:
    """linalg-on-tensors text -> outlined host + kernel modules. `shared`: shared-memory tiling of matmul-like
    kernels (plan_shared); None follows HCC_GPU_SHARED (on unless it is 0)."""
    from mlir import ir

    stages: dict[str, str] = {}
    with single_threaded_context(), ir.Location.unknown():
        module = ir.Module.parse(linalg_text)
        if precision == "fp16":
            from hcc.backends.gpu.precision import rewrite_fp16

            rewrite_fp16(module, entry)
            if keep:
                stages["fp16"] = str(module)
        elif precision != "fp32":
            raise HccError(f"GPU backend: unsupported precision '{precision}' (use fp32 or fp16)")
        _unroll_loops(module, entry)
        _drop_asserts(module)
        _run(module, FUSE, "elementwise fusion")
        _duplicate_shared_fills(module, entry)
        _run(module, BUFFERIZE, "bufferization")
        text = copies_to_linalg(module.operation.get_asm(large_elements_limit=None, enable_debug_info=True))
        module = ir.Module.parse(text)
        _run(module, GENERALIZE, "generalizing named ops")
        if keep:
            stages["bufferized"] = module.operation.get_asm(large_elements_limit=16)

        func_op = _func(module, entry)
        _hoist_buffers_and_views(func_op)
        infos: list[OpInfo] = []
        i64 = ir.IntegerType.get_signless(64)
        for op in _top_ops(func_op):
            name = op.operation.name
            if not name.startswith("linalg."):
                continue
            if name != "linalg.generic":
                raise HccError(f"GPU backend: cannot map {_op_where(op.operation)} to the GPU (not generalizable)")
            if not len(op.outputs):
                raise HccError(f"GPU backend: {_op_where(op.operation)} has no output (a side effect only); it cannot become a kernel")
            op.attributes["hcc.op"] = ir.IntegerAttr.get(i64, len(infos))
            infos.append(_op_info(len(infos), op))
        for op in _top_ops(func_op):  # what else the host function holds must be expressible in a launch table
            name = op.operation.name
            if name.startswith(("scf.", "affine.", "tensor.", "vector.")):
                raise HccError(f"GPU backend: {_op_where(op.operation)} outside any kernel is not supported")
        use_shared = shared_enabled(shared)
        plans = []
        for k, group in enumerate(group_ops(infos, fuse=fuse_kernels)):
            plans.append((plan_shared(k, group) if use_shared else None) or plan_group(k, group))
        for plan in plans:
            if plan.wrap:
                _wrap_in_foralls(infos[plan.members[0]].op.operation)

        first = shared_block_script(plans)
        if first is not None:
            _apply_script(module, first, "transform-interpreter", "tiling shared-memory kernels onto blocks")
            _stage_operands(module, entry, plans)
        script = transform_script(plans)
        if keep:
            stages["mapping_script"] = script if first is None else first + "\n// then, after _stage_operands:\n" + script
        _apply_script(module, script, AFTER_MAPPING, "mapping linalg ops to GPU blocks and threads")
        for op in _top_ops(_func(module, entry)):
            if op.operation.name.startswith(("linalg.", "scf.")):
                raise HccError(f"GPU backend: {_op_where(op.operation)} was not mapped to a kernel")
        _run(module, OUTLINE, "kernel outlining")
        host_text = module.operation.get_asm(large_elements_limit=None, enable_debug_info=True)

        # One gpu.module for all kernels, with predictable names.
        kernel_names: dict[str, str] = {}
        merged = ir.Module.parse(f"module attributes {{gpu.container_module}} {{ gpu.module @{_sanitize(entry)}_kernels {{ }} }}")
        target_body = merged.body.operations[0].regions[0].blocks[0]
        prefix = _sanitize(entry)
        for op in module.body.operations:
            if op.operation.name != "gpu.module":
                continue
            mod_name = ir.StringAttr(op.attributes["sym_name"]).value
            for inner in op.regions[0].blocks[0].operations:
                if inner.operation.name != "gpu.func":
                    continue
                fn = ir.StringAttr(inner.attributes["sym_name"]).value
                new_name = f"{prefix}_k{len(kernel_names)}"
                kernel_names[f"{mod_name}::{fn}"] = new_name
                clone = inner.operation.clone()
                clone.attributes["sym_name"] = ir.StringAttr.get(new_name)
                target_body.append(clone)
        kernels_text = workgroup_attributions(_widen_i1(allow_fma(merged.operation.get_asm(large_elements_limit=None))))
        return Lowered(host_text, kernels_text, kernel_names, plans, stages)


_FP_ARITH = re.compile(r"^(\s*%[\w.$-]+ = arith\.(?:addf|subf|mulf) %[\w.$-]+, %[\w.$-]+) : ", re.M)


def allow_fma(text: str) -> str:
    """`fastmath<contract>` on float add/sub/mul in the kernels: NVPTX then fuses multiply-adds into `fma.rn`, as
    nvcc does by default (-fmad=true). Without it every product and sum is rounded separately (`mul.rn`/`add.rn`)."""
    return _FP_ARITH.sub(r"\1 fastmath<contract> : ", text)


def _widen_i1(text: str) -> str:
    """Bool buffers are bytes: LLVM 22's memref-to-LLVM lowering asserts on i1 loads/stores (shared with the CPU
    backend: hcc.backends.cpu.widen_i1)."""
    try:
        from hcc.backends.cpu.widen_i1 import widen_i1_memrefs
    except ImportError:  # pragma: no cover - older trees
        return text
    return widen_i1_memrefs(text)


def kernels_to_ptx(kernels_text: str, toolkit: str | None) -> str:
    """The merged gpu.module -> PTX text (in-process NVPTX backend of the xtc LLVM)."""
    from mlir import ir

    with single_threaded_context():
        module = ir.Module.parse(kernels_text)
        _run(module, kernel_to_ptx_pipeline(toolkit), "NVVM/PTX code generation")
        for op in module.body.operations:
            if op.operation.name == "gpu.binary":
                objects = op.attributes["objects"]
                for obj in objects:
                    text = str(obj)
                    # #gpu.object<#nvvm.target<...>, properties = {...}, assembly = "...">  or  "..." at the end
                    match = re.search(r'"((?:[^"\\]|\\.)*)"\s*>\s*$', text, re.S)
                    if match:
                        return _unescape_mlir_string(match.group(1))
        raise HccError("GPU backend: NVVM code generation produced no PTX")


def _unescape_mlir_string(s: str) -> str:
    out = bytearray()
    i = 0
    raw = s.encode("utf-8")
    while i < len(raw):
        c = raw[i]
        if c == 0x5C and i + 1 < len(raw):  # backslash
            nxt = raw[i + 1]
            if nxt in b"0123456789abcdefABCDEF" and i + 2 < len(raw) and raw[i + 2] in b"0123456789abcdefABCDEF":
                out.append(int(raw[i + 1 : i + 3], 16))
                i += 3
                continue
            mapping = {ord("n"): 10, ord("t"): 9, ord('"'): 34, ord("\\"): 92}
            out.append(mapping.get(nxt, nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return out.decode("utf-8").rstrip("\x00")
