"""Unsigned 16-, 32- and 64-bit integers, computed exactly in signed types.

MLIR integers are signless and torch has no uint16/uint32/uint64, so the converter would compare, divide, take
maxima and shift these tensors as signed numbers: wrong results for values with the top bit set. This rewrite keeps
every unsigned value in a representation whose signed arithmetic is exact:

- UINT16 and UINT32 values are *widened*: an INT32 (resp. INT64) tensor holding the value itself, 0..2^16-1
  (0..2^32-1). Comparisons, Div, Mod, Max/Min, bitwise And/Or/Xor and right shifts of such non-negative values are
  exact; Add, Sub, Mul, BitwiseNot and left shifts are followed by a wrap (Mod 2^16 / 2^32, which takes the
  divisor's sign), which gives the wrap-around result (the low bits of a product are exact however far the wide
  type overflows).
- UINT64 has no wider type: its values stay INT64 bit patterns. Only what is exact on bit patterns is compiled:
  Add, Sub, Mul, bitwise ops, left shifts, Equal, and comparisons / Max / Min after flipping the top bit of both
  sides (x + 2^63, wrapping, orders as a signed number as x does unsigned). Div, Mod, right shifts and a Cast to a float type
  are refused, naming the node.

At the bundle boundary a tensor keeps its storage type: a uint16 input arrives as the same bytes typed INT16, is
sign-extended by a Cast and wrapped back to its value; a UINT32 output leaves through a Cast to INT32 (the low
bits), a UINT16 one through a Gather from a table of the 65,536 INT16 bit patterns (torch-mlir's Cast has no INT16
target). The manifest keeps the model's dtypes (uint16, uint32, uint64; driver._storage_dtype). Any
other node that reads or writes one of these types is refused with its name, op and type: hcc does not guess.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hcc.errors import HccError
from hcc.frontend.names import fresh_name

U16, U32, U64 = TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64
UNSIGNED = (U16, U32, U64)
REPRESENTATION = {U16: TensorProto.INT32, U32: TensorProto.INT64, U64: TensorProto.INT64}  # computed in
STORAGE = {U16: TensorProto.INT16, U32: TensorProto.INT32, U64: TensorProto.INT64}  # same bytes at the boundary
MASK = {U16: 0xFFFF, U32: 0xFFFFFFFF}
NUMPY = {U16: np.int32, U32: np.int64, U64: np.int64}
TOP_BIT = np.int64(-(2**63))

# Ops whose result does not depend on the element values: the representation passes through unchanged.
STRUCTURAL = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Slice", "Gather",
              "GatherElements", "GatherND", "Expand", "Tile", "Split", "Shape", "Size", "Where", "Pad", "DepthToSpace",
              "SpaceToDepth", "Compress", "ReverseSequence", "Trilu"}
EXACT_WIDE = {"Div", "Mod", "Max", "Min", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual",
              "BitwiseAnd", "BitwiseOr", "BitwiseXor"}  # exact on non-negative widened values
WRAPPING = {"Add", "Sub", "Mul", "BitwiseNot", "ReduceSum"}  # exact modulo 2^64 in any integer type: mask afterwards
ORDERED = {"Greater", "Less", "GreaterOrEqual", "LessOrEqual", "Max", "Min"}  # UINT64: after flipping the top bit
BITWISE_U64 = {"Equal", "BitwiseAnd", "BitwiseOr", "BitwiseXor"}


def has_wide_unsigned(model: onnx.ModelProto) -> bool:
    graph = model.graph
    values = list(graph.input) + list(graph.output) + list(graph.value_info)
    return (any(v.type.tensor_type.elem_type in UNSIGNED for v in values if v.type.HasField("tensor_type"))
            or any(i.data_type in UNSIGNED for i in graph.initializer)
            or any(a.t.data_type in UNSIGNED for n in graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR))


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, path: str):
        self.model, self.path, self.graph = model, path, model.graph
        self.types: dict[str, int] = {}
        self.shapes: dict[str, onnx.TensorShapeProto | None] = {}
        for value in list(self.graph.input) + list(self.graph.value_info) + list(self.graph.output):
            if value.type.HasField("tensor_type"):
                self.types[value.name] = value.type.tensor_type.elem_type
                self.shapes[value.name] = value.type.tensor_type.shape if value.type.tensor_type.HasField("shape") else None
        for init in self.graph.initializer:
            self.types[init.name] = init.data_type
            self.shapes[init.name] = helper.make_tensor_type_proto(init.data_type, list(init.dims)).tensor_type.shape
        self.new_infos: list[onnx.ValueInfoProto] = []  # every value the rewrite creates, typed (BitShift on a
        # signed type breaks ONNX's type constraints, so shape inference cannot be relied on to type them)
        self.taken = set(self.types) | {o for n in self.graph.node for o in n.output} | {n.name for n in self.graph.node}
        self.new_inits: list[onnx.TensorProto] = []
        self.constants: dict[tuple[int, int], str] = {}
        self.tables: dict[str, str] = {}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)

    def fresh(self, base: str) -> str:
        return fresh_name(base, self.taken)

    def value(self, base: str, elem: int, like: str) -> str:
        """A fresh value name of type `elem` with the shape of `like`."""
        name = self.fresh(base)
        info = onnx.ValueInfoProto(name=name)
        info.type.tensor_type.elem_type = elem
        shape = self.shapes.get(like)
        if shape is not None:
            info.type.tensor_type.shape.CopyFrom(shape)
        self.new_infos.append(info)
        return name

    def constant(self, value: int, elem: int) -> str:
        key = (value, elem)
        if key not in self.constants:
            name = self.fresh(f"hcc_unsigned_const_{TensorProto.DataType.Name(elem).lower()}_{value & 0xFFFFFFFFFFFFFFFF:x}")
            dtype = np.int32 if elem == TensorProto.INT32 else np.int64
            self.new_inits.append(numpy_helper.from_array(np.array(value, dtype=dtype), name))
            self.constants[key] = name
        return self.constants[key]

    def int16_table(self) -> str:
        """INT16 bit patterns of 0..65535, indexed by a UINT16 value (the narrowing Gather's table)."""
        if "table" not in self.tables:
            name = self.fresh("hcc_uint16_bits")
            self.new_inits.append(numpy_helper.from_array(np.arange(65536, dtype=np.uint16).view(np.int16), name))
            self.tables["table"] = name
        return self.tables["table"]

    def refuse(self, node: onnx.NodeProto, elem: int, why: str) -> HccError:
        return HccError(f"{self.path}: node '{node.name}' ({node.op_type}) on {TensorProto.DataType.Name(elem)}: {why}",
                        hint="hcc computes UINT16/UINT32 in a wider signed type and UINT64 as bit patterns; "
                             "ops that are not exact that way are refused rather than computed as signed numbers")

    def node_type(self, node: onnx.NodeProto) -> int | None:
        """The unsigned type a node reads or writes (None when it touches none)."""
        for name in list(node.input) + list(node.output):
            if name and self.types.get(name) in UNSIGNED:
                return self.types[name]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type in UNSIGNED:
                return attr.t.data_type
        return None


def _wide_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    array = numpy_helper.to_array(tensor)
    wide = array.view(np.int64) if tensor.data_type == U64 else array.astype(NUMPY[tensor.data_type])
    return numpy_helper.from_array(np.ascontiguousarray(wide), tensor.name)


def widen_unsigned(model: onnx.ModelProto, path: str = "model") -> dict[str, int]:
    """Rewrite, in place, every UINT16/UINT32/UINT64 value into its exact signed representation (module docstring);
    returns the model inputs' and outputs' original element types by name (for the manifest's dtypes)."""
    if not has_wide_unsigned(model):
        return {}
    r = _Rewriter(model, path)
    graph = model.graph
    declared = {v.name: v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output)
                if v.type.tensor_type.elem_type in UNSIGNED}
    for i, init in enumerate(graph.initializer):
        if init.data_type in UNSIGNED:
            graph.initializer[i].CopyFrom(_wide_tensor(init))
    front, rename = _widen_inputs(r)
    body: list[onnx.NodeProto] = []
    for node in graph.node:
        node.input[:] = [rename.get(name, name) for name in node.input]
        elem = r.node_type(node)
        body.extend([node] if elem is None else _rewrite_node(r, node, elem))
    back = _narrow_outputs(r, body)
    del graph.node[:]
    graph.node.extend(front + body + back)
    graph.initializer.extend(r.new_inits)
    for value in graph.value_info:  # intermediates: the representation's type
        if value.type.tensor_type.elem_type in UNSIGNED:
            value.type.tensor_type.elem_type = REPRESENTATION[value.type.tensor_type.elem_type]
    graph.value_info.extend(r.new_infos)
    return declared


def _widen_inputs(r: _Rewriter) -> tuple[list[onnx.NodeProto], dict[str, str]]:
    """Inputs arrive as their storage type (the same bytes); UINT16/32 are sign-extended and wrapped to the value."""
    front: list[onnx.NodeProto] = []
    rename: dict[str, str] = {}
    initializer_names = {init.name for init in r.graph.initializer}
    for value in r.graph.input:
        elem = value.type.tensor_type.elem_type
        if elem not in UNSIGNED:
            continue
        value.type.tensor_type.elem_type = STORAGE[elem] if value.name not in initializer_names else REPRESENTATION[elem]
        if value.name in initializer_names or elem == U64:
            continue
        signed = r.value(f"{value.name}__hcc_sext", REPRESENTATION[elem], value.name)
        wide = r.value(f"{value.name}__hcc_wide", REPRESENTATION[elem], value.name)
        front.append(helper.make_node("Cast", [value.name], [signed], name=r.fresh(f"{value.name}/hcc_widen"), to=REPRESENTATION[elem]))
        front.extend(_wrap(r, signed, wide, elem, f"{value.name}/hcc_wrap"))
        rename[value.name] = wide
    return front, rename


def _narrow_outputs(r: _Rewriter, body: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """Outputs leave as their storage type: UINT32 through a Cast to INT32 (the low bits); UINT16 through a Gather
    from a 65,536-entry INT16 table, because torch-mlir's Cast has no INT16 target."""
    back: list[onnx.NodeProto] = []
    for value in r.graph.output:
        elem = value.type.tensor_type.elem_type
        if elem not in UNSIGNED:
            continue
        value.type.tensor_type.elem_type = STORAGE[elem]
        if elem == U64:
            continue
        wide = r.value(f"{value.name}__hcc_wide", REPRESENTATION[elem], value.name)
        for node in body:
            node.output[:] = [wide if o == value.name else o for o in node.output]
            node.input[:] = [wide if i == value.name else i for i in node.input]
        if elem == U32:
            back.append(helper.make_node("Cast", [wide], [value.name], name=r.fresh(f"{value.name}/hcc_narrow"), to=STORAGE[elem]))
        else:  # the index wrapped once more: no representation error can ever read outside the table
            index = r.value(f"{value.name}__hcc_index", REPRESENTATION[elem], value.name)
            back.extend(_wrap(r, wide, index, elem, f"{value.name}/hcc_index"))
            back.append(helper.make_node("Gather", [r.int16_table(), index], [value.name], name=r.fresh(f"{value.name}/hcc_narrow"), axis=0))
    return back


def _wrap(r: _Rewriter, raw: str, out: str, elem: int, name: str, rep: int | None = None) -> list[onnx.NodeProto]:
    """out = raw mod 2^16 (2^32) for any raw, negative or overflowed: ONNX's integer Mod takes the divisor's sign
    (BitwiseAnd would do, but needs opset 18). Before opset 13, whose Mod and Less torch-mlir does not convert:
    the truncating remainder rem(x) = x - (x / m) * m, twice: rem(rem(raw) + m)."""
    rep = rep or REPRESENTATION[elem]
    modulus = r.constant(MASK[elem] + 1, rep)
    if r.opset >= 13:
        return [helper.make_node("Mod", [raw, modulus], [out], name=r.fresh(name))]
    nodes, value = [], raw
    for step, shift in (("a", False), ("b", True)):  # rem(rem(raw) + m): Div, Mul, Sub and Add only
        if shift:
            lifted = r.value(f"{out}__hcc_lift", rep, raw)
            nodes.append(helper.make_node("Add", [value, modulus], [lifted], name=r.fresh(f"{name}_lift")))
            value = lifted
        quotient, product = r.value(f"{out}__hcc_quot", rep, raw), r.value(f"{out}__hcc_prod", rep, raw)
        rem = out if shift else r.value(f"{out}__hcc_rem", rep, raw)
        nodes += [helper.make_node("Div", [value, modulus], [quotient], name=r.fresh(f"{name}_div{step}")),
                  helper.make_node("Mul", [quotient, modulus], [product], name=r.fresh(f"{name}_mul{step}")),
                  helper.make_node("Sub", [value, product], [rem], name=r.fresh(f"{name}_rem{step}"))]
        value = rem
    return nodes


def _wrap_outputs(r: _Rewriter, node: onnx.NodeProto, elem: int) -> list[onnx.NodeProto]:
    """`node`, then its unsigned outputs wrapped back into their range (UINT64: the bits are already right)."""
    if elem == U64:
        return [node]
    after = []
    for k, out in enumerate(node.output):
        if out and r.types.get(out) == elem:
            raw = r.value(f"{out}__hcc_raw", REPRESENTATION[elem], out)
            node.output[k] = raw
            after.extend(_wrap(r, raw, out, elem, f"{node.name}/hcc_wrap"))
    return [node] + after


def _flip_top_bit(r: _Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """UINT64 order through signed order: compare (or take Max/Min of) x + 2^63 (wrapping: the top bit flipped),
    and flip a Max/Min's result back."""
    flip = r.constant(int(TOP_BIT), TensorProto.INT64)
    before = []
    for k, name in enumerate(node.input):
        if name:
            flipped = r.value(f"{name}__hcc_flip", TensorProto.INT64, name)
            before.append(helper.make_node("Add", [name, flip], [flipped], name=r.fresh(f"{node.name}/hcc_flip_in{k}")))
            node.input[k] = flipped
    after = []
    if node.op_type in ("Max", "Min"):
        out = node.output[0]
        raw = r.value(f"{out}__hcc_flipped", TensorProto.INT64, out)
        node.output[0] = raw
        after.append(helper.make_node("Add", [raw, flip], [out], name=r.fresh(f"{node.name}/hcc_flip_out")))
    return before + [node] + after


class _U64Builder:
    """UINT64 arithmetic on INT64 bit patterns from signed ops that exist at every opset hcc compiles (Hacker's
    Delight 9-3): the nodes it makes, each output typed (shape inference cannot type a BitShift on INT64)."""

    def __init__(self, r: _Rewriter, node: onnx.NodeProto):
        self.r, self.node, self.like = r, node, node.output[0]
        self.nodes: list[onnx.NodeProto] = []

    def op(self, op_type: str, inputs: list[str], elem: int = TensorProto.INT64, out: str | None = None, **attrs) -> str:
        out = out or self.r.value(f"{self.like}__hcc_u64", elem, self.like)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.r.fresh(f"{self.node.name}/hcc_u64_{op_type.lower()}"), **attrs))
        return out

    def const(self, value: int) -> str:
        return self.r.constant(value, TensorProto.INT64)

    def below(self, a: str, b: str) -> str:
        """a < b as unsigned numbers: signed order after flipping both top bits."""
        top = self.const(int(TOP_BIT))
        return self.op("Less", [self.op("Add", [a, top]), self.op("Add", [b, top])], TensorProto.BOOL)

    def is_zero(self, x: str) -> str:
        return self.op("Equal", [x, self.const(0)], TensorProto.BOOL)

    def half(self, x: str) -> str:
        """x >>> 1 (logical): the arithmetic shift, its copied top bit cleared by adding 2^63 (wrapping) where x has
        it set: (x >> 63) is 0 or -1, times -2^63 is 0 or 2^63. No Less: torch-mlir converts it from opset 13 only."""
        top = self.op("Mul", [self.op("BitShift", [x, self.const(63)], direction="RIGHT"), self.const(int(TOP_BIT))])
        return self.op("Add", [self.op("BitShift", [x, self.const(1)], direction="RIGHT"), top])

    def shift_right(self, x: str, s: str, out: str) -> None:
        """out = x >>> s: s = 0 gives x, 1..63 the logical half shifted s - 1 further (non-negative, so the
        arithmetic shift is the logical one), 64 and more (unsigned: s >>> 6 is not 0) 0, as numpy's unsigned
        shift gives."""
        zero, one, no_shift = self.const(0), self.const(1), self.is_zero(s)
        below_64 = self.is_zero(self.op("BitShift", [self.half(s), self.const(5)], direction="RIGHT"))
        valid = self.op("And", [self.op("Not", [no_shift], TensorProto.BOOL), below_64], TensorProto.BOOL)
        steps = self.op("Where", [valid, self.op("Sub", [s, one]), zero])
        shifted = self.op("Where", [valid, self.op("BitShift", [self.half(x), steps], direction="RIGHT"), zero])
        self.op("Where", [no_shift, x, shifted], out=out)

    def quotient(self, a: str, b: str, out: str | None = None) -> str:
        """floor(a / b) for unsigned a, b (b != 0): b >= 2^63 gives a >= b; else q = ((a >>> 1) / b) * 2, plus 1
        where the remainder a - q * b is still at least b."""
        one = self.const(1)
        high = self.op("Not", [self.is_zero(self.op("BitShift", [b, self.const(63)], direction="RIGHT"))], TensorProto.BOOL)
        at_least = self.op("Cast", [self.op("Not", [self.below(a, b)], TensorProto.BOOL)], to=TensorProto.INT64)
        divisor = self.op("Where", [high, one, b])
        twice = self.op("Mul", [self.op("Div", [self.half(a), divisor]), self.const(2)])
        rest = self.op("Sub", [a, self.op("Mul", [twice, divisor])])
        carry = self.op("Cast", [self.op("Not", [self.below(rest, divisor)], TensorProto.BOOL)], to=TensorProto.INT64)
        return self.op("Where", [high, at_least, self.op("Add", [twice, carry])], out=out)


def _u64_division(r: _Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """UINT64 Div (the quotient) and Mod (a - quotient * b; for unsigned values fmod and mod agree)."""
    a, b = node.input[0], node.input[1]
    build = _U64Builder(r, node)
    if node.op_type == "Div":
        build.quotient(a, b, out=node.output[0])
    else:
        build.op("Sub", [a, build.op("Mul", [build.quotient(a, b), b])], out=node.output[0])
    return build.nodes


FLOATS = (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16)


def _rewrite_cast(r: _Rewriter, node: onnx.NodeProto, elem: int) -> list[onnx.NodeProto]:
    to = next(a.i for a in node.attribute if a.name == "to")
    source = r.types.get(node.input[0])
    if to not in UNSIGNED:  # from an unsigned type: the representation's value is the value (UINT64: the bits)
        if source == U64 and to in FLOATS:
            raise r.refuse(node, U64, f"a Cast to {TensorProto.DataType.Name(to)} would read values at or above 2^63 "
                                      "as negative numbers")
        return [node]
    if to == U64 and source in FLOATS:
        raise r.refuse(node, U64, f"a Cast from {TensorProto.DataType.Name(source)} to UINT64 is not compiled")
    if source == to:
        node.op_type = "Identity"
        del node.attribute[:]
        return [node]
    # the value mod 2^k: through INT64 (exact for every integer type and every representation), then wrapped
    _set_to(node, TensorProto.INT64)
    if to == U64:
        return [node]
    out = node.output[0]
    wide64 = r.value(f"{out}__hcc_i64", TensorProto.INT64, out)
    node.output[0] = wide64
    wrapped = r.value(f"{out}__hcc_wrapped", TensorProto.INT64, out) if REPRESENTATION[to] != TensorProto.INT64 else out
    nodes = [node] + _wrap(r, wide64, wrapped, to, f"{node.name}/hcc_wrap", rep=TensorProto.INT64)
    if wrapped != out:
        nodes.append(helper.make_node("Cast", [wrapped], [out], name=r.fresh(f"{node.name}/hcc_to_wide"), to=REPRESENTATION[to]))
    return nodes


def _set_to(node: onnx.NodeProto, to: int) -> None:
    for attr in node.attribute:
        if attr.name == "to":
            attr.i = to


def _convert_tensor_attributes(node: onnx.NodeProto) -> None:
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type in UNSIGNED:
            attr.t.CopyFrom(_wide_tensor(attr.t))


def _rewrite_node(r: _Rewriter, node: onnx.NodeProto, elem: int) -> list[onnx.NodeProto]:
    op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
    if op in ("Constant", "ConstantOfShape"):
        if op == "Constant" and any(a.name != "value" for a in node.attribute):
            raise r.refuse(node, elem, "only a Constant's 'value' tensor is compiled for this type")
        _convert_tensor_attributes(node)
        return [node]
    if op == "Cast":
        return _rewrite_cast(r, node, elem)
    if op in STRUCTURAL:
        return [node]
    if op in WRAPPING:
        return _wrap_outputs(r, node, elem)
    if op == "BitShift":
        direction = next((a.s.decode() for a in node.attribute if a.name == "direction"), "")
        if direction == "LEFT":
            return _wrap_outputs(r, node, elem)
        if elem == U64:  # the arithmetic shift would copy the top bit: written out logically
            build = _U64Builder(r, node)
            build.shift_right(node.input[0], node.input[1], node.output[0])
            return build.nodes
        return [node]  # non-negative widened values: the arithmetic shift is the logical one
    if op == "Pow" and r.types.get(node.input[0]) not in UNSIGNED:  # an unsigned exponent only
        if elem == U64:
            raise r.refuse(node, elem, "an exponent at or above 2^63 would be read as a negative number")
        return [node]
    if elem == U64:
        if op in BITWISE_U64:
            return [node]
        if op in ORDERED:
            return _flip_top_bit(r, node)
        if op in ("Div", "Mod") and r.opset >= 13:  # the unsigned order needs Less, which torch-mlir converts from 13
            return _u64_division(r, node)
        raise r.refuse(node, elem, "not exact on 64-bit patterns (no wider signed type to compute it in); compiled "
                                   "for UINT64: Add, Sub, Mul, Div and Mod (from opset 13), bitwise ops, shifts, comparisons, Max, Min, Cast")
    if op in EXACT_WIDE:
        return [node]
    raise r.refuse(node, elem, "not compiled for unsigned 16/32-bit integers (compiled: arithmetic, comparisons, "
                               "bitwise ops, shifts, Max/Min, Cast and shape/layout ops)")
