"""onnxruntime's semantics for NaN, +-inf and -0.0, given to the linalg IR that every backend compiles.

Why: torch-mlir lowers ONNX ops with IEEE or PyTorch rules (`arith.maximumf` propagates every NaN, Clip compares
with unordered predicates, Reciprocal asserts on a zero), while hcc's reference, onnxruntime's CPU provider, follows
whatever its kernels do: `Max(NaN, 1)` is NaN, `Clip(NaN, 0, 6)` is NaN, `Relu(-0.0)` is -0.0, and a max-pooling or
a ReduceMax keeps or drops a NaN depending on where it sits (the order in which MLAS/Eigen vector lanes read it).
Left alone, a NaN or an infinity in the input gives silently different outputs.

How: before the torch-mlir conversion, `isolate` replaces every ONNX node whose result depends on those rules by a
call of a bodiless private function (torch-mlir converts the call, and cannot merge the node with others); right
after the conversion, `apply` gives each function a body of plain linalg ops that follows onnxruntime's kernel step
for step (generated here from the node's attributes and static shapes), inlines them, and checks the
linalg-on-tensors contract. CPU, GPU and FPGA then compile the same semantics. The rules, measured against
onnxruntime 1.31.1, are summarized in README.md ("NaN/Inf semantics"); each builder's docstring states its own.

Only float32 nodes with static shapes are handled (the element type whose onnxruntime kernels were measured); other
nodes keep torch-mlir's lowering.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field

FLT_MAX = 3.4028234663852886e38
LOW = "0xFF7FFFFF"       # -FLT_MAX: numeric_limits<float>::lowest(), where onnxruntime's max loops start
HIGH = "0x7F7FFFFF"      # FLT_MAX
NEG_INF = "0xFF800000"
CONTRACT_CHECK = "torch-verify-linalg-on-tensors-backend-contract"

_NAME = re.compile(r'^loc\("((?:[^"\\]|\\.)*)"\)$')
_INT = re.compile(r"-?\d+")


@dataclass
class OnnxNode:
    """One ONNX node (from its `torch.operator` in the torch-onnx module), as the builders need it."""

    op_type: str
    loc: str = '""'                                                   # location text, e.g. "pool1" in quotes
    attrs: dict[str, object] = field(default_factory=dict)           # ints, int lists, floats and strings
    in_types: list[tuple[list[int], str] | None] = field(default_factory=list)   # (shape, element); None: absent
    out_types: list[tuple[list[int], str] | None] = field(default_factory=list)
    const_inputs: dict[int, list[int]] = field(default_factory=dict)  # integer constant inputs (ReduceMax axes)
    args: list[int] = field(default_factory=list)                     # the inputs passed to the function, in order


# ------------------------------------------------------------------------------------------- torch-onnx level

def _vtensor(type_text: str) -> tuple[list[int], str] | None:
    match = re.fullmatch(r"!torch\.vtensor<\[([^\]]*)\],(\w+)>", type_text)
    if not match or "?" in match.group(1):
        return None
    dims = [int(d) for d in match.group(1).split(",") if d.strip()] if match.group(1) else []
    return dims, {"si64": "i64", "si32": "i32"}.get(match.group(2), match.group(2))


def _attr_value(text: str):
    text = text.strip()
    if text.startswith('"'):
        return text.strip('"')
    if text.startswith("["):
        return [int(v) for v in _INT.findall(re.sub(r":\s*\w+", "", text))]
    match = re.fullmatch(r"(-?\d+)\s*:\s*[su]i\d+", text)
    if match:
        return int(match.group(1))
    match = re.fullmatch(r"(-?[\d.]+(?:[eE][-+]?\d+)?)\s*:\s*f\d+", text)
    return float(match.group(1)) if match else text


def _resources(module_text: str) -> dict[str, bytes]:
    """`dialect_resources` blobs of the module text (the importer stores constants there)."""
    out = {}
    for name, hexdata in re.findall(r'^\s*([\w.$-]+):\s*"0x([0-9A-Fa-f]+)"', module_text, flags=re.M):
        out[name] = bytes.fromhex(hexdata)[4:]  # the first 4 bytes hold the blob's alignment
    return out


def _int_constant(value_attr: str, resources: dict[str, bytes]) -> list[int] | None:
    match = re.match(r"dense_resource<([^>]+)>\s*:\s*tensor<(?:[\dx]*x)?si64>", value_attr)
    if match and match.group(1) in resources:
        data = resources[match.group(1)]
        return [int.from_bytes(data[i:i + 8], "little", signed=True) for i in range(0, len(data), 8)]
    match = re.match(r"dense<(.*)>\s*:\s*tensor<([\dx]*?)x?si64>", value_attr)
    if match:
        hexdata = re.fullmatch(r'"0x([0-9A-Fa-f]*)"', match.group(1).strip())  # MLIR prints large non-splat data as hex
        values = ([int.from_bytes(bytes.fromhex(hexdata.group(1))[i:i + 8], "little", signed=True)
                   for i in range(0, len(hexdata.group(1)) // 2, 8)] if hexdata else
                  [int(v) for v in _INT.findall(match.group(1))])
        dims = [int(d) for d in match.group(2).split("x") if d]
        count = math.prod(dims) if dims else 1
        return values * count if len(values) == 1 and count > 1 else values
    return None


def nchwc_block_size() -> int | None:
    """onnxruntime's NCHWc block (MlasNchwcGetBlockSize) on this machine: its graph optimizer moves a 4-D MaxPool or
    GlobalMaxPool whose channel count is a multiple of it into the NCHWc layout, whose kernel has another NaN rule.
    AVX-512F: 16 floats, AVX2 + FMA: 8, else no NCHWc."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    if "avx512f" in flags:
        return 16
    if "avx2" in flags and "fma" in flags:
        return 8
    return None


def without_contract_check(pipeline: str) -> str:
    """`pipeline` with its final linalg-on-tensors contract check left out (`apply` runs it once the calls of the
    isolated nodes are inlined: a call is outside the contract)."""
    from hcc.passes.pass_runner import expand_pipeline

    text = expand_pipeline(pipeline, bindings="torch_mlir")
    return text.replace(f",{CONTRACT_CHECK})", ")") if text.endswith(f",{CONTRACT_CHECK})") else text


def isolate(module, module_text: str, nchwc_block: int | None = None) -> dict[str, str]:
    """Replace every node of the torch-onnx `module` that `apply` gives onnxruntime's semantics by a call of a
    bodiless private function; returns {function name: the linalg text of its body-to-be}."""
    from torch_mlir import ir

    resources = _resources(module_text)
    bodies: dict[str, str] = {}
    for func in list(module.body.operations):
        if func.operation.name != "func.func" or not func.regions[0].blocks:
            continue
        opset = func.operation.attributes["torch.onnx_meta.opset_version"] if "torch.onnx_meta.opset_version" in func.operation.attributes else None
        constants: list = []  # (value, ints) of integer onnx.Constant ops
        for op in list(func.regions[0].blocks[0].operations):
            if op.operation.name != "torch.operator":
                continue
            op_type = str(op.operation.attributes["name"]).strip('"').removeprefix("onnx.")
            attrs = {k.removeprefix("torch.onnx."): _attr_value(str(op.operation.attributes[k]))
                     for k in op.operation.attributes if k.startswith("torch.onnx.")}
            if op_type == "Constant":
                if "torch.onnx.value" in op.operation.attributes:
                    ints = _int_constant(str(op.operation.attributes["torch.onnx.value"]), resources)
                    if ints is not None:
                        constants.append((op.results[0], ints))
                continue
            builder = _BUILDERS.get(op_type)
            if builder is None or opset is None or not _NAME.match(str(op.location)):
                continue
            operands = list(op.operands)
            node = OnnxNode(op_type, str(op.location)[len("loc("):-1], attrs,
                            [None if str(v.type) == "!torch.none" else _vtensor(str(v.type)) for v in operands],
                            [_vtensor(str(r.type)) for r in op.results])
            node.const_inputs = {i: ints for i, v in enumerate(operands) for c, ints in constants if c == v}
            node.args = [i for i, t in enumerate(node.in_types) if t is not None and i not in node.const_inputs]
            if len(op.results) != 1 or node.out_types[0] is None or any(node.in_types[i] is None for i in node.args):
                continue
            name = f"__hcc_ort_{len(bodies)}"
            text = builder(node, name, nchwc_block)
            if text is None:
                continue
            bodies[name] = text
            _replace_by_call(func, op, [operands[i] for i in node.args], name, opset, ir)
    return bodies


def _replace_by_call(func, op, operands: list, name: str, opset, ir) -> None:
    types = ", ".join(str(v.type) for v in operands)
    declaration = (f"module {{\n  func.func private @{name}({types}) -> {op.results[0].type} "
                   f"attributes {{torch.onnx_meta.opset_version = {opset}}}\n}}")
    holder = ir.Module.parse(declaration)  # kept alive until its function has moved
    holder.body.operations[0].operation.move_before(func.operation)
    with ir.InsertionPoint(op), op.location:
        call = ir.Operation.create("func.call", results=[op.results[0].type], operands=operands,
                                   attributes={"callee": ir.FlatSymbolRefAttr.get(name)})
    op.results[0].replace_all_uses_with(call.results[0])
    op.operation.erase()


# ------------------------------------------------------------------------------------------- linalg level

def apply(module, bodies: dict[str, str]) -> int:
    """After the conversion: give each isolated node's function its body, drop torch-mlir's float asserts, inline,
    and check the linalg-on-tensors contract. Returns the number of nodes given onnxruntime's semantics."""
    from torch_mlir import ir

    from hcc.passes.pass_runner import run_pipeline

    holders = []
    for func in list(module.body.operations):
        if func.operation.name != "func.func":
            continue
        name = ir.StringAttr(func.operation.attributes["sym_name"]).value
        if name in bodies and not func.regions[0].blocks:
            holder = ir.Module.parse(bodies[name])
            holders.append(holder)  # kept alive until its function has moved
            holder.body.operations[0].operation.move_before(func.operation)
            func.operation.erase()
        elif func.regions[0].blocks:
            _drop_float_asserts(func)
    run_pipeline(module, f"builtin.module(inline,symbol-dce,{CONTRACT_CHECK})", stage="nan-semantics-inline",
                 what="lowering ONNX ops to linalg")
    return len(bodies)


def _drop_float_asserts(func) -> None:
    """torch-mlir guards Reciprocal with `cf.assert(x != 0)`; on the CPU it aborts the process for a zero or a NaN
    input. onnxruntime defines those cases (1/0 = inf), so the checks go (the GPU backend drops them as well)."""
    doomed = []

    def visit(op) -> None:
        if op.name == "cf.assert" and getattr(op.operands[0].owner, "name", None) == "arith.cmpf":
            doomed.append(op)
        for region in op.regions:
            for block in region.blocks:
                for inner in block.operations:
                    visit(inner.operation)

    visit(func.operation)
    for op in doomed:
        op.erase()


# -- text of the bodies

def _tt(shape: list[int], elem: str = "f32") -> str:
    return f"tensor<{''.join(f'{d}x' for d in shape)}{elem}>"


def _affine(terms: list[tuple[int, int]], const: int = 0) -> str:
    """sum(coeff * d_i) + const as affine-map text."""
    parts = [f"d{dim}" if coeff == 1 else f"d{dim} * {coeff}" for dim, coeff in terms if coeff]
    text = " + ".join(parts)
    if not text:
        return str(const)
    return f"{text} + {const}" if const > 0 else f"{text} - {-const}" if const < 0 else text


class _Fn:
    """Text of one private function of linalg/tensor/arith ops on static shapes (every op at the node's location)."""

    def __init__(self, name: str, loc: str, in_types: list[tuple[list[int], str]], out_shape: list[int], out_elem: str = "f32"):
        self.name, self.loc, self.count = name, loc, 0
        self.lines: list[str] = []
        self.args = [f"%arg{i}" for i in range(len(in_types))]
        self.arg = self.args[0]
        self.in_types, self.out_shape, self.out_elem = in_types, out_shape, out_elem

    def v(self) -> str:
        self.count += 1
        return f"%v{self.count}"

    def op(self, text: str) -> str:
        result = self.v()
        self.lines.append(f"    {result} = {text} loc({self.loc})")
        return result

    def const(self, value: str, elem: str = "f32") -> str:
        return self.op(f"arith.constant {value} : {elem}")

    def fill(self, value: str, shape: list[int], elem: str = "f32") -> str:
        empty = self.op(f"tensor.empty() : {_tt(shape, elem)}")
        cst = self.const(value, elem)
        return self.op(f"linalg.fill ins({cst} : {elem}) outs({empty} : {_tt(shape, elem)}) -> {_tt(shape, elem)}")

    def generic(self, ndims: int, ins: list[tuple], outs: list[tuple[str, list[int], list[str], str]],
                iterators: list[str], body, extents: list[tuple[int, int]] = ()) -> list[str]:
        """ins: (value, shape, map results[, element type = f32]); outs: (init, shape, map results, element type);
        body(block argument names of ins + outs) -> (body lines, yielded names). Returns the result names.
        `extents` ((dim, size), ...): loop dims that no map reads bare (window taps); like a linalg pooling op, an
        unread `tensor.empty` of their sizes tells linalg their ranges."""
        ins = [tuple(i) if len(i) == 4 else (*i, "f32") for i in ins]
        dims = ", ".join(f"d{i}" for i in range(ndims))
        ranges = {d: size for d, size in extents}
        bare = re.compile(r"d\d+")
        for _, shape, m, _ in outs:
            ranges.update({int(e[1:]): size for e, size in zip(m, shape) if bare.fullmatch(e)})
        for _, shape, m, _ in ins:
            for e, size in zip(m, shape):
                if bare.fullmatch(e):
                    ranges.setdefault(int(e[1:]), size)
        ins = [(self._fit(v, shape, m, ranges, t), [ranges[int(e[1:])] if bare.fullmatch(e) else size for e, size in zip(m, shape)], m, t)
               for v, shape, m, t in ins]
        shape_arg = None
        if extents:
            shape = [size for _, size in extents]
            ins = list(ins) + [(self.op(f"tensor.empty() : {_tt(shape)}"), shape, [f"d{d}" for d, _ in extents], "f32")]
            shape_arg = len(ins) - 1
        maps = [f"affine_map<({dims}) -> ({', '.join(m)})>" for _, _, m, _ in ins] + \
               [f"affine_map<({dims}) -> ({', '.join(m)})>" for _, _, m, _ in outs]
        args = [self.v() for _ in ins + outs]
        arg_types = [t for *_, t in ins] + [o[3] for o in outs]
        lines, yields = body([a for i, a in enumerate(args) if i != shape_arg])
        if len(outs) == 1:
            head = self.v()
            results = [head]
        else:
            group = self.v()
            head = f"{group}:{len(outs)}"
            results = [f"{group}#{i}" for i in range(len(outs))]
        out_types = ", ".join(_tt(o[1], o[3]) for o in outs)
        ins_text = f"ins({', '.join(i[0] for i in ins)} : {', '.join(_tt(i[1], i[3]) for i in ins)}) " if ins else ""
        iters = ", ".join(f'"{i}"' for i in iterators)
        self.lines.append(f"    {head} = linalg.generic {{indexing_maps = [{', '.join(maps)}], iterator_types = [{iters}]}} "
                          f"{ins_text}outs({', '.join(o[0] for o in outs)} : {out_types}) {{")
        self.lines.append(f"    ^bb0({', '.join(f'{a}: {t}' for a, t in zip(args, arg_types))}):")
        self.lines.extend(f"      {line} loc({self.loc})" for line in lines)
        self.lines.append(f"      linalg.yield {', '.join(yields)} : {', '.join(o[3] for o in outs)} loc({self.loc})")
        self.lines.append(f"    }} -> {out_types if len(outs) == 1 else '(' + out_types + ')'} loc({self.loc})")
        return results

    def slice(self, value: str, shape: list[int], offsets: list[int], sizes: list[int], elem: str = "f32") -> str:
        """tensor.extract_slice (unit strides); `value` itself when that is the whole tensor."""
        if not any(offsets) and list(sizes) == list(shape):
            return value
        ones = ", ".join("1" for _ in shape)
        return self.op(f"tensor.extract_slice {value}[{', '.join(map(str, offsets))}] [{', '.join(map(str, sizes))}] [{ones}] : "
                       f"{_tt(shape, elem)} to {_tt(sizes, elem)}")

    def _fit(self, value: str, shape: list[int], m: list[str], ranges: dict[int, int], elem: str) -> str:
        """linalg requires an operand dim read as a bare loop dim to have that loop's size: slice off the rest."""
        sizes = [ranges[int(e[1:])] if re.fullmatch(r"d\d+", e) else size for e, size in zip(m, shape)]
        if sizes == list(shape):
            return value
        zeros, ones = ", ".join("0" for _ in shape), ", ".join("1" for _ in shape)
        return self.op(f"tensor.extract_slice {value}[{zeros}] [{', '.join(map(str, sizes))}] [{ones}] : {_tt(shape, elem)} to {_tt(sizes, elem)}")

    def text(self, result: str) -> str:
        params = ", ".join(f"{a}: {_tt(shape, elem)}" for a, (shape, elem) in zip(self.args, self.in_types))
        sig = f"func.func private @{self.name}({params}) -> {_tt(self.out_shape, self.out_elem)}"
        return "module {\n  " + sig + " {\n" + "\n".join(self.lines) + \
            f"\n    return {result} : {_tt(self.out_shape, self.out_elem)} loc({self.loc})\n  }} loc({self.loc})\n}}\n"


class _Body:
    """Straight-line arith text inside a linalg body."""

    def __init__(self, fn: _Fn):
        self.fn = fn
        self.lines: list[str] = []

    def op(self, text: str) -> str:
        result = self.fn.v()
        self.lines.append(f"{result} = {text}")
        return result

    def const(self, value: str) -> str:
        return self.op(f"arith.constant {value} : f32")

    def cmp(self, predicate: str, a: str, b: str) -> str:
        return self.op(f"arith.cmpf {predicate}, {a}, {b} : f32")

    def sel(self, cond: str, a: str, b: str, elem: str = "f32") -> str:
        return self.op(f"arith.select {cond}, {a}, {b} : {elem}")

    def fold(self, kind: str, acc: str, v: str) -> str:
        """P: acc > v ? acc : v (x86 maxps: a NaN on either side gives v). S: acc < v ? v : acc (std::max: a NaN in v
        is skipped, a NaN in acc stays). Smin: v < acc ? v : acc (std::min)."""
        if kind == "P":
            return self.sel(self.cmp("ogt", acc, v), acc, v)
        if kind == "S":
            return self.sel(self.cmp("olt", acc, v), v, acc)
        if kind == "Smin":
            return self.sel(self.cmp("olt", v, acc), v, acc)
        raise ValueError(kind)


# elementwise -----------------------------------------------------------------------------------------------------

def _f32_literal(value: float) -> str:
    """The exact float32 `value` as an MLIR hexadecimal literal."""
    return f"0x{struct.unpack('<I', struct.pack('<f', value))[0]:08X}"


def _broadcast_map(shape: list[int], out: list[int]) -> list[str]:
    lead = len(out) - len(shape)
    return ["0" if size == 1 and out[lead + i] != 1 else f"d{lead + i}" for i, size in enumerate(shape)]


def _elementwise(node: OnnxNode, name: str, compute, elems: list[str] | None = None) -> str | None:
    """One elementwise generic over the node's output, its inputs broadcast numpy-style: out = compute(body, args)."""
    types = [node.in_types[i] for i in node.args]
    elems = elems or ["f32"] * len(types)
    if [t[1] for t in types] != elems or node.out_types[0][1] != "f32":
        return None
    out = node.out_types[0][0]
    if any(len(shape) > len(out) for shape, _ in types):
        return None
    fn = _Fn(name, node.loc, [(shape, e) for (shape, _), e in zip(types, elems)], out)
    empty = fn.op(f"tensor.empty() : {_tt(out)}")

    def body(args):
        b = _Body(fn)
        return b.lines, [compute(b, args[:len(types)])]

    result = fn.generic(len(out), [(a, shape, _broadcast_map(shape, out), e) for a, (shape, _), e in zip(fn.args, types, elems)],
                        [(empty, out, [f"d{i}" for i in range(len(out))], "f32")], ["parallel"] * len(out), body)[0]
    return fn.text(result)


def _build_clip(node: OnnxNode, name: str, nchwc_block: int | None) -> str | None:
    """(x < lo) ? lo : x, then (hi < y) ? hi : y, an absent bound being -+FLT_MAX: NaN passes through and
    Clip(inf, 0) is 3.4e38 (torch-mlir: unordered compares turn a NaN into a bound, and keeps infinities)."""
    if any(math.prod(node.in_types[i][0]) != 1 for i in node.args[1:]):
        return None
    present = set(node.args)

    def compute(b, args):
        values = dict(zip(node.args, args))
        y = values[0]
        lo = values[1] if 1 in present else b.const(LOW)
        hi = values[2] if 2 in present else b.const(HIGH)
        y = b.sel(b.cmp("olt", y, lo), lo, y)
        return b.sel(b.cmp("olt", hi, y), hi, y)

    return _elementwise(node, name, compute)


def _build_relu(node: OnnxNode, name: str, nchwc_block: int | None) -> str | None:
    """(x < 0) ? 0 : x: keeps -0.0 and NaN (torch-mlir: x > 0 ? x : 0 turns -0.0 into +0.0)."""
    def compute(b, a):
        zero = b.const("0.000000e+00")
        return b.sel(b.cmp("olt", a[0], zero), zero, a[0])

    return _elementwise(node, name, compute)


def _build_max_min(node: OnnxNode, name: str, nchwc_block: int | None) -> str | None:
    """Left fold of isnan(acc) ? acc : (acc > x ? acc : x) (Min: <): a NaN from any input (torch-mlir: only from
    the second operand of each step)."""
    predicate = "ogt" if node.op_type == "Max" else "olt"

    def compute(b, args):
        acc = args[0]
        for x in args[1:]:
            acc = b.sel(b.cmp("uno", acc, acc), acc, b.sel(b.cmp(predicate, acc, x), acc, x))
        if len(args) == 1:
            acc = b.op(f"arith.addf {acc}, {b.const('-0.000000e+00')} : f32")  # a copy (x + -0.0 == x, -0.0 kept)
        return acc

    return _elementwise(node, name, compute)


def _build_where(node: OnnxNode, name: str, nchwc_block: int | None) -> str | None:
    """c ? x + 0.0 : y: onnxruntime's Where turns a selected x = -0.0 into +0.0 (not a selected y)."""
    if len(node.args) != 3:
        return None
    return _elementwise(node, name, lambda b, a: b.sel(a[0], b.op(f"arith.addf {a[1]}, {b.const('0.000000e+00')} : f32"), a[2]),
                        ["i1", "f32", "f32"])


def _build_sign(node: OnnxNode, name: str, nchwc_block: int | None) -> str | None:
    """isnan(x) ? x : x > 0 ? 1 : x < 0 ? -1 : 0: Sign(NaN) = NaN (torch-mlir: 0), Sign(-0.0) = +0.0."""
    def compute(b, a):
        x = a[0]
        zero = b.const("0.000000e+00")
        y = b.sel(b.cmp("ogt", x, zero), b.const("1.000000e+00"), zero)
        y = b.sel(b.cmp("olt", x, zero), b.const("-1.000000e+00"), y)
        return b.sel(b.cmp("uno", x, x), x, y)

    return _elementwise(node, name, compute)


def _build_elu(node: OnnxNode, name: str, nchwc_block: int | None) -> str | None:
    """x >= 0 ? x : alpha * (exp(x) - 1): Elu(-0.0) = -0.0 (torch-mlir: max(0, x) + ... gives +0.0)."""
    alpha = float(node.attrs.get("alpha", 1.0))

    def compute(b, a):
        x = a[0]
        expm1 = b.op(f"arith.subf {b.op(f'math.exp {x} : f32')}, {b.const('1.000000e+00')} : f32")
        neg = b.op(f"arith.mulf {b.const(_f32_literal(alpha))}, {expm1} : f32")
        return b.sel(b.cmp("oge", x, b.const("0.000000e+00")), x, neg)

    return _elementwise(node, name, compute)


def _build_fmod(node: OnnxNode, name: str, nchwc_block: int | None) -> str | None:
    """Mod(fmod=1) on floats is C fmod: fmod(x, inf) = x, fmod(-0.0, y) = -0.0 (torch-mlir: x - trunc(x / y) * y)."""
    if node.attrs.get("fmod", 0) != 1 or len(node.args) != 2:
        return None
    return _elementwise(node, name, lambda b, a: b.op(f"arith.remf {a[0]}, {a[1]} : f32"))


# window folds ---------------------------------------------------------------------------------------------------

@dataclass
class _Dim:
    """One dim of a windowed fold: `keep` (output = input[d + offset], size `size`) or a window of `kernel` taps."""

    size: int                      # output size
    kernel: int = 0                # 0: a kept dim
    stride: int = 1
    dilation: int = 1
    start: int = 0                 # input coordinate of output 0's first tap (-pad), or a kept dim's offset
    extent: int = 0                # input size (taps outside [0, extent) are not read)


def _bands(dim: _Dim) -> list[tuple[int, int, int, int]]:
    """(first output, output count, first valid tap, valid tap count) runs with the same valid taps."""
    runs: list[list[int]] = []
    for o in range(dim.size):
        origin = o * dim.stride + dim.start
        lo = max(0, math.ceil(-origin / dim.dilation)) if origin < 0 else 0
        hi = min(dim.kernel, (dim.extent - 1 - origin) // dim.dilation + 1) if origin < dim.extent else 0
        hi = max(hi, lo)
        if runs and runs[-1][2:] == [lo, hi]:
            runs[-1][1] += 1
        else:
            runs.append([o, 1, lo, hi])
    return [(o, n, lo, hi - lo) for o, n, lo, hi in runs]


def _window_fold(fn: _Fn, x: str, x_shape: list[int], dims: list[_Dim], kind: str, init: str) -> str:
    """Fold every output's in-bounds window taps in row-major order: acc = fold(acc, tap), acc starting at LOW,
    NEG_INF, or `first` (the window's first in-bounds tap; S folds only). Border outputs whose window is clipped get
    their own op (a band), so no tap is ever padded; a window without a tap gives LOW (as onnxruntime's loops).
    Returns a tensor of shape [d.size for d in dims]."""
    per_dim = [_bands(d) if d.kernel else [(0, d.size, 0, 0)] for d in dims]

    def region(choice: list[tuple[int, int, int, int]]) -> str:
        out_shape = [n for _, n, _, _ in choice]
        win = [i for i, d in enumerate(dims) if d.kernel]
        taps = {i: choice[i][3] for i in win}
        nd = len(dims) + len(win)
        tap_dim = {i: len(dims) + j for j, i in enumerate(win)}
        ident = [f"d{i}" for i in range(len(dims))]
        empty = any(taps[i] == 0 for i in win)
        # the band reads a slice of x that starts at its first tap: the maps stay free of constants, as in a pooling op
        offsets = [d.start if not d.kernel else o0 * d.stride + d.start + lo * d.dilation for d, (o0, _, lo, _) in zip(dims, choice)]
        sizes = [d.size if not d.kernel else (n - 1) * d.stride + max(taps[i] - 1, 0) * d.dilation + 1
                 for i, (d, (_, n, _, _)) in enumerate(zip(dims, choice))]
        xs = fn.slice(x, x_shape, offsets, sizes)

        def coord(i: int, with_tap: bool) -> str:
            d = dims[i]
            if not d.kernel:
                return f"d{i}"
            return _affine([(i, d.stride)] + ([(tap_dim[i], d.dilation)] if with_tap else []))

        acc0 = fn.fill(LOW if init == "low" or empty else NEG_INF, out_shape)
        if empty:
            return acc0

        def body(args):
            b = _Body(fn)
            return b.lines, [b.fold(kind, args[1], args[0])]

        folded = fn.generic(nd, [(xs, sizes, [coord(i, True) for i in range(len(dims))])], [(acc0, out_shape, ident, "f32")],
                            ["parallel"] * len(dims) + ["reduction"] * len(win), body, [(tap_dim[i], taps[i]) for i in win])[0]
        if init != "first":
            return folded
        # std::max from the first tap t0 = S(t0, the same fold from -inf over all taps): a NaN t0 stays, ties keep t0.
        # (No accumulator initialized from a tensor: the FPGA backend's reductions start from a constant.)
        assert kind == "S"

        def from_first(args):
            b = _Body(fn)
            return b.lines, [b.fold("S", args[0], args[1])]

        return fn.generic(len(dims), [(xs, sizes, [coord(i, False) for i in range(len(dims))]), (folded, out_shape, ident)],
                          [(fn.op(f"tensor.empty() : {_tt(out_shape)}"), out_shape, ident, "f32")], ["parallel"] * len(dims),
                          from_first)[0]

    def assemble(level: int, prefix: list) -> tuple[str, list[int]]:
        if level == len(dims):
            return region(prefix), [n for _, n, _, _ in prefix]
        parts = [assemble(level + 1, prefix + [band]) for band in per_dim[level]]
        if len(parts) == 1:
            return parts[0]
        shape = list(parts[0][1])
        shape[level] = sum(p[1][level] for p in parts)
        types = ", ".join(_tt(p[1]) for p in parts)
        return fn.op(f"tensor.concat dim({level}) {', '.join(p[0] for p in parts)} : ({types}) -> {_tt(shape)}"), shape

    return assemble(0, [])[0]


# pooling ---------------------------------------------------------------------------------------------------------

def _pool_geometry(node: OnnxNode, x_shape: list[int], y_shape: list[int], global_: bool):
    spatial = x_shape[2:]
    n = len(spatial)
    if global_:
        return list(spatial), [1] * n, [1] * n, [0] * (2 * n)
    kernel = list(node.attrs.get("kernel_shape", spatial))
    strides = list(node.attrs.get("strides", [1] * n))
    dilations = list(node.attrs.get("dilations", [1] * n))
    auto_pad = node.attrs.get("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER", "VALID"):
        pads = [0] * (2 * n)
        if auto_pad != "VALID":
            for i in range(n):
                total = max(0, (y_shape[2 + i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - spatial[i])
                small = total // 2
                pads[i], pads[n + i] = (small, total - small) if auto_pad == "SAME_UPPER" else (total - small, small)
    else:
        pads = list(node.attrs.get("pads", [0] * (2 * n)))
    return kernel, strides, dilations, pads


def _build_maxpool(node: OnnxNode, name: str, nchwc_block: int | None) -> str | None:
    """onnxruntime's float max pooling, kernel by kernel (see README "NaN/Inf semantics"):
    NCHWc (4-D input, channels a multiple of the NCHWc block): maxps from -FLT_MAX over the in-bounds taps;
    dilation or storage_order: std::max from the first in-bounds tap; MLAS global kernel (window = whole input):
    4 maxps lanes, a maxps tree, std::max over the remainder; MLAS 2-D/3-D vector kernel (W stride <= 2, kernel <= 32):
    per column over the rows (maxps, or std::max for the last W % 4 columns), then maxps along a row padded with
    -FLT_MAX; otherwise the MLAS generic kernel: std::max from -FLT_MAX."""
    global_ = node.op_type == "GlobalMaxPool"
    x_shape, y_shape = node.in_types[0][0], node.out_types[0][0]
    if node.in_types[0][1] != "f32" or node.out_types[0][1] != "f32" or len(x_shape) < 3:
        return None
    kernel, strides, dilations, pads = _pool_geometry(node, x_shape, y_shape, global_)
    n = len(kernel)
    spatial = x_shape[2:]
    fn = _Fn(name, node.loc, [(x_shape, "f32")], y_shape)
    keep = [_Dim(x_shape[0], extent=x_shape[0]), _Dim(x_shape[1], extent=x_shape[1])]

    def windows(out: list[int], dil: list[int]) -> list[_Dim]:
        return keep + [_Dim(out[i], kernel[i], strides[i], dil[i], -pads[i], spatial[i]) for i in range(n)]

    out_spatial = y_shape[2:]
    if len(x_shape) == 4 and nchwc_block and x_shape[1] % nchwc_block == 0:
        result = _window_fold(fn, fn.arg, x_shape, windows(out_spatial, dilations), "P", "low")
    elif any(d > 1 for d in dilations) or node.attrs.get("storage_order", 0):
        result = _window_fold(fn, fn.arg, x_shape, windows(out_spatial, dilations), "S", "first")
    elif kernel == list(spatial) and all(s == 1 for s in strides) and not any(pads):
        result = _mlas_global(fn, x_shape, y_shape)
    elif n >= 2 and strides[-1] <= 2 and all(k <= 32 for k in kernel) and 2045 - pads[n - 1] - pads[2 * n - 1] >= spatial[-1]:
        result = _mlas_vector(fn, x_shape, out_spatial, kernel, strides, pads)
    else:
        result = _window_fold(fn, fn.arg, x_shape, windows(out_spatial, [1] * n), "S", "low")
    return fn.text(result)


def _mlas_global(fn: _Fn, x_shape: list[int], y_shape: list[int]) -> str:
    """MlasPoolGlobalKernel: maxps over 4 lanes (element i in lane i % 4) from -FLT_MAX, the lanes combined as
    maxps(maxps(l0, l2), maxps(l1, l3)), then std::max with the last size % 4 elements."""
    lead = x_shape[:2]
    size = math.prod(x_shape[2:])
    reassoc = "[[0], [1], [" + ", ".join(str(i) for i in range(2, len(x_shape))) + "]]"
    flat = fn.op(f"tensor.collapse_shape {fn.arg} {reassoc} : {_tt(x_shape)} into {_tt(lead + [size])}")
    q, r = divmod(size, 4)
    ins = []
    if q:
        lanes_init = fn.fill(LOW, lead + [4])

        def lane_body(args):
            b = _Body(fn)
            return b.lines, [b.fold("P", args[1], args[0])]

        lanes = fn.generic(4, [(flat, lead + [size], ["d0", "d1", _affine([(3, 4), (2, 1)])])],
                           [(lanes_init, lead + [4], ["d0", "d1", "d2"], "f32")],
                           ["parallel", "parallel", "parallel", "reduction"], lane_body, [(3, q)])[0]
        ins += [(lanes, lead + [4], ["d0", "d1", str(lane)]) for lane in range(4)]
    ins += [(flat, lead + [size], ["d0", "d1", str(4 * q + j)]) for j in range(r)]
    out = fn.op(f"tensor.empty() : {_tt(lead)}")

    def final(args):
        b = _Body(fn)
        if q:
            acc = b.fold("P", b.fold("P", args[0], args[2]), b.fold("P", args[1], args[3]))
            tail = args[4:4 + r]
        else:
            acc = b.op(f"arith.constant {LOW} : f32")
            tail = args[:r]
        for t in tail:
            acc = b.fold("S", acc, t)
        return b.lines, [acc]

    result = fn.generic(2, ins, [(out, lead, ["d0", "d1"], "f32")], ["parallel", "parallel"], final)[0]
    groups = "[[0], [1" + "".join(f", {i}" for i in range(2, len(y_shape))) + "]]"
    return fn.op(f"tensor.expand_shape {result} {groups} output_shape {y_shape} : {_tt(lead)} into {_tt(y_shape)}")


def _mlas_vector(fn: _Fn, x_shape: list[int], out_spatial: list[int], kernel: list[int], strides: list[int], pads: list[int]) -> str:
    """MlasPool2DVectorKernel / MlasPool3DVectorKernel: fold each column over the window's rows (and planes), then
    fold along W over a row buffer padded with -FLT_MAX (4 output columns per vector, every step a maxps)."""
    n = len(kernel)
    W = x_shape[-1]
    main = W - W % 4
    lead = [_Dim(x_shape[0], extent=x_shape[0]), _Dim(x_shape[1], extent=x_shape[1])]
    upper = [_Dim(out_spatial[i], kernel[i], strides[i], 1, -pads[i], x_shape[2 + i]) for i in range(n - 1)]
    # 2-D: rows start at the window's first row (maxps / std::max from it); 3-D: from -FLT_MAX
    init = "neg_inf" if n == 2 else "low"
    parts = []
    if main:
        parts.append((_window_fold(fn, fn.arg, x_shape, lead + upper + [_Dim(main, extent=W)], "P", init), main))
    if main < W:
        parts.append((_window_fold(fn, fn.arg, x_shape, lead + upper + [_Dim(W - main, start=main, extent=W)], "S",
                                   "first" if n == 2 else "low"), W - main))
    col_shape = x_shape[:2] + out_spatial[:-1] + [W]
    if len(parts) == 2:
        types = ", ".join(_tt(col_shape[:-1] + [w]) for _, w in parts)
        cols = fn.op(f"tensor.concat dim({len(col_shape) - 1}) {parts[0][0]}, {parts[1][0]} : ({types}) -> {_tt(col_shape)}")
    else:
        cols = parts[0][0]
    left = pads[n - 1]
    reach = (out_spatial[-1] - 1) * strides[-1] + kernel[-1]
    right = max(0, reach - left - W)
    buf_shape = col_shape[:-1] + [left + W + right]
    if left or right:
        low = fn.const(LOW)
        idx = ", ".join(f"%i{fn.count}_{i}: index" for i in range(len(col_shape)))
        zeros = ", ".join("0" for _ in col_shape[:-1])
        pad_name = fn.v()
        fn.lines.append(f"    {pad_name} = tensor.pad {cols} low[{zeros}, {left}] high[{zeros}, {right}] {{\n"
                        f"    ^bb0({idx}):\n      tensor.yield {low} : f32 loc({fn.loc})\n"
                        f"    }} : {_tt(col_shape)} to {_tt(buf_shape)} loc({fn.loc})")
        cols = pad_name
    dims = [_Dim(s, extent=s) for s in col_shape[:-1]] + [_Dim(out_spatial[-1], kernel[-1], strides[-1], 1, 0, buf_shape[-1])]
    return _window_fold(fn, cols, buf_shape, dims, "P", "neg_inf")


# ArgMax ----------------------------------------------------------------------------------------------------------

def _build_argmax(node: OnnxNode, name: str, nchwc_block: int | None) -> str | None:
    """onnxruntime's ArgMax: from the first element, move on when `x > best` (`x >= best` with select_last_index):
    a NaN is never chosen unless it comes first, and then it stays. A 1-D input without select_last_index goes through
    Eigen's maxCoeff(&index) instead: the first NaN wins (then stays), else the first maximum. ArgMin is the same
    with `<` / `<=` (measured: [inf, -0, nan, -1, inf] -> 3; an all-NaN row -> 0; 1-D [3, nan, 1] -> 1)."""
    minimum = node.op_type == "ArgMin"
    x_shape, y_type = node.in_types[0][0], node.out_types[0]
    if y_type is None or y_type[1] != "i64" or not x_shape or node.in_types[0][1] != "f32":
        return None
    axis = int(node.attrs.get("axis", 0)) % len(x_shape)
    keepdims = int(node.attrs.get("keepdims", 1))
    last = int(node.attrs.get("select_last_index", 0))
    out_shape = [s for i, s in enumerate(x_shape) if i != axis]
    fn = _Fn(name, node.loc, [(x_shape, "f32")], y_type[0], "i64")
    nd = len(x_shape)
    out_dims = [f"d{i}" for i in range(nd) if i != axis]
    first_map = [f"d{i}" if i < axis else "0" if i == axis else f"d{i - 1}" for i in range(nd)]
    first = fn.generic(nd - 1, [(fn.arg, x_shape, first_map)],
                       [(fn.op(f"tensor.empty() : {_tt(out_shape)}"), out_shape, [f"d{i}" for i in range(nd - 1)], "f32")],
                       ["parallel"] * (nd - 1), lambda a: ([], [a[0]]))[0]
    zero = fn.fill("0", out_shape, "i64")

    def body(args):
        b = _Body(fn)
        k = b.op(f"linalg.index {axis} : index")
        k64 = b.op(f"arith.index_cast {k} : index to i64")
        better = b.cmp(("ole" if last else "olt") if minimum else ("oge" if last else "ogt"), args[0], args[1])
        if nd == 1 and not last:
            first_nan = b.op(f"arith.andi {b.cmp('uno', args[0], args[0])}, {b.cmp('ord', args[1], args[1])} : i1")
            better = b.op(f"arith.ori {better}, {first_nan} : i1")
        return b.lines, [b.sel(better, args[0], args[1]), b.sel(better, k64, args[2], "i64")]

    _, index = fn.generic(nd, [(fn.arg, x_shape, [f"d{i}" for i in range(nd)])],
                          [(first, out_shape, out_dims, "f32"), (zero, out_shape, out_dims, "i64")],
                          ["reduction" if i == axis else "parallel" for i in range(nd)], body)
    if keepdims:
        groups = _expand_groups([i for i in range(nd) if i != axis], nd)
        index = fn.op(f"tensor.expand_shape {index} {groups} output_shape {y_type[0]} : {_tt(out_shape, 'i64')} into {_tt(y_type[0], 'i64')}")
    return fn.text(index)


def _expand_groups(kept: list[int], rank: int) -> str:
    """Reassociation that expands a tensor into `rank` dims by inserting unit dims; `kept` are the positions of the
    original dims (each inserted dim joins the group of the kept dim before it, or the first group)."""
    if not kept:
        return "[]"
    groups = [[k] for k in kept]
    for q in range(rank):
        if q not in kept:
            before = [j for j, k in enumerate(kept) if k < q]
            groups[before[-1] if before else 0].append(q)
    return str([sorted(g) for g in groups])


# ReduceMax / ReduceMin -------------------------------------------------------------------------------------------

def _build_reduce(node: OnnxNode, name: str, nchwc_block: int | None) -> str | None:
    """onnxruntime's ReduceMax/ReduceMin: std::max / std::min folds (a NaN is kept only where it starts a fold).
    With the size-1 dims dropped and runs merged, trailing reduced dims ("KR", and all dims) use Eigen's vectorized
    redux per row: 4 lanes from the row's first 16-byte-aligned element (tensors are assumed 16-byte aligned, as numpy
    and onnxruntime allocate them), two packet accumulators, a lane tree, then the leading and trailing leftovers.
    [reduced, kept, reduced] ("RKR") folds the Eigen results of the inner blocks from the first element; a middle run
    ("KRK") is Eigen's rowwise redux (`_eigen_rowwise`); every other layout folds the reduced elements in order from
    the first one."""
    x_shape, y_type = node.in_types[0][0], node.out_types[0]
    if y_type is None or not x_shape or node.in_types[0][1] != "f32" or y_type[1] != "f32":
        return None
    axes = node.attrs.get("axes")
    if axes is None and 1 in node.const_inputs:
        axes = node.const_inputs[1]
    if not axes:
        if node.attrs.get("noop_with_empty_axes", 0):
            return None
        axes = list(range(len(x_shape)))
    axes = sorted({int(a) % len(x_shape) for a in (axes if isinstance(axes, list) else [axes])})
    kind = "S" if node.op_type == "ReduceMax" else "Smin"
    out_shape = [s for i, s in enumerate(x_shape) if i not in axes]
    fn = _Fn(name, node.loc, [(x_shape, "f32")], y_type[0])
    runs: list[list] = []  # [reduced?, size]
    for i, s in enumerate(x_shape):
        if s == 1:
            continue
        red = i in axes
        if runs and runs[-1][0] == red:
            runs[-1][1] *= s
        else:
            runs.append([red, s])
    pattern = "".join("R" if r else "K" for r, _ in runs)
    total = math.prod(x_shape)
    flat = fn.op(f"tensor.collapse_shape {fn.arg} [{list(range(len(x_shape)))}] : {_tt(x_shape)} into {_tt([total])}") \
        if len(x_shape) > 1 else fn.arg
    if pattern in ("R", "KR"):
        rows = total // runs[-1][1]
        result = _eigen_rows(fn, flat, total, rows, runs[-1][1], kind)
    elif pattern == "RKR":
        r1, k, r2 = (s for _, s in runs)
        inner = _eigen_rows(fn, flat, total, r1 * k, r2, kind)      # [r1 * k]
        first = fn.generic(1, [(flat, [total], [_affine([(0, r2)])])],
                           [(fn.op(f"tensor.empty() : {_tt([k])}"), [k], ["d0"], "f32")], ["parallel"], lambda a: ([], [a[0]]))[0]

        def body(args):
            b = _Body(fn)
            return b.lines, [b.fold(kind, args[1], args[0])]

        result = fn.generic(2, [(inner, [r1 * k], [_affine([(1, k), (0, 1)])])], [(first, [k], ["d0"], "f32")],
                            ["parallel", "reduction"], body, [(1, r1)])[0]
    elif pattern == "KRK":
        k1, r, k2 = (s for _, s in runs)
        x3 = fn.op(f"tensor.expand_shape {flat} [[0, 1, 2]] output_shape [{k1}, {r}, {k2}] : {_tt([total])} into {_tt([k1, r, k2])}")
        result = _eigen_rowwise(fn, x3, k1, r, k2, kind)
    elif pattern == "K" or not pattern:
        return None
    else:
        result = _ordered_fold(fn, fn.arg, x_shape, axes, kind)
        if out_shape != [math.prod(out_shape)] and len(out_shape) > 1:
            result = fn.op(f"tensor.collapse_shape {result} [{list(range(len(out_shape)))}] : {_tt(out_shape)} into {_tt([math.prod(out_shape)])}")
        elif not out_shape:
            result = fn.op(f"tensor.expand_shape {result} [] output_shape [1] : {_tt([])} into {_tt([1])}")
    flat_out = [math.prod(out_shape)] if out_shape else [1]
    target = y_type[0]
    if target != flat_out:
        if not target:
            result = fn.op(f"tensor.collapse_shape {result} [] : {_tt(flat_out)} into {_tt([])}")
        else:
            groups = [list(range(len(target)))]
            result = fn.op(f"tensor.expand_shape {result} {groups} output_shape {target} : {_tt(flat_out)} into {_tt(target)}")
    return fn.text(result)


def _interleave(fn: _Fn, parts: list[tuple[str, int]], rows: int, trailing: list[int]) -> str:
    """Rows r = g + len(parts) * i of the result come from parts[g] (its row i): [rows] + trailing."""
    if len(parts) == 1:
        return parts[0][0]
    per = parts[0][1]
    k = len(parts)
    stacked = []
    for value, count in parts:
        if count < per:
            low = fn.const("0.000000e+00")
            padded = fn.v()
            idx = ", ".join(f"%i{fn.count}_{d}: index" for d in range(1 + len(trailing)))
            zeros = "".join(", 0" for _ in trailing)
            fn.lines.append(f"    {padded} = tensor.pad {value} low[0{zeros}] high[{per - count}{zeros}] {{\n    ^bb0({idx}):\n"
                            f"      tensor.yield {low} : f32 loc({fn.loc})\n    }} : {_tt([count] + trailing)} to {_tt([per] + trailing)} "
                            f"loc({fn.loc})")
            value = padded
        groups = [[0, 1]] + [[d + 2] for d in range(len(trailing))]
        stacked.append(fn.op(f"tensor.expand_shape {value} {groups} output_shape {[per, 1] + trailing} : "
                             f"{_tt([per] + trailing)} into {_tt([per, 1] + trailing)}"))
    types = ", ".join(_tt([per, 1] + trailing) for _ in stacked)
    grid = fn.op(f"tensor.concat dim(1) {', '.join(stacked)} : ({types}) -> {_tt([per, k] + trailing)}")
    groups = [[0, 1]] + [[d + 2] for d in range(len(trailing))]
    line = fn.op(f"tensor.collapse_shape {grid} {groups} : {_tt([per, k] + trailing)} into {_tt([per * k] + trailing)}")
    if per * k == rows:
        return line
    return fn.slice(line, [per * k] + trailing, [0] * (1 + len(trailing)), [rows] + trailing)


def _eigen_rowwise(fn: _Fn, x3: str, k1: int, r: int, k2: int, kind: str) -> str:
    """onnxruntime's middle-axis reduction: out[j] = rowwise().maxCoeff() of the [k2 x r] column-major block j.
    Eigen writes out[j] (16-byte aligned base assumed) with 4-float packets from its first aligned element on, and
    element by element before and after. A packet folds the columns as c0, then 4 at a time
    f(p, f(f(c1, c2), f(c3, c4))), then one by one (a NaN in c1 hides c2..c4); an element folds them one by one.
    Returns [k1 * k2]."""
    period = 4 // math.gcd(k2, 4)
    size4 = (r - 1) & ~3
    groups = size4 // 4
    parts = []
    for g in range(min(period, k1)):
        count = -(-(k1 - g) // period)
        row = _affine([(0, period)], g)
        start = (-(g * k2)) % 4
        start = min(start, k2)
        packets = (k2 - start) // 4
        pieces = []

        def fold_body(args):
            b = _Body(fn)
            return b.lines, [b.fold(kind, args[1], args[0])]

        def linear(c0: int, width: int) -> str:
            empty = fn.op(f"tensor.empty() : {_tt([count, width])}")
            first = fn.generic(2, [(x3, [k1, r, k2], [row, "0", _affine([(1, 1)], c0)])], [(empty, [count, width], ["d0", "d1"], "f32")],
                               ["parallel", "parallel"], lambda a: ([], [a[0]]))[0]
            return fn.generic(3, [(x3, [k1, r, k2], [row, "d2", _affine([(1, 1)], c0)])], [(first, [count, width], ["d0", "d1"], "f32")],
                              ["parallel", "parallel", "reduction"], fold_body)[0]

        def vectorized(c0: int, width: int) -> str:
            empty = fn.op(f"tensor.empty() : {_tt([count, width])}")
            acc = fn.generic(2, [(x3, [k1, r, k2], [row, "0", _affine([(1, 1)], c0)])], [(empty, [count, width], ["d0", "d1"], "f32")],
                             ["parallel", "parallel"], lambda a: ([], [a[0]]))[0]
            if groups:
                quad = fn.op(f"tensor.empty() : {_tt([count, groups, width])}")

                def quad_body(args):
                    b = _Body(fn)
                    return b.lines, [b.fold(kind, b.fold(kind, args[0], args[1]), b.fold(kind, args[2], args[3]))]

                q = fn.generic(3, [(x3, [k1, r, k2], [row, _affine([(1, 4)], 1 + j), _affine([(2, 1)], c0)]) for j in range(4)],
                               [(quad, [count, groups, width], ["d0", "d1", "d2"], "f32")], ["parallel"] * 3, quad_body)[0]
                acc = fn.generic(3, [(q, [count, groups, width], ["d0", "d2", "d1"])], [(acc, [count, width], ["d0", "d1"], "f32")],
                                 ["parallel", "parallel", "reduction"], fold_body)[0]
            rest = r - 1 - 4 * groups
            if rest:
                acc = fn.generic(3, [(x3, [k1, r, k2], [row, _affine([(2, 1)], 1 + 4 * groups), _affine([(1, 1)], c0)])],
                                 [(acc, [count, width], ["d0", "d1"], "f32")], ["parallel", "parallel", "reduction"], fold_body,
                                 [(2, rest)])[0]
            return acc

        if start:
            pieces.append((linear(0, start), start))
        if packets:
            pieces.append((vectorized(start, 4 * packets), 4 * packets))
        if start + 4 * packets < k2:
            pieces.append((linear(start + 4 * packets, k2 - start - 4 * packets), k2 - start - 4 * packets))
        if len(pieces) == 1:
            part = pieces[0][0]
        else:
            types = ", ".join(_tt([count, w]) for _, w in pieces)
            part = fn.op(f"tensor.concat dim(1) {', '.join(v for v, _ in pieces)} : ({types}) -> {_tt([count, k2])}")
        parts.append((part, count))
    out = _interleave(fn, parts, k1, [k2])
    return fn.op(f"tensor.collapse_shape {out} [[0, 1]] : {_tt([k1, k2])} into {_tt([k1 * k2])}")


def _ordered_fold(fn: _Fn, x: str, x_shape: list[int], axes: list[int], kind: str) -> str:
    """Fold the reduced elements of each output in row-major order, starting from the first one."""
    nd = len(x_shape)
    kept = [i for i in range(nd) if i not in axes]
    out_shape = [x_shape[i] for i in kept]
    # loop dims: kept dims first (d0..), then the reduced dims in order
    order = kept + axes
    pos = {dim: j for j, dim in enumerate(order)}
    x_map = [f"d{pos[i]}" for i in range(nd)]
    out_map = [f"d{j}" for j in range(len(kept))]
    first_map = [f"d{kept.index(i)}" if i in kept else "0" for i in range(nd)]
    empty = fn.op(f"tensor.empty() : {_tt(out_shape)}")
    first = fn.generic(len(kept), [(x, x_shape, first_map)], [(empty, out_shape, out_map, "f32")],
                       ["parallel"] * len(kept), lambda a: ([], [a[0]]))[0]

    def body(args):
        b = _Body(fn)
        return b.lines, [b.fold(kind, args[1], args[0])]

    return fn.generic(nd, [(x, x_shape, x_map)], [(first, out_shape, out_map, "f32")],
                      ["parallel"] * len(kept) + ["reduction"] * len(axes), body)[0]


def _eigen_rows(fn: _Fn, flat: str, total: int, rows: int, length: int, kind: str) -> str:
    """Eigen's redux (SSE packets of 4, the max/min functor) of each row `flat[r * length : (r + 1) * length]`,
    assuming `flat` starts 16-byte aligned. Rows with the same start alignment share one computation (a class of
    rows r = g + period * i); the classes are interleaved back into row order. Returns a [rows] tensor."""
    period = 4 // math.gcd(length, 4)
    grid = fn.op(f"tensor.expand_shape {flat} [[0, 1]] output_shape [{rows}, {length}] : {_tt([total])} into {_tt([rows, length])}") \
        if rows > 1 else None
    classes = []
    for g in range(min(period, rows)):
        count = -(-(rows - g) // period)
        classes.append((_eigen_class(fn, flat, grid, total, g, period, count, rows, length, kind), count))
    return _interleave(fn, classes, rows, [])


def _eigen_class(fn: _Fn, flat: str, grid: str | None, total: int, g: int, period: int, count: int, rows: int, length: int,
                 kind: str) -> str:
    align = (-(g * length)) % 4
    base = [(0, period * length)]            # row r = g + period * d0 starts at element r * length

    def at(offset: int, extra: list[tuple[int, int]] = ()) -> str:
        return _affine(base + list(extra), g * length + offset)

    def fold_body(args):
        b = _Body(fn)
        return b.lines, [b.fold(kind, args[1], args[0])]

    out = fn.op(f"tensor.empty() : {_tt([count])}")
    if length - align < 4:  # too short to vectorize: element by element from the first
        ins = [(flat, [total], [at(j)]) for j in range(length)]

        def scalar(args):
            b = _Body(fn)
            acc = args[0]
            for v in args[1:length]:
                acc = b.fold(kind, acc, v)
            return b.lines, [acc]

        return fn.generic(1, ins, [(out, [count], ["d0"], "f32")], ["parallel"], scalar)[0]
    packets = (length - align) // 4
    pairs = packets // 2
    ins = []
    if packets >= 2:
        # the two packet accumulators side by side: lanes 0-3 fold packets 0, 2, 4, ..., lanes 4-7 packets 1, 3, ...
        # (the row's pairs of packets as [count, pairs, 8] plain dims: the fold vectorizes along the 8 lanes)
        src = grid if grid is not None else fn.op(f"tensor.expand_shape {flat} [[0, 1]] output_shape [1, {length}] : "
                                                  f"{_tt([total])} into {_tt([1, length])}")
        seg = fn.op(f"tensor.extract_slice {src}[{g}, {align}] [{count}, {8 * pairs}] [{period}, 1] : "
                    f"{_tt([rows, length])} to {_tt([count, 8 * pairs])}")
        seg = fn.op(f"tensor.expand_shape {seg} [[0], [1, 2]] output_shape [{count}, {pairs}, 8] : "
                    f"{_tt([count, 8 * pairs])} into {_tt([count, pairs, 8])}")
        lanes_init = fn.op(f"tensor.empty() : {_tt([count, 8])}")
        lanes = fn.generic(2, [(seg, [count, pairs, 8], ["d0", "0", "d1"])], [(lanes_init, [count, 8], ["d0", "d1"], "f32")],
                           ["parallel", "parallel"], lambda a: ([], [a[0]]))[0]
        if pairs > 1:
            lanes = fn.generic(3, [(seg, [count, pairs, 8], ["d0", "d1", "d2"])], [(lanes, [count, 8], ["d0", "d2"], "f32")],
                               ["parallel", "reduction", "parallel"], fold_body)[0]
        ins += [(lanes, [count, 8], ["d0", str(lane)]) for lane in range(8)]
        if packets % 2:
            ins += [(flat, [total], [at(align + 4 * (packets - 1) + lane)]) for lane in range(4)]
    else:
        ins += [(flat, [total], [at(align + lane)]) for lane in range(4)]
    end = align + 4 * packets
    leftovers = list(range(align)) + list(range(end, length))
    ins += [(flat, [total], [at(j)]) for j in leftovers]

    def final(args):
        b = _Body(fn)
        lanes = args[:4]
        rest = args[4:len(ins)]
        if packets >= 2:
            lanes = [b.fold(kind, lanes[i], rest[i]) for i in range(4)]
            rest = rest[4:]
            if packets % 2:
                lanes = [b.fold(kind, lanes[i], rest[i]) for i in range(4)]
                rest = rest[4:]
        acc = b.fold(kind, b.fold(kind, lanes[0], lanes[2]), b.fold(kind, lanes[1], lanes[3]))
        for v in rest:
            acc = b.fold(kind, acc, v)
        return b.lines, [acc]

    return fn.generic(1, ins, [(out, [count], ["d0"], "f32")], ["parallel"], final)[0]


_BUILDERS = {"Clip": _build_clip, "Relu": _build_relu, "Max": _build_max_min, "Min": _build_max_min, "Where": _build_where,
             "Sign": _build_sign, "Elu": _build_elu, "Mod": _build_fmod, "MaxPool": _build_maxpool, "GlobalMaxPool": _build_maxpool,
             "ArgMax": _build_argmax, "ArgMin": _build_argmax, "ReduceMax": _build_reduce, "ReduceMin": _build_reduce}
