"""Lower a subgraph from linalg-on-tensors to the LLVM dialect with the xtc (upstream LLVM 22) bindings.

ABI of the result (`bare-ptr-v1` in the manifest): `void <entry>(T0* in0, ..., Tn* out0, ...)`; every argument
is a dense, row-major buffer of a static shape; outputs are written in place by the callee (no allocation crosses
the boundary, so the runtime never frees memory it did not allocate).

Pipeline (upstream passes and transform-dialect scripts only):

1. tensor level: fuse elementwise chains (`linalg-fuse-elementwise-ops`), rewrite strided/dilated NCHW convs as
   im2col + GEMM (`convert_conv2d_to_img2col`), generalize named ops, fold pure transposes/broadcasts into the
   indexing maps of their consumers (so `Gemm(transB=1)` reads its weight in place); a time loop's input products
   hoisted before it (`hoist_projections.py`), products of one input by adjacent slices of one weight merged
   (`merge_products.py`: an LSTM's gates);
2. tile and vectorize: `schedule.py` picks a strategy per linalg op and writes a transform-dialect script; each
   script runs on its own, and an op whose script fails or would crash the process (an assertion) is left to
   plain loops: the scripts are tried in order in a forked child first (`_apply_tried_in_child`). A second round
   lowers the packs the GEMM schedules left, decomposes tensor.pad and vectorizes what that produced;
3. bufferize (results computed straight into the out-parameters), hoist/lower the vector dialect (contractions
   -> FMAs, transfers -> loads/stores), and lower the rest (`convert-linalg-to-loops` for ops without a vector
   schedule) to the LLVM dialect.

Steps 1-3 run in a forked child with a deadline (`HCC_CPU_SCHEDULE_TIMEOUT`, 120 s): the bindings are an
assertions build, so a schedule that trips an assertion kills only the child. If the child fails, crashes or
times out, the function is lowered again with the micro-kernels alone (contractions and convolutions still become
kernel calls; no transform scripts), and only if that fails too with plain loops: a schedule bug costs speed, not
a compile error, and never silently: `lower_to_llvm_ir(text, log)` reports per op what was applied and the
backend records it in the bundle.

Contractions and NCHW convolutions become calls into hcc's C micro-kernels (ukernels.py, runtime/ukernels.c),
which run on the bundle's own thread pool.

Knobs (for debugging and comparisons; read by hcc/env.py, passed in as `env`): `HCC_CPU_SCHEDULE=loops` (plain
loops only), `HCC_CPU_KINDS=a,b` (only these schedule kinds: ukernel, contraction, conv, elementwise, reduction),
`HCC_CPU_FORK=0` (lower in-process).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

from hcc.backends.cpu.hoist_projections import hoist_loop_projections
from hcc.backends.cpu.merge_products import merge_shared_operand_products
from hcc.backends.cpu.toolchain import PARALLEL_COPY_BYTES, SOFTMAX_PARALLEL_ELEMENTS
from hcc.env import HccEnv, read_env
from hcc.errors import HccError
from hcc.options import CpuOptions

BUFFERIZE_IN_PLACE = (
    # LSTM-style time loops yield fresh buffers each iteration: allow it (deallocation then tracks ownership).
    "one-shot-bufferize{bufferize-function-boundaries=1 function-boundary-type-conversion=identity-layout-map allow-return-allocs-from-loops=1},"
    "buffer-results-to-out-params{hoist-static-allocs=1 modify-public-functions=1},"
    # Without canonicalize+cse every tile leaves a self-copy behind (research/mlir-bindings.md §4).
    "canonicalize,cse,canonicalize"
)
# A buffer that lives within one iteration of a time loop (an LSTM step's gate products) is allocated once, outside
# it: malloc/free took 13% of an LSTM's run. Only after HOIST_VECTOR_TRANSFERS: see there.
HOIST_BUFFERS = "func.func(buffer-loop-hoisting),buffer-deallocation-pipeline"
BUFFERIZE = f"{BUFFERIZE_IN_PLACE},{HOIST_BUFFERS}"

# Loop-invariant vector reads and read/write pairs out of loops (a reduction's accumulator). A kernel call writes
# its output through a pointer (an index operand), which this hoisting cannot see: once the output's allocation has
# moved out of a time loop (HOIST_BUFFERS), a read of it looked loop-invariant and was hoisted above the call that
# writes it (an LSTM with hidden size 16 read its first step's gate products on every step: wrong results). Run
# while each call's output is still allocated inside its loop.
HOIST_VECTOR_TRANSFERS = """
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %funcs = transform.structured.match ops{["func.func"]} in %root : (!transform.any_op) -> !transform.any_op
    %f = transform.structured.hoist_redundant_vector_transfers %funcs : (!transform.any_op) -> !transform.any_op
    transform.yield
  }
}
"""
# Loops first: the deallocation pipeline's private helper takes dynamic memrefs, which the bare-pointer calling
# convention cannot lower, so it is inlined; then i1 buffers become bytes (widen_i1.py) before memref-to-LLVM.
# The loops that schedule.py tiled across threads (scf.forall) become OpenMP worksharing loops; the canonicalize after
# it, limited to that one pattern, inlines the alloca scope that convert-scf-to-openmp wraps each body in (scf-to-cf
# would leave it with several blocks, which it may not have); a full canonicalize there cost ViT-Tiny 2% at 1 thread.
# Translation outlines each body, called through runtime/openmp_abi.c's pool.
TO_LOOPS = ("inline,symbol-dce,convert-linalg-to-loops,expand-strided-metadata,lower-affine,"
            "scf-forall-to-parallel,convert-scf-to-openmp,canonicalize{enable-patterns=AllocaScopeInliner region-simplify=disabled},"
            "convert-scf-to-cf,canonicalize")
# math-to-llvm first (sqrt, rsqrt, exp, ... as intrinsics); what is left (erf) becomes libm calls (-lm is linked).
# math-to-libm scalarizes vector math ops with extract/insert, so the vector conversion comes after it.
TO_LLVM = (
    "convert-math-to-llvm,convert-math-to-libm,convert-vector-to-llvm,finalize-memref-to-llvm{use-generic-functions=1},"
    "convert-arith-to-llvm,convert-cf-to-llvm,convert-ub-to-llvm,convert-func-to-llvm{use-bare-ptr-memref-call-conv=1},"
    # after the functions: it would convert them too, without the bare-pointer convention
    "convert-openmp-to-llvm,reconcile-unrealized-casts"
)
NAIVE_TO_LLVM = (
    "finalize-memref-to-llvm{use-generic-functions=1},convert-arith-to-llvm,convert-math-to-llvm,convert-math-to-libm,"
    "convert-cf-to-llvm,convert-ub-to-llvm,convert-func-to-llvm{use-bare-ptr-memref-call-conv=1},reconcile-unrealized-casts"
)


def _loops_then_llvm(module, pipeline: str, stage: str = "cpu-to-llvm"):
    """TO_LOOPS, the i1 -> i8 buffer rewrite, then `pipeline`; returns the (re-parsed) module."""
    from mlir import ir

    from hcc.backends.cpu.widen_i1 import widen_i1_memrefs

    _run_pipeline(module.operation, TO_LOOPS, "cpu-to-loops", "CPU backend: lowering to loops")
    text = module.operation.get_asm(enable_debug_info=True, large_elements_limit=None)
    widened = widen_i1_memrefs(text)
    if widened is not text:
        module = ir.Module.parse(widened)
    _run_pipeline(module.operation, pipeline, stage, "CPU backend: lowering to LLVM")
    return module


# A tensor.concat becomes an empty tensor and one insert_slice per piece, and eliminate-empty-tensors then lets each
# piece's producer write into its slice of the result: bufferized as it was, every piece was computed into its own
# buffer and copied (ResNet-18's max-pooling, split into border bands and an interior by passes/nan_semantics.py:
# two copies of its 800 KB output).
def _patterns_script(pattern: str) -> str:
    """A transform script applying one pattern set to every function."""
    return f"""
module attributes {{transform.with_named_sequence}} {{
  transform.named_sequence @__transform_main(%root: !transform.any_op {{transform.readonly}}) {{
    %f = transform.structured.match ops{{["func.func"]}} in %root : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %f {{
      transform.apply_patterns.{pattern}
    }} : !transform.any_op
    transform.yield
  }}
}}
"""


DECOMPOSE_CONCATS = _patterns_script("tensor.decompose_concat")

# After bufferization: hoist what is still redundant, then lower every vector op to 1-D loads/stores/FMAs.
VECTOR_LOWERING = """
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %f = transform.structured.match ops{["func.func"]} in %root : (!transform.any_op) -> !transform.any_op
    transform.apply_patterns to %f {
      transform.apply_patterns.vector.cast_away_vector_leading_one_dim
    } : !transform.any_op
    transform.apply_patterns to %f {
      transform.apply_patterns.vector.lower_contraction lowering_strategy = "outerproduct"
      transform.apply_patterns.vector.transfer_permutation_patterns
      transform.apply_patterns.vector.lower_multi_reduction lowering_strategy = "innerparallel"
      transform.apply_patterns.vector.split_transfer_full_partial split_transfer_strategy = "linalg-copy"
      transform.apply_patterns.vector.transfer_to_scf max_transfer_rank = 1 full_unroll = true
      transform.apply_patterns.vector.lower_transfer max_transfer_rank = 1
      transform.apply_patterns.vector.lower_shape_cast
      transform.apply_patterns.vector.lower_transpose lowering_strategy = "shuffle_1d"
      transform.apply_patterns.vector.lower_outerproduct
      transform.apply_patterns.vector.lower_broadcast
    } : !transform.any_op
    transform.yield
  }
}
"""


@dataclass
class TensorType:
    shape: list[int]
    element: str  # MLIR element type: f32, i64, i1, ...


@dataclass
class Signature:
    inputs: list[TensorType]
    results: list[TensorType]


@dataclass
class OpReport:
    """What the CPU backend did with one linalg op: `kind` is the schedule (ukernel-gemm, ukernel-conv, ukernel-pool,
    ukernel-softmax, contraction, conv, elementwise, reduction, loops; `module` for a whole attempt), `ok` False when it did not apply."""

    index: int
    kind: str
    ok: bool
    note: str = ""
    node: str = ""  # the ONNX node the op came from (its MLIR location)
    work: int = 0  # scalar operations of the op (iteration space x body ops), for a share of the function
    threads: bool = False  # its outer loop runs across the pool's threads (when ok)

    @property
    def slow(self) -> bool:
        """Plain scalar loops: no schedule, or a schedule that failed."""
        return self.index >= 0 and (self.kind == "loops" or not self.ok)


def node_name(op) -> str:
    """The ONNX node name the importer kept as the op's location (first name of a fused location); `op` is
    anything with a `.location`."""
    import re

    match = re.search(r'"([^"]*)"', str(op.location))
    return match.group(1) if match else ""


def _tensor_type(t) -> TensorType:
    from mlir import ir

    ranked = ir.RankedTensorType(t)
    if not ranked.has_static_shape:
        raise HccError(
            f"a tensor of type {t} has a dynamic shape after lowering",
            hint="give every dynamic input a concrete shape with --input-shape NAME=D1xD2x...",
        )
    return TensorType(list(ranked.shape), str(ranked.element_type))


def function_signature(linalg_text: str, entry: str) -> Signature:
    from mlir import ir

    with ir.Context():
        module = ir.Module.parse(linalg_text)
        for op in module.body.operations:
            if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == entry:
                ftype = ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value)
                return Signature([_tensor_type(t) for t in ftype.inputs], [_tensor_type(t) for t in ftype.results])
    raise HccError(f"internal: function @{entry} not found after lowering")


# ------------------------------------------------------------------------------------------ helpers

def _error_text(exc: Exception) -> str:
    """One line for a report: the first MLIR diagnostic when there is one (and where a failed pass pipeline's
    reproducer is)."""
    from hcc.passes.pass_runner import PipelineError

    if isinstance(exc, PipelineError):
        where = f"reproducer: {exc.repro}" if exc.repro else "hcc compile --save-temps DIR keeps a reproducer"
        return f"{exc.stage}: {exc.first_diagnostic} ({where})"
    diagnostics = getattr(exc, "error_diagnostics", None) or []
    if diagnostics:
        return str(diagnostics[0].message).strip().splitlines()[0][:300]
    lines = str(exc).strip().splitlines()
    return " / ".join(lines[:3])[:300] if lines else type(exc).__name__


def _run_pipeline(root, pipeline: str, stage: str, what: str | None = None) -> None:
    """`pipeline` (passes on builtin.module) through the shared runner: a failure leaves a reproducer."""
    from hcc.passes.pass_runner import run_pipeline

    run_pipeline(root, f"builtin.module({pipeline})", stage=stage, what=what or f"CPU backend: {stage}")


def _apply_script(root, script: str) -> None:
    from mlir import ir
    from mlir.dialects.transform import interpreter

    transform_module = ir.Module.parse(script)
    entry = next(op for op in transform_module.body.operations if op.operation.name == "transform.named_sequence")
    interpreter.apply_named_sequence(root, entry, transform_module)


def _linalg_generics(root) -> list:
    """The linalg.generic ops of every function, in order, including those in loop bodies (an LSTM's time loop)."""
    return [op for op in _func_body_ops(root) if op.operation.name == "linalg.generic"]


def _is_copy_like(op) -> bool:
    """A generic that only moves data: one input, all-parallel, body `yield %in`, projected-permutation input map
    and a permutation output map (linalg.transpose / linalg.broadcast / copies after generalization)."""
    from mlir import ir

    if len(op.operands) != 2 or len(op.results) != 1:
        return False
    if any("reduction" in str(a) for a in ir.ArrayAttr(op.attributes["iterator_types"])):
        return False
    block = op.regions[0].blocks[0]
    ops = list(block.operations)
    if len(ops) != 1 or len(ops[0].operands) != 1 or ops[0].operands[0] != block.arguments[0]:
        return False
    in_map, out_map = (ir.AffineMapAttr(a).value for a in ir.ArrayAttr(op.attributes["indexing_maps"]))
    return in_map.is_projected_permutation and out_map.is_permutation


def _permutes(copy) -> bool:
    """A copy-like generic that really transposes (not a broadcast or identity copy)."""
    from mlir import ir

    in_map = ir.AffineMapAttr(ir.ArrayAttr(copy.attributes["indexing_maps"])[0]).value
    positions = [e.position for e in in_map.results]
    return positions != sorted(positions)


def fold_copies_into_consumers(root, constant_args: frozenset[int] = frozenset()) -> int:
    """Make consumers read through transposes/broadcasts: `G(ins: transpose(W))` becomes `G(ins: W)` with the
    permutation composed into G's indexing map. The copy op dies if nothing else uses it. Returns the count.
    `constant_args`: the function's arguments that are bundle weights (see _reads_in_place)."""
    from mlir import ir

    folded = 0
    for consumer in _linalg_generics(root):
        num_inputs = len(consumer.operands) - len(consumer.results)
        changed = True
        while changed:
            changed = False
            maps = [ir.AffineMapAttr(a).value for a in ir.ArrayAttr(consumer.attributes["indexing_maps"])]
            for i in range(num_inputs):
                value = consumer.operands[i]
                owner = value.owner
                if isinstance(owner, ir.Block):
                    continue
                producer = owner.operation
                if producer.name != "linalg.generic" or not _is_copy_like(producer):
                    continue
                if producer.parent != consumer.operation.parent and _permutes(producer) and \
                        not _reads_in_place(consumer, producer, constant_args):
                    continue  # a transpose hoisted out of a time loop: done once there beats strided reads every step
                uses = [j for j in range(len(consumer.operands)) if consumer.operands[j] == value]
                if any(j >= num_inputs for j in uses):
                    continue
                p_in, p_out = (ir.AffineMapAttr(a).value for a in ir.ArrayAttr(producer.attributes["indexing_maps"]))
                out_dims = [e.position for e in p_out.results]
                in_dims = [e.position for e in p_in.results]
                for j in uses:
                    g = maps[j]
                    exprs = [g.results[out_dims.index(d)] for d in in_dims]
                    maps[j] = ir.AffineMap.get(g.n_dims, g.n_symbols, exprs)
                consumer.attributes["indexing_maps"] = ir.ArrayAttr.get([ir.AffineMapAttr.get(m) for m in maps])
                consumer.operation.replace_uses_of_with(value, producer.operands[0])
                folded += 1
                changed = True
                break
    return folded


def _reads_in_place(consumer, copy, constant_args: frozenset[int]) -> bool:
    """Whether `consumer` may read a weight's transpose `copy` through its indexing map even from inside a loop: the
    copy transposes a bundle weight (or a fixed slice of one) and the consumer is a GEMM, whose kernel keeps its own
    copy of a constant B (ukernels.c packed_weights). Else the copy would run on every call (an LSTM's 8 gate
    matrices per layer: 140 us of a 1.2 ms run)."""
    from hcc.backends.cpu import schedule, ukernels

    if not ukernels.is_constant_weight(copy.operands[0], constant_args):
        return False
    return ukernels.gemm_roles(schedule.analyze(consumer, -1)) is not None


# ------------------------------------------------------------------------------------------ entry points

KEEP_NAMED = {"linalg.generic", "linalg.pack", "linalg.unpack", "linalg.yield", "linalg.index"}


def _generalize(root, keep_fill: bool) -> None:
    """Generalize the named linalg ops (matmul, conv, transpose, broadcast, ...) into linalg.generic."""
    from mlir import ir

    keep = KEEP_NAMED | ({"linalg.fill"} if keep_fill else set())
    count = 0
    for op in _func_body_ops(root):
        name = op.operation.name
        if name.startswith("linalg.") and name not in keep and "hcc.ukernel" not in op.attributes:
            op.attributes["hcc.gen"] = ir.UnitAttr.get()
            count += 1
    if count:
        _apply_script(root, _GENERALIZE)


_GENERALIZE = """
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %ops = transform.structured.match attributes {hcc.gen} in %root : (!transform.any_op) -> !transform.any_op
    %g = transform.structured.generalize %ops : (!transform.any_op) -> !transform.any_op
    transform.yield
  }
}
"""

_IMG2COL = """
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %convs = transform.structured.match attributes {hcc.img2col} in %root : (!transform.any_op) -> !transform.any_op
    transform.foreach %convs : !transform.any_op {
    ^bb0(%c: !transform.any_op):
      %col, %gemm = transform.structured.convert_conv2d_to_img2col %c : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
    }
    transform.yield
  }
}
"""


def _strided_convs_to_img2col(module):
    """A convolution whose window moves more than one column per output (stride or dilation along W) has no
    unit-stride vector dim for the direct schedule; rewrite it as im2col + a contraction (upstream
    `convert_conv2d_to_img2col`), which the packed GEMM schedule then vectorizes. The im2col gather itself
    stays scalar. Returns (module, count); a failure leaves the module as it was."""
    from mlir import ir

    count = 0
    for op in _func_body_ops(module.operation):
        if op.operation.name != "linalg.conv_2d_nchw_fchw" or "hcc.ukernel" in op.attributes:
            continue
        strides = str(op.attributes["strides"]) if "strides" in op.attributes else "dense<1>"
        dilations = str(op.attributes["dilations"]) if "dilations" in op.attributes else "dense<1>"
        if strides.startswith("dense<1>") and dilations.startswith("dense<1>"):
            continue
        op.attributes["hcc.img2col"] = ir.UnitAttr.get()
        count += 1
    if not count:
        return module, 0
    backup = module.operation.get_asm(large_elements_limit=None, print_generic_op_form=True)
    try:
        _apply_script(module.operation, _IMG2COL)
        module.operation.verify()
    except Exception:
        return ir.Module.parse(backup), 0
    return module, count


_DECOMPOSE_PADS = _patterns_script("linalg.decompose_pad")

_LOWER_PACKS = """
module attributes {transform.with_named_sequence} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %packs = transform.structured.match ops{["linalg.pack"]} in %root : (!transform.any_op) -> !transform.op<"linalg.pack">
    transform.foreach %packs : !transform.op<"linalg.pack"> {
    ^bb0(%p: !transform.op<"linalg.pack">):
      %a, %b, %c = transform.structured.lower_pack %p : (!transform.op<"linalg.pack">) -> (!transform.op<"tensor.pad">, !transform.op<"tensor.expand_shape">, !transform.op<"linalg.transpose">)
    }
    %unpacks = transform.structured.match ops{["linalg.unpack"]} in %root : (!transform.any_op) -> !transform.op<"linalg.unpack">
    transform.foreach %unpacks : !transform.op<"linalg.unpack"> {
    ^bb0(%u: !transform.op<"linalg.unpack">):
      %a, %b, %c, %d = transform.structured.lower_unpack %u : (!transform.op<"linalg.unpack">) -> (!transform.op<"tensor.empty">, !transform.op<"linalg.transpose">, !transform.op<"tensor.collapse_shape">, !transform.op<"tensor.extract_slice">)
    }
    transform.yield
  }
}
"""  # noqa: E501 - transform IR, one op per line


def _func_body_ops(root) -> list:
    """The ops of every function body in order, descending into control flow (scf.for/if/while) but not into the
    payload regions of linalg ops."""
    found = []

    def visit(block) -> None:
        for op in block.operations:
            found.append(op)
            if op.operation.name.startswith("scf."):
                for region in op.regions:
                    for inner in region.blocks:
                        visit(inner)

    for op in root.regions[0].blocks[0].operations:
        if op.operation.name == "func.func":
            for block in op.regions[0].blocks:
                visit(block)
    return found


def _kind_allowed(kind: str, kinds: frozenset[str] | None) -> bool:
    return kinds is None or kind in kinds


def _schedule_round(module, reports: list, first_index: int, kinds: frozenset[str] | None = None):
    """Plan and apply a schedule for every untagged top-level linalg.generic; returns (module, next index).

    A failed script may leave the payload half transformed, so the module is restored from its text; the
    returned module replaces the caller's (which must keep a reference to it: the Module owns the IR)."""
    from mlir import ir

    from hcc.backends.cpu import pool_calls, schedule

    index = first_index
    plans = []
    for op in _linalg_generics(module.operation):
        if "hcc.id" in op.attributes or pool_calls.TAG in op.attributes:
            continue
        op.attributes["hcc.id"] = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), index)
        info = schedule.analyze(op, index)
        plan = schedule.plan(info)
        if not _kind_allowed(plan.kind, kinds):
            plan = schedule.Plan("loops", note=f"{plan.kind} schedule not used (kinds {sorted(kinds or [])})")
        if plan.kind in ("contraction", "conv"):
            # `acc + a * b` may become one FMA (as in onnxruntime's MLAS kernels); LLVM fuses the vector
            # mulf/addf pair that vectorization leaves when both carry the `contract` flag.
            contract = ir.Attribute.parse("#arith.fastmath<contract>")
            for body_op in op.regions[0].blocks[0].operations:
                if body_op.operation.name in ("arith.mulf", "arith.addf"):
                    body_op.attributes["fastmath"] = contract
        work = 1
        for size in info.ranges:
            work *= max(size, 1)
        plans.append((OpReport(index, plan.kind, True, plan.note, node_name(op), work * max(len(info.body), 1), plan.threads), plan))
        index += 1
    if _can_fork():
        _apply_tried_in_child(module, plans, reports)
        return module, index
    for report, plan in plans:  # no fork: each script applied on a backup of the module
        if not plan.script:
            reports.append(report)
            continue
        backup = module.operation.get_asm(large_elements_limit=None, print_generic_op_form=True)
        try:
            _apply_script(module.operation, plan.script)
            module.operation.verify()
            reports.append(report)
        except Exception as exc:  # a schedule that does not apply: restore the module and leave the op to loops
            report.ok, report.note = False, _error_text(exc)
            reports.append(report)
            module = ir.Module.parse(backup)
    return module, index


def _can_fork() -> bool:
    """Forking is safe in a single-threaded context only (the forked lowering child's): no thread pool to fork."""
    from mlir import ir

    return hasattr(os, "fork") and ir.Context.current.get_num_threads() == 1


def _apply_tried_in_child(module, plans: list, reports: list) -> None:
    """Apply every plan's script that applies, each op left to loops whose script fails or kills the process (an
    assertion of the bindings' assertions build). The scripts are first tried in order in a forked child, on a
    copy-on-write copy of the module, up to the first that fails; this process then applies the ones before it (the
    same scripts on the same IR: they apply here too), skips that one, and tries the rest in a new child. Before,
    every script was applied on a backup of the module printed first: quadratic in the size of the function (a
    17,000-op unrolled recurrence spent minutes printing backups and timed out)."""
    scripted = [(report, plan) for report, plan in plans if plan.script]
    failures: dict[int, str] = {}
    start = 0
    while start < len(scripted):
        failed, why = _first_failure(module, [plan.script for _, plan in scripted[start:]])
        end = len(scripted) if failed is None else start + failed
        for _, plan in scripted[start:end]:
            _apply_script(module.operation, plan.script)
        if failed is None:
            break
        failures[end] = why
        start = end + 1
    notes = {id(report): failures[k] for k, (report, _) in enumerate(scripted) if k in failures}
    for report, _ in plans:
        if id(report) in notes:  # this op goes to loops, the others keep their schedules
            report.ok, report.note = False, notes[id(report)]
        reports.append(report)


def _die_with_parent() -> None:
    """Linux: this process is killed when its parent dies (the lowering child killed at its deadline while a script
    it is trying here hangs); elsewhere it dies at its next write to the closed pipe."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _first_failure(module, scripts: list[str]) -> tuple[int | None, str]:
    """(index, why) of the first of `scripts` that fails or crashes when they are applied in order in a forked child
    (each followed by verification); (None, "") when all apply."""
    import struct

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 2
        try:
            os.close(read_end)
            _die_with_parent()
            for k, script in enumerate(scripts):
                os.write(write_end, struct.pack("<i", k))  # about to try script k
                try:
                    _apply_script(module.operation, script)
                    module.operation.verify()
                except Exception as exc:
                    os.write(write_end, struct.pack("<i", -1) + _error_text(exc).encode()[:8192])
                    code = 1
                    break
            else:
                code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    data = b"".join(chunks)
    records = [struct.unpack_from("<i", data, at)[0] for at in range(0, len(data) - len(data) % 4, 4)]
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None, ""
    if -1 in records:  # an ordinary failure: the script before the marker, the message after it
        marker = records.index(-1)
        return records[marker - 1], data[4 * marker + 4:].decode(errors="replace")
    started = records[-1] if records else 0
    how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"exit status {os.WEXITSTATUS(status)}"
    return started, f"schedule crashed the compiler ({how}); left to loops"


def _drop_tensor_copies(root) -> int:
    """linalg.copy on tensors is an identity in value semantics: its users read the source instead."""
    dropped = 0
    for op in _func_body_ops(root):
        if op.operation.name == "linalg.copy" and op.operands[0].type == op.results[0].type:
            op.results[0].replace_all_uses_with(op.operands[0])
            op.operation.erase()
            dropped += 1
    return dropped


@dataclass(frozen=True)
class Codegen:
    """What one attempt at vector code may use: `kinds` the schedule kinds (None: all), `cpu` the CPU options whose
    precision_of says which GEMMs and convolutions call the kernels' bf16, bf16x3 or int8 entries (None: all fp32)."""

    kinds: frozenset[str] | None = None
    cpu: CpuOptions | None = None
    constant_args: frozenset[int] = frozenset()  # the function's arguments that are bundle weights


def _micro_kernel_calls(module, how: Codegen) -> list[OpReport]:
    """Tag the contractions the GEMM kernel takes, then turn every tagged op into a kernel call (ukernels.py),
    with its init and a following activation / residual add fused; one report per call."""
    from hcc.backends.cpu import schedule, ukernels

    for op in _linalg_generics(module.operation):
        info = schedule.analyze(op, -1)
        roles = ukernels.gemm_roles(info)
        if roles is not None:
            work = 2
            for size in info.ranges:
                work *= max(size, 1)
            ukernels.tag_gemm(op, roles, work)
    reports = []
    cpu = how.cpu
    precision_of = (lambda op: cpu.precision_of(node_name(op))) if cpu is not None else None
    for call in ukernels.emit_calls(module, precision_of, how.constant_args, lambda op: cpu.int8_step(node_name(op))):
        kind = "ukernel-gemm" if call.symbol in ukernels.GEMM_SYMBOLS else "ukernel-conv"
        fused = f" ({', '.join(call.fused)} fused)" if call.fused else ""
        packed = "; constant weights packed at the first call" if call.packed_weights else ""
        hoisted = "; every time step's input product, hoisted out of the loop" if call.hoisted else ""
        if call.merged:
            hoisted += f"; {call.merged} products of one input by adjacent slices of one weight, as one"
        blocked = [what for bit, what in ((ukernels.X_BLOCKED, "input"), (ukernels.Y_BLOCKED, "output")) if call.layouts & bit]
        blocked_note = f"; {' and '.join(blocked)} in 16-channel blocks" if blocked else ""
        if call.kept_fp32:
            blocked_note += " (fp32, not bf16: the bf16 kernels take NCHW only)"
        if call.int8_not_constant:
            blocked_note += " (fp32, not int8: int8 needs B to be a bundle weight)"
        reports.append(OpReport(-2, kind, True, f"{call.symbol} micro-kernel call{fused}{packed}{hoisted}{blocked_note}", node_name(call),
                                call.work))
    return reports


def _pool_calls(module) -> list[OpReport]:
    """Strided pooling windows that no vector schedule takes, tagged to become pool.c kernel calls after
    bufferization (pool_calls.py)."""
    from hcc.backends.cpu import pool_calls

    names = {pool_calls.FOLD_GT: "max (maxps NaN rule)", pool_calls.FOLD_LT: "max (std::max NaN rule)", pool_calls.FOLD_ADD: "sum"}
    reports = []
    for call in pool_calls.tag(module):
        (h, w) = call.pool.windows
        note = f"{pool_calls.POOL} micro-kernel call: {names[call.pool.fold]} over a {h.taps}x{w.taps} window, strides {h.stride}x{w.stride}"
        reports.append(OpReport(-2, "ukernel-pool", True, note, node_name(call), call.work))
    return reports


def _softmax_calls(module) -> list[OpReport]:
    """Softmax chains (max, exp, sum, division along the last dim) as softmax.c kernel calls (softmax_calls.py);
    on tensors, before math.exp is expanded."""
    from hcc.backends.cpu import softmax_calls

    reports = []
    for call in softmax_calls.emit_calls(module):
        elements = 1
        for size in call.shape:
            elements *= size
        note = f"{softmax_calls.SOFTMAX} micro-kernel call: max, exp, sum and scale a row at a time, rows of {call.shape[-1]}"
        if elements >= SOFTMAX_PARALLEL_ELEMENTS:
            note += "; rows split across threads"
        reports.append(OpReport(-2, "ukernel-softmax", True, note, node_name(call), 5 * elements))
    return reports


def schedule_module(module, how: Codegen = Codegen()):
    """Tensor-level part: fuse, generalize, fold copies, then tile+vectorize each op that has a schedule.

    Returns (module, reports): the interpreter edits the module in place, but a failed schedule swaps in a copy."""
    from hcc.backends.cpu import math_approx, ukernels

    reports: list[OpReport] = []
    if _kind_allowed("ukernel", how.kinds):
        reports += _softmax_calls(module)
    math_approx.expand_math(module.operation)  # exp/erf/tanh as arithmetic that vectorizes (math_approx.py)
    # x ** n with a constant integer n (torch-mlir's lowering of Pow(x, 2), as in an STFT's power spectrum or a
    # decomposed LayerNorm) as multiplications: vectorized, math.fpowi became an llvm.intr.powi with a vector
    # exponent, which LLVM rejects, and the whole function fell back to scalar loops (Silero VAD's STFT and encoder
    # convolutions). Same arithmetic as the scalar powi (repeated squaring; 1/x^n for n < 0).
    _run_pipeline(module.operation, "func.func(math-expand-ops{ops=fpowi})", "cpu-expand-powi")
    # Loop-invariant code out of time loops first (an LSTM's weight transposes and slices are per-step otherwise).
    _run_pipeline(module.operation, "linalg-fuse-elementwise-ops,loop-invariant-code-motion,canonicalize,cse", "cpu-fuse-licm")
    _drop_tensor_copies(module.operation)  # the fusion barriers (passes/fusion_barriers.py) have done their job
    kinds = how.kinds
    if _kind_allowed("ukernel", kinds):  # named convolutions go to the conv micro-kernels (kept named: no generalization)
        ukernels.tag_convolutions(module.operation)
    # After the fusion pass: it would fuse the im2col gather back into its GEMM.
    module, _ = _strided_convs_to_img2col(module)
    root = module.operation
    _generalize(root, keep_fill=True)
    hoist_loop_projections(root)  # a recurrence's input products: one GEMM before its time loop
    if fold_copies_into_consumers(root, how.constant_args):
        _run_pipeline(root, "canonicalize,cse", "cpu-canonicalize")
    if merge_shared_operand_products(root):  # a recurrence's gate products: one per step, one before the loop
        _run_pipeline(root, "canonicalize,cse", "cpu-canonicalize")
    if _kind_allowed("ukernel", kinds):
        reports += _micro_kernel_calls(module, how)
        reports += _pool_calls(module)
    module, next_index = _schedule_round(module, reports, 0, kinds)
    root = module.operation
    # Packs that the contraction schedules left (the packed accumulator, the unpack of the result) are lowered to
    # pad/expand/transpose/collapse; a second round vectorizes what that produced and the remaining fills.
    _run_pipeline(root, "canonicalize,cse", "cpu-canonicalize")
    _apply_script(root, _LOWER_PACKS)
    # tensor.pad (conv padding, packing tails) -> fill + insert_slice, so the fill is vectorized below.
    _apply_script(root, _DECOMPOSE_PADS)
    _generalize(root, keep_fill=False)
    _run_pipeline(root, "canonicalize,cse", "cpu-canonicalize")
    module, _ = _schedule_round(module, reports, next_index, kinds)
    return module, reports


PROFILE_MARK = "hcc_prof_mark"  # runtime/profile.c
_UNTIMED = ("arith.constant", "tensor.empty", "tensor.expand_shape", "tensor.collapse_shape", "func.return", "func.call")


def insert_profile_marks(module) -> list[str]:
    """Put `hcc_prof_mark(i)` in front of the code of each ONNX node of every function (node i of the returned
    list) and `hcc_prof_mark(-1)` before each return: the runtime's profiler charges the time between two marks to
    the node of the first (runtime/profile.c). Views and constants do not start a new interval."""
    from mlir import ir
    from mlir.dialects import arith, func

    nodes: list[str] = []
    index_of: dict[str, int] = {}
    marked = False  # a return's mark is inserted even where no node is timed (a piece of views only)
    i64 = ir.IntegerType.get_signless(64)
    for op in module.body.operations:
        if op.operation.name != "func.func" or not op.regions[0].blocks:
            continue
        current = None
        for inner in list(op.regions[0].blocks[0].operations):
            if inner.operation.name == "func.return":
                with ir.InsertionPoint(inner), inner.location:
                    func.call([], ir.FlatSymbolRefAttr.get(PROFILE_MARK), [arith.constant(i64, -1)])
                marked = True
                continue
            name = node_name(inner)
            if inner.operation.name in _UNTIMED or not name or name == current:
                continue
            current = name
            if name not in index_of:
                index_of[name] = len(nodes)
                nodes.append(name)
            with ir.InsertionPoint(inner), inner.location:
                func.call([], ir.FlatSymbolRefAttr.get(PROFILE_MARK), [arith.constant(i64, index_of[name])])
    if nodes or marked:  # declared wherever called: undeclared, the whole function fell back to plain loops
        with ir.InsertionPoint.at_block_begin(module.body), ir.Location.unknown():
            decl = func.FuncOp(PROFILE_MARK, ir.FunctionType.get([i64], []))
            decl.attributes["sym_visibility"] = ir.StringAttr.get("private")
    return nodes


def _mark_fma_candidates(root) -> None:
    """Vectorization rebuilds the reduction `addf` without the `contract` flag its `mulf` operand kept; put it
    back so LLVM emits one FMA per multiply-accumulate of a scheduled contraction."""
    from mlir import ir

    contract = ir.Attribute.parse("#arith.fastmath<contract>")
    see_through = ("vector.shape_cast", "vector.broadcast", "vector.extract", "vector.transpose")

    def contracting_mul(value) -> bool:
        for _ in range(4):
            owner = value.owner
            if isinstance(owner, ir.Block):
                return False
            if owner.name == "arith.mulf":
                return "fastmath" in owner.attributes and "contract" in str(owner.attributes["fastmath"])
            if owner.name not in see_through:
                return False
            value = owner.operands[0]
        return False

    def visit(op):
        if op.name == "arith.addf" and any(contracting_mul(v) for v in op.operands):
            op.attributes["fastmath"] = contract
        return ir.WalkResult.ADVANCE

    root.walk(visit)


def _write_results_in_place(root) -> int:
    """After bufferization a result is computed in a fresh buffer and copied into its out-parameter at the end
    (`memref.copy %alloc, %out`). When nothing else touches %out, compute into %out directly: one pass over
    the output less, and one buffer less. Returns how many copies went away."""
    from mlir import ir

    removed = 0
    for func_op in root.regions[0].blocks[0].operations:
        if func_op.operation.name != "func.func" or not func_op.regions[0].blocks:
            continue
        block = func_op.regions[0].blocks[0]
        ops = list(block.operations)
        for copy in ops:
            if copy.operation.name != "memref.copy":
                continue
            src, dst = copy.operands[0], copy.operands[1]
            if not isinstance(dst.owner, ir.Block) or dst.owner != block or src.type != dst.type:
                continue
            alloc = src.owner
            if isinstance(alloc, ir.Block) or alloc.name != "memref.alloc" or alloc.parent != func_op.operation:
                continue
            if len(list(dst.uses)) != 1:
                continue
            deallocs, ok = [], True
            for use in src.uses:
                owner = use.owner
                if owner.name == "memref.dealloc":
                    deallocs.append(owner)
                    continue
                top = owner
                while top.parent is not None and top.parent != func_op.operation:
                    top = top.parent
                if top != copy.operation and not top.is_before_in_block(copy.operation):
                    ok = False
                    break
            if not ok:
                continue
            for dealloc in deallocs:
                dealloc.erase()
            copy.operation.erase()
            src.replace_all_uses_with(dst)
            alloc.erase()
            removed += 1
    return removed


def _lower_vectorized(text: str, log: list, how: Codegen = Codegen(), profile_nodes: list | None = None) -> str:
    from hcc.passes.pass_runner import recoverable

    with recoverable():  # a failing pipeline sends the function to simpler code (lower_to_llvm_ir), with a warning
        return _lower_vectorized_steps(text, log, how, profile_nodes)


def _lower_vectorized_steps(text: str, log: list, how: Codegen, profile_nodes: list | None) -> str:
    from mlir import ir
    from mlir.dialects import llvm

    from hcc.backends.cpu import pool_calls

    module = ir.Module.parse(text)
    module, reports = schedule_module(module, how)
    log.extend(reports)
    if profile_nodes is not None:
        profile_nodes.extend(insert_profile_marks(module))
    root = module.operation
    _mark_fma_candidates(root)
    _run_pipeline(root, "canonicalize,cse", "cpu-canonicalize")
    _split_shared_empties(root)
    _distinct_results(root)
    _read_only_arguments(root)
    _apply_script(root, DECOMPOSE_CONCATS)
    _run_pipeline(root, "eliminate-empty-tensors," + BUFFERIZE_IN_PLACE, "cpu-bufferize", "CPU backend: bufferization")
    _apply_script(root, HOIST_VECTOR_TRANSFERS)
    _run_pipeline(root, HOIST_BUFFERS, "cpu-hoist-buffers", "CPU backend: buffer hoisting and deallocation")
    _write_results_in_place(root)
    pool_calls.emit_calls(module)
    _apply_script(root, VECTOR_LOWERING)
    _run_pipeline(root, "canonicalize,cse", "cpu-canonicalize")
    module = _loops_then_llvm(module, TO_LLVM)
    return llvm.translate_module_to_llvmir(module.operation)


def _split_shared_empties(root) -> None:
    """Give every user of a `tensor.empty` its own (CSE merges equal ones). One-shot bufferization writes each user's
    result into the empty's buffer in place, and it does not see the reads that a kernel call makes through
    `bufferization.to_buffer`: two ops sharing one empty then shared one buffer, and an elementwise op overwrote a
    value a later GEMM call still read (a wrong result, found in an unrolled LinearAttention scan)."""
    from mlir import ir

    def visit(op):
        for region in op.regions:
            for block in region.blocks:
                for inner in list(block.operations):
                    visit(inner.operation)
        if op.name != "tensor.empty" or op.operands:
            return
        for use in list(op.results[0].uses)[1:]:
            with ir.InsertionPoint(use.owner), op.location:
                clone = op.clone()
            use.owner.operands[use.operand_number] = clone.results[0]

    visit(root)


def _distinct_results(root) -> None:
    """A function that returns one value twice (two model outputs computing the same thing, merged by CSE) returns a
    copy the second time: buffer-results-to-out-params crashed the compiler (signal 11) on `return %1, %1`."""
    from mlir import ir
    from mlir.dialects import linalg, tensor

    for op in root.regions[0].blocks[0].operations:
        if op.operation.name != "func.func" or not op.regions[0].blocks:
            continue
        for block in op.regions[0].blocks:
            ret = block.operations[len(block.operations) - 1]
            if ret.operation.name != "func.return":
                continue
            seen = []
            for i, value in enumerate(list(ret.operands)):
                if any(value == v for v in seen) and isinstance(value.type, ir.RankedTensorType):
                    t = ir.RankedTensorType(value.type)
                    with ir.InsertionPoint(ret), ret.location:
                        copy = linalg.copy(value, outs=[tensor.EmptyOp(t.shape, t.element_type).result])
                    ret.operation.operands[i] = copy
                seen.append(value)


def _read_only_arguments(root) -> None:
    """Tell bufferization that no argument may be written: inputs and weights are the caller's (the runtime passes
    its arrays without copies, and a weight buffer serves every call); only the out-parameters are written."""
    from mlir import ir

    for op in root.regions[0].blocks[0].operations:
        if op.operation.name != "func.func" or not op.regions[0].blocks:
            continue
        count = len(ir.FunctionType(ir.TypeAttr(op.attributes["function_type"]).value).inputs)
        existing = list(ir.ArrayAttr(op.attributes["arg_attrs"])) if "arg_attrs" in op.attributes else []
        merged = []
        for i in range(count):
            entries = {a.name: a.attr for a in ir.DictAttr(existing[i])} if i < len(existing) else {}
            entries["bufferization.writable"] = ir.BoolAttr.get(False)
            merged.append(ir.DictAttr.get(entries))
        op.attributes["arg_attrs"] = ir.ArrayAttr.get(merged)


def _lower_loops(text: str) -> str:
    from mlir import ir
    from mlir.dialects import llvm

    from hcc.passes.diagnostics import describe_mlir_error

    module = ir.Module.parse(text)
    _distinct_results(module.operation)
    _read_only_arguments(module.operation)
    _run_pipeline(module.operation, BUFFERIZE, "cpu-bufferize", "CPU backend: bufferization")
    try:
        module = _loops_then_llvm(module, NAIVE_TO_LLVM, "cpu-naive-to-llvm")
    except ir.MLIRError as exc:  # re-parsing the widened i1 buffers (the pipelines raise HccError themselves)
        raise HccError(describe_mlir_error(exc, "CPU backend: lowering to LLVM")) from None
    return llvm.translate_module_to_llvmir(module.operation)


def _wait_child(pid: int, timeout: float):
    """waitpid with a deadline; a child still running then is killed (a rewrite that does not converge)."""
    import signal
    import time

    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _vectorized_in_child(linalg_text: str, how: Codegen, nodes: list, timeout_s: float) -> tuple[str | None, list[OpReport]]:
    """Run `_lower_vectorized` in a forked child: the xtc bindings are an assertions build, and a schedule that
    trips an assertion abort()s the process. A dead child costs speed (plain loops), not the compile."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="hcc-cpu-") as tmp:
        out_path, log_path, nodes_path = (os.path.join(tmp, name) for name in ("out.ll", "log.json", "nodes.json"))
        pid = os.fork()
        if pid == 0:  # child: never returns
            code = 1
            try:
                from mlir import ir

                log: list[OpReport] = []
                marked: list[str] = []
                try:
                    with ir.Context() as ctx:
                        ctx.enable_multithreading(False)  # no thread pool in a forked child
                        text = _lower_vectorized(linalg_text, log, how, marked)
                    with open(out_path, "w") as f:
                        f.write(text)
                    with open(nodes_path, "w") as f:
                        json.dump(marked, f)
                    code = 0
                except Exception as exc:
                    log.append(OpReport(-1, "module", False, _error_text(exc)))
                with open(log_path, "w") as f:
                    json.dump([r.__dict__ for r in log], f)
            finally:
                os._exit(code)
        status = _wait_child(pid, timeout_s)
        log = []
        if os.path.exists(log_path):
            with open(log_path) as f:
                log = [OpReport(**r) for r in json.load(f)]
        if status is None:
            log.append(OpReport(-1, "module", False, "vector code generation timed out"))
            return None, log
        if os.WIFSIGNALED(status):
            log.append(OpReport(-1, "module", False, f"vector code generation crashed (signal {os.WTERMSIG(status)})"))
        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and os.path.exists(out_path):
            with open(nodes_path) as f:
                nodes.extend(json.load(f))
            with open(out_path) as f:
                return f.read(), log
        return None, log


# What a function whose vector code generation failed is retried with: the micro-kernels alone (no transform
# scripts, the usual source of failures), so that one bad schedule does not send the GEMMs to plain loops.
MICRO_KERNELS_ONLY = frozenset({"ukernel"})


def _attempt(linalg_text: str, how: Codegen, nodes: list, env: HccEnv) -> tuple[str | None, list[OpReport]]:
    from mlir import ir

    if hasattr(os, "fork") and env.cpu_fork:
        return _vectorized_in_child(linalg_text, how, nodes, env.cpu_schedule_timeout_s)
    reports: list[OpReport] = []
    try:
        with ir.Context():
            return _lower_vectorized(linalg_text, reports, how, nodes), reports
    except Exception as exc:
        reports.append(OpReport(-1, "module", False, _error_text(exc)))
        return None, reports


def lower_to_llvm_ir(linalg_text: str, log: list | None = None, profile_nodes: list | None = None, env: HccEnv | None = None,
                     cpu: CpuOptions | None = None, constant_args: frozenset[int] = frozenset()) -> str:
    """linalg-on-tensors text -> LLVM IR text (for opt/llc). `log` (a list) receives one OpReport per linalg op;
    an entry with index -1 says that a whole attempt failed, why, and what the function was retried with
    (the micro-kernels alone, then plain loops, which compute in fp32). `profile_nodes` receives the node names the
    code's profile marks index (none for plain loops). `env`: the compile's knobs (default: read now). `cpu`: the
    CPU options (CpuOptions.precision_of: the GEMMs and convolutions whose kernels take bf16, bf16x3 or int8 operands;
    None: all fp32).
    `constant_args`: the function's arguments that are bundle weights (convolutions over them keep packed filters)."""
    from mlir import ir

    log = log if log is not None else []
    env = env if env is not None else read_env()
    if env.cpu_schedule != "loops":
        # debugging aid: only these schedule kinds
        tiers = [frozenset(env.cpu_kinds) if env.cpu_kinds is not None else None]
        if "ukernel" in (tiers[0] if tiers[0] is not None else {"ukernel"}) and tiers[0] != MICRO_KERNELS_ONLY:
            tiers.append(MICRO_KERNELS_ONLY)
        for number, kinds in enumerate(tiers):
            nodes: list[str] = []
            text, reports = _attempt(linalg_text, Codegen(kinds, cpu, constant_args), nodes, env)
            if text is not None:
                log.extend(reports)
                if profile_nodes is not None:
                    profile_nodes.extend(nodes)
                return parallel_copies(text)
            failure = next((r for r in reports if r.index == -1), OpReport(-1, "module", False, "vector code generation failed"))
            retry = "the micro-kernels alone" if number + 1 < len(tiers) else "plain loops"
            log.append(OpReport(-1, "module", False, f"{failure.note}; retried with {retry}"))
    with ir.Context():
        return parallel_copies(_lower_loops(linalg_text))


_MEMCPY_CALL = re.compile(r"call void @llvm\.memcpy\.p0\.p0\.i64\((ptr [^,]+), (ptr [^,]+), (i64 [^,]+), i1 false\)")


def parallel_copies(llvm_ir: str) -> str:
    """Every llvm.memcpy that MLIR's memref.copy lowering emitted (a contiguous Concat or insert_slice, a result copied
    out) as a call of runtime/memref_copy.c's hcc_memcpy, which splits copies of 256 KiB or more across the pool's
    threads (memrefCopy does the same for strided copies). Runs before opt, so copies LLVM forms later stay memcpy."""
    replaced, count = _MEMCPY_CALL.subn(r"call void @hcc_copy(\1, \2, \3)", llvm_ir)
    return replaced + _COPY_DISPATCH if count else llvm_ir


# Inlined where each copy was: a copy below toolchain.PARALLEL_COPY_BYTES stays llvm.memcpy, so LLVM still turns one
# of a known small size into a few moves (a call for every copy cost ViT-Tiny 1.5% at 1 thread).
_COPY_DISPATCH = f"""
declare void @hcc_memcpy(ptr, ptr, i64)
define internal void @hcc_copy(ptr %dst, ptr %src, i64 %bytes) alwaysinline {{
  %large = icmp sge i64 %bytes, {PARALLEL_COPY_BYTES}
  br i1 %large, label %parallel, label %plain
parallel:
  call void @hcc_memcpy(ptr %dst, ptr %src, i64 %bytes)
  ret void
plain:
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %src, i64 %bytes, i1 false)
  ret void
}}
"""
