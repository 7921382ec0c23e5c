"""8-/4-bit floats, bfloat16 and 4-/2-bit integers (frontend/lowbit.py): casts to and from them give onnx.reference's
bits exactly (every FLOAT16 value, float32 ties, overflows, -0, subnormals, Inf, NaN), both as rewritten ONNX and
compiled; QuantizeLinear / DequantizeLinear of them match; the bundle carries them as storage arrays whose ONNX type
the manifest records; every other use is refused by node name."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper
from onnx.reference import ReferenceEvaluator

import hcc
from hcc.artifacts.manifest import Manifest
from hcc.errors import HccError
from hcc.frontend.lowbit import ELEMENT_NAMES, LOWBIT, SMALL_INTS, STORAGE_NAMES, from_storage, rewrite_lowbit, to_storage
from hcc.runtime import load
from hcc.runtime.validate import ELEMENT_STORAGE, check_tensors

FLOAT8 = [TP.FLOAT8E4M3FN, TP.FLOAT8E4M3FNUZ, TP.FLOAT8E5M2, TP.FLOAT8E5M2FNUZ]
TARGETS = FLOAT8 + [TP.FLOAT4E2M1, TP.BFLOAT16, TP.INT4, TP.UINT4, TP.INT2, TP.UINT2]  # FLOAT8E8M0: its own tests
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's casts of NaN/Inf to integers


def _cast_model(src: int, targets: list[tuple[int, int]], n: int | None = None) -> onnx.ModelProto:
    """x (src) -> one Cast output per (target, saturate)."""
    nodes, outputs = [], []
    for to, saturate in targets:
        out = f"y_{TP.DataType.Name(to).lower()}_{saturate}"
        attrs = {"saturate": saturate} if to in FLOAT8 else {}
        nodes.append(helper.make_node("Cast", ["x"], [out], name=f"cast_{out}", to=to, **attrs))
        outputs.append(helper.make_tensor_value_info(out, to, [n]))
    graph = helper.make_graph(nodes, "lowbit", [helper.make_tensor_value_info("x", src, [n])], outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])


def _edge_floats() -> np.ndarray:
    """float32 values where rounding can go wrong: every FLOAT16 value and its float32 neighbours (ties of the
    narrow types, their overflow thresholds), -0, float32 subnormals, huge values, Inf, NaN, random magnitudes."""
    rng = np.random.default_rng(1)
    f16 = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float32)
    f16 = f16[np.isfinite(f16)]
    spread = rng.standard_normal(4000).astype(np.float32) * rng.choice(np.float32([1e-6, 1e-3, 1, 1e3, 1e5, 1e30]), 4000)
    special = np.float32([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 1e-45, 3.4e38, -3.4e38, 2**27, -(2**27) - 16])
    base = np.concatenate([f16, spread, special])
    with np.errstate(all="ignore"):
        return np.concatenate([base, np.nextafter(base, np.float32(np.inf)), np.nextafter(base, np.float32(-np.inf))])


def _assert_same_bits(expected: np.ndarray, actual: np.ndarray, to: int, where: str, nan_sign: bool = False) -> None:
    """Equal storage bits; where the reference has a NaN, any NaN of the type unless `nan_sign` (a float's NaN sign
    cannot be read without a bitcast, hcc writes the positive NaN code; a decoded code's sign is known)."""
    want = to_storage(expected, to)
    assert actual.dtype == want.dtype, where
    if to in SMALL_INTS or to == TP.FLOAT4E2M1 or nan_sign:
        nan = np.zeros(want.shape, bool)
    else:
        nan = np.isnan(np.asarray(expected).astype(np.float32))
        assert np.isnan(from_storage(actual[nan], to).astype(np.float32)).all(), where
    bad = (want != actual) & ~nan
    assert not bad.any(), f"{where}: {int(bad.sum())} differ, e.g. {want[bad][:5]} expected, {actual[bad][:5]} got"


def _reference_and_rewritten(model: onnx.ModelProto, feeds: dict[str, np.ndarray]):
    expected = ReferenceEvaluator(model).run(None, feeds)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    types = rewrite_lowbit(rewritten)
    stored = {n: to_storage(a, types[n]) if n in types else a for n, a in feeds.items()}
    return expected, ReferenceEvaluator(rewritten).run(None, stored)


@pytest.mark.parametrize("src", [TP.FLOAT, TP.FLOAT16])
def test_rewritten_casts_round_like_the_reference(src):
    """The rewrite's arithmetic (midpoint counting, bfloat16 scaling, integer wrap), run by onnx.reference."""
    x = _edge_floats().astype(np.float16 if src == TP.FLOAT16 else np.float32)
    targets = [(t, s) for t in TARGETS for s in ((1, 0) if t in FLOAT8 else (1,))]
    expected, actual = _reference_and_rewritten(_cast_model(src, targets), {"x": x})
    for (to, saturate), e, a in zip(targets, expected, actual):
        _assert_same_bits(e, a, to, f"{TP.DataType.Name(src)} -> {TP.DataType.Name(to)} saturate={saturate}")


def _all_values(elem: int) -> np.ndarray:
    dtype = helper.tensor_dtype_to_np_dtype(elem)
    if elem in SMALL_INTS:
        lo, hi = SMALL_INTS[elem]
        return np.arange(lo, hi + 1).astype(dtype)
    if elem == TP.BFLOAT16:
        return np.arange(65536, dtype=np.uint16).view(dtype)
    return np.arange(16 if elem == TP.FLOAT4E2M1 else 256, dtype=np.uint8).view(dtype)


@pytest.mark.parametrize("src", TARGETS)
def test_rewritten_decoding_of_every_code(src):
    conversions = [(TP.FLOAT8E5M2, 1), (TP.FLOAT8E4M3FN, 0), (TP.FLOAT8E4M3FNUZ, 1), (TP.FLOAT4E2M1, 1), (TP.BFLOAT16, 1)]
    targets = [(TP.FLOAT, 1), (TP.FLOAT16, 1), (TP.DOUBLE, 1)] + ([(TP.INT8, 1), (TP.INT32, 1)] if src in SMALL_INTS else conversions)
    expected, actual = _reference_and_rewritten(_cast_model(src, targets), {"x": _all_values(src)})
    for (to, _), e, a in zip(targets, expected, actual):
        if to in LOWBIT:
            _assert_same_bits(e, a, to, f"{TP.DataType.Name(src)} -> {TP.DataType.Name(to)}", nan_sign=True)
        else:
            np.testing.assert_array_equal(a, e, err_msg=f"{TP.DataType.Name(src)} -> {TP.DataType.Name(to)}")


def _compile(model: onnx.ModelProto, tmp_path, feeds: dict[str, np.ndarray]):
    """Compile with `feeds` (storage arrays) as golden inputs; the loaded session."""
    path, inputs = tmp_path / "model.onnx", tmp_path / "inputs.npz"
    onnx.save(model, path)
    np.savez(inputs, **feeds)
    hcc.compile(path, tmp_path / "bundle", golden_inputs=inputs)
    return load(tmp_path / "bundle")


def test_compiled_casts_to_every_type_are_bit_exact(tmp_path):
    """The generated code (not only the ONNX rewrite) on the edge values: -0 through 1 / -0, subnormals, ties."""
    x = _edge_floats()
    targets = [(t, s) for t in TARGETS for s in ((1, 0) if t in FLOAT8 else (1,))]
    model = _cast_model(TP.FLOAT, targets, len(x))
    session = _compile(model, tmp_path, {"x": x})
    expected = ReferenceEvaluator(model).run(None, {"x": x})
    for (to, saturate), e, a in zip(targets, expected, session.run(None, {"x": x})):
        _assert_same_bits(e, a, to, f"compiled FLOAT -> {TP.DataType.Name(to)} saturate={saturate}")
    records = {t.name: t for t in session.manifest.tensors}
    assert records["y_float8e4m3fn_1"].element_type == "float8_e4m3fn" and records["y_float8e4m3fn_1"].dtype == "uint8"
    assert records["y_int4_1"].element_type == "int4" and records["y_int4_1"].dtype == "int8"
    assert records["x"].element_type is None


@pytest.mark.parametrize("src", [TP.FLOAT8E4M3FN, TP.FLOAT8E5M2FNUZ, TP.FLOAT4E2M1, TP.BFLOAT16, TP.INT4, TP.UINT2])
def test_compiled_decoding_and_ml_dtypes_inputs(tmp_path, src):
    """Every code decoded by the compiled code; the session takes the storage array or the ml_dtypes array."""
    values = _all_values(src)
    model = _cast_model(src, [(TP.FLOAT, 1), (TP.FLOAT16, 1)], len(values))
    session = _compile(model, tmp_path, {"x": to_storage(values, src)})
    assert session.manifest.tensor("x").element_type == ELEMENT_NAMES[src]
    expected = ReferenceEvaluator(model).run(None, {"x": values})
    for feeds in ({"x": to_storage(values, src)}, {"x": values}):
        for e, a in zip(expected, session.run(None, feeds)):
            np.testing.assert_array_equal(a, e)
    with pytest.raises(HccError, match=f"expected {STORAGE_NAMES[ELEMENT_NAMES[src]]} .*{ELEMENT_NAMES[src]}"):
        session.run(None, {"x": values.astype(np.float32)})


def _qdq_model(op: str, elem: int, x_shape: list[int], scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1,
               saturate: int | None = None) -> onnx.ModelProto:
    inits = [onnx.numpy_helper.from_array(scale, "scale")]
    inputs = ["x", "scale"]
    if zero_point is not None:
        inits.append(onnx.numpy_helper.from_array(zero_point, "zp"))
        inputs.append("zp")
    attrs = {"axis": axis} | ({"saturate": saturate} if saturate is not None else {})
    if op == "QuantizeLinear" and zero_point is None:
        attrs["output_dtype"] = elem
    x_type, y_type = (TP.FLOAT, elem) if op == "QuantizeLinear" else (elem, TP.FLOAT)
    node = helper.make_node(op, inputs, ["y"], name="q", **attrs)
    graph = helper.make_graph([node], "qdq", [helper.make_tensor_value_info("x", x_type, x_shape)],
                              [helper.make_tensor_value_info("y", y_type, x_shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])


def test_compiled_quantize_and_dequantize(tmp_path):
    """QuantizeLinear to INT4 per axis (rounding half to even, zero point, clamping), to FLOAT8E4M3FN with and
    without saturation, to FLOAT4E2M1; DequantizeLinear from UINT4 per axis and from FLOAT8E5M2."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((3, 40)) * 20).astype(np.float32)
    x[0, :6] = [2.5, 3.5, -2.5, 1e6, -1e6, 0.0]
    cases = [
        (_qdq_model("QuantizeLinear", TP.INT4, [3, 40], np.float32([2, 3, 4]),
                             np.array([1, -2, 0], dtype=helper.tensor_dtype_to_np_dtype(TP.INT4)), axis=0), x),
        (_qdq_model("QuantizeLinear", TP.FLOAT8E4M3FN, [3, 40], np.float32(0.25), None, saturate=1), x),
        (_qdq_model("QuantizeLinear", TP.FLOAT8E4M3FN, [3, 40], np.float32(0.25), None, saturate=0), x),
        (_qdq_model("QuantizeLinear", TP.FLOAT4E2M1, [3, 40], np.float32(4.0), None), x),
        (_qdq_model("DequantizeLinear", TP.UINT4, [3, 16], np.float32([0.5, 2, 3]),
                             np.array([3, 0, 15], dtype=helper.tensor_dtype_to_np_dtype(TP.UINT4)), axis=0),
         np.tile(np.arange(16), (3, 1)).astype(helper.tensor_dtype_to_np_dtype(TP.UINT4))),
        (_qdq_model("DequantizeLinear", TP.FLOAT8E5M2, [256], np.float32(0.5), None, axis=0),
         np.arange(256, dtype=np.uint8).view(helper.tensor_dtype_to_np_dtype(TP.FLOAT8E5M2))),
    ]
    for k, (model, feed) in enumerate(cases):
        folder = tmp_path / str(k)
        folder.mkdir()
        elem = model.graph.input[0].type.tensor_type.elem_type
        stored = to_storage(feed, elem) if elem in LOWBIT else feed
        session = _compile(model, folder, {"x": stored})
        expected = ReferenceEvaluator(model).run(None, {"x": feed})[0]
        actual = session.run(None, {"x": stored})[0]
        out_type = model.graph.output[0].type.tensor_type.elem_type
        if out_type in LOWBIT:
            _assert_same_bits(expected, actual, out_type, f"case {k}")
        else:
            np.testing.assert_array_equal(actual, expected, err_msg=f"case {k}")


def test_onnx_backend_hands_and_returns_ml_dtypes_arrays():
    from hcc.onnx_backend import HccBackend

    model = _cast_model(TP.FLOAT8E4M3FN, [(TP.BFLOAT16, 1)], 256)
    x = _all_values(TP.FLOAT8E4M3FN)
    rep = HccBackend.prepare(model, "CPU")
    try:
        (y,) = rep.run([x])
    finally:
        rep.close()
    expected = ReferenceEvaluator(model).run(None, {"x": x})[0]
    assert y.dtype == expected.dtype
    np.testing.assert_array_equal(y.view(np.uint16), expected.view(np.uint16))


def _write(model: onnx.ModelProto, tmp_path) -> str:
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    return str(path)


def test_other_ops_on_these_types_are_refused_by_node(tmp_path):
    a = helper.make_tensor_value_info("a", TP.FLOAT8E4M3FN, [4])
    graph = helper.make_graph([helper.make_node("Add", ["a", "a"], ["s"], name="add_fp8")], "g", [a],
                              [helper.make_tensor_value_info("s", TP.FLOAT8E4M3FN, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
    with pytest.raises(HccError, match=r"node 'add_fp8' \(Add\) on FLOAT8E4M3FN: not compiled for this type"):
        hcc.compile(_write(model, tmp_path), tmp_path / "bundle")


def test_double_to_bfloat16_is_refused_clearly(tmp_path):
    double = _cast_model(TP.DOUBLE, [(TP.BFLOAT16, 1)], 4)
    with pytest.raises(HccError, match=r"node 'cast_y_bfloat16_1' \(Cast\) on BFLOAT16: a cast from DOUBLE is not compiled"):
        hcc.compile(_write(double, tmp_path), tmp_path / "bundle")


def _e8m0_model(src: int, n: int | None = None) -> onnx.ModelProto:
    """x -> FLOAT8E8M0 in every round mode, saturating or not ("down" never reaches 255: one output, since two
    outputs computing the same value crash the CPU code generator, a separate bug)."""
    nodes, outputs = [], []
    for mode in ("up", "down", "nearest"):
        for saturate in (1, 0) if mode != "down" else (1,):
            out = f"y_{mode}_{saturate}"
            nodes.append(helper.make_node("Cast", ["x"], [out], name=f"cast_{out}", to=TP.FLOAT8E8M0, saturate=saturate, round_mode=mode))
            outputs.append(helper.make_tensor_value_info(out, TP.FLOAT8E8M0, [n]))
    graph = helper.make_graph(nodes, "e8m0", [helper.make_tensor_value_info("x", src, [n])], outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])


@pytest.mark.parametrize("src", [TP.FLOAT, TP.FLOAT16])
def test_rewritten_float8e8m0_casts_match_the_reference(src):
    x = _edge_floats().astype(np.float16 if src == TP.FLOAT16 else np.float32)
    x = np.concatenate([x, np.float32([2.0**-127, 1.5 * 2.0**-127, 2.0**-127 + 2.0**-149, 1.5, 3.0 * 2**126, 2.0**127]).astype(x.dtype)])
    expected, actual = _reference_and_rewritten(_e8m0_model(src), {"x": x})
    for k, (e, a) in enumerate(zip(expected, actual)):
        np.testing.assert_array_equal(a, to_storage(e, TP.FLOAT8E8M0), err_msg=f"output {k}")


def test_compiled_float8e8m0_both_ways(tmp_path):
    x = _edge_floats()
    model = _e8m0_model(TP.FLOAT, len(x))
    (tmp_path / "to").mkdir()
    session = _compile(model, tmp_path / "to", {"x": x})
    for k, (e, a) in enumerate(zip(ReferenceEvaluator(model).run(None, {"x": x}), session.run(None, {"x": x}))):
        np.testing.assert_array_equal(a, to_storage(e, TP.FLOAT8E8M0), err_msg=f"output {k}")
    codes = np.arange(256, dtype=np.uint8).view(helper.tensor_dtype_to_np_dtype(TP.FLOAT8E8M0))
    back = _cast_model(TP.FLOAT8E8M0, [(TP.FLOAT, 1), (TP.FLOAT16, 1)], 256)
    (tmp_path / "from").mkdir()
    session = _compile(back, tmp_path / "from", {"x": to_storage(codes, TP.FLOAT8E8M0)})
    for e, a in zip(ReferenceEvaluator(back).run(None, {"x": codes}), session.run(None, {"x": codes})):
        np.testing.assert_array_equal(a, e)


def test_runtime_table_matches_the_frontend_and_refuses_a_wrong_storage(tmp_path):
    """runtime/validate.py (numpy only) keeps its own copy of the storage table; a manifest whose element_type
    disagrees with its dtype is refused before any code is loaded."""
    assert ELEMENT_STORAGE == STORAGE_NAMES
    model = _cast_model(TP.FLOAT, [(TP.FLOAT8E5M2, 1)], 4)
    session = _compile(model, tmp_path, {"x": np.float32([1, 2, 3, 4])})
    manifest_path = tmp_path / "bundle" / "manifest.json"
    data = json.loads(manifest_path.read_text())
    assert [t["element_type"] for t in data["tensors"] if "element_type" in t] == ["float8_e5m2"]
    assert session.run(None, {"x": np.float32([1, 2, 3, 4])})[0].dtype == np.uint8
    for t in data["tensors"]:
        if t.get("element_type"):
            t["dtype"] = "uint16"
    with pytest.raises(HccError, match="element type 'float8_e5m2' is not carried as output 'uint16'"):
        check_tensors(tmp_path / "bundle", Manifest.from_dict(data))


def test_compiled_bfloat16_arithmetic_is_correctly_rounded(tmp_path):
    """Add, Sub, Mul, Div, Sqrt, Max, Relu, Where and a comparison on bfloat16: float32 results rounded once give
    onnx.reference's (ml_dtypes') bits; a non-exact op (Exp) is refused by node."""
    rng = np.random.default_rng(5)
    bf16 = helper.tensor_dtype_to_np_dtype(TP.BFLOAT16)
    n = 4096
    a = (rng.standard_normal(n) * rng.choice([1e-30, 1e-3, 1, 1e3, 1e30], n)).astype(np.float32).astype(bf16)
    b = (rng.standard_normal(n) * rng.choice([1e-3, 1, 1e3], n)).astype(np.float32).astype(bf16)
    a[:10] = np.float32([0.0, -0.0, np.inf, -np.inf, 3e38, 1e-40, 2.5, -3.5, 0.5, -1.5]).astype(bf16)
    binary = ["Add", "Sub", "Mul", "Div", "Max"]
    nodes = [helper.make_node(op, ["a", "b"], [op.lower()], name=op.lower()) for op in binary]
    unary = ["Reciprocal", "Neg", "Abs", "Floor", "Ceil", "Round", "Sign"]
    nodes += [helper.make_node(op, ["a"], [op.lower()], name=op.lower()) for op in unary]
    nodes += [helper.make_node("Sqrt", ["b"], ["sqrt"], name="sqrt"), helper.make_node("Relu", ["a"], ["relu"], name="relu"),
              helper.make_node("Clip", ["a", "b", ""], ["clip"], name="clip"),
              helper.make_node("Less", ["a", "b"], ["less"], name="less"), helper.make_node("Where", ["less", "a", "b"], ["where"], name="where")]
    names = [op.lower() for op in binary + unary] + ["sqrt", "relu", "clip", "where"]
    outputs = [helper.make_tensor_value_info(o, TP.BFLOAT16, [n]) for o in names] + [helper.make_tensor_value_info("less", TP.BOOL, [n])]
    graph = helper.make_graph(nodes, "bf16", [helper.make_tensor_value_info(v, TP.BFLOAT16, [n]) for v in "ab"], outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
    session = _compile(model, tmp_path, {"a": to_storage(a, TP.BFLOAT16), "b": to_storage(b, TP.BFLOAT16)})
    expected = ReferenceEvaluator(model).run(None, {"a": a, "b": b})
    actual = session.run(None, {"a": a, "b": b})
    for name, e, got in zip(names + ["less"], expected, actual):
        if name == "less":
            np.testing.assert_array_equal(got, e)
        elif name in ("relu", "max", "clip", "sign"):  # which zero: Max(-0, 0) and Sign(-0) differ between ml_dtypes and float32
            zero = np.asarray(e).astype(np.float32) == 0
            assert (from_storage(got[zero], TP.BFLOAT16).astype(np.float32) == 0).all(), name
            _assert_same_bits(e[~zero], got[~zero], TP.BFLOAT16, name)
        else:
            _assert_same_bits(e, got, TP.BFLOAT16, name)
    exp = helper.make_graph([helper.make_node("Exp", ["a"], ["y"], name="exp_bf16")], "g", [helper.make_tensor_value_info("a", TP.BFLOAT16, [4])],
                            [helper.make_tensor_value_info("y", TP.BFLOAT16, [4])])
    (tmp_path / "exp").mkdir()
    with pytest.raises(HccError, match=r"node 'exp_bf16' \(Exp\) on BFLOAT16: not compiled for this type"):
        hcc.compile(_write(helper.make_model(exp, opset_imports=[helper.make_opsetid("", 22)]), tmp_path / "exp"), tmp_path / "exp_bundle")


def test_random_golden_inputs_are_valid_values_of_the_type(tmp_path):
    """Without --golden-input, hcc's random inputs of such types are storage arrays of valid values (INT4 in -8..7,
    not the generic 1..10), and the golden outputs are the reference's, stored the same way."""
    nodes = [helper.make_node("Cast", ["q"], ["qf"], name="q_to_float", to=TP.FLOAT),
             helper.make_node("Cast", ["f"], ["ff"], name="f_to_float", to=TP.FLOAT),
             helper.make_node("Add", ["qf", "ff"], ["s"], name="add"),
             helper.make_node("Cast", ["s"], ["y"], name="to_e5m2", to=TP.FLOAT8E5M2)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("q", TP.INT4, [64]),
                                                 helper.make_tensor_value_info("f", TP.FLOAT8E4M3FNUZ, [64])],
                              [helper.make_tensor_value_info("y", TP.FLOAT8E5M2, [64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 25)])
    hcc.compile(_write(model, tmp_path), tmp_path / "bundle")
    with np.load(tmp_path / "bundle" / "golden" / "golden.npz") as golden:
        q, f, y = golden["input:q"], golden["input:f"], golden["output:y"]
    assert q.dtype == np.int8 and q.min() >= -8 and q.max() <= 7 and len(np.unique(q)) > 8
    assert f.dtype == np.uint8 and not (f == 0x80).any()  # no NaN code among the random values
    expected = ReferenceEvaluator(model).run(None, {"q": from_storage(q, TP.INT4), "f": from_storage(f, TP.FLOAT8E4M3FNUZ)})[0]
    np.testing.assert_array_equal(y, to_storage(expected, TP.FLOAT8E5M2))
    np.testing.assert_array_equal(load(tmp_path / "bundle").run(None, {"q": q, "f": f})[0], y)


def test_bodies_and_local_functions_using_these_types_are_refused(tmp_path):
    """Only the main graph is rewritten: an If branch or a model-local function naming such a type is refused by
    name rather than left half-converted."""
    from hcc.frontend.loader import load_model

    branch = helper.make_graph([helper.make_node("Cast", ["x"], ["b"], name="to_fp8", to=TP.FLOAT8E4M3FN)], "then", [],
                               [helper.make_tensor_value_info("b", TP.FLOAT8E4M3FN, [2])])
    node = helper.make_node("If", ["c"], ["y"], name="branch", then_branch=branch, else_branch=branch)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("c", TP.BOOL, []), helper.make_tensor_value_info("x", TP.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TP.FLOAT8E4M3FN, [2])])
    with pytest.raises(HccError, match=r"node 'branch' \(If\): its body uses an 8-/4-bit float"):
        load_model(_write(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)]), tmp_path))
    function = helper.make_function("local", "F", ["x"], ["y"], [helper.make_node("Cast", ["x"], ["y"], to=TP.BFLOAT16)],
                                    [helper.make_opsetid("", 22)])
    graph = helper.make_graph([helper.make_node("F", ["x"], ["y"], domain="local")], "g", [helper.make_tensor_value_info("x", TP.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TP.BFLOAT16, [2])])
    model = helper.make_model(graph, functions=[function], opset_imports=[helper.make_opsetid("", 22), helper.make_opsetid("local", 1)])
    (tmp_path / "f").mkdir()
    with pytest.raises(HccError, match="local function 'F' uses an 8-/4-bit float, bfloat16"):
        load_model(_write(model, tmp_path / "f"))
