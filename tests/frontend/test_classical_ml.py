"""Classical ML, the ai.onnx.ml domain (frontend/classical_ml.py): nodes built in code as skl2onnx writes them,
compiled, and compared with onnxruntime run on the model as written. Labels must be equal; each float output has
its own tolerance (the bound argued in classical_ml.py's docstring), never wider than the output's range.

Trees are generated at random: ragged, node ids shuffled, every internal node with its own comparison mode, feature,
threshold and missing-value rule; inputs drawn from the thresholds' grid (so that ties and BRANCH_EQ happen) with
NaN and +-inf mixed in.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from hcc.errors import HccError
from hcc.frontend.loader import load_model
from helpers import hcc_and_onnxruntime

ML = "ai.onnx.ml"
MODES = ["BRANCH_LEQ", "BRANCH_LT", "BRANCH_GTE", "BRANCH_GT", "BRANCH_EQ", "BRANCH_NEQ"]
GRID = np.array([-1.0, -0.5, 0.0, 0.5, 1.0], np.float32)


def make(nodes, inputs, outputs, opset: int = 17) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "classical_ml", [h.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                         [h.make_tensor_value_info(n, t, s) for n, t, s in outputs])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset), h.make_opsetid(ML, 3)], ir_version=8)


def check(model: onnx.ModelProto, tmp_path, feeds: dict, tolerance: dict[str, float]) -> dict[str, float]:
    """Compile, run, compare with onnxruntime on `model`: integer outputs equal, float outputs within
    |hcc - ort| <= tolerance[name] * (1 + |ort|) (0: equal), NaN where onnxruntime has NaN. Returns the largest
    differences."""
    worst = {}
    for name, actual, ref in hcc_and_onnxruntime(model, tmp_path, feeds):
        if ref.dtype.kind != "f" or tolerance[name] == 0:
            np.testing.assert_array_equal(actual, ref, err_msg=name)
            worst[name] = 0.0
            continue
        assert np.array_equal(np.isnan(actual), np.isnan(ref)), name
        finite = ~np.isnan(ref)
        diff = np.abs(actual[finite].astype(np.float64) - ref[finite])
        worst[name] = float(diff.max(initial=0.0))
        bound = tolerance[name] * (1 + np.abs(ref[finite].astype(np.float64)))
        assert np.all(diff <= bound), f"{name}: max difference {worst[name]:.3g}"
    return worst


# ------------------------------------------------------------------------------------------------ simple ops


def test_preprocessing_ops(tmp_path):
    """Scaler, Binarizer, Normalizer (MAX, L1, L2), ArrayFeatureExtractor in one model, with zero rows, negative-only
    rows, NaN and inf (the Binarizer reads a NaN-free input: onnxruntime refuses NaN there)."""
    rows = [[1, -2, 3, 0.5], [0, 0, 0, 0], [-1, -4, -2, -0.5], [np.nan, 1, 2, 3], [np.inf, 1, 2, -1], [-1, 0, 0, 0], [-3, 0, 0, 2]]
    x = np.concatenate([np.array(rows, np.float32), np.random.default_rng(3).standard_normal((9, 4)).astype(np.float32)])
    n = len(x)
    nodes = [h.make_node("Scaler", ["x"], ["scaled"], domain=ML, name="scaler", offset=[0.5, -1.0, 2.0, 0.1], scale=[2.0, 0.3, -1.0, 7.0]),
             h.make_node("Scaler", ["x"], ["scaled1"], domain=ML, name="scaler1", offset=[0.25], scale=[3.0]),
             h.make_node("Binarizer", ["b"], ["binary"], domain=ML, name="binarizer", threshold=0.5),
             h.make_node("ArrayFeatureExtractor", ["x", "pick"], ["picked"], domain=ML, name="extract")]
    nodes += [h.make_node("Normalizer", ["x"], [f"norm_{k}"], domain=ML, name=f"norm_{k}", norm=k) for k in ("MAX", "L1", "L2")]
    nodes.insert(0, h.make_node("Constant", [], ["pick"], value=onnx.numpy_helper.from_array(np.array([3, 0, 3], np.int64))))
    outputs = [("scaled", T.FLOAT, [n, 4]), ("scaled1", T.FLOAT, [n, 4]), ("binary", T.FLOAT, [n, 4]), ("picked", T.FLOAT, [n, 3])]
    outputs += [(f"norm_{k}", T.FLOAT, [n, 4]) for k in ("MAX", "L1", "L2")]
    model = make(nodes, [("x", T.FLOAT, [n, 4]), ("b", T.FLOAT, [n, 4])], outputs)
    b = np.nan_to_num(x, nan=0.5, posinf=0.5)
    b[0] = [0.5, np.nextafter(np.float32(0.5), np.float32(1)), np.inf, -np.inf]
    tolerance = {"scaled": 0, "scaled1": 0, "binary": 0, "picked": 0, "norm_MAX": 0, "norm_L1": 4e-7, "norm_L2": 4e-7}
    worst = check(model, tmp_path, {"x": x, "b": b}, tolerance)
    assert worst["norm_MAX"] == 0


def test_one_hot_encoder(tmp_path):
    """int64 and float32 inputs (floats truncated toward zero, NaN and inf matching nothing), unknown categories."""
    cats = [-2, 0, 1, 3, 1 << 40]
    nodes = [h.make_node("OneHotEncoder", ["i"], ["from_ints"], domain=ML, name="ints", cats_int64s=cats, zeros=1),
             h.make_node("OneHotEncoder", ["f"], ["from_floats"], domain=ML, name="floats", cats_int64s=cats[:4], zeros=1)]
    model = make(nodes, [("i", T.INT64, [6, 2]), ("f", T.FLOAT, [8])], [("from_ints", T.FLOAT, [6, 2, 5]), ("from_floats", T.FLOAT, [8, 4])])
    feeds = {"i": np.array([[-2, 0], [1, 3], [1 << 40, 7], [-1, 2], [0, 0], [3, -2]], np.int64),
             "f": np.array([-2.5, -1.9, 0.7, 1.0, 3.99, np.nan, np.inf, -0.0], np.float32)}
    check(model, tmp_path, feeds, {"from_ints": 0, "from_floats": 0})


def test_imputer(tmp_path):
    """NaN replaced per column and by one value, a float value and an int64 value replaced (what SimpleImputer
    converts to); inf and other values kept."""
    nodes = [h.make_node("Imputer", ["x"], ["per_column"], domain=ML, name="nan_columns", imputed_value_floats=[1.5, -2.0, 0.25],
                         replaced_value_float=float("nan")),
             h.make_node("Imputer", ["x"], ["one_value"], domain=ML, name="nan_one", imputed_value_floats=[7.0], replaced_value_float=float("nan")),
             h.make_node("Imputer", ["x"], ["zeros"], domain=ML, name="zeros", imputed_value_floats=[9.0, 8.0, 7.0]),
             h.make_node("Imputer", ["i"], ["ints"], domain=ML, name="ints", imputed_value_int64s=[5, 6, 1 << 40], replaced_value_int64=-1)]
    model = make(nodes, [("x", T.FLOAT, [4, 3]), ("i", T.INT64, [4, 3])],
                 [("per_column", T.FLOAT, [4, 3]), ("one_value", T.FLOAT, [4, 3]), ("zeros", T.FLOAT, [4, 3]), ("ints", T.INT64, [4, 3])])
    feeds = {"x": np.array([[np.nan, 1, 0], [2, np.nan, -0.0], [np.inf, 0, np.nan], [np.nan, np.nan, np.nan]], np.float32),
             "i": np.array([[-1, 2, 3], [4, -1, -1], [0, 0, 0], [-1, -1, -1]], np.int64)}
    check(model, tmp_path, feeds, {"per_column": 0, "one_value": 0, "zeros": 0, "ints": 0})


def test_array_feature_extractor_on_a_vector(tmp_path):
    """skl2onnx looks up class labels with a 1-D ArrayFeatureExtractor: onnxruntime gives a [1, n] row of the
    flattened indices."""
    nodes = [h.make_node("Constant", [], ["classes"], value=onnx.numpy_helper.from_array(np.array([10, 20, 30, 40], np.int64))),
             h.make_node("ArgMax", ["scores"], ["i"], name="argmax", axis=1, keepdims=1),  # as skl2onnx: indices in range
             h.make_node("ArrayFeatureExtractor", ["classes", "i"], ["labels"], domain=ML, name="labels"),
             h.make_node("ArrayFeatureExtractor", ["v", "i"], ["values"], domain=ML, name="values")]
    model = make(nodes, [("scores", T.FLOAT, [6, 4]), ("v", T.FLOAT, [4])], [("labels", T.INT64, [1, 6]), ("values", T.FLOAT, [1, 6])])
    feeds = {"scores": np.random.default_rng(2).standard_normal((6, 4)).astype(np.float32), "v": np.array([0.5, -1, np.nan, 2], np.float32)}
    check(model, tmp_path, feeds, {"labels": 0, "values": 0})


@pytest.mark.parametrize("post", ["NONE", "LOGISTIC", "SOFTMAX", "SOFTMAX_ZERO"])
def test_linear_models(tmp_path, post):
    """LinearClassifier (3 classes, and the binary form with one coefficient row) and LinearRegressor; int64 input
    converted as onnxruntime converts it. Some rows score exactly 0 (SOFTMAX_ZERO's special case)."""
    rng = np.random.default_rng(5)
    n, f = 32, 5
    w3 = rng.standard_normal((3, f)).astype(np.float32)
    w3[2] = 0  # class 2 scores its intercept, 0: SOFTMAX_ZERO skips it
    nodes = [h.make_node("LinearClassifier", ["x"], ["label3", "scores3"], domain=ML, name="multi", coefficients=w3.ravel().tolist(),
                         intercepts=[0.5, -0.25, 0.0], classlabels_ints=[7, 3, 11], post_transform=post),
             h.make_node("LinearClassifier", ["x"], ["label2", "scores2"], domain=ML, name="binary",
                         coefficients=rng.standard_normal(f).tolist(), intercepts=[0.1], classlabels_ints=[4, 9], post_transform=post),
             h.make_node("LinearClassifier", ["i"], ["label_int", "unused_scores"], domain=ML, name="ints", coefficients=w3.ravel().tolist(),
                         intercepts=[0.5, -0.25, 0.0], classlabels_ints=[0, 1, 2], post_transform=post),
             h.make_node("LinearRegressor", ["x"], ["reg"], domain=ML, name="regressor", coefficients=rng.standard_normal(2 * f).tolist(),
                         intercepts=[1.0, -2.0], targets=2)]
    model = make(nodes, [("x", T.FLOAT, [n, f]), ("i", T.INT64, [n, f])],
                 [("label3", T.INT64, [n]), ("scores3", T.FLOAT, [n, 3]), ("label2", T.INT64, [n]), ("scores2", T.FLOAT, [n, 2]),
                  ("label_int", T.INT64, [n]), ("reg", T.FLOAT, [n, 2])])
    x = rng.standard_normal((n, f)).astype(np.float32)
    x[0] = 0
    feeds = {"x": x, "i": rng.integers(-20, 20, (n, f)).astype(np.int64)}
    check(model, tmp_path, feeds, {"scores3": 1e-6, "scores2": 1e-6, "reg": 1e-6})


# ------------------------------------------------------------------------------------------------ tree ensembles


def random_forest(rng, n_trees: int, features: int, outputs: int, max_depth: int = 4, dense: bool = True) -> tuple[dict, list]:
    """A random ragged ensemble as onnxruntime reads it (each tree's nodes listed together, its root first with id 0,
    the other ids 1..n-1 shuffled, the rest listed in shuffled order). Returns (nodes_* attributes, leaf weights
    (tree, node, target, weight)); `dense`: every leaf has a weight for every target."""
    attrs = {k: [] for k in ("nodes_treeids", "nodes_nodeids", "nodes_featureids", "nodes_values", "nodes_modes",
                             "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true")}
    leaves = []
    for t in range(n_trees):
        tree_id, nodes = 3 * t + 1, []

        def grow(depth: int) -> int:
            index = len(nodes)
            nodes.append(None)
            if depth >= max_depth or (depth > 0 and rng.random() < 0.25):
                nodes[index] = ("LEAF",)
            else:
                left, right = grow(depth + 1), grow(depth + 1)
                nodes[index] = (str(rng.choice(MODES)), int(rng.integers(features)), float(rng.choice(GRID)), left, right, int(rng.random() < 0.5))
            return index

        grow(0)
        ids = np.r_[0, rng.permutation(len(nodes) - 1) + 1]
        for i in np.r_[0, rng.permutation(len(nodes) - 1) + 1]:
            node = nodes[i]
            attrs["nodes_treeids"].append(tree_id)
            attrs["nodes_nodeids"].append(int(ids[i]))
            if node[0] == "LEAF":
                for key, value in (("nodes_modes", "LEAF"), ("nodes_featureids", 0), ("nodes_values", 0.0), ("nodes_truenodeids", 0),
                                   ("nodes_falsenodeids", 0), ("nodes_missing_value_tracks_true", 0)):
                    attrs[key].append(value)
                targets = range(outputs) if dense else rng.choice(outputs, int(rng.integers(1, outputs + 1)), replace=False)
                leaves += [(tree_id, int(ids[i]), int(k), float(np.float32(rng.standard_normal()))) for k in targets]
            else:
                mode, feature, value, left, right, tracks = node
                for key, v in (("nodes_modes", mode), ("nodes_featureids", feature), ("nodes_values", value), ("nodes_truenodeids", int(ids[left])),
                               ("nodes_falsenodeids", int(ids[right])), ("nodes_missing_value_tracks_true", tracks)):
                    attrs[key].append(v)
    return attrs, leaves


def tree_node(kind: str, name: str, attrs: dict, leaves: list, outputs: list[str], **extra) -> onnx.NodeProto:
    prefix = "target" if kind == "TreeEnsembleRegressor" else "class"
    weights = {f"{prefix}_treeids": [leaf[0] for leaf in leaves], f"{prefix}_nodeids": [leaf[1] for leaf in leaves],
               f"{prefix}_ids": [leaf[2] for leaf in leaves], f"{prefix}_weights": [leaf[3] for leaf in leaves]}
    return h.make_node(kind, ["x"], outputs, domain=ML, name=name, **attrs, **weights, **extra)


def tree_inputs(rng, n: int, f: int) -> np.ndarray:
    x = rng.choice(GRID, (n, f)).astype(np.float32)
    x[rng.random((n, f)) < 0.1] = np.nan
    x[rng.random((n, f)) < 0.05] = np.inf
    x[rng.random((n, f)) < 0.05] = -np.inf
    return x


def _forest_model(seed: int, n: int, f: int, n_trees: int, max_depth: int) -> tuple[onnx.ModelProto, dict, dict]:
    """Regressors (SUM, AVERAGE, MIN, MAX; 2 targets; base values), 4-class classifiers (NONE, SOFTMAX, LOGISTIC;
    one with sparse leaves and base values) and binary classifiers on one input."""
    rng = np.random.default_rng(seed)
    nodes, outputs, tolerance = [], [], {}
    for agg in ("SUM", "AVERAGE", "MIN", "MAX"):
        attrs, leaves = random_forest(rng, n_trees, f, 2, max_depth)
        nodes.append(tree_node("TreeEnsembleRegressor", f"reg_{agg}", attrs, leaves, [f"reg_{agg}"], n_targets=2, aggregate_function=agg,
                               base_values=[0.5, -1.0]))
        outputs.append((f"reg_{agg}", T.FLOAT, [n, 2]))
        # exact per tree; SUM/AVERAGE add the per-tree values in another order than onnxruntime: a few ulps of sum |v|
        tolerance[f"reg_{agg}"] = 0 if agg in ("MIN", "MAX") else 4e-7 * n_trees
    for post, dense in (("NONE", True), ("SOFTMAX", True), ("LOGISTIC", True), ("NONE", False)):
        attrs, leaves = random_forest(rng, n_trees, f, 4, max_depth, dense=dense)
        name = f"cls_{post}_{'dense' if dense else 'sparse'}"
        extra = {} if dense else {"base_values": [0.1, 0.2, -0.3, 0.0]}
        nodes.append(tree_node("TreeEnsembleClassifier", name, attrs, leaves, [f"{name}_label", f"{name}_scores"],
                               classlabels_int64s=[5, 6, 7, 8] if dense else [0, 1, 2, 3], post_transform=post, **extra))
        outputs += [(f"{name}_label", T.INT64, [n]), (f"{name}_scores", T.FLOAT, [n, 4])]
        tolerance[f"{name}_scores"] = 4e-7 * n_trees
    # binary, as skl2onnx writes it (all weights on class 0): a random forest (probabilities >= 0, some 0, post NONE)
    # and gradient boosting (margins of either sign, one base value, LOGISTIC)
    for name, post, positive in (("forest", "NONE", True), ("boosting", "LOGISTIC", False)):
        attrs, leaves = random_forest(rng, n_trees, f, 1, max_depth)
        if positive:
            leaves = [(t, i, k, 0.0 if j % 5 == 0 else abs(w) / n_trees) for j, (t, i, k, w) in enumerate(leaves)]
        extra = {} if positive else {"base_values": [0.3]}
        nodes.append(tree_node("TreeEnsembleClassifier", f"binary_{name}", attrs, leaves, [f"{name}_label", f"{name}_scores"],
                               classlabels_int64s=[4, 9], post_transform=post, **extra))
        outputs += [(f"{name}_label", T.INT64, [n]), (f"{name}_scores", T.FLOAT, [n, 2])]
        tolerance[f"{name}_scores"] = 4e-7 * n_trees
    model = make(nodes, [("x", T.FLOAT, [n, f])], outputs)
    return model, {"x": tree_inputs(rng, n, f)}, tolerance


def test_tree_ensembles(tmp_path):
    model, feeds, tolerance = _forest_model(seed=1, n=96, f=5, n_trees=6, max_depth=4)
    check(model, tmp_path, feeds, tolerance)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_tree_ensembles_larger(tmp_path, seed):
    model, feeds, tolerance = _forest_model(seed=seed, n=256, f=12, n_trees=40, max_depth=7)
    check(model, tmp_path, feeds, tolerance)


def to_v5(attrs: dict, leaves: list, n_targets: int, **extra) -> onnx.NodeProto:
    """The same ensemble as an opset-5 TreeEnsemble (interior nodes and leaves in separate lists; a leaf with
    weights for several targets becomes one leaf entry per target, reached by the same branch, so each such leaf is
    split: the branch points to the first, which is the only one v5 can name; the test uses one target)."""
    assert n_targets == 1
    key = list(zip(attrs["nodes_treeids"], attrs["nodes_nodeids"]))
    interior = [i for i, m in enumerate(attrs["nodes_modes"]) if m != "LEAF"]
    position = {key[i]: p for p, i in enumerate(interior)}
    weight = {(t, n): w for t, n, _, w in leaves}
    leaf_keys = sorted({(t, n) for t, n, _, _ in leaves})
    leaf_position = {k: p for p, k in enumerate(leaf_keys)}
    roots = [position[(t, 0)] for t in dict.fromkeys(attrs["nodes_treeids"])]

    def child(tree, node_id):
        return (1, leaf_position[(tree, node_id)]) if (tree, node_id) in leaf_position else (0, position[(tree, node_id)])

    trues = [child(attrs["nodes_treeids"][i], attrs["nodes_truenodeids"][i]) for i in interior]
    falses = [child(attrs["nodes_treeids"][i], attrs["nodes_falsenodeids"][i]) for i in interior]
    tensor = onnx.numpy_helper.from_array
    return h.make_node("TreeEnsemble", ["x"], ["y"], domain=ML, name="v5", n_targets=1, tree_roots=roots,
                       nodes_featureids=[attrs["nodes_featureids"][i] for i in interior],
                       nodes_splits=tensor(np.array([attrs["nodes_values"][i] for i in interior], np.float32)),
                       nodes_modes=tensor(np.array([MODES.index(attrs["nodes_modes"][i]) for i in interior], np.uint8)),
                       nodes_truenodeids=[c[1] for c in trues], nodes_trueleafs=[c[0] for c in trues],
                       nodes_falsenodeids=[c[1] for c in falses], nodes_falseleafs=[c[0] for c in falses],
                       nodes_missing_value_tracks_true=[attrs["nodes_missing_value_tracks_true"][i] for i in interior],
                       leaf_targetids=[0] * len(leaf_keys), leaf_weights=tensor(np.array([weight[k] for k in leaf_keys], np.float32)), **extra)


@pytest.mark.parametrize("aggregate", [1, pytest.param(0, marks=pytest.mark.slow), pytest.param(3, marks=pytest.mark.slow)])
def test_tree_ensemble_opset5(tmp_path, aggregate):
    """ai.onnx.ml opset 5's TreeEnsemble (SUM, AVERAGE, MAX), the same random ensembles as above."""
    rng = np.random.default_rng(7 + aggregate)
    n, f, trees = 64, 5, 6
    attrs, leaves = random_forest(rng, trees, f, 1, 4)
    graph = h.make_graph([to_v5(attrs, leaves, 1, aggregate_function=aggregate)], "v5", [h.make_tensor_value_info("x", T.FLOAT, [n, f])],
                         [h.make_tensor_value_info("y", T.FLOAT, [n, 1])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 21), h.make_opsetid(ML, 5)], ir_version=10)
    check(model, tmp_path, {"x": tree_inputs(rng, n, f)}, {"y": 0 if aggregate == 3 else 4e-7 * trees})


@pytest.mark.parametrize("opset", [11, pytest.param(22, marks=pytest.mark.slow)])
def test_pipeline(tmp_path, opset):
    """A pipeline as skl2onnx chains it (ai.onnx.ml opset 1): Scaler -> ArrayFeatureExtractor -> a 3-class forest with
    SOFTMAX_ZERO, Normalizer(L1) -> LinearClassifier(SOFTMAX), Scaler -> binary LinearClassifier(LOGISTIC) and
    OneHotEncoder; at the oldest opset hcc compiles (no Less, Softmax, axes inputs there) and a recent one."""
    rng = np.random.default_rng(17)
    n, f = 48, 6
    attrs, leaves = random_forest(rng, 5, 4, 3, 4)
    nodes = [h.make_node("Scaler", ["x"], ["scaled"], domain=ML, name="scaler", offset=rng.standard_normal(f).tolist(),
                         scale=[0.5, 2, 1, 1, 3, 0.25]),
             h.make_node("ArrayFeatureExtractor", ["scaled", "columns"], ["picked"], domain=ML, name="columns_op"),
             h.make_node("TreeEnsembleClassifier", ["picked"], ["tree_label", "tree_scores"], domain=ML, name="forest",
                         classlabels_int64s=[10, 20, 30], post_transform="SOFTMAX_ZERO", **attrs,
                         class_treeids=[leaf[0] for leaf in leaves], class_nodeids=[leaf[1] for leaf in leaves],
                         class_ids=[leaf[2] for leaf in leaves], class_weights=[leaf[3] for leaf in leaves]),
             h.make_node("Normalizer", ["x"], ["normalized"], domain=ML, name="normalizer", norm="L1"),
             h.make_node("LinearClassifier", ["normalized"], ["linear_label", "linear_scores"], domain=ML, name="linear",
                         coefficients=rng.standard_normal(3 * f).tolist(), intercepts=[0.1, 0.0, -0.1], classlabels_ints=[1, 2, 3],
                         post_transform="SOFTMAX"),
             h.make_node("LinearClassifier", ["scaled"], ["binary_label", "binary_scores"], domain=ML, name="binary",
                         coefficients=rng.standard_normal(f).tolist(), intercepts=[0.2], classlabels_ints=[0, 1], post_transform="LOGISTIC"),
             h.make_node("OneHotEncoder", ["codes"], ["one_hot"], domain=ML, name="one_hot", cats_int64s=[-1, 0, 1, 2])]
    graph = h.make_graph(nodes, "pipeline", [h.make_tensor_value_info("x", T.FLOAT, [n, f]), h.make_tensor_value_info("codes", T.INT64, [n, 2])],
                         [h.make_tensor_value_info(name, t, shape) for name, t, shape in (
                             ("tree_label", T.INT64, [n]), ("tree_scores", T.FLOAT, [n, 3]), ("linear_label", T.INT64, [n]),
                             ("linear_scores", T.FLOAT, [n, 3]), ("binary_label", T.INT64, [n]), ("binary_scores", T.FLOAT, [n, 2]),
                             ("one_hot", T.FLOAT, [n, 2, 4]))],
                         initializer=[onnx.numpy_helper.from_array(np.array([5, 0, 2, 3], np.int64), "columns")])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset), h.make_opsetid(ML, 1)], ir_version=8)
    x = rng.choice(GRID, (n, f)).astype(np.float32) * np.float32(2) + np.float32(0.5)
    feeds = {"x": x, "codes": rng.integers(-2, 4, (n, 2)).astype(np.int64)}
    check(model, tmp_path, feeds, {"tree_scores": 4e-7 * 5, "linear_scores": 1e-6, "binary_scores": 1e-6, "one_hot": 0})


# ------------------------------------------------------------------------------------------------ refusals


def _refused(tmp_path, node, inputs, outputs, match: str):
    path = tmp_path / "refused.onnx"
    onnx.save(make([node], inputs, outputs), path)
    with pytest.raises(HccError, match=match):
        load_model(str(path))


def test_refusals(tmp_path):
    x = [("x", T.FLOAT, [4, 3])]
    _refused(tmp_path, h.make_node("LinearClassifier", ["x"], ["l", "s"], domain=ML, name="strings", coefficients=[1.0] * 6,
                                   intercepts=[0.0, 0.0], classlabels_strings=["a", "b"]),
             x, [("l", T.STRING, [4]), ("s", T.FLOAT, [4, 2])], r"node 'strings' .*string tensors are not compiled")
    _refused(tmp_path, h.make_node("ZipMap", ["x"], ["z"], domain=ML, name="zipmap", classlabels_int64s=[0, 1, 2]),
             x, [], r"ZipMap.*zipmap=False")
    _refused(tmp_path, h.make_node("LinearClassifier", ["x"], ["l", "s"], domain=ML, name="probit", coefficients=[1.0] * 6,
                                   intercepts=[0.0, 0.0], classlabels_ints=[0, 1], post_transform="PROBIT"),
             x, [("l", T.INT64, [4]), ("s", T.FLOAT, [4, 2])], r"node 'probit' .*PROBIT")
    attrs, leaves = random_forest(np.random.default_rng(0), 2, 3, 2, 2)
    _refused(tmp_path, tree_node("TreeEnsembleClassifier", "binary_trees", attrs, leaves, ["l", "s"], classlabels_int64s=[0, 1]),
             x, [("l", T.INT64, [4]), ("s", T.FLOAT, [4, 2])], r"node 'binary_trees' .*binary tree classifier with weights on class 1")
    _refused(tmp_path, h.make_node("OneHotEncoder", ["x"], ["y"], domain=ML, name="categories", cats_strings=["a", "b"]),
             x, [("y", T.FLOAT, [4, 3, 2])], r"node 'categories' .*string tensors are not compiled")
    _refused(tmp_path, h.make_node("SVMRegressor", ["x"], ["y"], domain=ML, name="svm", coefficients=[1.0], support_vectors=[1.0, 2.0, 3.0]),
             x, [("y", T.FLOAT, [4, 1])], r"node 'svm' .*attribute 'rho' is missing")


def test_forest_size_limit(tmp_path, monkeypatch):
    import hcc.frontend.classical_ml as classical_ml

    monkeypatch.setattr(classical_ml, "PATH_LIMIT", 1000)
    attrs, leaves = random_forest(np.random.default_rng(0), 5, 3, 1, 4)
    _refused(tmp_path, tree_node("TreeEnsembleRegressor", "big_forest", attrs, leaves, ["y"], n_targets=1), [("x", T.FLOAT, [4, 3])],
             [("y", T.FLOAT, [4, 1])], r"node 'big_forest' .*5 trees of up to .* dense path matrices")


def test_a_model_of_ml_ops_alone_needs_no_default_opset(tmp_path):
    """The node suite's ai.onnx.ml models import that domain only: with no default-domain node there is nothing whose
    semantics depend on the default opset, so hcc compiles them (its rewrites are written at the newest it compiles)."""
    scaler = h.make_node("Scaler", ["x"], ["y"], domain=ML, offset=[0.5, -1.0], scale=[2.0, 0.25])
    graph = h.make_graph([scaler], "ml_only", [h.make_tensor_value_info("x", T.FLOAT, [3, 2])], [h.make_tensor_value_info("y", T.FLOAT, [3, 2])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid(ML, 3)], ir_version=8)
    check(model, tmp_path, {"x": np.random.default_rng(5).standard_normal((3, 2)).astype(np.float32)}, {"y": 1e-7})


def test_an_ir3_ml_only_model_with_a_rank3_binarizer(tmp_path):
    """The node suite's Binarizer model: IR version 3 (whose initializers shape inference ignores unless they are
    inputs), ai.onnx.ml only, a rank-3 input. Its rewrite's threshold constant must not leave the comparison's shape
    unknown (it lowered to a rank-0 tensor before)."""
    binarizer = h.make_node("Binarizer", ["x"], ["y"], domain=ML, threshold=0.25)
    graph = h.make_graph([binarizer], "ml_ir3", [h.make_tensor_value_info("x", T.FLOAT, [3, 4, 5])],
                         [h.make_tensor_value_info("y", T.FLOAT, [3, 4, 5])])
    model = h.make_model(graph, opset_imports=[h.make_opsetid(ML, 1)], ir_version=3)
    x = np.random.default_rng(6).uniform(-1, 1, (3, 4, 5)).astype(np.float32)
    x[0, 0, :3] = [0.25, np.nextafter(np.float32(0.25), np.float32(1)), -0.0]  # at and just above the threshold
    check(model, tmp_path, {"x": x}, {"y": 0})
