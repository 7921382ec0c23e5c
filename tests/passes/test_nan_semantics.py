"""NaN, +-inf, -0.0 and denormals: hcc gives the results onnxruntime (the reference) gives, op by op.

Each test compiles one model with many outputs (one hcc.compile each, to keep the file quick) and feeds it inputs
full of special values at varied positions: first and later elements of a pooling window or a reduction, all-NaN
windows, NaN next to infinities, signed zeros. Comparisons are exact for NaN positions, infinities and the sign of
every zero onnxruntime returns, and exact for the ops that only select or copy values; the other values are within
float rounding. The rules hcc implements are in passes/nan_semantics.py and README.md ("NaN/Inf semantics").
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

from hcc.passes.nan_semantics import nchwc_block_size
from helpers import compile_groups

F, I64, B = T.FLOAT, T.INT64, T.BOOL
NAN, INF = np.float32(np.nan), np.float32(np.inf)
# special values, then ordinary ones (the Clip bounds, values around them, large magnitudes)
SPECIAL = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, -1e-40, 1.5, -2.5, 6.0, -7.0, 3e38, -3e38, 0.5, -0.5,
                    100.0], np.float32)
EXACT = dict(rtol=0.0, atol=0.0)  # ops that select or copy values
ROUNDED = dict(rtol=1e-3, atol=1e-4)  # arithmetic and transcendental functions: hcc's fp32 tolerance (README, Tests)


def const(name: str, value, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def build(nodes, inputs, outputs, inits=(), opset: int = 17) -> onnx.ModelProto:
    outs = [(o, F) if isinstance(o, str) else o for o in outputs]
    graph = h.make_graph(nodes, "nan_case", [h.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                         [h.make_tensor_value_info(n, t, None) for n, t in outs], initializer=list(inits))
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)], ir_version=8 if opset <= 18 else 10)
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def run_both(model: onnx.ModelProto, feeds: dict, tmp_path: Path, **compile_options) -> tuple[dict, dict]:
    """(hcc outputs, onnxruntime outputs) by output name."""
    import hcc
    from hcc.artifacts.golden import run_onnxruntime
    from hcc.runtime import load

    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    hcc.compile(path, tmp_path / "bundle", **compile_options)
    session = load(tmp_path / "bundle")
    actual = dict(zip(session.manifest.outputs, session.run(None, feeds)))
    return actual, run_onnxruntime(model, feeds)


def assert_same(actual: np.ndarray, expected: np.ndarray, name: str, rtol: float, atol: float) -> None:
    """NaN positions, infinities and the signs of onnxruntime's zeros exactly; other values within rtol/atol."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, (name, actual.shape, expected.shape)
    if expected.dtype.kind != "f":
        np.testing.assert_array_equal(actual, expected, err_msg=name)
        return
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{name}: NaN positions")
    inf = np.isinf(expected)
    np.testing.assert_array_equal(actual[inf], expected[inf], err_msg=f"{name}: infinities")
    zero = expected == 0
    np.testing.assert_array_equal(np.signbit(actual[zero]), np.signbit(expected[zero]), err_msg=f"{name}: sign of zero")
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=name)


def check_all(actual: dict, expected: dict, tolerances: dict[str, dict]) -> None:
    assert set(actual) == set(expected)
    failures = []
    for name in expected:
        try:
            assert_same(actual[name], expected[name], name, **tolerances.get(name, EXACT))
        except AssertionError as exc:
            failures.append(str(exc).strip().splitlines()[0] + "\n" + "\n".join(str(exc).strip().splitlines()[1:8]))
    assert not failures, "\n\n".join(failures)


# -- elementwise -----------------------------------------------------------------------------------------------------

def test_unary_elementwise_ops(tmp_path):
    """Clip (NaN stays NaN, absent bounds are -+FLT_MAX), Relu/Elu of -0.0, Sign(NaN), Reciprocal(0) (no abort),
    Sqrt/Log of negatives and zeros, Exp/Erf/Tanh/Sigmoid/Gelu at +-inf, Abs/Neg of -0.0, denormals throughout."""
    unary = ["Abs", "Neg", "Relu", "Sign", "Sqrt", "Log", "Exp", "Erf", "Tanh", "Sigmoid", "Softplus", "Reciprocal",
             "Ceil", "Floor", "Identity", "HardSwish"]
    nodes = [h.make_node(op, ["x"], [op.lower()]) for op in unary]
    nodes += [
        h.make_node("LeakyRelu", ["x"], ["leakyrelu"], alpha=0.1),
        h.make_node("Elu", ["x"], ["elu"], alpha=0.7),
        h.make_node("HardSigmoid", ["x"], ["hardsigmoid"], alpha=0.2, beta=0.5),
        h.make_node("Gelu", ["x"], ["gelu"]),
        h.make_node("Gelu", ["x"], ["gelu_tanh"], approximate="tanh"),
        h.make_node("Clip", ["x", "zero", "six"], ["relu6"]),
        h.make_node("Clip", ["x", "zero"], ["clip_min"]),
        h.make_node("Clip", ["x", "", "six"], ["clip_max"]),
        h.make_node("Clip", ["x", "mhalf", "half"], ["clip_narrow"]),
        h.make_node("Clip", ["x"], ["clip_none"]),
        h.make_node("Pow", ["x", "two"], ["square"]),
        h.make_node("Pow", ["x", "half"], ["root"]),
        h.make_node("Cast", ["x"], ["to_bool"], to=B),
    ]
    outputs = [n.output[0] for n in nodes[:-1]] + [("to_bool", B)]
    inits = [const("zero", 0.0), const("six", 6.0), const("mhalf", -0.5), const("half", 0.5), const("two", 2.0)]
    model = build(nodes, [("x", F, [len(SPECIAL)])], outputs, inits, opset=20)
    actual, expected = run_both(model, {"x": SPECIAL}, tmp_path)
    rounded = ["exp", "erf", "tanh", "sigmoid", "softplus", "log", "sqrt", "root", "gelu", "gelu_tanh", "elu", "hardswish",
               "hardsigmoid", "reciprocal"]
    check_all(actual, expected, {name: ROUNDED for name in rounded})
    # the cases, spelled out
    assert np.isnan(actual["relu6"][0]) and np.isnan(actual["relu"][0]) and np.isnan(actual["sign"][0])
    assert actual["clip_min"][1] == np.finfo(np.float32).max and np.signbit(actual["relu"][3])
    assert actual["reciprocal"][4] == INF


def test_binary_elementwise_ops(tmp_path):
    """Every pair of special values: Max/Min (NaN from either side, 2 and 3 inputs), Div by zero, Pow, float Mod,
    comparisons (NaN compares false), Where (a selected -0.0 of x becomes +0.0), Sum."""
    k = len(SPECIAL)
    a = np.repeat(SPECIAL[:, None], k, axis=1)
    b = np.repeat(SPECIAL[None, :], k, axis=0)
    c = np.roll(a, 5, axis=0) * np.float32(-1.0)
    nodes = [h.make_node(op, ["a", "b"], [op.lower()]) for op in ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min"]]
    nodes += [h.make_node(op, ["a", "b"], [op.lower()]) for op in ["Equal", "Greater", "GreaterOrEqual", "Less", "LessOrEqual"]]
    nodes += [
        h.make_node("Max", ["a", "b", "c"], ["max3"]),
        h.make_node("Min", ["c", "a", "b"], ["min3"]),
        h.make_node("Sum", ["a", "b", "c"], ["sum3"]),
        h.make_node("Mod", ["a", "b"], ["fmod"], fmod=1),
        h.make_node("Less", ["b", "a"], ["b_less"]),
        h.make_node("Where", ["b_less", "b", "a"], ["where"]),
        h.make_node("Where", ["cond", "a", "c"], ["where_bcast"]),
    ]
    bools = {"equal", "greater", "greaterorequal", "less", "lessorequal"}
    outputs = [(n.output[0], B) if n.output[0] in bools else n.output[0] for n in nodes if n.output[0] != "b_less"]
    model = build(nodes, [("a", F, [k, k]), ("b", F, [k, k]), ("c", F, [k, k]), ("cond", B, [k, 1])], outputs)
    cond = (np.arange(k) % 3 == 0)[:, None]
    actual, expected = run_both(model, {"a": a, "b": b, "c": c, "cond": cond}, tmp_path)
    check_all(actual, expected, {"pow": ROUNDED, "div": ROUNDED})
    assert np.isnan(actual["max"][0, 7]) and np.isnan(actual["min"][0, 7]) and np.isnan(actual["max"][7, 0])


# -- reductions --------------------------------------------------------------------------------------------------------

def _rows(rng, n: int, length: int) -> np.ndarray:
    """Rows of special values, plus rows built to tell the rules apart: all NaN, NaN first, NaN last, NaN in the middle
    of a vector lane, +-0 ties, +-inf with NaN."""
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, 1.0, -1.0, 2.0], np.float32)
    x = rng.choice(values, size=(n, length), p=[0.15, 0.08, 0.08, 0.15, 0.15, 0.07, 0.12, 0.1, 0.1]).astype(np.float32)
    x[0] = np.nan
    x[1] = -np.inf
    x[2] = np.arange(length, dtype=np.float32)
    x[2, 0] = np.nan
    x[3] = np.arange(length, dtype=np.float32)
    x[3, -1] = np.nan
    x[4] = 0.0
    x[4, 1::2] = -0.0
    x[5] = np.where(np.arange(length) == 1, np.nan, np.where(np.arange(length) == length - 3, 9.0, 0.0))
    return x


def test_reductions_and_argmax(tmp_path):
    """ReduceMax/ReduceMin in every layout onnxruntime treats differently (trailing axes, vectorized per row from its
    first 16-byte aligned element: rows of 5 and 8 floats; leading axes; middle axes, vectorized along the output;
    outer + inner axes; all axes; opset 18's axes input), ArgMax (first or last index, 1-D), ReduceSum/Mean,
    Softmax/LogSoftmax of rows with infinities."""
    rng = np.random.default_rng(7)
    x5, x8 = _rows(rng, 40, 5), _rows(rng, 24, 8)
    x3 = rng.choice(np.array([np.nan, -np.inf, np.inf, -0.0, 0.0, 1.0, -1.0], np.float32), size=(6, 5, 6)).astype(np.float32)
    x3[0, :, 0] = np.nan
    v = x5[:, 1].copy()
    nodes, outputs, inits = [], [], []
    for op in ("ReduceMax", "ReduceMin"):
        tag = op[-3:].lower()
        for name, data, axes in [("rows5", "x5", [1]), ("rows8", "x8", [-1]), ("cols", "x5", [0]), ("all", "x5", None),
                                 ("middle", "x3", [1]), ("outer_inner", "x3", [0, 2]), ("lead2", "x3", [0, 1]), ("tail2", "x3", [1, 2])]:
            ins = [data]
            if axes is not None:
                inits.append(const(f"{tag}_{name}_axes", axes, np.int64))
                ins.append(f"{tag}_{name}_axes")
            nodes.append(h.make_node(op, ins, [f"{tag}_{name}"], keepdims=int(name != "cols")))
            outputs.append(f"{tag}_{name}")
    nodes += [
        h.make_node("ArgMax", ["x5"], ["argmax"], axis=1, keepdims=0),
        h.make_node("ArgMax", ["x5"], ["argmax_last"], axis=1, keepdims=0, select_last_index=1),
        h.make_node("ArgMax", ["x3"], ["argmax_mid"], axis=1, keepdims=1),
        h.make_node("ArgMax", ["v"], ["argmax_1d"], axis=0),
        h.make_node("ReduceSum", ["x5", "axis1"], ["sum"], keepdims=0),
        h.make_node("ReduceMean", ["x8", "axis1"], ["mean"], keepdims=0),
        h.make_node("Softmax", ["x8"], ["softmax"], axis=1),
        h.make_node("LogSoftmax", ["x8"], ["logsoftmax"], axis=1),
    ]
    outputs += [("argmax", I64), ("argmax_last", I64), ("argmax_mid", I64), ("argmax_1d", I64), "sum", "mean", "softmax", "logsoftmax"]
    model = build(nodes, [("x5", F, [40, 5]), ("x8", F, [24, 8]), ("x3", F, [6, 5, 6]), ("v", F, [40])], outputs,
                  inits + [const("axis1", [1], np.int64)], opset=18)
    actual, expected = run_both(model, {"x5": x5, "x8": x8, "x3": x3, "v": v}, tmp_path)
    check_all(actual, expected, {"sum": ROUNDED, "mean": ROUNDED, "softmax": ROUNDED, "logsoftmax": ROUNDED})
    assert actual["max_rows8"][5, 0] == 0.0  # the NaN in lane 1 hides the 9.0 of that lane, as in onnxruntime


@pytest.mark.slow  # with the coverage cases of these ops (tests/frontend/test_op_coverage.py): `make test-all`
def test_ops_added_for_coverage(tmp_path):
    """The ops of the coverage widening (issue 11) on special values: trigonometric and hyperbolic functions, Round,
    Celu/Selu/Mish/Shrink/ThresholdedRelu/PRelu, IsNaN/IsInf, the L1/L2/log/product reductions, Mean, LpNormalization,
    ArgMin (onnxruntime's rule: a NaN only if it comes first) and Hardmax (no one at all where the row maximum is
    NaN; frontend/rewrites.py)."""
    unary = ["Acos", "Asin", "Atan", "Acosh", "Asinh", "Atanh", "Tan", "Cosh", "Sinh", "Round", "Celu", "Selu", "Mish", "Shrink",
             "ThresholdedRelu"]
    rng = np.random.default_rng(7)
    x5 = _rows(rng, 40, 5)
    nodes = [h.make_node(op, ["x"], [op.lower()]) for op in unary]
    nodes += [h.make_node("IsNaN", ["x"], ["isnan"]), h.make_node("IsInf", ["x"], ["isinf"]), h.make_node("PRelu", ["x", "slope"], ["prelu"])]
    outputs = [op.lower() for op in unary] + [("isnan", B), ("isinf", B), "prelu"]
    reductions = ["ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceProd", "ReduceSumSquare"]
    nodes += [h.make_node(op, ["x5", "axis1"], [op.lower()], keepdims=0) for op in reductions]
    nodes += [
        h.make_node("ArgMin", ["x5"], ["argmin"], axis=1, keepdims=0),
        h.make_node("ArgMin", ["x5"], ["argmin_last"], axis=1, keepdims=0, select_last_index=1),
        h.make_node("ArgMin", ["v"], ["argmin_1d"], axis=0, keepdims=0),
        h.make_node("Hardmax", ["x5"], ["hardmax"], axis=1),
        h.make_node("Hardmax", ["x5"], ["hardmax_axis0"], axis=0),
        h.make_node("LpNormalization", ["x5"], ["lpnorm"], axis=1, p=2),
        h.make_node("Mean", ["x5", "x5r"], ["mean2"]),
    ]
    outputs += [op.lower() for op in reductions]
    outputs += [("argmin", I64), ("argmin_last", I64), ("argmin_1d", I64), "hardmax", "hardmax_axis0", "lpnorm", "mean2"]
    model = build(nodes, [("x", F, [len(SPECIAL)]), ("x5", F, [40, 5]), ("x5r", F, [40, 5]), ("v", F, [40])], outputs,
                  [const("slope", 0.25), const("axis1", [1], np.int64)], opset=18)
    feeds = {"x": SPECIAL, "x5": x5, "x5r": np.roll(x5, 3, axis=0), "v": x5[:, 2].copy()}
    actual, expected = run_both(model, feeds, tmp_path)
    exact = {"round", "isnan", "isinf", "prelu", "shrink", "thresholdedrelu", "argmin", "argmin_last", "argmin_1d", "hardmax", "hardmax_axis0"}
    check_all(actual, expected, {name: ROUNDED for name in expected if name not in exact})
    assert not actual["hardmax"][0].any()  # an all-NaN row: no maximum to mark


# -- pooling -----------------------------------------------------------------------------------------------------------

def _images(rng, channels: int, height: int, width: int) -> np.ndarray:
    values = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, 1.0, -1.0, 2.0], np.float32)
    x = rng.choice(values, size=(1, channels, height, width), p=[0.12, 0.08, 0.08, 0.12, 0.12, 0.08, 0.14, 0.13, 0.13])
    x = x.astype(np.float32)
    x[0, 0] = np.nan          # all-NaN windows
    x[0, 1] = -np.inf         # all -inf windows (onnxruntime's loops start at -FLT_MAX)
    x[0, 2] = -0.0
    x[0, 2, ::2, ::3] = 0.0   # +-0 ties
    return x


POOLS = [
    ("MaxPool", "k3s1p1", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    ("MaxPool", "k2s2", dict(kernel_shape=[2, 2], strides=[2, 2])),
    ("MaxPool", "k3s2p1", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", "k3s3", dict(kernel_shape=[3, 3], strides=[3, 3])),
    ("MaxPool", "k2x3_asym", dict(kernel_shape=[2, 3], strides=[1, 2], pads=[0, 1, 1, 0])),
    ("MaxPool", "ceil", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)),
    ("MaxPool", "dilated", dict(kernel_shape=[2, 2], dilations=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", "whole", dict(kernel_shape=[9, 11])),
    ("GlobalMaxPool", "", {}),
    ("AveragePool", "k3s1p1", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    ("AveragePool", "include_pad", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("GlobalAveragePool", "", {}),
]


def test_pooling(tmp_path):
    """Max pooling keeps or drops a NaN depending on where it sits in the window: onnxruntime's MLAS kernels (the
    global kernel's four lanes, the vector kernel's column-then-row passes, the generic kernel), its dilated kernel,
    and, for a channel count that is a multiple of the CPU's NCHWc block, the NCHWc kernel; average pooling and
    1-D max pooling too."""
    rng = np.random.default_rng(11)
    block = nchwc_block_size() or 8
    x = _images(rng, 5, 9, 11)            # 5 channels: onnxruntime's NCHW kernels
    z = _images(rng, block, 9, 11)        # a multiple of the NCHWc block: onnxruntime's NCHWc kernels
    w = rng.choice(np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -1.0], np.float32), size=(1, 3, 13)).astype(np.float32)
    nodes, outputs = [], []
    for data in ("x", "z"):
        for op, tag, attrs in POOLS:
            name = f"{data}_{op}_{tag}".rstrip("_")
            nodes.append(h.make_node(op, [data], [name], **attrs))
            outputs.append(name)
    for tag, attrs in [("k3s1p1", dict(kernel_shape=[3], pads=[1, 1])), ("k2s2", dict(kernel_shape=[2], strides=[2])),
                       ("whole", dict(kernel_shape=[13]))]:
        nodes.append(h.make_node("MaxPool", ["w"], [f"w_MaxPool_{tag}"], **attrs))
        outputs.append(f"w_MaxPool_{tag}")
    nodes.append(h.make_node("GlobalMaxPool", ["w"], ["w_GlobalMaxPool"]))
    outputs.append("w_GlobalMaxPool")
    model = build(nodes, [("x", F, list(x.shape)), ("z", F, list(z.shape)), ("w", F, list(w.shape))], outputs)
    actual, expected = run_both(model, {"x": x, "z": z, "w": w}, tmp_path)
    check_all(actual, expected, {name: ROUNDED for name in outputs if "Average" in name})


# -- other devices ---------------------------------------------------------------------------------------------------------

def test_fpga_subgraph_refuses_non_finite_inputs(tmp_path):
    """Fixed point has no NaN or infinity: the fpga-csim driver refuses them, naming the tensor. Finite inputs run
    through the rewritten IR (Clip's absent bound, max-pooling bands and -FLT_MAX padding, the 4-lane global max)."""
    from hcc.artifacts.golden import run_onnxruntime
    from hcc.errors import HccError
    from hcc.runtime import load

    nodes = [h.make_node("Clip", ["x", "lo"], ["c"], name="clip"),
             h.make_node("MaxPool", ["c"], ["p"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             h.make_node("GlobalMaxPool", ["p"], ["y"], name="gpool")]
    model = build(nodes, [("x", F, [1, 3, 6, 7])], ["y"], [const("lo", -0.5)])
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    manifest = compile_groups(path, tmp_path / "bundle",
                              [{"id": "sg0", "device": "fpga:xcu250", "nodes": [n.name for n in nodes], "device_index": 0}])
    session = load(tmp_path / "bundle")
    x = np.random.default_rng(5).standard_normal((1, 3, 6, 7)).astype(np.float32)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, run_onnxruntime(model, {"x": x})["y"], atol=4 * manifest.subgraphs[0].artifacts[0].meta["tolerance"]["atol"] + 1e-3)
    x[0, 1, 2, 3] = np.nan
    with pytest.raises(HccError, match=r"input tensor 'x' holds 1 NaN or infinite value.*index \[0, 1, 2, 3\]"):
        session.run(None, {"x": x})


def test_gpu_kernels_keep_the_semantics(tmp_path):
    """The GPU backend compiles the same rewritten IR: its kernels, host-emulated against the stub libcuda, give
    onnxruntime's results for NaN inputs (Max/Min, Clip, Relu, MaxPool, GlobalMaxPool, ReduceMax, ArgMax)."""
    gpu_tests = Path(__file__).resolve().parents[1] / "backends" / "gpu"
    sys.path.insert(0, str(gpu_tests))
    try:
        import cuda_stub
    finally:
        sys.path.remove(str(gpu_tests))
    from hcc.artifacts.golden import run_onnxruntime
    from hcc.runtime import load

    rng = np.random.default_rng(9)
    x = _images(rng, 3, 6, 7)
    rows = _rows(rng, 8, 6)
    nodes = [
        h.make_node("Max", ["x", "y"], ["max"], name="max"), h.make_node("Min", ["y", "x"], ["min"], name="min"),
        h.make_node("Clip", ["x", "zero", "six"], ["relu6"], name="relu6"), h.make_node("Relu", ["y"], ["relu"], name="relu"),
        h.make_node("MaxPool", ["x"], ["pool"], name="pool", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        h.make_node("GlobalMaxPool", ["x"], ["gpool"], name="gpool"),
        h.make_node("ReduceMax", ["rows"], ["rmax"], name="rmax", axes=[1], keepdims=0),
        h.make_node("ArgMax", ["rows"], ["amax"], name="amax", axis=1, keepdims=0),
    ]
    outputs = ["max", "min", "relu6", "relu", "pool", "gpool", "rmax", ("amax", I64)]
    model = build(nodes, [("x", F, list(x.shape)), ("y", F, list(x.shape)), ("rows", F, [8, 6])], outputs,
                  [const("zero", 0.0), const("six", 6.0)])
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    compile_groups(path, tmp_path / "bundle", [{"id": "sg0", "device": "gpu:sm_90", "nodes": [n.name for n in nodes], "device_index": 0}])
    feeds = {"x": x, "y": np.flip(x, axis=3).copy(), "rows": rows}
    expected = run_onnxruntime(model, feeds)
    emulators = list(cuda_stub.build_emulators(tmp_path / "bundle", tmp_path / "emu").values())
    with cuda_stub.stub_environment(cuda_stub.build_stub(tmp_path), tmp_path / "log.txt", emulators):
        session = load(tmp_path / "bundle")
        actual = dict(zip(session.manifest.outputs, session.run(None, feeds)))
        notes = list(session.notes) + [n for d in session.devices.values() for n in getattr(d, "notes", [])]
        del session
    assert not any("fallback" in n for n in notes), notes
    check_all(actual, expected, {})


def test_large_integer_constants_printed_as_hex():
    """MLIR prints a large non-splat constant as one hex string (`dense<"0x...">`): its int64 values are read from the
    little-endian bytes, not as one decimal number of thousands of digits (which Python refuses to parse: a
    nearest-neighbours model's compile failed so)."""
    from hcc.passes.nan_semantics import _int_constant

    values = np.random.default_rng(0).integers(-(1 << 40), 1 << 40, 600).astype("<i8")
    text = f'dense<"0x{values.tobytes().hex().upper()}"> : tensor<600xsi64>'
    assert _int_constant(text, {}) == values.tolist()
    assert _int_constant("dense<[1, -2, 3]> : tensor<3xsi64>", {}) == [1, -2, 3]
    assert _int_constant("dense<7> : tensor<2x2xsi64>", {}) == [7, 7, 7, 7]
