"""Which ONNX ops and opsets hcc compiles, and checks that name every unsupported node at once.

The list is what the test-suite proves against onnxruntime (tests/frontend/test_op_coverage.py), not everything
the torch-mlir converter might accept: an op is added here together with its test. Opsets: hcc compiles the op
semantics of opsets MIN_OPSET..MAX_OPSET; a newer model is converted down first (tests/frontend/test_opsets.py).
"""
from __future__ import annotations

import copy
import re

import onnx
from onnx import helper

from hcc.errors import HccError

SUPPORTED_OPS: frozenset[str] = frozenset(
    """
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization BitCast BitShift BitwiseAnd
    BitwiseNot BitwiseOr BitwiseXor Cast CastLike Ceil Celu CenterCropPad Clip Col2Im Compress Concat Constant ConstantOfShape Conv ConvTranspose Cos
    Cosh CumProd CumSum DepthToSpace Det DFT Div Dropout Einsum Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements
    GatherND Gelu Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool Greater GreaterOrEqual GridSample GroupNormalization GRU Hardmax
    HardSigmoid HardSwish Identity InstanceNormalization IsInf IsNaN LayerNormalization LeakyRelu Less LessOrEqual Log
    LogSoftmax LpNormalization LpPool LRN LSTM MatMul Max MaxPool MaxUnpool Mean Min Mish Mod Mul Neg NonZero
    Not OneHot Or Pad Pow PRelu Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean
    ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize ReverseSequence RNN RoiAlign Round ScatterElements ScatterND Selu Shape
    Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus SpaceToDepth Split Sqrt Squeeze STFT Sub Sum Tan Tanh TensorScatter ThresholdedRelu Tile
    TopK Transpose Trilu Unsqueeze Where Xor
    QuantizeLinear DequantizeLinear DynamicQuantizeLinear QLinearConv QLinearMatMul MatMulInteger ConvInteger
    com.microsoft.QGemm com.microsoft.QLinearAdd com.microsoft.QLinearMul com.microsoft.QLinearGlobalAveragePool com.microsoft.QLinearSigmoid
    com.microsoft.QLinearAveragePool com.microsoft.QLinearLeakyRelu com.microsoft.QLinearSoftmax com.microsoft.DynamicQuantizeLSTM
    ai.onnx.ml.Scaler ai.onnx.ml.Binarizer ai.onnx.ml.Normalizer ai.onnx.ml.ArrayFeatureExtractor ai.onnx.ml.LinearRegressor
    ai.onnx.ml.LinearClassifier ai.onnx.ml.TreeEnsembleRegressor ai.onnx.ml.TreeEnsembleClassifier ai.onnx.ml.OneHotEncoder
    ai.onnx.ml.TreeEnsemble ai.onnx.ml.SVMClassifier ai.onnx.ml.SVMRegressor ai.onnx.ml.Imputer
    """.split()
)
# Quantized ops (the last two lines) are rewritten into float and integer ops that give onnxruntime's results exactly
# (frontend/quantized.py); com.microsoft.QGemm, QLinearAdd, QLinearMul, QLinearGlobalAveragePool, QLinearAveragePool, QLinearSigmoid,
# QLinearLeakyRelu and QLinearSoftmax are what onnxruntime's quantizer writes (QOperator format) for those quantized ops;
# com.microsoft.DynamicQuantizeLSTM (quantize_dynamic's LSTM) is unrolled into them (frontend/dynamic_quantize_lstm.py).
# Classical ML ops (ai.onnx.ml, what skl2onnx writes) are rewritten into default-domain ops (frontend/classical_ml.py).

# Ops that torch-mlir converts but that the CPU backend cannot compile yet: they are not in SUPPORTED_OPS, and the
# error for a model that uses one says why. Their coverage cases run as strict xfails, so when the backend is fixed
# the suite reports XPASS for exactly the ops to move back into SUPPORTED_OPS.
BLOCKED_OPS: dict[str, str] = {}
# Ops refused for good, with what to do instead (in the error that lists unsupported ops).
REFUSED_OPS: dict[str, str] = {
    **{op: "its output shape depends on the input values: `hcc compile` runs it on the host as a program step "
           "(docs/control-flow.md), which one tensor program (`hcc plan`, --devices) cannot hold"
       for op in ("NonMaxSuppression", "Unique")},
    "ai.onnx.ml.ZipMap": "its output is a sequence of maps: compiled only at a graph output of the main graph "
                         "(frontend/zipmap.py); elsewhere convert the model with skl2onnx option zipmap=False "
                         "(options={id(model): {'zipmap': False}}) to keep the probabilities a tensor",
}

# Opsets of the default domain that the importer and converter are tested with: every model is compiled at one of
# these. Newer models (up to the newest opset the pinned onnx defines) are first converted down to MAX_OPSET with
# onnx's version converter, which refuses when an op or a type of the model does not exist at MAX_OPSET.
MIN_OPSET = 11
MAX_OPSET = 22
# Opsets OLDEST_OPSET..MIN_OPSET-1 are converted up to MIN_OPSET (the node suite's opset-1 Not, opset-7 And/Or/Xor,
# opset-10 QLinearConv): onnx's converter rewrites the legacy forms (an Add's `broadcast`/`axis` becomes an Unsqueeze
# and numpy broadcasting) and refuses what it has no adapter for (then the model is refused with its reason).
# An opset-11/12 model with Unsqueeze, Squeeze, ReduceSum or Split is converted up to AXES_AS_INPUTS_OPSET: the
# importer lowers those ops only in their opset-13 form (axes and sizes as inputs), so a plain opset-12 Unsqueeze
# failed in lowering. The same for Softmax and LogSoftmax, which it lowers only with opset 13's one-axis meaning (the
# converter writes the older flatten-to-2-D meaning out; PP-OCR's opset-11 angle classifier failed on its Softmax).
# Not Hardmax: onnx 1.22's converter changes its version without its meaning (a wrong result on [2, 3, 4], axis 1),
# so a converted model's pre-13 Hardmax is written out first (_hardmax_flattened). Other opset-11/12 models stay as
# they are (their rewrites and refusals are written for them); a model the converter cannot take up stays at its
# opset too.
AXES_AS_INPUTS_OPSET = 13
AXES_ATTRIBUTE_OPS = frozenset({"Unsqueeze", "Squeeze", "ReduceSum", "Split", "Softmax", "LogSoftmax"})
OLDEST_OPSET = 1
NEWEST_OPSET = onnx.defs.onnx_opset_version()


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise HccError("the model does not import the default ONNX opset (ai.onnx); cannot tell which op semantics apply")


def to_supported_opset(model: onnx.ModelProto, path: str) -> onnx.ModelProto:
    """`model` itself when its opset is in MIN_OPSET..MAX_OPSET (an opset-11/12 model with an op of
    AXES_ATTRIBUTE_OPS: converted up to 13); for a newer one (..NEWEST_OPSET), a copy converted
    to MAX_OPSET; anything else is an HccError naming the file and the opset."""
    if not any(imp.domain in ("", "ai.onnx") for imp in model.opset_import) and \
            not any(node.domain in ("", "ai.onnx") for node in model.graph.node):
        # no default-domain node (an ai.onnx.ml-only model): the rewrites' ops are written at MAX_OPSET, in the IR
        # version that opset needs (an IR-3 model's initializers are invisible to shape inference unless inputs)
        model = copy.deepcopy(model)
        model.opset_import.append(helper.make_opsetid("", MAX_OPSET))
        model.ir_version = max(model.ir_version, helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True))
        return model
    opset = default_opset(model)
    if MAX_OPSET < opset <= NEWEST_OPSET:
        return _convert_down(model, path, opset)
    if MIN_OPSET <= opset < AXES_AS_INPUTS_OPSET and any(n.op_type in AXES_ATTRIBUTE_OPS and n.domain in ("", "ai.onnx")
                                                           for n in model.graph.node):
        try:
            return _convert(model, path, opset, AXES_AS_INPUTS_OPSET)
        except HccError:
            return model
    if MIN_OPSET <= opset <= MAX_OPSET:
        return model
    if OLDEST_OPSET <= opset < MIN_OPSET:
        return _convert(model, path, opset, MIN_OPSET)
    why = f"the newest that onnx {onnx.__version__} defines is {NEWEST_OPSET}" if opset > NEWEST_OPSET else \
        f"opsets {MAX_OPSET + 1}..{NEWEST_OPSET} are converted to {MAX_OPSET}, opsets {OLDEST_OPSET}..{MIN_OPSET - 1} to {MIN_OPSET}"
    raise HccError(
        f"{path}: opset {opset} is outside the supported range {OLDEST_OPSET}..{NEWEST_OPSET} ({why})",
        hint=f"convert it with onnx.version_converter.convert_version(model, {MAX_OPSET}) and try again" if opset < OLDEST_OPSET else None,
    )


def _convert_down(model: onnx.ModelProto, path: str, opset: int) -> onnx.ModelProto:
    from hcc.frontend.bitcast import rewrite_bitcast
    from hcc.frontend.cumprod import rewrite_cumprod
    from hcc.frontend.tensor_scatter import rewrite_tensor_scatter

    model = rewrite_cumprod(model, path)  # opset 26's CumProd, which opset 22 lacks: a scan of opset-22 ops
    model = rewrite_bitcast(model, path)  # opset 26's BitCast: a folded view, or exact bit arithmetic (bitcast.py)
    model = rewrite_tensor_scatter(model, path)  # opset 24's TensorScatter: a GatherElements and a Where
    new_ops = sorted({n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx") and not _defined_at(n.op_type, MAX_OPSET)})
    if new_ops:
        raise HccError(f"{path}: opset {opset} cannot be converted to opset {MAX_OPSET}: {', '.join(new_ops)} "
                       f"{'does' if len(new_ops) == 1 else 'do'} not exist in opset {MAX_OPSET}")
    return _convert(model, path, opset, MAX_OPSET)


def _convert(model: onnx.ModelProto, path: str, opset: int, target: int) -> onnx.ModelProto:
    from onnx import version_converter

    if opset < 13 <= target:
        model = _hardmax_flattened(model)
    try:
        return version_converter.convert_version(model, target)
    except Exception as exc:  # the converter asserts (RuntimeError) on types or attributes the old opset lacks
        raise HccError(f"{path}: opset {opset} cannot be converted to opset {target}: {_converter_reason(exc)}") from None


def _hardmax_flattened(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with each pre-13 Hardmax (which flattens its input to 2-D at `axis`) written out as Flatten -> Hardmax
    over axis 1 -> Reshape to the input's shape, a meaning that survives the conversion to opset 13 (onnx 1.22's
    converter only relabels the op: a wrong result on [2, 3, 4], axis 1). Top-level graph only."""
    if not any(n.op_type == "Hardmax" and n.domain in ("", "ai.onnx") for n in model.graph.node):
        return model
    model = copy.deepcopy(model)
    nodes = []
    for node in model.graph.node:
        if node.op_type != "Hardmax" or node.domain not in ("", "ai.onnx"):
            nodes.append(node)
            continue
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        name, x = node.name or node.output[0], node.input[0]
        nodes += [helper.make_node("Flatten", [x], [f"{name}/flat"], name=f"{name}/flat", axis=axis),
                  helper.make_node("Hardmax", [f"{name}/flat"], [f"{name}/hard"], name=name, axis=1),
                  helper.make_node("Shape", [x], [f"{name}/shape"], name=f"{name}/shape"),
                  helper.make_node("Reshape", [f"{name}/hard", f"{name}/shape"], list(node.output), name=f"{name}/unflat")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def _defined_at(op_type: str, opset: int) -> bool:
    try:
        onnx.defs.get_schema(op_type, opset)
        return True
    except onnx.defs.SchemaError:
        return False


def _converter_reason(exc: Exception) -> str:
    """The converter's message without its C++ file and assertion text."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    match = re.search(r"Assertion .* failed: (.*)", text)
    text = (match.group(1) if match else text).strip()
    return re.sub(r"DataType \((\d+)\)", lambda m: f"data type {_type_name(int(m.group(1)))}", text)


def _type_name(code: int) -> str:
    try:
        return onnx.TensorProto.DataType.Name(code)
    except ValueError:
        return str(code)


def check_supported(model: onnx.ModelProto, path: str, deferred: tuple[str, ...] = ()) -> None:
    """Raise one HccError listing every unsupported op type with the names of the nodes that use it. `deferred` op
    types are left for a later check (control flow: an If that folding decides becomes its branch's nodes)."""
    unsupported: dict[str, list[str]] = {}
    for index, node in enumerate(model.graph.node):
        domain = node.domain if node.domain not in ("", "ai.onnx") else ""
        key = node.op_type if not domain else f"{domain}.{node.op_type}"
        if key not in SUPPORTED_OPS and key not in deferred:
            unsupported.setdefault(key, []).append(node.name or f"<unnamed node #{index}>")
    if unsupported:
        lines = []
        for op in sorted(unsupported):
            names = unsupported[op]
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} nodes)" if len(names) > 8 else "")
            why = f" (known limitation: {BLOCKED_OPS[op]})" if op in BLOCKED_OPS else f" ({REFUSED_OPS[op]})" if op in REFUSED_OPS else ""
            lines.append(f"  {op}: {shown}{why}")
        raise HccError(
            f"{path}: {len(unsupported)} unsupported op type(s):\n" + "\n".join(lines),
            hint="`hcc ops` lists the supported ops",
        )
