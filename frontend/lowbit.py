"""8-bit and 4-bit floats, bfloat16 and 4-/2-bit integers, as ordinary integer and float tensors.

torch-mlir and hcc's backends know none of FLOAT8E4M3FN, FLOAT8E4M3FNUZ, FLOAT8E5M2, FLOAT8E5M2FNUZ, FLOAT8E8M0,
FLOAT4E2M1, BFLOAT16, INT4, UINT4, INT2, UINT2, and onnx's version converter refuses the newest of them (so an
opset-23..25 model using them could not even be converted to the opset hcc compiles). This rewrite runs first, on
the model as written, and leaves no such type behind. Every rule below is onnx.reference's (numpy / ml_dtypes
casts, onnx.numpy_helper.saturate_cast and to_float8e8m0), checked bit for bit in tests/frontend/test_lowbit.py:

- Inside the graph every such value is an INT32 tensor: the *code* (bit pattern) of a float type, the *value* of
  an integer type. Layout ops (Reshape, Transpose, ...) move codes unchanged.
- Cast / CastLike from such a type: a float code is decoded by a Gather from a table of its exact float32 values
  (256 entries for 8-bit and 4-bit floats, 65,536 for bfloat16); an integer is its own value.
- Cast / CastLike to a float type of 8 or 4 bits: round-to-nearest-even by finding, for |x|, the largest magnitude
  code c whose lower midpoint (between the magnitudes of c - 1 and c) |x| passes (reaching it counts when c is even:
  ties to even), by a binary search over the bits of c through a table of midpoints (element-wise, 7 steps). Out of
  range: the largest finite value when saturating (the ONNX default, also for Inf), else Inf (E5M2) or NaN; the sign
  bit from x < 0 or x = -0 (E4M3FNUZ and E5M2FNUZ have no negative zero). A float NaN gives the type's positive NaN code: the sign of a NaN cannot be
  read without a bitcast, which ONNX lacks (a NaN decoded from a low-bit code keeps its sign, as in onnx.reference).
  FLOAT4E2M1 saturates always and writes a positive NaN as 0x8 (-0), as onnx.reference does.
- To FLOAT8E8M0 (a power of two): the float32 exponent field found against a table of powers of two, rounded by the Cast's
  round_mode (up / down / nearest) with comparisons; NaN and Inf give 0xFF.
- To bfloat16: the exponent found the same way, |x| scaled exactly by two table powers of two, ONNX's
  Round (half to even), overflow to Inf; from FLOAT, FLOAT16 and the types above (DOUBLE is refused: it would be
  rounded twice).
- To a 4-/2-bit integer: as onnx.reference (numpy/ml_dtypes astype): truncated toward zero and wrapped modulo 2^n;
  NaN, Inf and values so large that the wrap is 0 give 0.
- BFLOAT16 Add, Sub, Mul, Div, Sqrt, Reciprocal, Neg, Abs, Relu, Max, Min, Clip, Floor, Ceil, Round, Sign and
  comparisons: on the decoded float32 values, each result rounded once as above (correctly rounded: float32 has
  more than twice bfloat16's precision); other bfloat16 arithmetic is refused.
- QuantizeLinear to / DequantizeLinear from 4-/2-bit integers become the INT8 / UINT8 forms (frontend/quantized.py
  compiles them) plus a clamp to the narrow range; to / from 8- and 4-bit floats: x / scale then the saturating
  cast above, code -> float times scale.

At the bundle boundary such a tensor is its storage array, one element per byte (packed 4-/2-bit data is
unpacked): FLOAT8* and FLOAT4E2M1 as uint8 bit patterns (4-bit codes in the low nibble), BFLOAT16 as uint16 bit
patterns, INT4/INT2 as int8 values and UINT4/UINT2 as uint8 values. The manifest records the ONNX type
(`element_type`, the ml_dtypes name); hcc.runtime also accepts ml_dtypes arrays of that type. Any other node that
reads or writes one of these types is refused with its name, op and type.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference

from hcc.errors import HccError
from hcc.frontend.attributes import attr_value
from hcc.frontend.graph_walk import subgraphs
from hcc.frontend.names import fresh_name, name_nodes

TP = TensorProto
FLOAT_INPUTS = (TP.FLOAT, TP.FLOAT16, TP.DOUBLE)
INT_INPUTS = (TP.INT8, TP.UINT8, TP.INT16, TP.UINT16, TP.INT32, TP.UINT32, TP.INT64, TP.BOOL)


@dataclass(frozen=True)
class Small:
    """A float of 8 or 4 bits: `exp`/`man` bits, `bias`, largest finite magnitude code, NaN and Inf codes."""

    bits: int
    exp: int
    man: int
    bias: int
    max_code: int
    nan_code: int
    inf_code: int | None
    fnuz: bool  # no negative zero; the code 0x80 is NaN

    def magnitude(self, code: int) -> float:
        e, f = code >> self.man, code & ((1 << self.man) - 1)
        if e == 0:
            return f * 2.0 ** (1 - self.bias - self.man)
        return (1 + f / 2**self.man) * 2.0 ** (e - self.bias)

    def table(self) -> np.ndarray:
        """float32 value of every byte (4-bit types: of its low nibble, so no index can leave the table)."""
        sign = 1 << (self.bits - 1)
        values = np.empty(256, np.float32)
        for byte in range(256):
            code = byte & ((1 << self.bits) - 1)
            magnitude = code & (sign - 1)
            if self.fnuz and code == sign:
                values[byte] = np.nan
            elif magnitude <= self.max_code:
                values[byte] = -self.magnitude(magnitude) if code & sign else self.magnitude(magnitude)
            elif self.inf_code is not None and magnitude == self.inf_code:
                values[byte] = -np.inf if code & sign else np.inf
            else:
                values[byte] = np.nan
        return values


SMALL_FLOATS: dict[int, Small] = {
    TP.FLOAT8E4M3FN: Small(8, 4, 3, 7, 0x7E, 0x7F, None, False),
    TP.FLOAT8E4M3FNUZ: Small(8, 4, 3, 8, 0x7F, 0x80, None, True),
    TP.FLOAT8E5M2: Small(8, 5, 2, 15, 0x7B, 0x7E, 0x7C, False),
    TP.FLOAT8E5M2FNUZ: Small(8, 5, 2, 16, 0x7F, 0x80, None, True),
    TP.FLOAT4E2M1: Small(4, 2, 1, 1, 0x7, 0x8, None, False),
}
SMALL_INTS: dict[int, tuple[int, int]] = {TP.INT4: (-8, 7), TP.UINT4: (0, 15), TP.INT2: (-2, 1), TP.UINT2: (0, 3)}
LOWBIT = (*SMALL_FLOATS, *SMALL_INTS, TP.BFLOAT16, TP.FLOAT8E8M0)
# storage at the bundle boundary, and the numpy dtype name of that storage
STORAGE = {**{t: TP.UINT8 for t in SMALL_FLOATS}, TP.FLOAT8E8M0: TP.UINT8, TP.INT4: TP.INT8, TP.INT2: TP.INT8, TP.UINT4: TP.UINT8,
           TP.UINT2: TP.UINT8, TP.BFLOAT16: TP.UINT16}
# ml_dtypes' names (what str(array.dtype) says): the manifest's element_type
ELEMENT_NAMES = {TP.FLOAT8E4M3FN: "float8_e4m3fn", TP.FLOAT8E4M3FNUZ: "float8_e4m3fnuz", TP.FLOAT8E5M2: "float8_e5m2",
                 TP.FLOAT8E5M2FNUZ: "float8_e5m2fnuz", TP.FLOAT4E2M1: "float4_e2m1fn", TP.INT4: "int4", TP.UINT4: "uint4",
                 TP.INT2: "int2", TP.UINT2: "uint2", TP.BFLOAT16: "bfloat16", TP.FLOAT8E8M0: "float8_e8m0fnu"}
STORAGE_NAMES = {ELEMENT_NAMES[t]: helper.tensor_dtype_to_np_dtype(STORAGE[t]).name for t in LOWBIT}
STRUCTURAL = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Slice", "Gather",
              "Expand", "Tile", "Split", "Shape", "Size", "GatherElements", "GatherND", "DepthToSpace", "SpaceToDepth",
              "Where"}
# bfloat16 ops whose float32 result rounded once to bfloat16 is the correctly rounded bfloat16 result (what
# onnx.reference's ml_dtypes computes): exact ones, and +, -, *, /, sqrt, whose double rounding through float32 is
# innocuous (24 >= 2 * 8 + 2 bits). Others (Exp, MatMul, reductions, ...) would not give the reference's bits.
BF16_EXACT = {"Add", "Sub", "Mul", "Div", "Sqrt", "Reciprocal", "Neg", "Abs", "Relu", "Max", "Min", "Clip", "Floor",
              "Ceil", "Round", "Sign", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "IsNaN", "IsInf"}


def type_name(elem: int) -> str:
    return TP.DataType.Name(elem)


def codes_of(array: np.ndarray, elem: int) -> np.ndarray:
    """INT32 representation of an ml_dtypes array of a low-bit type (float codes, integer values)."""
    if elem in SMALL_INTS:
        return np.asarray(array).astype(np.int32)
    storage = np.uint16 if elem == TP.BFLOAT16 else np.uint8
    codes = np.asarray(array).view(storage).astype(np.int32)
    return codes & 0xF if elem == TP.FLOAT4E2M1 else codes


def to_storage(array: np.ndarray, elem: int) -> np.ndarray:
    """The boundary (storage) array of an ml_dtypes array of a low-bit type, or of an array already stored so."""
    storage = helper.tensor_dtype_to_np_dtype(STORAGE[elem])
    array = np.asarray(array)
    if array.dtype == storage:
        return array
    if array.dtype.name != ELEMENT_NAMES[elem]:
        raise HccError(f"an array of dtype {array.dtype} cannot hold {type_name(elem)} (pass {ELEMENT_NAMES[elem]} or {storage.name})")
    return codes_of(array, elem).astype(storage)


def from_storage(array: np.ndarray, elem: int) -> np.ndarray:
    """The ml_dtypes array of a low-bit type from its storage array (compile-side and onnx.backend use only)."""
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    array = np.asarray(array)
    if elem in SMALL_INTS:
        return array.astype(dtype)
    return array.view(dtype)


def _graph_has_lowbit(graph: onnx.GraphProto) -> bool:
    values = list(graph.input) + list(graph.output) + list(graph.value_info)
    return (any(v.type.tensor_type.elem_type in LOWBIT for v in values if v.type.HasField("tensor_type"))
            or any(i.data_type in LOWBIT for i in graph.initializer)
            or any(a.t.data_type in LOWBIT for n in graph.node for a in n.attribute if a.type == onnx.AttributeProto.TENSOR)
            or any(a.i in LOWBIT for n in graph.node for a in n.attribute
                   if a.name in ("to", "output_dtype") and a.type == onnx.AttributeProto.INT)
            or any(_graph_has_lowbit(g) for n in graph.node for g in subgraphs(n)))


def has_lowbit(model: onnx.ModelProto) -> bool:
    """Whether any tensor, attribute or Cast target of the model (If/Loop/Scan bodies included) has such a type."""
    return _graph_has_lowbit(model.graph)


def _function_using_lowbit(model: onnx.ModelProto) -> str | None:
    """A model-local function whose body names such a type (its nodes are inlined after this rewrite has run)."""
    for function in model.functions:
        body = onnx.GraphProto(node=function.node)
        if _graph_has_lowbit(body):
            return function.name
    return None


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, path: str):
        self.model, self.path, self.graph = model, path, model.graph
        try:
            inferred = shape_inference.infer_shapes(model)
        except Exception:  # the loader's own inference reports a broken model later, with its message
            inferred = model
        self.types: dict[str, int] = {}
        self.shapes: dict[str, list[int | str] | None] = {}
        g = inferred.graph
        for value in list(g.input) + list(g.value_info) + list(g.output):
            if value.type.HasField("tensor_type"):
                t = value.type.tensor_type
                self.types[value.name] = t.elem_type
                self.shapes[value.name] = ([d.dim_value if d.HasField("dim_value") else "?" for d in t.shape.dim]
                                           if t.HasField("shape") else None)
        for init in g.initializer:
            self.types[init.name] = init.data_type
            self.shapes[init.name] = list(init.dims)
        self.taken = set(self.types) | {o for n in self.graph.node for o in n.output} | {n.name for n in self.graph.node}
        self.taken |= {i.name for i in self.graph.initializer}
        self.new_inits: list[onnx.TensorProto] = []
        self.cache: dict[tuple, str] = {}

    def fresh(self, base: str) -> str:
        return fresh_name(base, self.taken)

    def const(self, array: np.ndarray, base: str) -> str:
        key = (base, array.dtype.str, array.shape, array.tobytes())
        if key not in self.cache:
            name = self.fresh(f"hcc_lowbit_{base}")
            self.new_inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
            self.cache[key] = name
        return self.cache[key]

    def refuse(self, node: onnx.NodeProto, elem: int, why: str) -> HccError:
        return HccError(f"{self.path}: node '{node.name}' ({node.op_type}) on {type_name(elem)}: {why}",
                        hint="hcc compiles these types in Cast, CastLike, QuantizeLinear, DequantizeLinear, layout ops and "
                             "Where, and BFLOAT16 in correctly rounded element-wise arithmetic; cast to FLOAT for the rest")

    def lowbit_of(self, node: onnx.NodeProto) -> int | None:
        for name in list(node.input) + list(node.output):
            if name and self.types.get(name) in LOWBIT:
                return self.types[name]
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type in LOWBIT:
                return attr.t.data_type
            if attr.name in ("to", "output_dtype") and attr.type == onnx.AttributeProto.INT and attr.i in LOWBIT:
                return attr.i
        return None


class _Emit:
    """Nodes of one rewritten node, named after it."""

    def __init__(self, r: _Rewriter, node: onnx.NodeProto):
        self.r, self.base, self.nodes = r, node.name or node.op_type, []

    def __call__(self, op: str, inputs: list[str], out: str | None = None, **attrs) -> str:
        out = out or self.r.fresh(f"{self.base}__hcc_{op.lower()}")
        self.nodes.append(helper.make_node(op, inputs, [out], name=self.r.fresh(f"{self.base}/hcc_{op.lower()}"), **attrs))
        return out

    def cast(self, x: str, to: int, out: str | None = None) -> str:
        return self("Cast", [x], out, to=to)


# ----------------------------------------------------------------------------------------- decode / encode


def _decode_float(e: _Emit, code: str, elem: int) -> str:
    """float32 value of an INT32 code of a low-bit float type."""
    if elem == TP.BFLOAT16:
        table = (np.arange(65536, dtype=np.uint32) << 16).view(np.float32)
    elif elem == TP.FLOAT8E8M0:  # 2^(c - 127); 0xFF is NaN
        table = np.array([2.0 ** (c - 127) for c in range(255)] + [np.nan], np.float32)
    else:
        table = SMALL_FLOATS[elem].table()
    return e("Gather", [e.r.const(table, f"{type_name(elem).lower()}_values"), code], axis=0)


def _negative(e: _Emit, x: str) -> str:
    """x < 0, or x is -0 (1 / -0 = -Inf)."""
    zero = e.r.const(np.array(0, np.float32), "f32_0")
    return e("Or", [e("Less", [x, zero]), e("Less", [e("Reciprocal", [x]), zero])])


def _search(e: _Emit, a: str, bounds: np.ndarray, ties: str) -> str:
    """INT32 largest c in 0..K (K = len(bounds) - 1, bounds ascending, bounds[0] never read) with `a` past bounds[c]:
    a >= bounds[c] (ties "all"), or a > bounds[c] and a == bounds[c] for an even c (ties "even"). A binary search
    over the bits of c, element-wise: log2(K) Gathers and comparisons and no [..., K] intermediate. NaN: 0."""
    r, top = e.r, len(bounds) - 1
    table = r.const(bounds.astype(np.float32), "bounds")
    code, step = r.const(np.array(0, np.int32), "i32_0"), 1 << (top.bit_length() - 1)
    last = r.const(np.array(top, np.int32), f"i32_{top}")
    while step:
        candidate = e("Add", [code, r.const(np.array(step, np.int32), f"i32_{step}")])
        bound = e("Gather", [table, e("Min", [candidate, last])], axis=0)
        if ties == "all":
            past = e("GreaterOrEqual", [a, bound])
        else:
            even = e("Equal", [e("Mod", [candidate, r.const(np.array(2, np.int32), "i32_2")]), r.const(np.array(0, np.int32), "i32_0")])
            past = e("Or", [e("Greater", [a, bound]), e("And", [e("Equal", [a, bound]), even])])
        code = e("Where", [e("And", [past, e("LessOrEqual", [candidate, last])]), candidate, code])
        step >>= 1
    return code


def _exponent(e: _Emit, a: str) -> str:
    """INT32 float32 exponent field of |x| = `a`: 0 below 2^-126 (zero, subnormals), up to 254 (Inf too)."""
    return _search(e, a, np.array([0.0] + [2.0 ** (k - 127) for k in range(1, 255)], np.float64), "all")


def _where_code(e: _Emit, cond: str, code: int, other: str) -> str:
    return e("Where", [cond, e.r.const(np.array(code, np.int32), f"i32_{code}"), other])


def _nan_code(e: _Emit, positive: int, negative_code: int, negative: str | None) -> str:
    """The NaN code to write: the positive one, or by `negative` (a NaN's sign, known when it was decoded from a code)."""
    if negative is None:
        return e.r.const(np.array(positive, np.int32), f"i32_{positive}")
    return e("Where", [negative, e.r.const(np.array(negative_code, np.int32), f"i32_{negative_code}"),
                       e.r.const(np.array(positive, np.int32), f"i32_{positive}")])


def _encode_small(e: _Emit, x: str, elem: int, saturate: bool, code_negative: str | None = None) -> str:
    """INT32 code of float32 `x` rounded to an 8-/4-bit float (module docstring). `code_negative`: x's sign bit when
    x was decoded from a code (then a NaN keeps its sign, as in onnx.reference)."""
    f = SMALL_FLOATS[elem]
    if elem == TP.FLOAT4E2M1:
        saturate = True  # no Inf, no NaN: onnx.reference (ml_dtypes) saturates
    mags = np.array([f.magnitude(c) for c in range(f.max_code + 1)], np.float64)
    mids = (mags[:-1] + mags[1:]) / 2  # exact in float32: one bit more than the type's mantissa
    a = e("Abs", [x])
    code = _search(e, a, np.concatenate([[0.0], mids]), "even")  # past the midpoint below c: rounds to c or above
    if not saturate:  # beyond the midpoint between the largest magnitude and the next one the exponent would give
        top = mags[-1] + (mags[-1] - mags[-2]) / 2  # the top binade's spacing (no largest value starts one)
        over = e("GreaterOrEqual" if (f.max_code + 1) % 2 == 0 else "Greater", [a, e.r.const(np.array(top, np.float32), "f32_top")])
        code = _where_code(e, over, f.inf_code if f.inf_code is not None else f.nan_code & 0x7F, code)
    sign = 1 << (f.bits - 1)
    negative = code_negative or _negative(e, x)
    if f.fnuz:  # no -0: a magnitude code 0 stays 0; an overflow is the NaN code 0x80 whatever the sign
        zero = e.r.const(np.array(0, np.int32), "i32_0")
        negative = e("And", [negative, e("Greater", [code, zero])])
        if not saturate:
            negative = e("And", [negative, e("Not", [over])])
            code = _where_code(e, over, f.nan_code, code)
    signed = e("Add", [code, e("Mul", [e.cast(negative, TP.INT32), e.r.const(np.array(sign, np.int32), f"i32_{sign}")])])
    negative_nan = {TP.FLOAT8E4M3FN: 0xFF, TP.FLOAT8E5M2: 0xFE, TP.FLOAT4E2M1: 0x0}.get(elem, f.nan_code)  # ml_dtypes'
    return e("Where", [e("IsNaN", [x]), _nan_code(e, f.nan_code, negative_nan, code_negative), signed])


def _encode_bf16(e: _Emit, x: str, code_negative: str | None = None) -> str:
    """INT32 bit pattern of float32 `x` rounded to bfloat16 (module docstring)."""
    a = e("Abs", [x])
    exponent = e("Max", [_exponent(e, a), e.r.const(np.array(1, np.int32), "i32_1")])  # 1..254
    shift = 134 - np.arange(255)  # |x| * 2^(134 - E): 8 significant bits before the point
    first = np.array([2.0 ** int(np.ceil(s / 2)) for s in shift], np.float32)
    second = np.array([2.0 ** int(np.floor(s / 2)) for s in shift], np.float32)  # two factors: each product exact
    scaled = e("Mul", [e("Mul", [a, e("Gather", [e.r.const(first, "bf16_scale_a"), exponent], axis=0)]),
                       e("Gather", [e.r.const(second, "bf16_scale_b"), exponent], axis=0)])
    rounded = e("Min", [e("Round", [scaled]), e.r.const(np.array(256, np.float32), "f32_256")])  # Inf -> 0x7F80
    base = e("Mul", [e("Sub", [exponent, e.r.const(np.array(1, np.int32), "i32_1")]), e.r.const(np.array(128, np.int32), "i32_128")])
    code = e("Add", [base, e.cast(rounded, TP.INT32)])
    negative = code_negative or _negative(e, x)
    signed = e("Add", [code, e("Mul", [e.cast(negative, TP.INT32), e.r.const(np.array(0x8000, np.int32), "i32_32768")])])
    return e("Where", [e("IsNaN", [x]), _nan_code(e, 0x7FC0, 0xFFC0, code_negative), signed])


def _encode_e8m0(e: _Emit, x: str, saturate: bool, round_mode: bytes | str, node: onnx.NodeProto) -> str:
    """INT32 code of float32 `x` as FLOAT8E8M0 (a power of two, no sign), as onnx.numpy_helper.to_float8e8m0: the
    float32 exponent field of x, plus one when rounding up ("up": any fraction; "nearest": a fraction of at least
    one half, above one half for subnormals); 254 at most when saturating, else 255 (NaN); NaN and +-Inf: 255."""
    mode = round_mode.decode() if isinstance(round_mode, bytes) else round_mode
    if mode not in ("up", "down", "nearest"):
        raise e.r.refuse(node, TP.FLOAT8E8M0, f"round_mode {mode!r} is not one of up, down, nearest")
    a = e("Abs", [x])
    exponent = _exponent(e, a)  # 0 (zero, subnormal) .. 254
    if mode == "down":
        code = exponent
    else:
        # "up": a fraction means |x| above 2^(E-127) (any non-zero subnormal for E = 0); "nearest": |x| at least
        # 1.5 * 2^(E-127), and for a subnormal above 2^-127 (the reference's guard bit and a round or sticky bit)
        at = np.array([0.0] + [2.0 ** (k - 127) * (1.5 if mode == "nearest" else 1.0) for k in range(1, 255)], np.float32)
        bound = e("Gather", [e.r.const(at, f"e8m0_{mode}"), exponent], axis=0)
        up = e("Greater" if mode == "up" else "GreaterOrEqual", [a, bound])
        if mode == "nearest":
            subnormal_up = e("Greater", [a, e.r.const(np.array(2.0**-127, np.float32), "f32_2_m127")])
            is_subnormal = e("Equal", [exponent, e.r.const(np.array(0, np.int32), "i32_0")])
            up = e("Where", [is_subnormal, subnormal_up, up])
        code = e("Add", [exponent, e.cast(up, TP.INT32)])
        if saturate:
            code = e("Min", [code, e.r.const(np.array(254, np.int32), "i32_254")])
    special = e("Or", [e("IsNaN", [x]), e("IsInf", [x])])
    return _where_code(e, special, 0xFF, code)


def _wrap_int(e: _Emit, v: str, elem: int, wide: int) -> str:
    """INT32 value of integer `v` (of type `wide`, INT32 or INT64) wrapped into a 4-/2-bit type."""
    lo, hi = SMALL_INTS[elem]
    np_wide = np.int64 if wide == TP.INT64 else np.int32
    span = e.r.const(np.array(hi - lo + 1, np_wide), f"span_{hi - lo + 1}_{np.dtype(np_wide).name}")
    shifted = e("Add", [v, e.r.const(np.array(-lo, np_wide), f"off_{-lo}_{np.dtype(np_wide).name}")]) if lo else v
    wrapped = e("Mod", [shifted, span])
    if lo:
        wrapped = e("Sub", [wrapped, e.r.const(np.array(-lo, np_wide), f"off_{-lo}_{np.dtype(np_wide).name}")])
    return e.cast(wrapped, TP.INT32) if wide == TP.INT64 else wrapped


def _encode_int(e: _Emit, x: str, source: int, elem: int) -> str:
    """INT32 value of `x` (an ordinary type) cast to a 4-/2-bit integer as onnx.reference does: truncate, wrap."""
    if source in FLOAT_INPUTS:
        # every float at or above 2^27 (FLOAT; 2^56 DOUBLE) is a multiple of 16: its wrapped value is 0, as is NaN's
        limit, wide = (2.0**56, TP.INT64) if source == TP.DOUBLE else (2.0**27, TP.INT32)
        dtype = helper.tensor_dtype_to_np_dtype(source)
        limit = np.inf if source == TP.FLOAT16 else limit  # every finite FLOAT16 is below 2^16
        inside = e("Less", [e("Abs", [x]), e.r.const(np.array(limit, dtype), f"limit_{dtype.name}")])
        safe = e("Where", [inside, x, e.r.const(np.array(0, dtype), f"zero_{dtype.name}")])
        return _wrap_int(e, e.cast(safe, wide), elem, wide)
    wide = TP.INT64 if source in (TP.INT64, TP.UINT32) else TP.INT32
    return _wrap_int(e, e.cast(x, wide), elem, wide)


# ------------------------------------------------------------------------------------------------ nodes


def _convert(e: _Emit, x: str, source: int, to: int, saturate: bool, node: onnx.NodeProto, out: str) -> None:
    """Nodes computing `out` (in the representation of `to`) from `x` (in that of `source`)."""
    r = e.r
    if source == to and not (saturate and to in SMALL_FLOATS and SMALL_FLOATS[to].inf_code is not None):
        e("Identity", [x], out)  # (a saturating E5M2 -> E5M2 cast turns +-Inf into +-57344: computed below)
        return
    # 1. an ordinary value: float32 for low-bit floats, INT32 for low-bit integers
    code_negative = None
    if source == TP.FLOAT8E8M0:  # unsigned: no sign to carry
        value, vtype = _decode_float(e, x, source), TP.FLOAT
    elif source in SMALL_FLOATS or source == TP.BFLOAT16:
        value, vtype = _decode_float(e, x, source), TP.FLOAT
        bits = 16 if source == TP.BFLOAT16 else SMALL_FLOATS[source].bits
        low = e("Mod", [x, r.const(np.array(1 << bits, np.int32), f"i32_{1 << bits}")]) if bits == 4 else x
        code_negative = e("GreaterOrEqual", [low, r.const(np.array(1 << (bits - 1), np.int32), f"i32_{1 << (bits - 1)}")])
    elif source in SMALL_INTS:
        value, vtype = x, TP.INT32
    elif source in FLOAT_INPUTS or source in INT_INPUTS:
        value, vtype = x, source
    else:
        raise r.refuse(node, to, f"a cast from {type_name(source)} is not compiled")
    # 2. into the target
    if to in SMALL_INTS:
        e("Identity", [_encode_int(e, value, vtype, to)], out)
    elif to == TP.FLOAT8E8M0:  # onnx.reference reads the float32 value (a DOUBLE is rounded to it first, as here)
        if vtype in (TP.UINT32, TP.INT32, TP.INT64):
            raise r.refuse(node, to, f"a cast from {type_name(vtype)} is not compiled (its float32 value may be rounded)")
        f32 = value if vtype == TP.FLOAT else e.cast(value, TP.FLOAT)
        e("Identity", [_encode_e8m0(e, f32, saturate, attr_value(node, "round_mode", b"up"), node)], out)
    elif to in SMALL_FLOATS or to == TP.BFLOAT16:
        if vtype == TP.DOUBLE:
            raise r.refuse(node, to, "a cast from DOUBLE is not compiled (rounding to FLOAT first would round twice)")
        if vtype in (TP.UINT32, TP.INT64) or (vtype == TP.INT32 and to == TP.BFLOAT16):
            raise r.refuse(node, to, f"a cast from {type_name(vtype)} is not compiled (its float32 value may be rounded)")
        f32 = value if vtype == TP.FLOAT else e.cast(value, TP.FLOAT)
        code = _encode_bf16(e, f32, code_negative) if to == TP.BFLOAT16 else _encode_small(e, f32, to, saturate, code_negative)
        e("Identity", [code], out)
    elif to in FLOAT_INPUTS or to in INT_INPUTS:
        e.cast(value, to, out)
    else:
        raise r.refuse(node, source, f"a cast to {type_name(to)} is not compiled")


def _rewrite_cast(r: _Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    source = r.types.get(node.input[0])
    to = attr_value(node, "to", None) if node.op_type == "Cast" else r.types.get(node.input[1])
    if source is None or to is None:
        raise r.refuse(node, r.lowbit_of(node) or 0, "the types of its input and output are not known")
    saturate = bool(attr_value(node, "saturate", 1))
    e = _Emit(r, node)
    _convert(e, node.input[0], source, to, saturate, node, node.output[0])
    return e.nodes


def _axis_shaped(e: _Emit, node: onnx.NodeProto, param: str, x: str, shape_of: str | None = None) -> str:
    """A Q/DQ scale or zero point broadcastable against `x`: per tensor as is; per axis (1-D) reshaped."""
    r = e.r
    if attr_value(node, "block_size", 0):
        raise r.refuse(node, r.lowbit_of(node) or 0, "blocked quantization (block_size) is not compiled for this type")
    shape, rank = r.shapes.get(shape_of or param), len(r.shapes.get(x) or [])
    if shape is None or (shape and r.shapes.get(x) is None):
        raise r.refuse(node, r.lowbit_of(node) or 0, f"the shape of '{param}' or '{x}' is not known")
    if len(shape) == 0 or (len(shape) == 1 and shape[0] == 1):
        return param
    axis = attr_value(node, "axis", 1) % max(rank, 1)
    target = [1] * rank
    target[axis] = -1
    return e("Reshape", [param, r.const(np.array(target, np.int64), "axis_shape")])


def _plain_floats(r: _Rewriter, node: onnx.NodeProto, names: list[str], extra: int = 0) -> None:
    """Refuse a Q/DQ whose float operands (or output_dtype) are not FLOAT/FLOAT16/DOUBLE: a bfloat16 scale is an
    INT32 code here, which no rule above reads as a number."""
    types = [r.types.get(n) for n in names if n] + ([extra] if extra else [])
    odd = next((t for t in types if t not in FLOAT_INPUTS), None)
    if odd is not None:
        raise r.refuse(node, r.lowbit_of(node) or 0, f"a float operand or output of type {type_name(odd or 0)} is not "
                                                     "compiled (FLOAT, FLOAT16 and DOUBLE are)")


def _rewrite_dequantize(r: _Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    elem = r.types.get(node.input[0])
    _plain_floats(r, node, [node.input[1], node.output[0]], attr_value(node, "output_dtype", 0))
    e = _Emit(r, node)
    if elem in SMALL_INTS:  # the 8-bit form, which frontend/quantized.py compiles (the same integer arithmetic)
        eight = TP.INT8 if SMALL_INTS[elem][0] < 0 else TP.UINT8
        node.input[0] = e.cast(node.input[0], eight)
        if len(node.input) > 2 and node.input[2]:
            node.input[2] = e.cast(node.input[2], eight)
        return e.nodes + [node]
    if elem not in SMALL_FLOATS:
        raise r.refuse(node, r.lowbit_of(node) or 0, "only a DequantizeLinear of 8-/4-bit floats or 4-/2-bit integers "
                                                     "(to FLOAT, FLOAT16 or DOUBLE) is compiled")
    scale = node.input[1]
    out_type = attr_value(node, "output_dtype", 0) or r.types.get(scale, TP.FLOAT)
    scale32 = scale if r.types.get(scale) == TP.FLOAT else e.cast(scale, TP.FLOAT)
    value = e("Mul", [_decode_float(e, node.input[0], elem), _axis_shaped(e, node, scale32, node.input[0], scale)])
    e.cast(value, out_type, node.output[0]) if out_type != TP.FLOAT else e("Identity", [value], node.output[0])
    return e.nodes


def _rewrite_quantize(r: _Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    zp = node.input[2] if len(node.input) > 2 and node.input[2] else ""
    elem = r.types.get(node.output[0]) or (r.types.get(zp) if zp else (attr_value(node, "output_dtype", 0) or TP.UINT8))
    _plain_floats(r, node, [node.input[0], node.input[1]])
    e = _Emit(r, node)
    if elem in SMALL_INTS:  # the 8-bit form then clamped: clamp(clamp(v, int8 range), narrow) = clamp(v, narrow)
        lo, hi = SMALL_INTS[elem]
        eight = TP.INT8 if lo < 0 else TP.UINT8
        if zp:
            node.input[2] = e.cast(zp, eight)
        for attr in node.attribute:
            if attr.name == "output_dtype":
                attr.i = eight
        out = node.output[0]
        node.output[0] = r.fresh(f"{out}__hcc_8bit")
        nodes = e.nodes + [node]
        e.nodes = []
        clamped = e("Min", [e("Max", [e.cast(node.output[0], TP.INT32), r.const(np.array(lo, np.int32), f"i32_{lo}")]),
                            r.const(np.array(hi, np.int32), f"i32_{hi}")])
        e("Identity", [clamped], out)
        return nodes + e.nodes
    if elem not in SMALL_FLOATS:
        raise r.refuse(node, r.lowbit_of(node) or 0, "only a QuantizeLinear to 8-/4-bit floats or 4-/2-bit integers "
                                                     "(from FLOAT or FLOAT16) is compiled")
    if attr_value(node, "precision", 0):
        raise r.refuse(node, elem, "the 'precision' attribute is not compiled")
    x = node.input[0]
    xtype = r.types.get(x, TP.FLOAT)
    if xtype not in (TP.FLOAT, TP.FLOAT16):
        raise r.refuse(node, elem, f"input type {type_name(xtype)} is not compiled (FLOAT and FLOAT16 are)")
    scale = node.input[1]
    both_f16 = xtype == TP.FLOAT16 and r.types.get(scale) == TP.FLOAT16  # numpy divides in float16 only then
    if not both_f16:
        x = x if xtype == TP.FLOAT else e.cast(x, TP.FLOAT)
        scale = scale if r.types.get(scale) == TP.FLOAT else e.cast(scale, TP.FLOAT)
    q = e("Div", [x, _axis_shaped(e, node, scale, node.input[0], node.input[1])])
    q32 = e.cast(q, TP.FLOAT) if both_f16 else q
    if elem == TP.FLOAT4E2M1 and zp:  # onnx.reference adds a FLOAT4E2M1 zero point (float8: it must be 0)
        q32 = e("Add", [q32, _axis_shaped(e, node, _decode_float(e, zp, elem), node.input[0], zp)])
    e("Identity", [_encode_small(e, q32, elem, bool(attr_value(node, "saturate", 1)))], node.output[0])
    return e.nodes


def _convert_tensor(tensor: onnx.TensorProto) -> onnx.TensorProto:
    codes = codes_of(numpy_helper.to_array(tensor), tensor.data_type)
    return numpy_helper.from_array(codes, tensor.name)


def _rewrite_node(r: _Rewriter, node: onnx.NodeProto, elem: int) -> list[onnx.NodeProto]:
    op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
    if op in ("Cast", "CastLike"):
        return _rewrite_cast(r, node)
    if op == "DequantizeLinear":
        return _rewrite_dequantize(r, node)
    if op == "QuantizeLinear":
        return _rewrite_quantize(r, node)
    if op in ("Constant", "ConstantOfShape"):
        if op == "Constant" and any(a.name != "value" for a in node.attribute):
            raise r.refuse(node, elem, "only a Constant's 'value' tensor is compiled for this type")
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type in LOWBIT:
                attr.t.CopyFrom(_convert_tensor(attr.t))
        return [node]
    if op in STRUCTURAL:
        return [node]
    if op in BF16_EXACT and elem == TP.BFLOAT16 and all(r.types.get(n) in (TP.BFLOAT16, TP.BOOL) for n in list(node.input) + list(node.output) if n):
        return _rewrite_bf16_compute(r, node)
    raise r.refuse(node, elem, "not compiled for this type (compiled: Cast, CastLike, QuantizeLinear, "
                               "DequantizeLinear, Constant, layout ops, and for BFLOAT16 " + ", ".join(sorted(BF16_EXACT)) + ")")


def _rewrite_bf16_compute(r: _Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto]:
    """A BF16_EXACT node computed on the float32 values of its bfloat16 operands, each bfloat16 result rounded once
    (a NaN result is the positive NaN code: its sign cannot be read; the sign of a zero from Max/Min/Relu/Clip of -0
    and +0, or from Sign(-0), is their float32 lowering's, which may differ from ml_dtypes')."""
    before = _Emit(r, node)
    for k, name in enumerate(node.input):
        if name and r.types.get(name) == TP.BFLOAT16:
            node.input[k] = _decode_float(before, name, TP.BFLOAT16)
    after = _Emit(r, node)
    for k, out in enumerate(node.output):
        if out and r.types.get(out) == TP.BFLOAT16:
            node.output[k] = r.fresh(f"{out}__hcc_f32")
            after("Identity", [_encode_bf16(after, node.output[k])], out)
    return before.nodes + [node] + after.nodes


def rewrite_lowbit(model: onnx.ModelProto, path: str = "model") -> dict[str, int]:
    """Rewrite, in place, every low-bit value into its INT32 representation (module docstring); returns the ONNX
    types of the model inputs and outputs that had one, by name (their storage type is now in the graph)."""
    function = _function_using_lowbit(model)
    if function is not None:
        raise HccError(f"{path}: local function '{function}' uses an 8-/4-bit float, bfloat16 or 4-/2-bit integer type, "
                       "which hcc compiles in the main graph only")
    if not has_lowbit(model):
        return {}
    name_nodes(model)  # the loader's names, so that an error names the node as every later message does
    graph = model.graph
    for node in graph.node:
        if any(_graph_has_lowbit(g) for g in subgraphs(node)):
            raise HccError(f"{path}: node '{node.name}' ({node.op_type}): its body uses an 8-/4-bit float, bfloat16 or "
                           "4-/2-bit integer type, which hcc compiles in the main graph only")
    r = _Rewriter(model, path)
    declared = {v.name: v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output)
                if v.type.tensor_type.elem_type in LOWBIT}
    initializer_names = {init.name for init in graph.initializer}
    for i, init in enumerate(graph.initializer):
        if init.data_type in LOWBIT:
            graph.initializer[i].CopyFrom(_convert_tensor(init))
    front: list[onnx.NodeProto] = []
    rename: dict[str, str] = {}
    for value in graph.input:
        elem = value.type.tensor_type.elem_type
        if elem not in LOWBIT:
            continue
        if value.name in initializer_names:
            value.type.tensor_type.elem_type = TP.INT32
            declared.pop(value.name, None)
            continue
        value.type.tensor_type.elem_type = STORAGE[elem]
        code = fresh_name(f"{value.name}__hcc_code", r.taken)
        r.types[code], r.shapes[code] = elem, r.shapes.get(value.name)
        front.append(helper.make_node("Cast", [value.name], [code], name=r.fresh(f"{value.name}/hcc_unpack"), to=TP.INT32))
        rename[value.name] = code
    outputs = {v.name: v.type.tensor_type.elem_type for v in graph.output if v.type.tensor_type.elem_type in LOWBIT}
    passed = sorted(set(outputs) & ({v.name for v in graph.input} | initializer_names))
    if passed:
        raise HccError(f"{path}: output(s) {', '.join(passed)} of a low-bit type are model inputs or weights passed "
                       "through unchanged, which hcc does not compile")
    out_rename = {name: fresh_name(f"{name}__hcc_code", r.taken) for name in outputs}
    body: list[onnx.NodeProto] = []
    for node in graph.node:
        node.input[:] = [rename.get(n, n) for n in node.input]
        elem = r.lowbit_of(node)
        body.extend([node] if elem is None else _rewrite_node(r, node, elem))
    for node in body:  # the lowbit outputs are computed as codes, then stored
        node.output[:] = [out_rename.get(o, o) for o in node.output]
        node.input[:] = [out_rename.get(i, i) for i in node.input]
    back = []
    for value in graph.output:
        elem = outputs.get(value.name)
        if elem is None:
            continue
        value.type.tensor_type.elem_type = STORAGE[elem]
        source = out_rename[value.name]
        back.append(helper.make_node("Cast", [source], [value.name], name=r.fresh(f"{value.name}/hcc_store"), to=STORAGE[elem]))
    del graph.node[:]
    graph.node.extend(front + body + back)
    graph.initializer.extend(r.new_inits)
    kept = [v for v in graph.value_info if v.type.tensor_type.elem_type not in LOWBIT]
    del graph.value_info[:]
    graph.value_info.extend(kept)  # the low-bit intermediates are INT32 now: shape inference types them again
    return declared


# ------------------------------------------------------------------- the boundary, compile side (golden data)

_BY_NAME = {name: elem for elem, name in ELEMENT_NAMES.items()}


def random_storage(element_type: str, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    """Random golden input of such a type, as its storage array: 4-/2-bit integers over their range, float codes of
    finite values of either sign (bfloat16: normal floats rounded), E8M0 exponents 2^-16..2^16."""
    elem = _BY_NAME[element_type]
    storage = helper.tensor_dtype_to_np_dtype(STORAGE[elem])
    if elem in SMALL_INTS:
        lo, hi = SMALL_INTS[elem]
        return rng.integers(lo, hi + 1, size=shape).astype(storage)
    if elem == TP.BFLOAT16:
        return to_storage(rng.standard_normal(shape).astype(np.float32).astype(helper.tensor_dtype_to_np_dtype(elem)), elem)
    if elem == TP.FLOAT8E8M0:
        return rng.integers(127 - 16, 127 + 17, size=shape).astype(storage)
    f = SMALL_FLOATS[elem]
    magnitude = rng.integers(0, f.max_code + 1, size=shape)
    negative = (rng.random(shape) < 0.5) & ((magnitude > 0) if f.fnuz else True)
    return (magnitude + np.where(negative, 1 << (f.bits - 1), 0)).astype(storage)


def typed_feeds(feeds: dict[str, np.ndarray], element_types: dict[str, str]) -> dict[str, np.ndarray]:
    """Storage arrays as the ml_dtypes arrays the model's own types need (for onnxruntime / onnx.reference)."""
    return {name: from_storage(a, _BY_NAME[element_types[name]]) if name in element_types else a for name, a in feeds.items()}


def stored_outputs(outputs: dict[str, np.ndarray], element_types: dict[str, str]) -> dict[str, np.ndarray]:
    """Reference outputs with such outputs as their storage arrays (the same dict type: GoldenOutputs keeps its source)."""
    for name in list(outputs):
        if name in element_types:
            outputs[name] = to_storage(outputs[name], _BY_NAME[element_types[name]])
    return outputs
