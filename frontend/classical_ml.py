"""Classical ML (the ai.onnx.ml domain, what skl2onnx writes): each node rewritten, before import, into default-domain
ops hcc compiles, giving onnxruntime 1.31's results (labels exactly; scores to the tolerance stated per op).

What onnxruntime's CPU kernels compute, and hcc with it (measured against it, tests/frontend/test_classical_ml.py):
* Scaler: y = (x - offset) * scale, one float rounding each (offset/scale of length 1 or C, the last axis). Exact.
* Binarizer: 1 where x > threshold, else 0 (onnxruntime refuses a NaN input at run time). Exact.
* Normalizer (2-D): MAX divides a row by its largest element (NaNs skipped), L1 by sum |x|, L2 by sqrt(sum x^2);
  a row whose divisor is 0 is left as it is. Sums in another order: within a few float32 ulps.
* LinearRegressor: x W^T + b (post_transform NONE). LinearClassifier: scores = x W^T + b, label =
  classlabels_ints[first maximum] (NaN scores never win unless first, as onnxruntime's loop); with one coefficient
  row (binary, two labels): label = labels[1] if s > 0 else labels[0], scores [1 - s, s] for NONE/SOFTMAX/
  SOFTMAX_ZERO and [logistic(-s), logistic(s)] for LOGISTIC (measured: not what its source reads for every
  version). Scores: a float32 GEMM whose summation order differs from MLAS's, within a few ulps of sum |x_i w_i|;
  the labels follow from the scores, so a row whose two best scores are within that of each other may differ
  (random data: never). int32/int64/double inputs are converted to float32 first, as onnxruntime does.
* ArrayFeatureExtractor: Gather along the last axis; a 1-D input gives a [1, n] row of the flattened indices (as
  onnxruntime does: skl2onnx looks up class labels this way). Exact.
* Imputer (FLOAT or INT64): the replaced value (NaN: every NaN) becomes the imputed value of its column, one value
  or one per column of the last axis. Exact.
* OneHotEncoder (int64 categories; int64 or float32 input): see `_one_hot_encoder`. Exact; where onnxruntime fails
  (zeros=0 and an unknown category) hcc writes zeros.
* TreeEnsembleRegressor, TreeEnsembleClassifier (opset 1/3 attributes), opset 5's TreeEnsemble (written out as a
  TreeEnsembleRegressor; BRANCH_MEMBER refused): see `_tree_ensemble`. The comparisons are
  exact (the float32 feature, picked with Gather, against the float32 threshold, NaN routed by
  nodes_missing_value_tracks_true as onnxruntime does), so the leaf every tree reaches is onnxruntime's; the one
  leaf value per tree is picked exactly (a 0/1 matmul with one non-zero term), and the per-tree values are summed
  in float32 in another order than onnxruntime's (which itself changes with its thread count): a few ulps of the
  sum of |leaf values| per output. MIN/MAX aggregation is exact. Labels: the first maximum of the scores (before
  post_transform); binary classifiers as skl2onnx writes them: see `_binary_trees`.
* SVMClassifier, SVMRegressor (SVC, NuSVC, SVR, NuSVR, OneClassSVM; every kernel; Platt probabilities): see
  frontend/svm.py, whose docstring states what onnxruntime computes and the tolerances.

Every op emitted here is one torch-mlir converts at the model's opset, down to 11 (no onnx.Less, LessOrEqual,
Softmax, Floor or attribute-form Unsqueeze before opset 13: swapped Greater, Greater-or-Equal, an explicit softmax,
Reshape). An ai.onnx.ml node whose input comes from another one waits until shape inference has seen the rewrite.

Refused, naming the node: string labels or string inputs ("string tensors are not compiled"), PROBIT, ZipMap (a
sequence of maps is not a tensor: convert with skl2onnx option zipmap=False), binary tree classifiers in a layout
other than skl2onnx's (weights on class 1, two base values: onnxruntime's results there depend on which classes each
leaf carries), the other ai.onnx.ml ops.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, shape_inference

from hcc.errors import HccError
from hcc.frontend.attributes import attr_text, attr_value
from hcc.frontend.node_rewrite import NodeEmitter, RewriteGraph

ML_DOMAIN = "ai.onnx.ml"
F32 = np.dtype(np.float32)
I64 = np.dtype(np.int64)
BOOL = np.dtype(np.bool_)
FLOAT_MAX = np.float32(np.finfo(np.float32).max)
PATH_LIMIT = 256 << 20  # bytes of the dense per-tree path matrices (trees x internal nodes x leaves float32)


class _Refused(Exception):
    """A node hcc does not compile; the reason names what (the caller adds the file and node)."""


class _Unknown(_Refused):
    """An input's type or shape is not known yet (it comes from another ai.onnx.ml node)."""


def _strings(node: onnx.NodeProto) -> None:
    for attr in node.attribute:
        if attr.name.endswith("_strings") and (attr.strings or attr.type == onnx.AttributeProto.STRINGS and len(attr.strings)):
            raise _Refused(f"attribute '{attr.name}': string tensors are not compiled (use integer class labels)")


def _elem(g: RewriteGraph, name: str) -> int:
    if name not in g.types:
        raise _Unknown(f"the element type of '{name}' is unknown")
    elem = g.types[name]
    if elem == TensorProto.STRING:
        raise _Refused(f"input '{name}' is a string tensor: string tensors are not compiled")
    return elem


def _shape(g: RewriteGraph, name: str) -> list[int]:
    shape = g.shapes.get(name)
    if shape is None:
        raise _Unknown(f"the shape of '{name}' is unknown")
    return shape


def _float_input(e: NodeEmitter, g: RewriteGraph, name: str, casts: bool = True):
    """`name` as float32: int32/int64/double inputs converted as onnxruntime's kernels convert them."""
    elem = _elem(g, name)
    if elem == TensorProto.FLOAT:
        return name
    if casts and elem in (TensorProto.DOUBLE, TensorProto.INT32, TensorProto.INT64):
        return e.op("Cast", [name], F32, "to_float", to=TensorProto.FLOAT)
    raise _Refused(f"input '{name}' has type {TensorProto.DataType.Name(elem)}: hcc compiles float32 inputs"
                   + ("" if not casts else ", int32, int64 and double"))


def _rows(g: RewriteGraph, name: str) -> list[int]:
    shape = _shape(g, name)
    if len(shape) != 2:
        raise _Refused(f"input '{name}' has shape {shape}: hcc compiles 2-D [N, features] inputs for this op")
    return shape


def _floats(node: onnx.NodeProto, name: str, default=None) -> np.ndarray:
    value = attr_value(node, name, default)
    if value is None:
        raise _Refused(f"attribute '{name}' is missing")
    return np.asarray(value, dtype=np.float32).reshape(-1)


def _reduce(e: NodeEmitter, op_type: str, value, axis: int, hint: str, keepdims: int = 1):
    """A reduction over one axis, spelled for the model's opset (NodeEmitter.reduce)."""
    return e.reduce(op_type, value, axis, e.opset, hint, keepdims)


def _out(node: onnx.NodeProto, index: int) -> str:
    return node.output[index] if index < len(node.output) else ""


# ------------------------------------------------------------------------------------------------ simple ops


def _scaler(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    x = _float_input(e, g, node.input[0])
    offset, scale = _floats(node, "offset", [0.0]), _floats(node, "scale", [1.0])
    e.result(e.mul(e.sub(x, offset), scale), node.output[0])


def _binarizer(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    x = node.input[0]
    if _elem(g, x) != TensorProto.FLOAT:
        raise _Refused(f"input '{x}' is not float32: hcc compiles float32 Binarizer inputs")
    threshold = np.array(attr_value(node, "threshold", 0.0), F32)
    above = e.op("Greater", [x, threshold], BOOL, "above")
    e.result(e.op("Cast", [above], F32, "binary", to=TensorProto.FLOAT), node.output[0])


def _normalizer(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    x = _float_input(e, g, node.input[0])
    _rows(g, node.input[0])
    norm = attr_value(node, "norm", b"MAX")
    norm = norm.decode() if isinstance(norm, bytes) else norm
    if norm == "MAX":
        nan = e.op("IsNaN", [x], BOOL, "nan")
        skipped = e.op("Where", [nan, np.array(-FLOAT_MAX, F32), x], F32, "nan_skipped")
        divisor = _reduce(e, "ReduceMax", skipped, 1, "max")
    elif norm == "L1":
        divisor = _reduce(e, "ReduceSum", e.op("Abs", [x], F32, "abs"), 1, "l1")
    elif norm == "L2":
        divisor = e.op("Sqrt", [_reduce(e, "ReduceSum", e.mul(x, x, "square"), 1, "sum_squares")], F32, "l2")
    else:
        raise _Refused(f"norm '{norm}' is not MAX, L1 or L2")
    zero = e.op("Equal", [divisor, np.array(0, F32)], BOOL, "zero")
    e.result(e.op("Where", [zero, x, e.div(x, divisor, "normalized")], F32, "where"), node.output[0])


def _array_feature_extractor(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    x, indices = node.input[0], node.input[1]
    _elem(g, x)
    rank = len(_shape(g, x))
    if rank == 0:
        raise _Refused(f"input '{x}' is a scalar: ArrayFeatureExtractor selects along the last axis")
    constant = g.constant(indices)
    index = constant.astype(np.int64).reshape(-1) if constant is not None else indices
    if constant is None and _elem(g, indices) != TensorProto.INT64:
        index = e.op("Cast", [indices], I64, "indices", to=TensorProto.INT64)
    if rank == 1:  # onnxruntime: the flattened indices pick from x, as a [1, n] row (skl2onnx's classes lookup)
        if constant is None:
            index = e.op("Reshape", [index, np.array([-1], np.int64)], I64, "flat")
        picked = e.op("Gather", [x, index], e.dtype(x), "gather", axis=0)
        e.result(e.op("Reshape", [picked, np.array([1, -1], np.int64)], e.dtype(x), "row"), node.output[0])
        return
    e.result(e.op("Gather", [x, index], e.dtype(x), "gather", axis=-1), node.output[0])


def _imputer(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    """Where x is the replaced value (NaN: where x is NaN), the imputed value of its column (the last axis)."""
    x = node.input[0]
    elem = _elem(g, x)
    if elem not in (TensorProto.FLOAT, TensorProto.INT64):
        raise _Refused(f"input '{x}' is {TensorProto.DataType.Name(elem)}; Imputer takes FLOAT or INT64")
    dtype = F32 if elem == TensorProto.FLOAT else I64
    kind = "floats" if elem == TensorProto.FLOAT else "int64s"
    imputed = np.array(attr_value(node, f"imputed_value_{kind}", []), dtype)
    replaced = dtype.type(attr_value(node, "replaced_value_float" if kind == "floats" else "replaced_value_int64", 0))
    shape = _shape(g, x)
    if imputed.size == 0 or (imputed.size != 1 and (not shape or imputed.size != shape[-1])):
        raise _Refused(f"imputed_value_{kind} has {imputed.size} values for input shape {shape}: one, or one per column")
    hit = (e.op("IsNaN", [x], BOOL, "missing") if kind == "floats" and np.isnan(replaced)
           else e.op("Equal", [x, np.array(replaced, dtype)], BOOL, "missing"))
    e.result(e.op("Where", [hit, imputed, x], dtype, "imputed"), node.output[0])


def _unsqueeze_last(e: NodeEmitter, x, dtype, hint: str, shape: list[int]):
    """x with a trailing axis of 1 (a Reshape: torch-mlir converts Unsqueeze's opset-11 form, axes an attribute, not)."""
    return e.op("Reshape", [x, np.array(list(shape) + [1], np.int64)], dtype, hint)


def _one_hot_encoder(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    """y[..., j] = 1 where x == cats[j]; a float x counts as its value truncated toward zero (onnxruntime's
    static_cast), compared in float32 so that NaN matches nothing. With zeros=0 onnxruntime fails on a category it
    does not know; hcc, which has no run-time errors, writes a row of zeros there."""
    _strings(node)
    x = node.input[0]
    elem = _elem(g, x)
    cats = np.asarray(attr_value(node, "cats_int64s", []), np.int64)
    if not len(cats):
        raise _Refused("attribute 'cats_int64s' is missing or empty")
    if elem == TensorProto.INT64:
        hits = e.op("Equal", [_unsqueeze_last(e, x, I64, "column", _shape(g, x)), cats], BOOL, "hits")
    elif elem == TensorProto.FLOAT:
        if e.opset < 13:
            raise _Refused(f"a float32 input before opset 13 (the model's: {e.opset}): torch-mlir converts onnx.Floor only "
                           "from opset 13; not compiled (int64 inputs are)")
        if not np.array_equal(cats.astype(F32).astype(np.int64), cats):
            raise _Refused("a category is not a float32 value: not compiled for float inputs")
        truncated = e.mul(e.op("Sign", [x], F32, "sign"), e.op("Floor", [e.op("Abs", [x], F32, "abs")], F32, "floor"), "truncated")
        hits = e.op("Equal", [_unsqueeze_last(e, truncated, F32, "column", _shape(g, x)), cats.astype(F32)], BOOL, "hits")
    else:
        raise _Refused(f"input '{x}' has type {TensorProto.DataType.Name(elem)}: hcc compiles int64 and float32 OneHotEncoder inputs")
    e.result(e.op("Cast", [hits], F32, "one_hot", to=TensorProto.FLOAT), node.output[0])


def _linear_regressor(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    x = _float_input(e, g, node.input[0])
    features = _rows(g, node.input[0])[1]
    targets = int(attr_value(node, "targets", 1))
    post = _post_transform(node)
    if post != "NONE":
        raise _Refused(f"post_transform {post}: hcc compiles LinearRegressor with post_transform NONE")
    w = _floats(node, "coefficients").reshape(targets, features)
    b = _floats(node, "intercepts", [0.0] * targets)
    e.result(e.add(e.op("MatMul", [x, np.ascontiguousarray(w.T)], F32, "matmul"), b, "scores"), node.output[0])


def _post_transform(node: onnx.NodeProto) -> str:
    value = attr_value(node, "post_transform", b"NONE")
    return value.decode() if isinstance(value, bytes) else value


def _post(e: NodeEmitter, scores, post: str, hint: str = "post"):
    """onnxruntime's write_scores for two or more scores per row."""
    if post == "NONE":
        return scores
    if post == "LOGISTIC":
        return e.op("Sigmoid", [scores], F32, f"{hint}_logistic")
    if post == "SOFTMAX":  # as onnxruntime's ComputeSoftmax (and without onnx.Softmax, which torch-mlir lacks before opset 13)
        top = _reduce(e, "ReduceMax", scores, -1, f"{hint}_max")
        exp = e.op("Exp", [e.sub(scores, top, f"{hint}_shifted")], F32, f"{hint}_exp")
        return e.div(exp, _reduce(e, "ReduceSum", exp, -1, f"{hint}_sum"), f"{hint}_softmax")
    if post == "SOFTMAX_ZERO":
        # exp(v - max) for |v| > 1e-7, v * exp(-max) (almost 0) for the others, which the sum skips
        top = _reduce(e, "ReduceMax", scores, -1, f"{hint}_max")
        big = e.op("Greater", [e.op("Abs", [scores], F32, f"{hint}_abs"), np.array(1e-7, F32)], BOOL, f"{hint}_nonzero")
        exp = e.op("Exp", [e.sub(scores, top, f"{hint}_shifted")], F32, f"{hint}_exp")
        small = e.mul(scores, e.op("Exp", [e.op("Neg", [top], F32, f"{hint}_neg")], F32, f"{hint}_exp_neg"), f"{hint}_small")
        values = e.op("Where", [big, exp, small], F32, f"{hint}_values")
        counted = e.op("Where", [big, exp, np.array(0, F32)], F32, f"{hint}_counted")
        total = _reduce(e, "ReduceSum", counted, -1, f"{hint}_sum")
        return e.div(values, total, f"{hint}_softmax_zero")
    raise _Refused(f"post_transform {post} is not compiled (NONE, LOGISTIC, SOFTMAX, SOFTMAX_ZERO are)")


def _labels(e: NodeEmitter, scores, labels: np.ndarray, output: str) -> None:
    """labels[first maximum of each row], int64."""
    best = e.op("ArgMax", [scores], I64, "argmax", axis=-1, keepdims=0)  # the first maximum
    if np.array_equal(labels, np.arange(len(labels))):
        e.result(best, output)
    else:
        e.result(e.op("Gather", [labels.astype(np.int64), best], I64, "label", axis=0), output)


def _linear_classifier(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    _strings(node)
    x = _float_input(e, g, node.input[0])
    features = _rows(g, node.input[0])[1]
    labels = np.asarray(attr_value(node, "classlabels_ints", []), np.int64)
    intercepts = _floats(node, "intercepts", [])
    classes = len(intercepts) or len(_floats(node, "coefficients")) // max(features, 1)
    if len(intercepts) == 0:
        raise _Refused("attribute 'intercepts' is missing")
    w = _floats(node, "coefficients").reshape(classes, features)
    post = _post_transform(node)
    scores = e.add(e.op("MatMul", [x, np.ascontiguousarray(w.T)], F32, "matmul"), intercepts, "scores")
    label_out, score_out = _out(node, 0), _out(node, 1)
    if classes == 1:
        if len(labels) != 2:
            raise _Refused(f"one coefficient row needs two classlabels_ints, the model has {len(labels)}")
        if post == "PROBIT":
            raise _Refused("post_transform PROBIT is not compiled")
        if label_out:
            positive = e.op("Greater", [scores, np.array(0, F32)], BOOL, "positive")
            picked = e.op("Where", [positive, labels[1:2], labels[0:1]], I64, "binary_label")
            e.result(e.reshape(picked, [-1], "label"), label_out)
        if score_out:
            if post == "LOGISTIC":
                pair = [e.op("Sigmoid", [e.op("Neg", [scores], F32, "neg")], F32, "negative"), e.op("Sigmoid", [scores], F32, "positive_p")]
            else:
                pair = [e.sub(np.array([1], F32), scores, "complement"), scores]
            e.result(e.op("Concat", pair, F32, "pair", axis=1), score_out)
        return
    if len(labels) != classes:
        raise _Refused(f"{classes} coefficient rows but {len(labels)} classlabels_ints")
    if label_out:
        _labels(e, scores, labels, label_out)
    if score_out:
        e.result(_post(e, scores, post), score_out, rename=False)


# ------------------------------------------------------------------------------------------------ tree ensembles

MODES = {"BRANCH_LEQ": "LessOrEqual", "BRANCH_LT": "Less", "BRANCH_GTE": "GreaterOrEqual", "BRANCH_GT": "Greater",
         "BRANCH_EQ": "Equal", "BRANCH_NEQ": "NEQ"}


def _compare(e: NodeEmitter, mode: str, x, limit):
    """x <mode> limit, false for a NaN x except BRANCH_NEQ (as C++ compares). torch-mlir converts onnx.Less and
    LessOrEqual only from opset 13, so before that Less is a Greater with its operands swapped and the or-equal modes
    are Greater or Equal."""
    hint = mode.lower()
    if mode == "BRANCH_NEQ":
        return e.op("Not", [e.op("Equal", [x, limit], BOOL, "eq")], BOOL, hint)
    if mode == "BRANCH_EQ":
        return e.op("Equal", [x, limit], BOOL, hint)
    if mode in ("BRANCH_GT", "BRANCH_LT"):
        return e.op("Greater", [x, limit] if mode == "BRANCH_GT" else [limit, x], BOOL, hint)
    if e.opset >= 13:
        return e.op(MODES[mode], [x, limit], BOOL, hint)
    strict = e.op("Greater", [x, limit] if mode == "BRANCH_GTE" else [limit, x], BOOL, f"{hint}_strict")
    return e.op("Or", [strict, e.op("Equal", [x, limit], BOOL, f"{hint}_eq")], BOOL, hint)


def _text_list(node: onnx.NodeProto, name: str) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else v for v in attr_value(node, name, [])]


def _thresholds(node: onnx.NodeProto, count: int) -> np.ndarray:
    tensor = attr_value(node, "nodes_values_as_tensor")
    if tensor is not None:
        values = onnx.numpy_helper.to_array(tensor).reshape(-1)
        if values.dtype != F32 and not np.array_equal(values.astype(F32).astype(values.dtype), values):
            raise _Refused("nodes_values_as_tensor holds double thresholds that are not float32 values: not compiled")
        return values.astype(F32)
    return _floats(node, "nodes_values", [0.0] * count)


def _leaf_weights(node: onnx.NodeProto, prefix: str, ids: str):
    tensor = attr_value(node, f"{prefix}_weights_as_tensor")
    if tensor is not None:
        weights = onnx.numpy_helper.to_array(tensor).reshape(-1).astype(np.float64)
    else:
        weights = np.asarray(attr_value(node, f"{prefix}_weights", []), np.float64)
    return (list(attr_value(node, f"{prefix}_treeids", [])), list(attr_value(node, f"{prefix}_nodeids", [])),
            list(attr_value(node, ids, [])), weights)


@dataclass
class _TreeAttrs:
    """A tree ensemble node's attributes, read and checked once: every later step reads several of them."""

    x: str
    rows: int
    features: int
    tree_ids: list[int]
    node_ids: list[int]
    feature_ids: list[int]
    modes: list[str]
    true_ids: list[int]
    false_ids: list[int]
    tracks: list[int]
    thresholds: np.ndarray
    leaf_trees: list[int]
    leaf_nodes: list[int]
    leaf_k: list[int]
    weights: np.ndarray
    labels: np.ndarray | None  # classlabels_int64s (classifiers only)
    outputs: int  # targets or classes
    bases: np.ndarray
    post: str
    aggregate: str


@dataclass
class _TreeMatrices:
    """The dense per-tree arrays of the GEMM formulation (see `_tree_ensemble`), T trees by I internal nodes by L
    leaves by K outputs, padded per tree."""

    feature: np.ndarray  # [T, I] feature index of each internal node
    threshold: np.ndarray  # [T, I] float32
    mode_of: np.ndarray  # [T, I] comparison mode
    track: np.ndarray  # [T, I] NaN takes the true branch
    paths: np.ndarray  # [T, I, L] M: +1 / -1 / 0
    true_turns: np.ndarray  # [T, L] true turns on the path to each leaf, -1 for padding
    values: np.ndarray  # [T, L, K] leaf weights
    has_value: np.ndarray  # [T, L, K] whether a leaf carries a weight for that output
    n_trees: int
    depth_i: int


def _tree_ensemble(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto, classifier: bool) -> None:
    """The GEMM formulation of a tree ensemble (Hummingbird's), one batch of matrices per tree.

    For each tree t with internal nodes i (padded to I per tree) and leaves l (padded to L):
    * c[n, t, i] = compare(x[n, feature(t, i)], threshold(t, i)) in {0, 1}: the feature picked with Gather (a
      one-hot matmul would turn every node into NaN when any feature is inf or NaN: 0 * inf), compared in float32
      against the float32 threshold with the node's own comparison, OR'ed with IsNaN(x) where the node's missing
      value tracks the true branch (onnxruntime's rule);
    * M[t, i, l] = +1 if leaf l lies in node i's true subtree, -1 if in its false subtree, 0 otherwise;
      T[t, l] = the number of true turns on the path to l. The root-to-l path is taken iff every node on it turns
      toward l: c @ M sums +1 for each true turn taken (at most T[t, l]) and -1 for each false turn not taken, so
      it equals T[t, l] exactly when every true turn is taken and no false turn is missed. Small integers: exact.
    * r[t, n, l] = (c @ M == T) in {0, 1}: exactly one leaf per tree (padded leaves have T = -1: never);
      v[t, n, k] = r @ V[t] with V[t, l, k] the leaf's weight for target/class k: one non-zero term, exact.
    Then the trees are aggregated (SUM/AVERAGE: ReduceSum, MIN/MAX: ReduceMin/Max over trees), base values added,
    post_transform applied; the classifier's label is classlabels_int64s[first maximum].
    """
    a = _read_tree_ensemble(g, node, classifier)
    m = _tree_matrices(a)
    c = _tree_decisions(e, a, m)
    scores = _tree_scores(e, a, m, c)
    if classifier:
        _tree_classifier_outputs(e, node, a, m, scores)
    else:
        _tree_regressor_output(e, node, a, scores)


def _read_tree_ensemble(g: RewriteGraph, node: onnx.NodeProto, classifier: bool) -> _TreeAttrs:
    """Step 0: read the attributes and refuse what is malformed or not compiled, before anything is built."""
    _strings(node)
    x = node.input[0]
    if _elem(g, x) != TensorProto.FLOAT:
        raise _Refused(f"input '{x}' is not float32: hcc compiles tree ensembles on float32 inputs")
    rows, features = _rows(g, x)
    tree_ids = list(attr_value(node, "nodes_treeids", []))
    node_ids = list(attr_value(node, "nodes_nodeids", []))
    feature_ids = list(attr_value(node, "nodes_featureids", []))
    modes = _text_list(node, "nodes_modes")
    true_ids = list(attr_value(node, "nodes_truenodeids", []))
    false_ids = list(attr_value(node, "nodes_falsenodeids", []))
    count = len(node_ids)
    tracks = list(attr_value(node, "nodes_missing_value_tracks_true", [0] * count)) or [0] * count
    thresholds = _thresholds(node, count)
    lengths = {len(tree_ids), len(feature_ids), len(modes), len(true_ids), len(false_ids), len(thresholds), len(tracks), count}
    if lengths != {count} or not count:
        raise _Refused("the nodes_* attributes have different lengths")
    labels = None
    if classifier:
        leaf_trees, leaf_nodes, leaf_k, weights = _leaf_weights(node, "class", "class_ids")
        labels = np.asarray(attr_value(node, "classlabels_int64s", []), np.int64)
        outputs = len(labels)
    else:
        leaf_trees, leaf_nodes, leaf_k, weights = _leaf_weights(node, "target", "target_ids")
        outputs = int(attr_value(node, "n_targets", 1))
    if not (len(leaf_trees) == len(leaf_nodes) == len(leaf_k) == len(weights)):
        raise _Refused("the leaf weight attributes have different lengths")
    if not np.all(np.isfinite(weights)):
        raise _Refused("a leaf weight is not finite: not compiled")
    bases = attr_value(node, "base_values_as_tensor")
    bases = onnx.numpy_helper.to_array(bases).reshape(-1) if bases is not None else np.asarray(attr_value(node, "base_values", []), np.float64)
    post = _post_transform(node)
    aggregate = "SUM" if classifier else attr_text(node, "aggregate_function", "SUM")
    if any(not 0 <= k < outputs for k in leaf_k):
        raise _Refused(f"a leaf weight names target/class {max(leaf_k)} of {outputs}")
    return _TreeAttrs(x, rows, features, tree_ids, node_ids, feature_ids, modes, true_ids, false_ids, tracks, thresholds,
                      leaf_trees, leaf_nodes, leaf_k, weights, labels, outputs, bases, post, aggregate)


def _tree_matrices(a: _TreeAttrs) -> _TreeMatrices:
    """Step 1: nodes by (tree, id), internal nodes and leaves numbered per tree, and the dense matrices filled in
    (refusing node lists onnxruntime would read differently, and forests whose matrices exceed PATH_LIMIT)."""
    trees = sorted(set(a.tree_ids))
    if sum(1 for p, q in zip(a.tree_ids, a.tree_ids[1:]) if p != q) != len(trees) - 1:
        raise _Refused("the nodes of a tree are not listed together (onnxruntime starts a tree wherever the tree id changes)")
    index = {(t, n): i for i, (t, n) in enumerate(zip(a.tree_ids, a.node_ids))}
    per_tree: dict[int, tuple[list[int], list[int]]] = {t: ([], []) for t in trees}
    for i, (t, mode) in enumerate(zip(a.tree_ids, a.modes)):
        if mode not in MODES and mode != "LEAF":
            raise _Refused(f"node mode '{mode}' is not a known mode")
        per_tree[t][1 if mode == "LEAF" else 0].append(i)
    depth_i = max(1, max(len(v[0]) for v in per_tree.values()))
    depth_l = max(len(v[1]) for v in per_tree.values())
    n_trees = len(trees)
    if n_trees * depth_i * depth_l * 4 > PATH_LIMIT:
        raise _Refused(f"{n_trees} trees of up to {depth_i} internal nodes and {depth_l} leaves: the dense path matrices "
                       f"would take {n_trees * depth_i * depth_l * 4 / 2**20:.0f} MiB (hcc's limit: {PATH_LIMIT // 2**20} MiB)")
    m = _TreeMatrices(feature=np.zeros((n_trees, depth_i), np.int64), threshold=np.zeros((n_trees, depth_i), F32),
                      mode_of=np.full((n_trees, depth_i), "BRANCH_LEQ", object), track=np.zeros((n_trees, depth_i), bool),
                      paths=np.zeros((n_trees, depth_i, depth_l), F32), true_turns=np.full((n_trees, depth_l), -1, F32),
                      values=np.zeros((n_trees, depth_l, a.outputs), np.float64),
                      has_value=np.zeros((n_trees, depth_l, a.outputs), bool), n_trees=n_trees, depth_i=depth_i)
    slot: dict[int, tuple[int, int]] = {}
    for ti, t in enumerate(trees):
        _walk_tree(a, m, index, slot, ti, t, *per_tree[t])
    _place_leaf_weights(a, m, index, slot)
    return m


def _walk_tree(a: _TreeAttrs, m: _TreeMatrices, index: dict[tuple[int, int], int], slot: dict[int, tuple[int, int]], ti: int, t: int,
               internal: list[int], leaves: list[int]) -> None:
    """Step 1, one tree: its internal nodes' comparisons, its leaves' slots (into `slot`), and its path matrix,
    walking from the root (the node no other node points to) to every leaf."""
    inner = {i: s for s, i in enumerate(internal)}
    for s, i in enumerate(internal):
        if not 0 <= a.feature_ids[i] < a.features:
            raise _Refused(f"tree {t} node {a.node_ids[i]} reads feature {a.feature_ids[i]} of {a.features}")
        m.feature[ti, s], m.threshold[ti, s], m.mode_of[ti, s], m.track[ti, s] = (a.feature_ids[i], a.thresholds[i], a.modes[i],
                                                                                  bool(a.tracks[i]))
    for s, i in enumerate(leaves):
        slot[i] = (ti, s)
    children = {index.get((t, c)) for i in internal for c in (a.true_ids[i], a.false_ids[i])}
    roots = [i for i in internal + leaves if i not in children]
    if len(roots) != 1 or any((t, c) not in index for i in internal for c in (a.true_ids[i], a.false_ids[i])):
        raise _Refused(f"tree {t} is not one tree (its nodes do not form a single rooted tree)")
    if roots[0] != min(internal + leaves):
        raise _Refused(f"tree {t}: its first node is not its root (onnxruntime starts each tree at its first node)")
    stack, seen = [(roots[0], [])], set()
    while stack:
        i, path = stack.pop()
        if i in seen:
            raise _Refused(f"tree {t} is not a tree (node {a.node_ids[i]} is reached twice)")
        seen.add(i)
        if a.modes[i] == "LEAF":
            s = slot[i][1]
            for p, turn in path:
                m.paths[ti, inner[p], s] = 1 if turn else -1
            m.true_turns[ti, s] = sum(1 for _, turn in path if turn)
            continue
        stack.append((index[(t, a.true_ids[i])], path + [(i, True)]))
        stack.append((index[(t, a.false_ids[i])], path + [(i, False)]))


def _place_leaf_weights(a: _TreeAttrs, m: _TreeMatrices, index: dict[tuple[int, int], int], slot: dict[int, tuple[int, int]]) -> None:
    """Step 1, last: each leaf weight into V (summed where a leaf has several for one output, refused for MIN/MAX)."""
    for t, n, k, w in zip(a.leaf_trees, a.leaf_nodes, a.leaf_k, a.weights):
        i = index.get((t, n))
        if i is None or a.modes[i] != "LEAF":
            raise _Refused(f"a leaf weight names tree {t} node {n}, which is not a leaf")
        ti, s = slot[i]
        if m.has_value[ti, s, k] and a.aggregate in ("MIN", "MAX"):
            raise _Refused(f"tree {t} leaf {n} has two weights for one target: not compiled with {a.aggregate}")
        m.values[ti, s, k] += w
        m.has_value[ti, s, k] = True


def _tree_decisions(e: NodeEmitter, a: _TreeAttrs, m: _TreeMatrices):
    """Step 2: the comparisons, one Gather and compare per mode, put back in node order: c as float32 [T, N, I]."""
    flat_mode = m.mode_of.reshape(-1)
    order = np.argsort(np.array([list(MODES).index(mode) for mode in flat_mode]), kind="stable")
    groups = []
    for mode in MODES:
        chosen = order[flat_mode[order] == mode]
        if len(chosen) == 0:
            continue
        picked = e.op("Gather", [a.x, m.feature.reshape(-1)[chosen]], F32, f"{mode.lower()}_features", axis=1)
        limit = m.threshold.reshape(-1)[chosen]
        cmp = _compare(e, mode, picked, limit)
        tracked = m.track.reshape(-1)[chosen]
        if tracked.any():
            missing = e.op("IsNaN", [picked], BOOL, f"{mode.lower()}_nan")
            missing = e.op("And", [missing, tracked], BOOL, f"{mode.lower()}_tracks_true")
            cmp = e.op("Or", [cmp, missing], BOOL, f"{mode.lower()}_or_missing")
        groups.append((chosen, cmp))
    inverse = np.argsort(np.concatenate([c for c, _ in groups]), kind="stable")
    cmp = groups[0][1] if len(groups) == 1 else e.op("Concat", [c for _, c in groups], BOOL, "decisions", axis=1)
    if not np.array_equal(inverse, np.arange(len(inverse))):
        cmp = e.op("Gather", [cmp, inverse.astype(np.int64)], BOOL, "in_order", axis=1)
    c = e.op("Cast", [cmp], F32, "decisions_f", to=TensorProto.FLOAT)
    c = e.op("Reshape", [c, np.array([a.rows, m.n_trees, m.depth_i], np.int64)], F32, "per_tree")
    return e.op("Transpose", [c], F32, "tree_major", perm=[1, 0, 2])                  # [T, N, I]


def _tree_scores(e: NodeEmitter, a: _TreeAttrs, m: _TreeMatrices, c):
    """Step 3: the leaf each tree reaches, its values, and their aggregate over the trees: [N, K]."""
    reached = e.op("MatMul", [c, m.paths], F32, "path_sums")                            # [T, N, L]
    onehot = e.op("Cast", [e.op("Equal", [reached, m.true_turns[:, None, :]], BOOL, "reached")], F32, "leaf", to=TensorProto.FLOAT)
    picked = e.op("MatMul", [onehot, m.values.astype(F32)], F32, "leaf_values")          # [T, N, K]
    if a.aggregate in ("SUM", "AVERAGE"):
        scores = _reduce(e, "ReduceSum", picked, 0, "tree_sum", keepdims=0)
        if a.aggregate == "AVERAGE":
            scores = e.div(scores, np.array(m.n_trees, F32), "average")
    elif a.aggregate in ("MIN", "MAX"):
        if not m.has_value[m.true_turns >= 0].all():
            raise _Refused(f"aggregate {a.aggregate} with leaves that lack a weight for some target: not compiled")
        scores = _reduce(e, "ReduceMin" if a.aggregate == "MIN" else "ReduceMax", picked, 0, "tree_aggregate", keepdims=0)
    else:
        raise _Refused(f"aggregate_function {a.aggregate} is not SUM, AVERAGE, MIN or MAX")
    return scores


def _tree_regressor_output(e: NodeEmitter, node: onnx.NodeProto, a: _TreeAttrs, scores) -> None:
    """Step 4, regressor: base values added, post_transform applied."""
    if len(a.bases) == 1:
        scores = e.add(scores, a.bases.astype(F32), "base")
    elif len(a.bases) == a.outputs:
        scores = e.add(scores, a.bases.astype(F32), "base")
    elif len(a.bases):
        raise _Refused(f"{len(a.bases)} base_values for {a.outputs} targets")
    if a.post == "PROBIT":
        raise _Refused("post_transform PROBIT is not compiled")
    if a.post != "NONE" and a.outputs == 1:
        raise _Refused(f"post_transform {a.post} with one target is not compiled")
    e.result(_post(e, scores, a.post), node.output[0], rename=False)


def _tree_classifier_outputs(e: NodeEmitter, node: onnx.NodeProto, a: _TreeAttrs, m: _TreeMatrices, scores) -> None:
    """Step 4, classifier: binary layouts apart, base values added, then the label and the post-transformed scores."""
    if a.outputs == 2:
        _binary_trees(e, node, scores, a.labels, a.weights, a.leaf_k, a.bases, a.post)
        return
    if a.outputs < 2:
        raise _Refused(f"{a.outputs} class labels: a classifier needs at least two")
    reached_any = m.has_value[m.true_turns >= 0]
    if len(a.bases) == a.outputs:
        scores = e.add(scores, a.bases.astype(F32), "base")
    elif len(a.bases):
        raise _Refused(f"{len(a.bases)} base_values for {a.outputs} classes")
    elif not reached_any.all():
        raise _Refused("a leaf lacks a weight for some class and there are no base_values: onnxruntime then skips "
                       "that class when picking the label; not compiled")
    if _out(node, 0):
        _labels(e, scores, a.labels, node.output[0])
    if _out(node, 1):
        e.result(_post(e, scores, a.post), node.output[1], rename=False)


def _binary_trees(e: NodeEmitter, node: onnx.NodeProto, scores, labels: np.ndarray, weights: np.ndarray, leaf_k: list[int],
                  bases: np.ndarray, post: str) -> None:
    """Two class labels, every weight on class 0 (what skl2onnx writes for a binary classifier: the weight is the
    evidence for labels[1]). onnxruntime (measured): s = sum + base_values[0]; when every weight is >= 0 (probabilities)
    label = labels[1] if s > 0.5 else labels[0] and scores [1 - s, s], otherwise (margins) label = labels[1] if s > 0
    and scores [-s, s]; with LOGISTIC the scores are [logistic(-s), logistic(s)] either way, the label as before."""
    if any(k != 0 for k in leaf_k):
        raise _Refused("a binary tree classifier with weights on class 1: onnxruntime's results for that layout depend "
                       "on which classes each leaf carries; not compiled (skl2onnx writes class 0 only)")
    if len(bases) > 1:
        raise _Refused(f"a binary tree classifier with {len(bases)} base_values: not compiled (one or none are)")
    if post not in ("NONE", "LOGISTIC"):
        raise _Refused(f"post_transform {post} on a binary tree classifier: not compiled (NONE and LOGISTIC are)")
    s = e.op("Gather", [scores, np.array([0], np.int64)], F32, "class0", axis=1)  # [N, 1]
    if len(bases):
        s = e.add(s, bases.astype(F32).reshape(1), "base")
    positive = bool(np.all(weights >= 0))
    if _out(node, 0):
        above = e.op("Greater", [s, np.array(0.5 if positive else 0.0, F32)], BOOL, "positive")
        picked = e.op("Where", [above, labels[1:2], labels[0:1]], I64, "binary_label")
        e.result(e.reshape(picked, [-1], "label"), node.output[0])
    if _out(node, 1):
        if post == "LOGISTIC":
            pair = [e.op("Sigmoid", [e.op("Neg", [s], F32, "neg")], F32, "negative"), e.op("Sigmoid", [s], F32, "positive_p")]
        else:
            pair = [e.sub(np.array([1], F32), s, "complement") if positive else e.op("Neg", [s], F32, "negative"), s]
        e.result(e.op("Concat", pair, F32, "pair", axis=1), node.output[1])


V5_MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]  # 6: BRANCH_MEMBER
V5_AGGREGATES = ["AVERAGE", "SUM", "MIN", "MAX"]
V5_POSTS = ["NONE", "SOFTMAX", "LOGISTIC", "SOFTMAX_ZERO", "PROBIT"]


def _tree_ensemble_v5(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    """The opset-5 TreeEnsemble, written out as the equivalent TreeEnsembleRegressor (every tree walked from its root,
    its interior nodes and leaves numbered in that order, the root first) and compiled as one."""
    def tensor(name: str) -> np.ndarray | None:
        value = attr_value(node, name)
        return None if value is None else onnx.numpy_helper.to_array(value).reshape(-1)

    splits, modes, leaf_weights = tensor("nodes_splits"), tensor("nodes_modes"), tensor("leaf_weights")
    if splits is None or modes is None or leaf_weights is None:
        raise _Refused("attributes nodes_splits, nodes_modes and leaf_weights are required")
    if splits.dtype != F32 or leaf_weights.dtype != F32:
        raise _Refused("double splits or leaf weights: hcc compiles float32 tree ensembles")
    if np.any(modes > 5):
        raise _Refused("mode BRANCH_MEMBER (set membership) is not compiled")
    features = list(attr_value(node, "nodes_featureids", []))
    true_ids, false_ids = list(attr_value(node, "nodes_truenodeids", [])), list(attr_value(node, "nodes_falsenodeids", []))
    true_leaf, false_leaf = list(attr_value(node, "nodes_trueleafs", [])), list(attr_value(node, "nodes_falseleafs", []))
    tracks = list(attr_value(node, "nodes_missing_value_tracks_true", [])) or [0] * len(features)
    targets = list(attr_value(node, "leaf_targetids", []))
    attrs = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes", "nodes_truenodeids",
                             "nodes_falsenodeids", "nodes_missing_value_tracks_true", "target_treeids", "target_nodeids", "target_ids",
                             "target_weights")}
    for tree, root in enumerate(attr_value(node, "tree_roots", [])):
        order: list[tuple[bool, int]] = []  # (is_leaf, position), numbered in the order met
        pending = [(False, int(root))]
        while pending:
            item = pending.pop(0)
            order.append(item)
            if len(order) > 1 << 22:
                raise _Refused(f"tree {tree} does not end (its branches form a cycle)")
            if not item[0]:
                p = item[1]
                pending += [(bool(true_leaf[p]), int(true_ids[p])), (bool(false_leaf[p]), int(false_ids[p]))]
        next_id, children = 1, []
        for is_leaf, _p in order:  # breadth first: the children of the k-th interior node get the next two ids
            if not is_leaf:
                children.append((next_id, next_id + 1))
                next_id += 2
        interior = iter(children)
        for number, (is_leaf, p) in enumerate(order):
            attrs["nodes_treeids"].append(tree)
            attrs["nodes_nodeids"].append(number)
            if is_leaf:
                for key, value in (("nodes_featureids", 0), ("nodes_values", 0.0), ("nodes_modes", "LEAF"), ("nodes_truenodeids", 0),
                                   ("nodes_falsenodeids", 0), ("nodes_missing_value_tracks_true", 0)):
                    attrs[key].append(value)
                attrs["target_treeids"].append(tree)
                attrs["target_nodeids"].append(number)
                attrs["target_ids"].append(int(targets[p]))
                attrs["target_weights"].append(float(leaf_weights[p]))
            else:
                yes, no = next(interior)
                for key, value in (("nodes_featureids", int(features[p])), ("nodes_values", float(splits[p])),
                                   ("nodes_modes", V5_MODES[int(modes[p])]), ("nodes_truenodeids", yes), ("nodes_falsenodeids", no),
                                   ("nodes_missing_value_tracks_true", int(tracks[p]))):
                    attrs[key].append(value)
    aggregate, post = int(attr_value(node, "aggregate_function", 1)), int(attr_value(node, "post_transform", 0))
    if not (0 <= aggregate < 4 and 0 <= post < 5):
        raise _Refused(f"aggregate_function {aggregate} / post_transform {post} out of range")
    regressor = helper.make_node("TreeEnsembleRegressor", list(node.input), list(node.output), name=node.name, domain=ML_DOMAIN,
                                 n_targets=int(attr_value(node, "n_targets", 1)), aggregate_function=V5_AGGREGATES[aggregate],
                                 post_transform=V5_POSTS[post], **attrs)
    _tree_ensemble(e, g, regressor, classifier=False)


def _svm(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    """frontend/svm.py's expansions, imported here lazily: that module imports this one's helpers."""
    from hcc.frontend.svm import EXPANSIONS as SVM_EXPANSIONS

    SVM_EXPANSIONS[node.op_type](e, g, node)


EXPANSIONS = {
    "Scaler": _scaler, "Binarizer": _binarizer, "Normalizer": _normalizer, "ArrayFeatureExtractor": _array_feature_extractor,
    "OneHotEncoder": _one_hot_encoder, "Imputer": _imputer, "LinearRegressor": _linear_regressor, "LinearClassifier": _linear_classifier,
    "TreeEnsembleRegressor": lambda e, g, n: _tree_ensemble(e, g, n, classifier=False),
    "TreeEnsembleClassifier": lambda e, g, n: _tree_ensemble(e, g, n, classifier=True), "TreeEnsemble": _tree_ensemble_v5,
    "SVMClassifier": _svm, "SVMRegressor": _svm,
}


def rewrite_classical_ml(model: onnx.ModelProto, path: str) -> int:
    """Replace, in place, every ai.onnx.ml node by default-domain ops; returns how many (the caller re-runs shape
    inference when it is not zero). onnx's shape inference does not give the shape of every ai.onnx.ml output (a
    Scaler's, say), so a node that reads one waits: the graph is shape-inferred again after the nodes before it are
    rewritten."""
    if not any(n.domain == ML_DOMAIN for n in model.graph.node):
        return 0
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    total = 0
    while True:
        count, waiting = _rewrite_pass(model, path, opset)
        total += count
        if waiting is None:
            break
        if count == 0:
            node, why = waiting
            raise HccError(f"{path}: node '{node.name}' (ai.onnx.ml.{node.op_type}): {why}")
        model.CopyFrom(shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True))
    kept_opsets = [i for i in model.opset_import if i.domain != ML_DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept_opsets)
    return total


def _rewrite_pass(model: onnx.ModelProto, path: str, opset: int) -> tuple[int, tuple[onnx.NodeProto, str] | None]:
    """Rewrite the ai.onnx.ml nodes whose inputs' types and shapes are known; returns how many, and the first node
    that waits for them (with the reason)."""
    g = RewriteGraph.of(model)
    nodes, inits, count, waiting = [], [], 0, None
    for node in model.graph.node:
        if node.domain != ML_DOMAIN:
            nodes.append(node)
            continue
        where = f"{path}: node '{node.name}' (ai.onnx.ml.{node.op_type})"
        expand = EXPANSIONS.get(node.op_type)
        if expand is None:
            raise HccError(f"{where}: not compiled (hcc compiles {', '.join(sorted(EXPANSIONS))})")
        e = NodeEmitter(node, g)
        e.opset = opset
        try:
            expand(e, g, node)
        except _Unknown as why:
            nodes.append(node)
            waiting = waiting or (node, str(why))
            continue
        except _Refused as why:
            raise HccError(f"{where}: {why}") from None
        except (ValueError, IndexError, KeyError, TypeError) as exc:  # a malformed node the checker let through
            raise HccError(f"{where}: cannot be compiled: {type(exc).__name__}: {exc}") from None
        nodes.extend(e.nodes)
        inits.extend(e.inits)
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(inits)
    return count, waiting
