"""Rewrites of the loop IR before precision assignment and emission.

1. canonicalize each op's body: compare+select -> max/min, 1/(1+exp(-x)) -> sigmoid, sub-expressions that depend
   only on constants and loop indices -> constant operands (evaluated in numpy over just the dims they use), maximal
   affine sub-expressions in one activation -> x*A + B with A, B constants (this is how BatchNorm's sub/mul/mul/add
   chain becomes one scale and shift);
2. recognize Softmax (max-reduce, exp(x - max), sum-reduce, divide) as one op;
3. fuse the single-use elementwise consumer of a reduction into its epilogue (bias add, BatchNorm, ReLU, the divide
   of an average pool);
4. fold an affine epilogue of a multiply-accumulate into its weights and initial value (BatchNorm folding, bias);
5. classify every op: mac (sum of activation x constant products), reduce (sum or max), eltwise, softmax, pad, concat.
Every rewrite keeps the float semantics of the linalg program; the fixed-point program is defined on the result.
"""
from __future__ import annotations

import numpy as np

from hcc.backends.fpga.interp import eval_float
from hcc.backends.fpga.ir import E, Expr, Lin, LoopOp, Operand, Program, Unsupported

LUT_FUNCS = ("sigmoid", "tanh")


def run(prog: Program, op_types: dict[str, str] | None = None) -> Program:
    op_types = op_types or {}
    for op in prog.ops:
        if op_types:
            op.nodes = [n for n in op.nodes if n in op_types] or op.nodes[:1]
        _drop_unused_operands(op)
    for op in prog.ops:
        _canonicalize(op)
    _recognize_softmax(prog)
    changed = True
    while changed:
        changed = _fuse_epilogue(prog) or _fuse_eltwise(prog)
    for op in prog.ops:
        if op.kind == "generic" and op.reduction and _mac_parts(op) is not None:
            _fold_affine_epilogue(op)
    order = {name: i for i, name in enumerate(op_types)}
    for op in prog.ops:
        _drop_unused_operands(op)
        _compress_constants(op)
        _check_supported(op, op_types)
        op.nodes.sort(key=lambda n: order.get(n, len(order)))  # graph order: config "result" follows the last node
        op.out.buf.nodes = list(op.nodes)
    _number(prog)
    return prog


# ------------------------------------------------------------------------------------------------------ helpers
def _drop_unused_operands(op: LoopOp) -> None:
    if op.kind in ("pad", "concat", "softmax"):
        return
    used = sorted(op.body.operands() | (op.epilogue.operands() if op.epilogue is not None else set()))
    if used == list(range(len(op.ins))):
        return
    remap = {old: new for new, old in enumerate(used)}
    op.ins = [op.ins[i] for i in used]
    op.body = _remap(op.body, remap)
    if op.epilogue is not None:
        op.epilogue = _remap(op.epilogue, remap)


def _remap(e: Expr, remap: dict[int, int]) -> Expr:
    if e.op == "in":
        return E("in", value=remap[e.value])
    if not e.args:
        return e
    return Expr(e.op, tuple(_remap(a, remap) for a in e.args), e.value)


def _substitute(e: Expr, target: Expr, new: Expr) -> Expr:
    """Replace the node `target` (by identity)."""
    if e is target:
        return new
    if not e.args:
        return e
    return Expr(e.op, tuple(_substitute(a, target, new) for a in e.args), e.value)


def _replace(e: Expr, fn) -> Expr:
    """Bottom-up rewrite: fn(node with rewritten children) -> node."""
    if e.args:
        e = Expr(e.op, tuple(_replace(a, fn) for a in e.args), e.value)
    return fn(e)


def _is_const_expr(e: Expr, op: LoopOp) -> bool:
    """Depends only on constant operands, scalars and loop indices."""
    for x in e.walk():
        if x.op == "acc":
            return False
        if x.op == "in" and op.ins[x.value].kind != "const":
            return False
    return True


def _dims_of(e: Expr, op: LoopOp) -> list[int]:
    dims: set[int] = set()
    for x in e.walk():
        if x.op == "in":
            for lin in op.ins[x.value].map:
                dims |= lin.dims
        elif x.op == "dim":
            dims.add(x.value)
    return sorted(dims)


def _eval_const(e: Expr, op: LoopOp) -> Operand:
    """Evaluate a constant expression over the grid of the dims it uses -> a new constant operand."""
    dims = _dims_of(e, op)
    sizes = [op.dims[d] for d in dims]
    grid = np.indices(sizes, dtype=np.int64).reshape(len(dims), -1) if dims else np.zeros((0, 1), np.int64)
    coords = {d: grid[k] for k, d in enumerate(dims)}
    n = grid.shape[1]

    def leaf(x: Expr):
        if x.op == "dim":
            return coords[x.value]
        o = op.ins[x.value]
        idx = np.full(n, o.flat().const, dtype=np.int64)
        for d, c in o.flat().coeffs:
            idx = idx + c * coords[d]
        return o.array.ravel()[idx]

    if dims:
        value = np.broadcast_to(np.asarray(eval_float(e, leaf), dtype=np.float64), (n,)).reshape(sizes)
    else:
        value = np.asarray(eval_float(e, leaf), dtype=np.float64).reshape(())
    return _compressed(Operand("const", tuple(sizes), [Lin.dim(d) for d in dims], array=np.array(value, dtype=np.float64)))


def _add_operand(op: LoopOp, operand: Operand) -> Expr:
    if operand.array is not None and operand.array.size == 1:
        return E("const", value=float(operand.array.reshape(-1)[0]))
    op.ins.append(operand)
    return E("in", value=len(op.ins) - 1)


# ------------------------------------------------------------------------------------------------------ canonicalize
_MAX_PREDS = {("gt", 0), ("ge", 0), ("lt", 1), ("le", 1)}  # (predicate, index of the chosen arg when true) -> max


def _canonical_node(e: Expr) -> Expr:
    e = _canonical_op(e)
    if e.op in ("max", "min"):
        # Clip's absent bound is -+FLT_MAX (onnxruntime's default, passes/nan_semantics.py): no bound in fixed point
        a, b = e.args
        for const, other in ((a, b), (b, a)):
            if const.op == "const" and (const.value <= -FLT_MAX if e.op == "max" else const.value >= FLT_MAX):
                return other
    return e


def _canonical_op(e: Expr) -> Expr:
    if e.op == "select" and e.args[0].op == "cmp":
        cmp, t, f = e.args
        a, b = cmp.args
        pred = cmp.value
        if _same(t, a) and _same(f, b):
            if pred in ("gt", "ge"):
                return E("max", a, b)
            if pred in ("lt", "le"):
                return E("min", a, b)
        if _same(t, b) and _same(f, a):
            if pred in ("gt", "ge"):
                return E("min", a, b)
            if pred in ("lt", "le"):
                return E("max", a, b)
        return e
    if e.op == "div" and _is_one(e.args[0]):
        den = e.args[1]
        if den.op == "add":
            x, y = den.args
            ex = x if x.op == "exp" else y if y.op == "exp" else None
            other = y if ex is x else x
            if ex is not None and _is_one(other) and ex.args[0].op == "neg":
                return E("sigmoid", ex.args[0].args[0])
    return e


def _is_one(e: Expr) -> bool:
    return e.op == "const" and e.value == 1.0


def _same(a: Expr, b: Expr) -> bool:
    if a is b:
        return True
    if a.op != b.op or a.value != b.value or len(a.args) != len(b.args):
        return False
    return all(_same(x, y) for x, y in zip(a.args, b.args))


FLT_MAX = 3.4028234663852886e38


def _canonicalize(op: LoopOp) -> None:
    if op.kind in ("pad", "concat"):
        return
    # a parallel op that reads its output: the initial value is just another input
    if not op.reduction and op.body.uses("acc"):
        if op.init is None:
            raise Unsupported("an elementwise op reads its uninitialized output")
        op.ins.append(op.init)
        k = len(op.ins) - 1
        op.body = _replace(op.body, lambda x: E("in", value=k) if x.op == "acc" else x)
        op.init = None
    op.body = _replace(op.body, _canonical_node)
    op.body = _hoist_constants(op.body, op)
    op.body = _affine_normalize(op.body, op)
    op.body = _divisions_to_reciprocals(op.body, op)
    # a max-reduction that starts at -inf (or -FLT_MAX, onnxruntime's start) starts at the first element instead
    # (the fixed-point type has no -inf)
    if op.init is not None and op.init.kind == "const" and np.all(op.init.array <= -FLT_MAX):
        op.init = None
    if op.init is not None and op.init.kind == "const":
        op.init = _compressed(op.init)


def _divisions_to_reciprocals(e: Expr, op: LoopOp) -> Expr:
    """x / c with c constant (left after affine normalization, e.g. relu(x) / 3) -> x * (1/c)."""
    if not e.args:
        return e
    args = tuple(_divisions_to_reciprocals(a, op) for a in e.args)
    if e.op == "div" and _is_const_expr(args[1], op) and not _is_const_expr(args[0], op):
        recip = _eval_const(E("div", E("const", value=1.0), args[1]), op)
        recip.role = "recip"
        return E("mul", args[0], _add_operand(op, recip))
    return Expr(e.op, args, e.value)


def _hoist_constants(e: Expr, op: LoopOp) -> Expr:
    """Replace maximal constant sub-expressions (not plain leaves) by constant operands."""
    if e.op in ("in", "const", "acc"):
        return e
    if _is_const_expr(e, op):
        return _add_operand(op, _eval_const(e, op))
    return Expr(e.op, tuple(_hoist_constants(a, op) for a in e.args), e.value)


def _affine(e: Expr, op: LoopOp):
    """(x, A, B, scaled) when e == x*A + B with x an activation leaf or acc and A, B constant expressions
    (None for 1 and 0); `scaled` says whether A involves a multiplication (not only divisions)."""
    if e.op == "acc" or (e.op == "in" and op.ins[e.value].kind == "act"):
        return (e, None, None, False)
    if _is_const_expr(e, op):
        return (None, None, e, False)
    if e.op == "neg":
        r = _affine(e.args[0], op)
        if r is None:
            return None
        x, a, b, s = r
        return (x, E("neg", a) if a is not None else E("const", value=-1.0), E("neg", b) if b is not None else None, s)
    if e.op in ("add", "sub"):
        left, r = _affine(e.args[0], op), _affine(e.args[1], op)
        if left is None or r is None:
            return None
        if left[0] is not None and r[0] is not None:
            return None
        x = left[0] if left[0] is not None else r[0]
        sign = 1.0 if e.op == "add" else -1.0

        def comb(p, q, default):
            p_ = p if p is not None else (E("const", value=default) if default else None)
            q_ = q if q is not None else (E("const", value=default) if default else None)
            if p_ is None and q_ is None:
                return None
            if q_ is None:
                return p_
            if sign < 0:
                q_ = E("neg", q_)
            return q_ if p_ is None else E("add", p_, q_)

        a = left[1] if left[0] is not None else (r[1] if sign > 0 else (E("neg", r[1]) if r[1] is not None else E("const", value=-1.0)))
        b = comb(left[2], r[2], 0.0)
        return (x, a, b, left[3] or r[3])
    if e.op in ("mul", "div"):
        left, r = _affine(e.args[0], op), _affine(e.args[1], op)
        if left is None or r is None:
            return None
        if e.op == "mul" and left[0] is None and r[0] is not None:
            left, r = r, left
        if r[0] is not None:
            return None  # x*y or c/x: not affine
        k = r[2] if r[2] is not None else E("const", value=0.0)
        if left[0] is None:
            return (None, None, E(e.op, left[2] if left[2] is not None else E("const", value=0.0), k), False)
        x, a, b, s = left
        a2 = E(e.op, a if a is not None else E("const", value=1.0), k)
        b2 = E(e.op, b, k) if b is not None else None
        return (x, a2, b2, s or e.op == "mul")
    return None


def _affine_normalize(e: Expr, op: LoopOp) -> Expr:
    """Rewrite maximal affine sub-expressions as x*A + B with evaluated constant operands."""
    r = _affine(e, op) if e.op not in ("in", "acc", "const") and not _normal_form(e, op) else None
    if r is not None and r[0] is not None and (r[1] is not None or r[2] is not None):
        x, a, b, scaled = r
        out = x
        if a is not None:
            a_op = _eval_const(a, op)
            if not np.all(a_op.array == 1.0):
                a_op.role = "weight" if scaled else "recip"
                out = E("mul", out, _add_operand(op, a_op))
        if b is not None:
            b_op = _eval_const(b, op)
            if not np.all(b_op.array == 0.0):
                b_op.role = "bias"
                out = E("add", out, _add_operand(op, b_op))
        return out
    if not e.args:
        return e
    return Expr(e.op, tuple(_affine_normalize(a, op) for a in e.args), e.value)


def _normal_form(e: Expr, op: LoopOp) -> bool:
    """x*c, x + c or x*c + c with x an activation leaf or acc and c constant leaves: nothing to rewrite."""
    def leaf_const(x):
        return x.op == "const" or (x.op == "in" and op.ins[x.value].kind == "const")

    def act(x):
        return x.op == "acc" or (x.op == "in" and op.ins[x.value].kind == "act")

    def scaled(x):
        return x.op == "mul" and ((act(x.args[0]) and leaf_const(x.args[1])) or (act(x.args[1]) and leaf_const(x.args[0])))

    if scaled(e):
        return True
    if e.op == "add":
        a, b = e.args
        return (leaf_const(b) and (act(a) or scaled(a))) or (leaf_const(a) and (act(b) or scaled(b)))
    return False


def _compressed(o: Operand) -> Operand:
    """Drop the axes along which a constant does not vary (a broadcast bias becomes a per-channel vector)."""
    arr, maps, shape = np.asarray(o.array).reshape(o.shape), list(o.map), list(o.shape)
    axis = 0
    while axis < arr.ndim:
        if arr.shape[axis] == 1 or np.all(arr == arr.take([0], axis=axis)):
            arr = arr.take(0, axis=axis)
            del maps[axis]
            del shape[axis]
        else:
            axis += 1
    return o.copy(array=np.ascontiguousarray(arr), map=maps, shape=tuple(shape))


def _short_dyadic(v: float) -> bool:
    if not np.isfinite(v):
        return False
    scaled = v * 2.0**16
    return scaled == np.floor(scaled) and abs(v) < 2.0**15


def _compress_constants(op: LoopOp) -> None:
    op.ins = [_compressed(o) if o.kind == "const" else o for o in op.ins]
    if op.init is not None and op.init.kind == "const":
        op.init = _compressed(op.init)
    # scalars that are short dyadic numbers (0, 6, 0.25, ...) become literals: they are exact in any type
    scalars = {i: float(o.array.reshape(-1)[0]) for i, o in enumerate(op.ins)
               if o.kind == "const" and o.array.size == 1 and _short_dyadic(float(o.array.reshape(-1)[0]))}
    if scalars and op.kind not in ("pad", "concat", "softmax"):
        sub = lambda x: E("const", value=scalars[x.value]) if x.op == "in" and x.value in scalars else x  # noqa: E731
        op.body = _replace(op.body, sub)
        if op.epilogue is not None:
            op.epilogue = _replace(op.epilogue, sub)
        _drop_unused_operands(op)


# ------------------------------------------------------------------------------------------------------ softmax
def _single_consumer(prog: Program, op: LoopOp) -> list[LoopOp]:
    return prog.consumers(op.out.buf)


def _identity_map(o: Operand, n: int) -> bool:
    return len(o.map) == n and all(m.single_dim() == d for d, m in enumerate(o.map))


def _recognize_softmax(prog: Program) -> None:
    for d_op in list(prog.ops):
        b = d_op.body
        if d_op.reduction or b.op != "div" or b.args[0].op != "in" or b.args[1].op != "in":
            continue
        e_in, s_in = d_op.ins[b.args[0].value], d_op.ins[b.args[1].value]
        if e_in.kind != "act" or s_in.kind != "act":
            continue
        e_op, s_op = prog.producer(e_in.buf), prog.producer(s_in.buf)
        if e_op is None or s_op is None or e_op.reduction or not s_op.reduction:
            continue
        eb = e_op.body
        if eb.op != "exp" or eb.args[0].op != "sub" or any(a.op != "in" for a in eb.args[0].args):
            continue
        x_in, m_in = e_op.ins[eb.args[0].args[0].value], e_op.ins[eb.args[0].args[1].value]
        m_op = prog.producer(m_in.buf) if m_in.kind == "act" else None
        if m_op is None or not m_op.reduction or m_op.body.op != "max" or x_in.kind != "act":
            continue
        if not any(o.kind == "act" and o.buf is x_in.buf for o in m_op.ins) or not any(o.kind == "act" and o.buf is e_op.out.buf for o in s_op.ins):
            continue
        sb = s_op.body
        if sb.op != "add" or not any(a.op == "acc" for a in sb.args):
            continue
        n = len(e_op.dims)
        if not (_identity_map(x_in, n) and _identity_map(d_op.out, n) and _identity_map(e_op.out, n) and e_op.dims == d_op.dims):
            continue
        axes = [d for d in range(n) if all(d not in lin.dims for lin in m_in.map)]
        if len(axes) != 1:
            raise Unsupported("Softmax over several axes")
        if (len(prog.consumers(e_op.out.buf)) != 2 or len(prog.consumers(m_op.out.buf)) != 1 or len(prog.consumers(s_op.out.buf)) != 1
                or e_op.out.buf.kind == "output" or m_op.out.buf.kind == "output" or s_op.out.buf.kind == "output"):
            continue
        nodes = list(dict.fromkeys(m_op.nodes + e_op.nodes + s_op.nodes + d_op.nodes))
        sm = LoopOp(d_op.id, nodes, list(d_op.dims), ["parallel"] * n, [x_in.copy()], d_op.out, E("in", value=0), kind="softmax",
                    attrs={"axis": axes[0]})
        for dead in (m_op, e_op, s_op):
            prog.ops.remove(dead)
            prog.buffers.remove(dead.out.buf)
        prog.ops[prog.ops.index(d_op)] = sm


# ------------------------------------------------------------------------------------------------------ fusion
def _fuse_epilogue(prog: Program) -> bool:
    """A reduction's single elementwise consumer becomes its epilogue."""
    for r_op in prog.ops:
        if not r_op.reduction or r_op.kind not in ("generic", "mac") or r_op.out.buf.kind == "output":
            continue
        users = prog.consumers(r_op.out.buf)
        if len(users) != 1:
            continue
        c_op = users[0]
        if c_op.kind != "generic" or c_op.reduction or c_op.init is not None:
            continue
        reads = [i for i, o in enumerate(c_op.ins) if o.kind == "act" and o.buf is r_op.out.buf]
        if len(reads) != 1 or c_op.out.buf.shape != r_op.out.buf.shape:
            continue
        k = reads[0]
        # c's dims must correspond one to one to r's output positions
        c_out = [m.single_dim() for m in c_op.out.map]
        c_rd = [m.single_dim() for m in c_op.ins[k].map]
        r_out = [m.single_dim() for m in r_op.out.map]
        if None in c_out or None in r_out or c_out != c_rd or c_op.ins[k].shape != r_op.out.shape or c_op.out.shape != c_op.ins[k].shape:
            continue
        if sorted(c_out) != list(range(len(c_op.dims))):
            continue
        dim_map = {cd: Lin.dim(rd) for cd, rd in zip(c_out, r_out)}
        base = len(r_op.ins)
        remap, extra = {}, []
        for i, o in enumerate(c_op.ins):
            if i == k:
                continue
            remap[i] = base + len(extra)
            extra.append(o.copy(map=[m.substitute(dim_map) for m in o.map]))
        epi = r_op.epilogue if r_op.epilogue is not None else E("acc")
        body = _replace(c_op.body, lambda x: (E("_prev") if x.value == k else E("in", value=remap[x.value])) if x.op == "in" else x)
        body = _replace(body, lambda x: E("dim", value=dim_map[x.value].single_dim()) if x.op == "dim" else x)
        r_op.epilogue = _replace(body, lambda x: epi if x.op == "_prev" else x)
        r_op.ins.extend(extra)
        r_op.nodes = list(dict.fromkeys(r_op.nodes + c_op.nodes))
        old_buf = r_op.out.buf
        r_op.out = c_op.out.copy(map=[m.substitute(dim_map) for m in c_op.out.map])
        prog.buffers.remove(old_buf)
        r_op.out.buf.nodes = list(r_op.nodes)
        # the fused op reads what the consumer read, so it runs where the consumer ran
        prog.ops.remove(r_op)
        prog.ops[prog.ops.index(c_op)] = r_op
        return True
    return False


def _fuse_eltwise(prog: Program) -> bool:
    """An elementwise op whose single consumer is elementwise over the same space is inlined into it."""
    for p_op in prog.ops:
        if p_op.kind != "generic" or p_op.reduction or p_op.out.buf.kind == "output":
            continue
        users = prog.consumers(p_op.out.buf)
        if len(users) != 1:
            continue
        c_op = users[0]
        if c_op.kind != "generic" or c_op.reduction or c_op.dims != p_op.dims:
            continue
        n = len(p_op.dims)
        reads = [i for i, o in enumerate(c_op.ins) if o.kind == "act" and o.buf is p_op.out.buf]
        if not reads or not all(_identity_map(c_op.ins[i], n) and c_op.ins[i].shape == p_op.out.shape for i in reads):
            continue
        if not _identity_map(p_op.out, n):
            continue
        if _has_lut(p_op.body) and len(reads) > 1:
            continue
        base = len(c_op.ins)
        p_body = _remap(p_op.body, {i: base + i for i in range(len(p_op.ins))})
        c_op.ins.extend(o.copy() for o in p_op.ins)
        c_op.body = _replace(c_op.body, lambda x: p_body if x.op == "in" and x.value in reads else x)
        c_op.nodes = list(dict.fromkeys(p_op.nodes + c_op.nodes))
        c_op.out.buf.nodes = list(c_op.nodes)
        prog.ops.remove(p_op)
        prog.buffers.remove(p_op.out.buf)
        _drop_unused_operands(c_op)
        c_op.body = _affine_normalize(c_op.body, c_op)
        return True
    return False


def _has_lut(e: Expr) -> bool:
    return any(x.op in LUT_FUNCS for x in e.walk())


# ------------------------------------------------------------------------------------------------------ MAC folding
def _mac_parts(op: LoopOp):
    """For add(acc, mul(P, W)) with W constant: (P, W) else None."""
    b = op.body
    if b.op != "add":
        return None
    t = b.args[1] if b.args[0].op == "acc" else b.args[0] if b.args[1].op == "acc" else None
    if t is None or t.uses("acc"):
        return None
    if t.op == "mul":
        p, w = t.args
        if _is_const_expr(p, op) and not _is_const_expr(w, op):
            p, w = w, p
        if _is_const_expr(w, op) and not _is_const_expr(p, op):
            return p, w
    return None


def _fold_affine_epilogue(op: LoopOp) -> None:
    """epilogue f(acc*A + B) with A over weight dims -> weights*A, init*A + B, epilogue f(acc)."""
    if op.epilogue is None or op.init is None or op.init.kind != "const":
        return
    parts = _mac_parts(op)
    if parts is None:
        return
    p, w = parts
    if w.op != "in":
        return
    w_op = op.ins[w.value]
    w_dims = set().union(*(m.dims for m in w_op.map)) if w_op.map else set()

    target = None
    for node in op.epilogue.walk():  # the innermost affine use of acc
        r = _affine(node, op) if node.uses("acc") else None
        if r is not None and r[0] is not None and r[0].op == "acc":
            target = (node, r)
            break
    if target is None:
        return
    node, (_, a, b, _) = target
    a_op = _eval_const(a, op) if a is not None else None
    b_op = _eval_const(b, op) if b is not None else None
    a_dims = set(a_op.map[i].single_dim() for i in range(len(a_op.map))) if a_op is not None else set()
    par = set(op.parallel)
    if a_op is not None and not a_dims <= (w_dims & par):
        return
    if b_op is not None and not {m.single_dim() for m in b_op.map} <= par:
        return
    init = op.init
    if a_op is not None:
        op.ins[w.value] = _eval_const(E("mul", E("in", value=w.value), _add_tmp(op, a_op)), op)
        op.ins.pop()  # the temporary A operand
        op.ins[w.value].role = "weight"
    # new init = init*A + B over the output positions
    tmp = LoopOp("tmp", [], op.dims, op.iters, [init, *(x for x in (a_op, b_op) if x is not None)], op.out, E("in", value=0))
    expr = E("in", value=0)
    k = 1
    if a_op is not None:
        expr = E("mul", expr, E("in", value=k))
        k += 1
    if b_op is not None:
        expr = E("add", expr, E("in", value=k))
    op.init = _compressed(_eval_const(expr, tmp))
    op.init.role = "bias"
    op.epilogue = _substitute(op.epilogue, node, E("acc"))
    if op.epilogue.op == "acc":
        op.epilogue = None


def _add_tmp(op: LoopOp, operand: Operand) -> Expr:
    op.ins.append(operand)
    return E("in", value=len(op.ins) - 1)


# ------------------------------------------------------------------------------------------------------ classification
def classify(op: LoopOp) -> str:
    if op.kind in ("pad", "concat", "softmax"):
        return op.kind
    if op.reduction:
        b = op.body
        if _mac_parts(op) is not None:
            return "mac"
        if b.op == "add" and any(a.op == "acc" for a in b.args):
            other = b.args[1] if b.args[0].op == "acc" else b.args[0]
            if not other.uses("acc"):
                return "sum"
        if b.op == "max" and any(a.op == "acc" for a in b.args):
            other = b.args[1] if b.args[0].op == "acc" else b.args[0]
            if not other.uses("acc"):
                return "max"
        raise Unsupported(f"a reduction computing {op.body}")
    return "eltwise"


def _check_supported(op: LoopOp, op_types: dict[str, str]) -> None:
    kind = classify(op)
    if kind in ("pad", "concat", "softmax"):
        op.kind = kind
        return
    exprs = [op.body] + ([op.epilogue] if op.epilogue is not None else [])
    for e in exprs:
        for x in e.walk():
            if x.op in ("exp", "rsqrt", "sqrt", "div", "abs", "cmp", "select") or x.op.startswith("i") and x.op not in ("in",):
                what = {"exp": "Exp outside Softmax", "div": "a division by a tensor", "rsqrt": "a square root of a tensor",
                        "sqrt": "a square root of a tensor", "cmp": "a comparison", "select": "a select"}.get(x.op, x.op)
                raise Unsupported(f"{what} has no fixed-point implementation in the FPGA backend")
    op.kind = kind if kind != "sum" and kind != "max" else "reduce"
    if kind in ("sum", "max"):
        op.attrs["reduce"] = kind


def _number(prog: Program) -> None:
    for i, op in enumerate(prog.ops, start=1):
        op.id = f"op{i}"
