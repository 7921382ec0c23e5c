"""The FPGA backend's loop IR, parsed from a subgraph's lowered linalg-on-tensors function.

Every linalg op becomes a `LoopOp`: a perfect loop nest over `dims` (parallel and reduction iterators, as in
linalg.generic) whose body is an expression tree (`Expr`) over its operands. Named linalg ops are generalized first
(`linalg-generalize-named-ops`), so convolutions, matmuls, pooling, transposes and elementwise chains all arrive in
the same form and are handled by the same code: the emitter prints each op as a loop nest of HLS C++, the reference
evaluator (fixed_point.evaluate) runs the same nest in numpy. tensor.pad and tensor.concat become copy ops;
expand/collapse_shape are views (every buffer is a flat row-major array, so a reshape moves no data).

Operands index their data through affine maps whose results are linear in the loop indices (`Lin`); constants
(weights, biases, folded BatchNorm parameters, anything computed from constants) are numpy arrays.
Locations carry the ONNX node names (the importer names each op after its node), so every op knows which ONNX
nodes it implements; errors name them.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from hcc.errors import HccError

_NAME_LOC = re.compile(r'loc\("((?:[^"\\]|\\.)*)"')

# arith.cmpf predicates (mlir/Dialect/Arith/IR/ArithBase.td)
CMPF = {1: "eq", 2: "gt", 3: "ge", 4: "lt", 5: "le", 6: "ne", 8: "eq", 9: "gt", 10: "ge", 11: "lt", 12: "le", 13: "ne"}


class Unsupported(Exception):
    """Raised while parsing; turned into an HccError naming the ONNX node."""


# ------------------------------------------------------------------------------------------------------ affine
@dataclass(frozen=True)
class Lin:
    """c0 + sum(coeff * d_k): one result of an operand's indexing map."""

    coeffs: tuple[tuple[int, int], ...]  # ((dim, coeff), ...) sorted by dim, no zero coefficients
    const: int = 0

    @staticmethod
    def dim(d: int) -> "Lin":
        return Lin(((d, 1),), 0)

    @staticmethod
    def constant(c: int) -> "Lin":
        return Lin((), c)

    def __add__(self, other: "Lin") -> "Lin":
        acc = dict(self.coeffs)
        for d, c in other.coeffs:
            acc[d] = acc.get(d, 0) + c
        return Lin(tuple(sorted((d, c) for d, c in acc.items() if c)), self.const + other.const)

    def scale(self, k: int) -> "Lin":
        return Lin(tuple((d, c * k) for d, c in self.coeffs if c * k), self.const * k)

    @property
    def dims(self) -> set[int]:
        return {d for d, _ in self.coeffs}

    def single_dim(self) -> int | None:
        """The dim when this is exactly `d_k`."""
        if self.const == 0 and len(self.coeffs) == 1 and self.coeffs[0][1] == 1:
            return self.coeffs[0][0]
        return None

    def substitute(self, mapping: dict[int, "Lin"]) -> "Lin":
        out = Lin.constant(self.const)
        for d, c in self.coeffs:
            out = out + mapping[d].scale(c)
        return out

    def c(self, names: list[str]) -> str:
        terms = []
        for d, c in self.coeffs:
            terms.append(names[d] if c == 1 else f"{c} * {names[d]}")
        if self.const or not terms:
            terms.append(str(self.const))
        return " + ".join(terms).replace("+ -", "- ")


def _lin_of(expr) -> Lin:
    from mlir import ir

    if isinstance(expr, ir.AffineDimExpr):
        return Lin.dim(expr.position)
    if isinstance(expr, ir.AffineConstantExpr):
        return Lin.constant(expr.value)
    if isinstance(expr, ir.AffineAddExpr):
        return _lin_of(expr.lhs) + _lin_of(expr.rhs)
    if isinstance(expr, ir.AffineMulExpr):
        lhs, rhs = _lin_of(expr.lhs), _lin_of(expr.rhs)
        if not lhs.coeffs:
            return rhs.scale(lhs.const)
        if not rhs.coeffs:
            return lhs.scale(rhs.const)
    raise Unsupported(f"indexing map expression {expr} is not linear")


def strides_of(shape) -> list[int]:
    out, acc = [], 1
    for s in reversed(list(shape)):
        out.append(acc)
        acc *= s
    return list(reversed(out))


def flat_lin(shape, maps: list[Lin]) -> Lin:
    """Flat row-major element index of an access `maps` into an array of `shape`."""
    out = Lin.constant(0)
    for stride, m in zip(strides_of(shape), maps):
        out = out + m.scale(stride)
    return out


# ------------------------------------------------------------------------------------------------------ values
@dataclass(eq=False)
class Buffer:
    """A flat on-chip array: a subgraph input, output, or an intermediate."""

    id: str
    shape: tuple[int, ...]
    kind: str  # "input" | "output" | "temp"
    tensor: str = ""  # ONNX tensor name (inputs/outputs)
    nodes: list[str] = field(default_factory=list)  # ONNX nodes of the producing op
    type: object = None  # FixedType, set by precision.resolve
    bound: tuple[float, float] | None = None  # value range used by precision `auto`

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))


@dataclass(eq=False)
class Operand:
    """What an op reads: a buffer seen through `shape` (a view) or a constant array, indexed by `map`."""

    kind: str  # "act" | "const"
    shape: tuple[int, ...]
    map: list[Lin]
    buf: Buffer | None = None
    array: np.ndarray | None = None  # float64, for constants
    role: str = ""  # constants: "weight" | "bias" | "recip" | "table"
    name: str = ""  # constants: C identifier
    type: object = None  # constants: FixedType

    def flat(self) -> Lin:
        return flat_lin(self.shape, self.map)

    def copy(self, **kw) -> "Operand":
        o = Operand(self.kind, self.shape, list(self.map), self.buf, self.array, self.role, self.name, self.type)
        for k, v in kw.items():
            setattr(o, k, v)
        return o


@dataclass(eq=False)
class Expr:
    """Body expression. op: in (operand index in `value`), acc (the accumulator), const (float), dim (loop index),
    add sub mul div neg max min exp tanh sigmoid rsqrt sqrt; transient while parsing: cmp (value = predicate), select,
    and integer index arithmetic (iadd isub imul imin imax itof) that is folded into constants."""

    op: str
    args: tuple["Expr", ...] = ()
    value: object = None

    def walk(self):
        yield self
        for a in self.args:
            yield from a.walk()

    def uses(self, op: str) -> bool:
        return any(e.op == op for e in self.walk())

    def operands(self) -> set[int]:
        return {e.value for e in self.walk() if e.op == "in"}

    def __repr__(self) -> str:
        if self.op == "in":
            return f"in{self.value}"
        if self.op == "const":
            return repr(self.value)
        if self.op in ("acc",):
            return "acc"
        if self.op == "dim":
            return f"d{self.value}"
        return f"{self.op}({', '.join(map(repr, self.args))})"


def E(op: str, *args: Expr, value=None) -> Expr:
    return Expr(op, tuple(args), value)


@dataclass(eq=False)
class LoopOp:
    """One loop nest. kind: generic (before classification), mac, reduce, eltwise, softmax, pad, concat."""

    id: str
    nodes: list[str]
    dims: list[int]
    iters: list[str]  # "parallel" | "reduction" per dim
    ins: list[Operand]
    out: Operand  # kind "act": the result buffer and its map over the parallel dims
    body: Expr  # the yielded value (uses `acc` for reductions)
    init: Operand | None = None  # initial accumulator (when the body reads acc); None for a max with -inf start
    kind: str = "generic"
    attrs: dict = field(default_factory=dict)
    epilogue: Expr | None = None  # reductions: applied to the final accumulator (`acc`) before the store
    types: dict = field(default_factory=dict)  # role -> FixedType (precision.resolve)
    reuse_factor: int = 1
    strategy: str = "latency"
    notes: list[str] = field(default_factory=list)

    @property
    def parallel(self) -> list[int]:
        return [d for d, it in enumerate(self.iters) if it == "parallel"]

    @property
    def reduction(self) -> list[int]:
        return [d for d, it in enumerate(self.iters) if it == "reduction"]

    @property
    def label(self) -> str:
        return ", ".join(self.nodes) if self.nodes else self.id


@dataclass
class Program:
    name: str
    args: list[tuple[str, Buffer | None]]  # every function argument: (tensor name, input buffer or None = baked weight)
    outputs: list[Buffer]
    ops: list[LoopOp]
    buffers: list[Buffer] = field(default_factory=list)

    @property
    def inputs(self) -> list[Buffer]:
        return [b for _, b in self.args if b is not None]

    def consumers(self, buf: Buffer) -> list[LoopOp]:
        return [op for op in self.ops
                if any(o.kind == "act" and o.buf is buf for o in op.ins) or (op.init is not None and op.init.kind == "act" and op.init.buf is buf)]

    def producer(self, buf: Buffer) -> LoopOp | None:
        return next((op for op in self.ops if op.out.buf is buf), None)


# ------------------------------------------------------------------------------------------------------ parsing
@dataclass
class _Const:
    array: np.ndarray


@dataclass
class _Act:
    buf: Buffer
    shape: tuple[int, ...]


@dataclass
class _Empty:
    shape: tuple[int, ...]


def _loc_names(op) -> list[str]:
    return [m.encode().decode("unicode_escape") for m in _NAME_LOC.findall(str(op.location))]


def _shape(t) -> tuple[int, ...]:
    from mlir import ir

    if not isinstance(t, ir.RankedTensorType):
        return ()  # a scalar operand (e.g. the value of a generalized linalg.fill)
    ranked = ir.RankedTensorType(t)
    if not ranked.has_static_shape:
        raise Unsupported(f"dynamic shape {t}")
    return tuple(int(s) for s in ranked.shape)


def _const_array(attr, result_type) -> np.ndarray:
    from mlir import ir

    shape = _shape(result_type) if isinstance(result_type, ir.RankedTensorType) else ()
    if isinstance(attr, (ir.FloatAttr,)):
        return np.array(attr.value, dtype=np.float64)
    if isinstance(attr, ir.IntegerAttr):
        return np.array(attr.value, dtype=np.int64)
    if isinstance(attr, ir.BoolAttr):
        return np.array(attr.value)
    if isinstance(attr, (ir.DenseFPElementsAttr, ir.DenseIntElementsAttr, ir.DenseElementsAttr)):
        if attr.is_splat:
            v = attr.get_splat_value()
            v = v.value if hasattr(v, "value") else v
            return np.full(shape, v, dtype=np.float64 if isinstance(attr, ir.DenseFPElementsAttr) else np.int64)
        arr = np.array(attr)
        return arr.astype(np.float64) if arr.dtype.kind == "f" else arr.astype(np.int64)
    raise Unsupported(f"constant attribute {str(attr)[:60]}")


def parse(linalg_text: str, entry: str, arg_names: list[str], weights: dict[str, np.ndarray]) -> Program:
    """linalg-on-tensors text -> Program (weights named in `weights` become constants)."""
    from mlir import ir

    from hcc.passes.pass_runner import run_pipeline

    with ir.Context():
        module = ir.Module.parse(linalg_text)
        run_pipeline(module, "builtin.module(func.func(linalg-generalize-named-ops),canonicalize,cse)", stage="fpga-generalize",
                     what="FPGA backend: generalizing linalg ops")
        func = next(
            (op for op in module.body.operations if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == entry),
            None,
        )
        if func is None:
            raise HccError(f"internal: function @{entry} not found in the lowered subgraph")
        return _Parser(entry, arg_names, weights).run(func)


class _Parser:
    def __init__(self, entry: str, arg_names: list[str], weights: dict[str, np.ndarray]):
        self.entry = entry
        self.arg_names = arg_names
        self.weights = weights
        self.values: dict = {}
        self.ops: list[LoopOp] = []
        self.buffers: list[Buffer] = []
        self.counter = 0

    def new_buffer(self, shape, nodes) -> Buffer:
        self.counter += 1
        buf = Buffer(f"t{self.counter}", tuple(shape), "temp", nodes=list(nodes))
        self.buffers.append(buf)
        return buf

    def run(self, func) -> Program:
        from mlir import ir

        block = func.regions[0].blocks[0]
        args: list[tuple[str, Buffer | None]] = []
        for i, arg in enumerate(block.arguments):
            name = self.arg_names[i] if i < len(self.arg_names) else f"arg{i}"
            shape = _shape(arg.type)
            if name in self.weights:
                self.values[arg] = _Const(np.asarray(self.weights[name], dtype=np.float64).reshape(shape))
                args.append((name, None))
            else:
                if ir.RankedTensorType(arg.type).element_type != ir.F32Type.get():
                    raise HccError(f"FPGA backend: input '{name}' has element type {ir.RankedTensorType(arg.type).element_type}; "
                                   "only float32 activations are supported")
                buf = Buffer(f"in{len([a for a in args if a[1] is not None])}", shape, "input", tensor=name)
                self.buffers.append(buf)
                self.values[arg] = _Act(buf, shape)
                args.append((name, buf))
        outputs: list[Buffer] = []
        for op in block.operations:
            name = op.operation.name
            nodes = _loc_names(op)
            try:
                if name == "func.return":
                    outputs = self.returns(op, args)
                    continue
                self.visit(op)
            except Unsupported as exc:
                raise HccError(f"FPGA backend: {'ONNX node ' + repr(nodes[0]) if nodes else 'an op'} cannot be mapped to HLS C++ ({exc})",
                               hint="place this node on the CPU or GPU (partition groups), or file an issue with the model") from None
        return Program(self.entry, args, outputs, self.ops, self.buffers)

    # -- results -------------------------------------------------------------------------------------------------
    def returns(self, op, args) -> list[Buffer]:
        outs: list[Buffer] = []
        for i, v in enumerate(op.operation.operands):
            val = self.values[v]
            shape = _shape(v.type)
            if isinstance(val, _Act) and val.buf.kind == "temp" and val.buf not in outs:
                val.buf.kind = "output"
                val.buf.id = f"out{i}"
                outs.append(val.buf)
                continue
            # an input, a constant or an already-returned buffer: copy it into a fresh output buffer
            buf = self.new_buffer(shape, [])
            buf.kind = "output"
            buf.id = f"out{i}"
            n = len(shape)
            src = self.operand_of(val, shape)
            self.ops.append(LoopOp(f"op{len(self.ops) + 1}", [], list(shape), ["parallel"] * n, [src],
                                   Operand("act", shape, [Lin.dim(d) for d in range(n)], buf), E("in", value=0), kind="generic"))
            outs.append(buf)
        return outs

    def operand_of(self, val, shape) -> Operand:
        n = len(shape)
        ident = [Lin.dim(d) for d in range(n)]
        if isinstance(val, _Const):
            return Operand("const", tuple(shape), ident, array=np.asarray(val.array, np.float64).reshape(shape))
        return Operand("act", tuple(shape), ident, buf=val.buf)

    # -- ops -----------------------------------------------------------------------------------------------------
    def visit(self, op) -> None:
        from mlir import ir

        o = op.operation
        name = o.name
        if name == "arith.constant":
            self.values[o.results[0]] = _Const(_const_array(o.attributes["value"], o.results[0].type))
        elif name == "tensor.empty":
            self.values[o.results[0]] = _Empty(_shape(o.results[0].type))
        elif name in ("tensor.expand_shape", "tensor.collapse_shape", "tensor.reshape", "tensor.cast"):
            src = self.values[o.operands[0]]
            shape = _shape(o.results[0].type)
            if isinstance(src, _Const):
                self.values[o.results[0]] = _Const(src.array.reshape(shape))
            elif isinstance(src, _Empty):
                self.values[o.results[0]] = _Empty(shape)
            else:
                self.values[o.results[0]] = _Act(src.buf, shape)
        elif name == "tensor.pad":
            self.pad(o)
        elif name == "tensor.concat":
            self.concat(o)
        elif name == "tensor.extract_slice":
            self.extract_slice(o)
        elif name == "linalg.generic":
            self.generic(o)
        elif name in ("arith.index_cast", "arith.sitofp") and not isinstance(o.results[0].type, ir.RankedTensorType):
            raise Unsupported(f"scalar op {name} outside a linalg body")
        else:
            raise Unsupported(f"{name} is not supported by the FPGA backend")

    def pad(self, o) -> None:
        src = self.values[o.operands[0]]
        low = list(o.attributes["static_low"])
        high = list(o.attributes["static_high"])
        if any(x < 0 for x in low + high) or len(o.operands) > 1:
            raise Unsupported("tensor.pad with dynamic or negative padding")
        body_ops = list(o.regions[0].blocks[0].operations)
        pad_val = self.values.get(body_ops[-1].operation.operands[0])
        if not isinstance(pad_val, _Const) or pad_val.array.size != 1:
            raise Unsupported("tensor.pad with a non-constant pad value")
        value = float(pad_val.array.reshape(()))
        shape = _shape(o.results[0].type)
        if isinstance(src, _Const):
            self.values[o.results[0]] = _Const(np.pad(src.array, list(zip(low, high)), constant_values=value))
            return
        if isinstance(src, _Empty):
            raise Unsupported("padding an uninitialized tensor")
        nodes = _loc_names(o)
        buf = self.new_buffer(shape, nodes)
        n = len(shape)
        op = LoopOp(f"op{len(self.ops) + 1}", nodes, list(shape), ["parallel"] * n, [self.operand_of(src, src.shape)],
                    Operand("act", shape, [Lin.dim(d) for d in range(n)], buf), E("in", value=0), kind="pad",
                    attrs={"low": low, "high": high, "value": value})
        self.ops.append(op)
        self.values[o.results[0]] = _Act(buf, shape)

    def extract_slice(self, o) -> None:
        """A static slice (the bands of a max-pooling, passes/nan_semantics.py): a copy op, or a slice of a constant."""
        offsets, sizes, strides = (list(o.attributes[k]) for k in ("static_offsets", "static_sizes", "static_strides"))
        shape = _shape(o.results[0].type)
        if len(o.operands) > 1 or any(v < 0 for v in offsets + sizes + strides) or list(sizes) != list(shape):
            raise Unsupported("tensor.extract_slice with dynamic, negative or rank-reducing sizes")
        src = self.values[o.operands[0]]
        if isinstance(src, _Const):
            index = tuple(slice(off, off + (size - 1) * st + 1, st) for off, size, st in zip(offsets, sizes, strides))
            self.values[o.results[0]] = _Const(np.asarray(src.array)[index])
            return
        if isinstance(src, _Empty):
            self.values[o.results[0]] = _Empty(shape)
            return
        nodes = _loc_names(o)
        buf = self.new_buffer(shape, nodes)
        n = len(shape)
        read = Operand("act", tuple(_shape(o.operands[0].type)), [Lin(((d, st),), off) for d, (off, st) in enumerate(zip(offsets, strides))],
                       buf=src.buf)
        self.ops.append(LoopOp(f"op{len(self.ops) + 1}", nodes, list(shape), ["parallel"] * n, [read],
                               Operand("act", shape, [Lin.dim(d) for d in range(n)], buf), E("in", value=0)))
        self.values[o.results[0]] = _Act(buf, shape)

    def concat(self, o) -> None:
        from mlir import ir

        axis = int(ir.IntegerAttr(o.attributes["dim"]).value)
        shape = _shape(o.results[0].type)
        vals = [self.values[v] for v in o.operands]
        if all(isinstance(v, _Const) for v in vals):
            self.values[o.results[0]] = _Const(np.concatenate([v.array for v in vals], axis=axis))
            return
        nodes = _loc_names(o)
        buf = self.new_buffer(shape, nodes)
        ins, offsets, off = [], [], 0
        for v, operand in zip(vals, o.operands):
            s = _shape(operand.type)
            if isinstance(v, _Empty):
                raise Unsupported("concatenating an uninitialized tensor")
            ins.append(self.operand_of(v, s))
            offsets.append(off)
            off += s[axis]
        n = len(shape)
        self.ops.append(LoopOp(f"op{len(self.ops) + 1}", nodes, list(shape), ["parallel"] * n, ins,
                               Operand("act", shape, [Lin.dim(d) for d in range(n)], buf), E("in", value=0), kind="concat",
                               attrs={"axis": axis, "offsets": offsets}))
        self.values[o.results[0]] = _Act(buf, shape)

    def generic(self, o) -> None:
        from mlir import ir

        n_in, n_out = list(ir.DenseI32ArrayAttr(o.attributes["operandSegmentSizes"]))
        maps = [[_lin_of(r) for r in ir.AffineMapAttr(m).value.results] for m in o.attributes["indexing_maps"]]
        iters = ["reduction" if "reduction" in str(it) else "parallel" for it in o.attributes["iterator_types"]]
        operands = list(o.operands)
        ins_v, outs_v = operands[:n_in], operands[n_in:]
        block = o.regions[0].blocks[0]
        # loop bounds from the operand shapes
        n_dims = len(iters)
        dims: list[int | None] = [None] * n_dims
        for v, m in zip(operands, maps):
            for size, lin in zip(_shape(v.type), m):
                d = lin.single_dim()
                if d is not None:
                    dims[d] = size
        for v, m in zip(operands, maps):  # dims only seen inside sums (window taps): solve from the extent
            for size, lin in zip(_shape(v.type), m):
                unknown = [d for d, _ in lin.coeffs if dims[d] is None]
                if len(unknown) == 1:
                    d = unknown[0]
                    coeff = dict(lin.coeffs)[d]
                    rest = lin.const + sum(c * (dims[e] - 1) for e, c in lin.coeffs if e != d and c > 0)
                    dims[d] = (size - 1 - rest) // coeff + 1
        if any(d is None for d in dims):
            raise Unsupported("cannot infer the loop bounds of a linalg.generic")
        nodes = _loc_names(o)
        for inner in block.operations:
            for nm in _loc_names(inner):
                if nm not in nodes:
                    nodes.append(nm)
        yields = list(block.operations)[-1]
        all_const_ins = all(isinstance(self.values[v], (_Const, _Empty)) for v in ins_v)
        for j, result in enumerate(o.results):
            if not list(result.uses):
                continue
            expr = _BodyParser(self, block, n_in, j).expr(yields.operation.operands[j])
            reads_acc = expr.uses("acc")
            init_val = self.values[outs_v[j]]
            if reads_acc and isinstance(init_val, _Empty):
                raise Unsupported("a reduction reads an uninitialized output")
            ins = [self.operand_from(self.values[v], _shape(v.type), m) for v, m in zip(ins_v, maps[:n_in])]
            out_shape = _shape(outs_v[j].type)
            init = self.operand_from(init_val, out_shape, maps[n_in + j]) if reads_acc else None
            if all_const_ins and (init is None or init.kind == "const"):
                from hcc.backends.fpga.interp import run_float

                tmp = LoopOp("fold", nodes, [int(d) for d in dims], iters, ins, Operand("act", out_shape, maps[n_in + j]), expr, init)
                self.values[result] = _Const(run_float(tmp, [None] * len(ins)))
                continue
            buf = self.new_buffer(out_shape, nodes)
            op = LoopOp(f"op{len(self.ops) + 1}", list(nodes), [int(d) for d in dims], iters, ins,
                        Operand("act", out_shape, maps[n_in + j], buf), expr, init,
                        attrs={"primary": nodes[0]} if nodes else {})
            self.ops.append(op)
            self.values[result] = _Act(buf, out_shape)

    def operand_from(self, val, shape, m: list[Lin]) -> Operand:
        if isinstance(val, _Const):
            arr = np.asarray(val.array, dtype=np.float64)
            if arr.shape != tuple(shape):
                arr = np.broadcast_to(arr, shape).copy() if arr.size == 1 else arr.reshape(shape)
            return Operand("const", tuple(shape), list(m), array=arr)
        if isinstance(val, _Empty):
            return Operand("const", tuple(shape), list(m), array=np.zeros(shape))  # a window-shape operand: never read
        return Operand("act", tuple(shape), list(m), buf=val.buf)


class _BodyParser:
    """linalg.generic body -> Expr for the yielded value `j`."""

    UNARY = {"arith.negf": "neg", "math.exp": "exp", "math.tanh": "tanh", "math.rsqrt": "rsqrt", "math.sqrt": "sqrt",
             "math.absf": "abs", "arith.sitofp": "itof", "arith.uitofp": "itof", "arith.index_cast": "icast",
             "arith.extf": "id", "arith.truncf": "id"}
    BINARY = {"arith.addf": "add", "arith.subf": "sub", "arith.mulf": "mul", "arith.divf": "div", "arith.maximumf": "max",
              "arith.minimumf": "min", "arith.maxnumf": "max", "arith.minnumf": "min", "arith.addi": "iadd", "arith.subi": "isub",
              "arith.muli": "imul", "arith.minsi": "imin", "arith.maxsi": "imax", "arith.divsi": "idiv", "arith.floordivsi": "idiv"}

    def __init__(self, parser: _Parser, block, n_in: int, j: int):
        self.p = parser
        self.args = list(block.arguments)
        self.n_in = n_in
        self.j = j
        self.cache: dict = {}

    def expr(self, v) -> Expr:
        if v in self.cache:
            return self.cache[v]
        e = self._expr(v)
        self.cache[v] = e
        return e

    def _expr(self, v) -> Expr:
        from mlir import ir

        for i, a in enumerate(self.args):
            if a == v:
                if i < self.n_in:
                    return E("in", value=i)
                if i - self.n_in == self.j:
                    return E("acc")
                raise Unsupported("a multi-result reduction whose results depend on each other")
        outer = self.p.values.get(v)
        if outer is not None:
            if isinstance(outer, _Const) and outer.array.size == 1:
                return E("const", value=float(outer.array.reshape(())))
            raise Unsupported("a linalg body captures a tensor")
        owner = v.owner
        name = owner.name
        ops = [self.expr(x) for x in owner.operands]
        if name == "arith.constant":
            arr = _const_array(owner.attributes["value"], v.type)
            return E("const", value=float(arr.reshape(())))
        if name == "linalg.index":
            return E("dim", value=int(ir.IntegerAttr(owner.attributes["dim"]).value))
        if name in self.UNARY:
            return ops[0] if self.UNARY[name] in ("id", "icast") else E(self.UNARY[name], ops[0])
        if name in self.BINARY:
            return E(self.BINARY[name], ops[0], ops[1])
        if name == "arith.cmpf":
            pred = int(ir.IntegerAttr(owner.attributes["predicate"]).value)
            if pred not in CMPF:
                raise Unsupported(f"comparison predicate {pred}")
            return E("cmp", ops[0], ops[1], value=CMPF[pred])
        if name == "arith.cmpi":
            pred = int(ir.IntegerAttr(owner.attributes["predicate"]).value)
            names = {0: "eq", 1: "ne", 2: "lt", 3: "le", 4: "gt", 5: "ge"}
            return E("cmp", ops[0], ops[1], value=names.get(pred, "?"))
        if name == "arith.select":
            return E("select", *ops)
        raise Unsupported(f"{name} inside a linalg body")
