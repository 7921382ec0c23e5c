"""SVMClassifier and SVMRegressor (frontend/svm.py): nodes built in code with the attributes skl2onnx writes (libsvm's
one-vs-one layout), compiled, and compared with onnxruntime run on the model as written. Labels must be equal; a float
output within `ULPS` float32 ulps of its magnitude: sum_v |c_v| (|k_v| + the kernel's error scale) + |rho| for a
decision (frontend/svm.py's docstring), plus |prob_a| / 4 of that for a probability. NaN exactly where onnxruntime
has NaN.

Inputs mix ordinary rows with a NaN, +-inf, a row of zeros and rows scaled up tenfold.
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
ULPS = 8 * 2.0 ** -24
N, F = 24, 5


def make(nodes, inputs, outputs, opset: int = 17) -> onnx.ModelProto:
    graph = h.make_graph(nodes, "svm", [h.make_tensor_value_info(n, t, s) for n, t, s in inputs],
                         [h.make_tensor_value_info(n, t, s) for n, t, s in outputs])
    return h.make_model(graph, opset_imports=[h.make_opsetid("", opset), h.make_opsetid(ML, 3)], ir_version=8)


def rows(seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((N, F)).astype(np.float32)
    x[0, 1], x[1, 2], x[2, 0], x[3] = np.nan, np.inf, -np.inf, 0
    x[4:8] *= 10
    return x


def check(model: onnx.ModelProto, tmp_path, feeds: dict, bounds: dict[str, np.ndarray]) -> dict[str, float]:
    """Compile, run, compare with onnxruntime: integer outputs equal, float outputs within |hcc - ort| <= bounds[name]
    (broadcast against the output; 0: equal), NaN where onnxruntime has NaN. Returns the largest differences."""
    worst = {}
    for name, actual, ref in hcc_and_onnxruntime(model, tmp_path, feeds):
        if ref.dtype.kind != "f":
            np.testing.assert_array_equal(actual, ref, err_msg=name)
            continue
        assert np.array_equal(np.isnan(actual), np.isnan(ref)), name
        finite = np.isfinite(ref)
        assert np.array_equal(actual[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)]), name
        diff = np.where(finite, np.abs(actual.astype(np.float64) - np.where(finite, ref, 0)), 0)
        worst[name] = float(diff.max(initial=0.0))
        bound = np.broadcast_to(np.nan_to_num(np.asarray(bounds[name], np.float64), nan=np.inf, posinf=np.inf), diff.shape)
        over = np.unravel_index(np.argmax(diff - bound), diff.shape)
        assert np.all(diff <= bound), f"{name}: difference {diff[over]:.3g} at {over}, bound {bound[over]:.3g}"
    return worst


# ------------------------------------------------------------------------------------------------ models


class Svm:
    """A random model's attributes (what skl2onnx writes) and its float64 magnitudes for the error bounds."""

    def __init__(self, seed: int, kernel: str, per_class: list[int], params=(0.3, 0.5, 3.0), regressor: bool = False):
        rng = np.random.default_rng(seed)
        self.kernel, self.per_class, self.params, self.is_regressor = kernel, per_class, params, regressor
        self.vectors = sum(per_class)
        self.sv = rng.standard_normal((self.vectors, F)).astype(np.float32)
        classes = len(per_class)
        self.coefficients = rng.uniform(-1, 1, (1 if regressor else classes - 1, self.vectors)).astype(np.float32)
        self.rho = rng.uniform(-0.5, 0.5, 1 if regressor else classes * (classes - 1) // 2).astype(np.float32)
        self.prob_a = rng.uniform(-3, -1, len(self.rho)).astype(np.float32)
        self.prob_b = rng.uniform(-0.2, 0.2, len(self.rho)).astype(np.float32)

    def attributes(self) -> dict:
        return {"kernel_type": self.kernel, "kernel_params": list(self.params), "support_vectors": self.sv.ravel().tolist(),
                "coefficients": self.coefficients.ravel().tolist(), "rho": self.rho.tolist()}

    def classifier(self, name: str, x: str, outputs: list[str], labels=None, probabilities: bool = False, **attrs):
        labels = list(range(len(self.per_class))) if labels is None else labels
        if probabilities:
            attrs.update(prob_a=self.prob_a.tolist(), prob_b=self.prob_b.tolist())
        return h.make_node("SVMClassifier", [x], outputs, domain=ML, name=name, classlabels_ints=labels,
                           vectors_per_class=self.per_class, **self.attributes(), **attrs)

    def regressor(self, name: str, x: str, output: str, **attrs):
        return h.make_node("SVMRegressor", [x], [output], domain=ML, name=name, n_supports=self.vectors, **self.attributes(), **attrs)

    def kernel_terms(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """|k| and the kernel's error scale (what a few ulps multiply), float64 [N, V]."""
        gamma, coef0, degree = self.params
        x, sv = x.astype(np.float64), self.sv.astype(np.float64)
        with np.errstate(all="ignore"):
            dot, scale = x @ sv.T, np.abs(x) @ np.abs(sv.T)
            if self.kernel == "RBF":
                return np.exp(-gamma * ((x[:, None] - sv[None]) ** 2).sum(-1)), np.ones_like(dot)
            if self.kernel == "LINEAR":
                return np.abs(dot), scale
            t = gamma * dot + coef0
            if self.kernel == "SIGMOID":
                return np.abs(np.tanh(t)), abs(gamma) * scale + abs(coef0)
            return np.abs(t) ** degree, degree * np.abs(t) ** (degree - 1) * (abs(gamma) * scale + abs(coef0)) + np.abs(t) ** degree

    def decision_bound(self, x: np.ndarray) -> np.ndarray:
        """ULPS of each pair's (or the regression's) magnitude: [N, P]."""
        k, scale = self.kernel_terms(x)
        terms = k + scale
        if self.is_regressor:
            return ULPS * (terms @ np.abs(self.coefficients[0]) + abs(self.rho[0]))[:, None]
        starts = np.cumsum([0] + self.per_class)
        pairs = [(i, j) for i in range(len(self.per_class)) for j in range(i + 1, len(self.per_class))]
        mags = [terms[:, starts[i]:starts[i + 1]] @ np.abs(self.coefficients[j - 1, starts[i]:starts[i + 1]])
                + terms[:, starts[j]:starts[j + 1]] @ np.abs(self.coefficients[i, starts[j]:starts[j + 1]]) + abs(self.rho[p])
                for p, (i, j) in enumerate(pairs)]
        return ULPS * np.stack(mags, 1)

    def probability_bound(self, x: np.ndarray) -> np.ndarray:
        return ULPS + np.abs(self.prob_a).max() / 4 * self.decision_bound(x).max(1, keepdims=True)


# ------------------------------------------------------------------------------------------------ tests


def test_classifiers(tmp_path):
    """Every kernel, two to four classes, labels that are not 0..K-1, post transforms, an int64 input; the scores are
    the pair decisions ([-s, s] / [1 - s, s] for two classes)."""
    linear = Svm(1, "LINEAR", [4, 3, 5])
    rbf = Svm(2, "RBF", [5, 6, 4], params=(0.2, 0.0, 3.0))
    poly = Svm(3, "POLY", [3, 4, 2, 5], params=(0.4, 0.7, 3.0))
    sigmoid = Svm(4, "SIGMOID", [6, 5], params=(0.3, -0.2, 0.0))
    binary_rbf = Svm(5, "RBF", [4, 7], params=(0.5, 0.0, 0.0))
    quadratic = Svm(6, "POLY", [4, 0, 5], params=(1.0, 0.0, 2.0))  # a class without support vectors
    nodes = [linear.classifier("linear", "x", ["l_lin", "s_lin"]),
             rbf.classifier("rbf", "x", ["l_rbf", "s_rbf"], labels=[7, 3, 11]),
             poly.classifier("poly", "x", ["l_poly", "s_poly"], post_transform="SOFTMAX"),
             sigmoid.classifier("sigmoid", "x", ["l_sig", "s_sig"], labels=[-1, 1]),
             binary_rbf.classifier("binary_logistic", "x", ["l_bin", "s_bin"], labels=[4, 9], post_transform="LOGISTIC"),
             quadratic.classifier("ints", "i", ["l_int", "s_int"], post_transform="LOGISTIC")]
    outputs = []
    for key, width in (("lin", 3), ("rbf", 3), ("poly", 6), ("sig", 2), ("bin", 2), ("int", 3)):
        outputs += [(f"l_{key}", T.INT64, [N]), (f"s_{key}", T.FLOAT, [N, width])]
    model = make(nodes, [("x", T.FLOAT, [N, F]), ("i", T.INT64, [N, F])], outputs)
    x = rows(10)
    ints = np.random.default_rng(11).integers(-3, 4, (N, F)).astype(np.int64)
    bounds = {"s_lin": linear.decision_bound(x), "s_rbf": rbf.decision_bound(x), "s_poly": ULPS + poly.decision_bound(x).max(1, keepdims=True),
              "s_sig": sigmoid.decision_bound(x), "s_bin": ULPS + binary_rbf.decision_bound(x),
              "s_int": ULPS + quadratic.decision_bound(ints.astype(np.float32))}
    check(model, tmp_path, {"x": x, "i": ints}, bounds)


@pytest.mark.slow  # 30-37 s (two SVMs compiled with probabilities); `make test-all`
def test_probabilities(tmp_path):
    """prob_a / prob_b: Platt scaling and the pairwise coupling, three classes (RBF, SOFTMAX_ZERO on top) and two
    (LINEAR); the labels still come from the votes; a row with a NaN gets 1/K."""
    rbf = Svm(7, "RBF", [5, 6, 4], params=(0.25, 0.0, 0.0))
    linear = Svm(8, "LINEAR", [5, 4])
    nodes = [rbf.classifier("rbf_prob", "x", ["l_rbf", "p_rbf"], labels=[2, 0, 5], probabilities=True, post_transform="SOFTMAX_ZERO"),
             linear.classifier("linear_prob", "x", ["l_lin", "p_lin"], probabilities=True)]
    outputs = [("l_rbf", T.INT64, [N]), ("p_rbf", T.FLOAT, [N, 3]), ("l_lin", T.INT64, [N]), ("p_lin", T.FLOAT, [N, 2])]
    x = rows(12)
    check(make(nodes, [("x", T.FLOAT, [N, F])], outputs, opset=11), tmp_path, {"x": x},
          {"p_rbf": 2 * rbf.probability_bound(x), "p_lin": linear.probability_bound(x)})


def test_regressors(tmp_path):
    """SVR-like (RBF, POLY degree 2, SIGMOID), OneClassSVM's one_class form, and the linear form without support
    vectors; post_transform is ignored as onnxruntime ignores it."""
    rbf = Svm(20, "RBF", [9], params=(0.2, 0.0, 0.0), regressor=True)
    poly = Svm(21, "POLY", [7], params=(0.5, 1.0, 2.0), regressor=True)
    sigmoid = Svm(22, "SIGMOID", [8], params=(0.1, 0.3, 0.0), regressor=True)
    weights = np.random.default_rng(23).standard_normal(F).astype(np.float32)
    nodes = [rbf.regressor("rbf", "x", "y_rbf", post_transform="LOGISTIC"), poly.regressor("poly", "x", "y_poly"),
             sigmoid.regressor("sigmoid", "x", "y_sig"), rbf.regressor("one_class", "x", "y_one", one_class=1),
             h.make_node("SVMRegressor", ["x"], ["y_lin"], domain=ML, name="linear", n_supports=0, coefficients=weights.tolist(),
                         rho=[0.25], kernel_type="RBF", kernel_params=[0.5, 0.0, 0.0])]  # no support vectors: linear whatever the kernel type
    outputs = [(name, T.FLOAT, [N, 1]) for name in ("y_rbf", "y_poly", "y_sig", "y_one", "y_lin")]
    x = rows(24)
    linear_bound = ULPS * (np.abs(x.astype(np.float64)) @ np.abs(weights.astype(np.float64)) + 0.25)[:, None]
    check(make(nodes, [("x", T.FLOAT, [N, F])], outputs, opset=13), tmp_path, {"x": x},
          {"y_rbf": rbf.decision_bound(x), "y_poly": poly.decision_bound(x), "y_sig": sigmoid.decision_bound(x), "y_one": 0, "y_lin": linear_bound})


def test_rbf_gemm_form(tmp_path, monkeypatch):
    """Beyond RBF_DIRECT_LIMIT the RBF distances come from one GEMM around the support vectors' mean."""
    import hcc.frontend.svm as svm

    monkeypatch.setattr(svm, "RBF_DIRECT_LIMIT", 16)
    rbf = Svm(30, "RBF", [5, 4, 6], params=(0.2, 0.0, 0.0))
    x = rows(31)
    x[8:] *= 0.3  # near the support vectors: the form's cancellation stays within its bound
    nodes = [rbf.classifier("rbf", "x", ["label", "scores"])]
    check(make(nodes, [("x", T.FLOAT, [N, F])], [("label", T.INT64, [N]), ("scores", T.FLOAT, [N, 3])], opset=12), tmp_path, {"x": x},
          {"scores": 4 * rbf.decision_bound(x)})


def _refused(tmp_path, node, outputs, match: str, inputs=(("x", T.FLOAT, [4, F]),)):
    path = tmp_path / "refused.onnx"
    onnx.save(make([node], list(inputs), outputs), path)
    with pytest.raises(HccError, match=match):
        load_model(str(path))


def test_refusals(tmp_path):
    svm = Svm(40, "RBF", [2, 3])
    pair = [("l", T.INT64, [4]), ("s", T.FLOAT, [4, 2])]
    strings = h.make_node("SVMClassifier", ["x"], ["l", "s"], domain=ML, name="strings", classlabels_strings=["a", "b"],
                          vectors_per_class=svm.per_class, **svm.attributes())
    _refused(tmp_path, strings, [("l", T.STRING, [4]), ("s", T.FLOAT, [4, 2])], r"node 'strings' .*string tensors are not compiled")
    _refused(tmp_path, svm.classifier("probit", "x", ["l", "s"], post_transform="PROBIT"), pair, r"node 'probit' .*PROBIT")
    liblinear = h.make_node("SVMClassifier", ["x"], ["l", "s"], domain=ML, name="liblinear", classlabels_ints=[0, 1],
                            coefficients=[1.0] * (2 * F), rho=[0.0])
    _refused(tmp_path, liblinear, pair, r"node 'liblinear' .*no support vectors")
    fractional = Svm(41, "POLY", [2, 3], params=(1.0, 0.0, 2.5))
    _refused(tmp_path, fractional.classifier("fractional", "x", ["l", "s"]), pair, r"node 'fractional' .*POLY degree 2.5")
    _refused(tmp_path, h.make_node("SVMRegressor", ["x"], ["y"], domain=ML, name="no_params", coefficients=[1.0], support_vectors=[1.0] * F,
                                   n_supports=1, rho=[0.0]), [("y", T.FLOAT, [4, 1])], r"node 'no_params' .*'kernel_params' is missing")
