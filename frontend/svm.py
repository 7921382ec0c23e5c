"""ai.onnx.ml.SVMClassifier and SVMRegressor (what skl2onnx writes for SVC, NuSVC, SVR, NuSVR, OneClassSVM), rewritten
into default-domain ops (called from frontend/classical_ml.py), giving onnxruntime 1.31's results.

What onnxruntime's CPU kernels compute (svmclassifier.cc, svmregressor.cc, ml_common.h; measured where they differ
from the source), and hcc with it:
* The kernel matrix k[n, v] of the input rows against the V support vectors: LINEAR x.sv, POLY (gamma x.sv +
  coef0)^degree, SIGMOID tanh(gamma x.sv + coef0) (one GEMM each, as onnxruntime's), RBF exp(-gamma sum_f (x_f -
  sv_f)^2), built as onnxruntime builds it (each difference rounded, squared, summed; one [N, V, F] tensor) up to
  RBF_DIRECT_LIMIT bytes, beyond that as |x-c|^2 + |sv-c|^2 - 2 (x-c).(sv-c) around the support vectors' mean c
  (a row with an inf: every distance inf, as onnxruntime's). kernel_params is required (onnxruntime's rule).
* SVMRegressor: y = k @ coefficients + rho[0] (a float32 GEMM, as onnxruntime's), [N, 1]; one_class: 1 if y > 0
  else -1 (NaN: -1); post_transform is ignored (onnxruntime reads it and does nothing with it); no support vectors:
  x @ coefficients + rho[0].
* SVMClassifier (K classes, libsvm's one-vs-one layout): for each pair i < j (P = K(K-1)/2, in that order) the
  decision s_ij = sum over class i's vectors of coefficients[j-1] k + sum over class j's of coefficients[i] k +
  rho_ij, accumulated in double and rounded once, as onnxruntime (hcc: one float64 GEMM per class, so a class's
  inf/NaN kernel values reach only its own pairs). Each pair votes for i if s_ij > 0 else for j (NaN: j); label =
  classlabels_ints[first class with most votes] (two classes: labels[0] if s > 0 else labels[1]), with or without
  probabilities.
  Scores without prob_a: the P decisions, post-transformed; two classes: [-s, s] (NONE), [logistic(-s),
  logistic(s)] (LOGISTIC), [1 - s, s] (SOFTMAX, SOFTMAX_ZERO). With prob_a/prob_b (Platt): r_ij = clamp(1 -
  logistic(s_ij A + B), 1e-7, 1 - 1e-7), r_ji = 1 - r_ij, coupled into K probabilities by libsvm's
  multiclass_probability as onnxruntime writes it in float32 (the same operations in the same order), then
  post-transformed. Its stop is data-dependent (a round tests max_i |Qp_i - pQp| < 0.005/K, NaN skipped, then
  sweeps; at most 100 rounds): hcc runs COUPLING_ROUNDS rounds, each row keeping p from the first round whose test
  it passes (a row with a NaN stops at once with p = 1/K, as onnxruntime's). Rows need at most 2 sweeps for K = 2
  and 4 for K = 3 (every pair probability on a 1.4M-point / 161^3 logit grid down to 1e-7), at most 5 for K up to
  10 (4.6M random tables, extreme ones included); a row needing more than COUPLING_ROUNDS (never seen) would keep p
  after COUPLING_ROUNDS sweeps, off by up to about 0.005/K. Unrolling all 100 rounds took minutes to compile.

Tolerances (measured against onnxruntime, tests/frontend/test_svm.py checks them with 8 ulps): kernel values are
within a few float32 ulps of their error scale: sum_f |x_f sv_f| for LINEAR (MLAS sums in another order), that times
gamma (SIGMOID: plus |coef0|; tanh within an ulp or two of MLAS's) or times degree |t|^(degree-1) (POLY), 1 for RBF
(the same roundings as onnxruntime, exp within an ulp); decisions and regressor outputs within a few ulps of
sum_v |c_v| (|k_v| + that scale) + |rho|; post-transformed scores and probabilities within a few ulps of 1 plus
|prob_a| / 4 times the decisions' difference (a row whose coupling error lands within an ulp of the stopping bound
could take one round more or fewer). Labels follow from the decisions' signs: a row with a decision within that
tolerance of 0 may differ (random data: never).

Refused, naming the node: string labels, PROBIT, the classifier without support vectors (liblinear mode: skl2onnx
writes LinearClassifier for that), fewer than two classes, a non-integer POLY degree or one above MAX_DEGREE, a
missing rho or kernel_params, attribute sizes that do not fit; non-float32 SVMRegressor inputs (onnxruntime's
kernel takes float32 only; the classifier converts int32/int64/double as onnxruntime does).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto

from hcc.frontend.attributes import attr_text, attr_value
from hcc.frontend.classical_ml import F32, I64, _float_input, _labels, _out, _post, _post_transform, _reduce, _Refused, _rows, _strings
from hcc.frontend.node_rewrite import NodeEmitter, RewriteGraph

BOOL = np.dtype(np.bool_)
F64 = np.dtype(np.float64)
RBF_DIRECT_LIMIT = 64 << 20  # bytes of the [N, V, F] differences of the exact RBF form; beyond: the GEMM form
COUPLING_ROUNDS = 6  # onnxruntime allows 100; see the module docstring
MAX_DEGREE = 16


@dataclass
class _Kernel:
    """kernel_type and kernel_params (gamma, coef0, degree: zeros when the list is empty, as onnxruntime)."""

    kind: str
    gamma: np.float32
    coef0: np.float32
    degree: float


def _kernel_of(node: onnx.NodeProto, vectors: int) -> _Kernel:
    params = attr_value(node, "kernel_params")
    if params is None:
        raise _Refused("attribute 'kernel_params' is missing (onnxruntime requires it)")
    params = [float(v) for v in params] or [0.0, 0.0, 0.0]
    if len(params) < 3:
        raise _Refused(f"kernel_params has {len(params)} values (gamma, coef0, degree expected)")
    kind = attr_text(node, "kernel_type", "LINEAR") if vectors else "LINEAR"
    if kind not in ("LINEAR", "POLY", "RBF", "SIGMOID"):
        kind = "SIGMOID"  # onnxruntime's MakeKernel: any other name
    kernel = _Kernel(kind, np.float32(params[0]), np.float32(params[1]), float(np.float32(params[2])))
    if kind == "POLY" and not (kernel.degree.is_integer() and 0 <= kernel.degree <= MAX_DEGREE):
        raise _Refused(f"POLY degree {kernel.degree}: hcc compiles integer degrees 0 to {MAX_DEGREE}")
    return kernel


def _support_vectors(node: onnx.NodeProto, vectors: int, features: int) -> np.ndarray:
    sv = np.asarray(attr_value(node, "support_vectors", []), np.float32)
    if sv.size != vectors * features:
        raise _Refused(f"{sv.size} support_vectors values for {vectors} vectors of {features} features")
    return sv.reshape(vectors, features)


# ------------------------------------------------------------------------------------------------ kernel matrix


def _kernel(e: NodeEmitter, x, rows: int, sv: np.ndarray, k: _Kernel):
    """k[n, v] as onnxruntime's batched_kernel_dot computes it, [N, V] float32."""
    if k.kind == "RBF":
        return _rbf(e, x, rows, sv, k.gamma)
    t = e.op("MatMul", [x, np.ascontiguousarray(sv.T)], F32, "dot")
    if k.kind == "LINEAR":
        return t
    t = e.mul(t, np.array(k.gamma, F32), "gamma_dot")  # the GEMM's alpha
    if k.coef0 != 0:
        t = e.add(t, np.array(k.coef0, F32), "plus_coef0")  # its C, only when non-zero
    if k.kind == "SIGMOID":
        return e.op("Tanh", [t], F32, "tanh")
    return _power(e, t, int(k.degree), (rows, len(sv)))


def _power(e: NodeEmitter, t, degree: int, shape: tuple[int, int]):
    """t^degree: Eigen's square and cube (t*t, t*t*t) for 2 and 3, repeated products for the others (pow(t, 0) = 1,
    NaN included)."""
    if degree == 0:
        return np.ones(shape, F32)
    value = t
    for _ in range(degree - 1):
        value = e.mul(value, t, "power")
    return value


def _rbf(e: NodeEmitter, x, rows: int, sv: np.ndarray, gamma: np.float32):
    vectors, features = sv.shape
    if rows * vectors * features * 4 <= RBF_DIRECT_LIMIT:
        column = e.reshape(x, [rows, 1, features], "rows")
        diff = e.sub(column, sv[None], "diff")                                        # [N, V, F]
        distance = _reduce(e, "ReduceSum", e.mul(diff, diff, "square"), -1, "distance", keepdims=0)
    else:
        center = sv.astype(np.float64).mean(axis=0).astype(F32)
        centered_sv = sv - center
        xc = e.sub(x, center, "centered")
        x2 = _reduce(e, "ReduceSum", e.mul(xc, xc, "x_square"), -1, "x_norm")           # [N, 1]
        sv2 = (centered_sv.astype(np.float64) ** 2).sum(axis=1).astype(F32)
        dot = e.op("MatMul", [xc, np.ascontiguousarray(centered_sv.T)], F32, "dot")
        distance = e.sub(e.add(x2, sv2, "norms"), e.mul(dot, np.array(2, F32), "twice_dot"), "distance_gemm")
        negative = e.op("Greater", [np.array(0, F32), distance], BOOL, "negative")
        distance = e.op("Where", [negative, np.array(0, F32), distance], F32, "distance_clamped")
        infinite = e.op("IsInf", [x2], BOOL, "infinite_row")  # an inf feature: every distance inf (not inf - inf)
        distance = e.op("Where", [infinite, x2, distance], F32, "distance")
    return e.op("Exp", [e.mul(distance, np.array(-gamma, F32), "scaled")], F32, "rbf")


# ------------------------------------------------------------------------------------------------ regressor


def svm_regressor(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    x = _float_input(e, g, node.input[0], casts=False)  # onnxruntime registers float32 only
    rows, features = _rows(g, node.input[0])
    vectors = int(attr_value(node, "n_supports", 0))
    coefficients = np.asarray(attr_value(node, "coefficients", []), np.float32)
    rho = np.asarray(attr_value(node, "rho", []), np.float32)
    if not len(rho):
        raise _Refused("attribute 'rho' is missing")
    kernel = _kernel_of(node, vectors)
    if vectors > 0:
        if len(coefficients) != vectors:
            raise _Refused(f"{len(coefficients)} coefficients for {vectors} support vectors")
        k = _kernel(e, x, rows, _support_vectors(node, vectors, features), kernel)
    else:
        if len(coefficients) != features:
            raise _Refused(f"{len(coefficients)} coefficients for {features} features (no support vectors)")
        k = x
    y = e.add(e.op("MatMul", [k, coefficients.reshape(-1, 1)], F32, "weighted"), rho[:1], "regression")
    if int(attr_value(node, "one_class", 0)):
        positive = e.op("Greater", [y, np.array(0, F32)], BOOL, "inlier")
        y = e.op("Where", [positive, np.array(1, F32), np.array(-1, F32)], F32, "one_class")
    e.result(y, node.output[0])


# ------------------------------------------------------------------------------------------------ classifier


@dataclass
class _Classifier:
    """An SVMClassifier's attributes, read and checked before anything is built."""

    labels: np.ndarray   # [K] int64
    per_class: list[int]  # support vectors of each class, in order
    coefficients: np.ndarray  # [K-1, V]
    rho: np.ndarray  # [P]
    prob_a: np.ndarray  # [P] or empty
    prob_b: np.ndarray
    post: str


def _read_classifier(node: onnx.NodeProto) -> _Classifier:
    _strings(node)
    labels = np.asarray(attr_value(node, "classlabels_ints", []), np.int64)
    classes = len(labels)
    if classes < 2:
        raise _Refused(f"{classes} classlabels_ints: a classifier needs at least two")
    per_class = [int(v) for v in attr_value(node, "vectors_per_class", [])]
    vectors = sum(per_class)
    if vectors <= 0:
        raise _Refused("no support vectors (liblinear mode, which skl2onnx does not write: it writes LinearClassifier)")
    if len(per_class) != classes or min(per_class) < 0:
        raise _Refused(f"vectors_per_class has {len(per_class)} entries for {classes} classes")
    pairs = classes * (classes - 1) // 2
    coefficients = np.asarray(attr_value(node, "coefficients", []), np.float32)
    rho = np.asarray(attr_value(node, "rho", []), np.float32)
    prob_a = np.asarray(attr_value(node, "prob_a", []), np.float32)
    prob_b = np.asarray(attr_value(node, "prob_b", []), np.float32)
    if len(coefficients) < (classes - 1) * vectors or len(rho) < pairs:
        raise _Refused(f"{len(coefficients)} coefficients and {len(rho)} rho for {classes} classes and {vectors} vectors")
    if len(prob_a) != len(prob_b) or (len(prob_a) and len(prob_a) < pairs):
        raise _Refused(f"{len(prob_a)} prob_a and {len(prob_b)} prob_b for {pairs} class pairs")
    post = _post_transform(node)
    if post == "PROBIT":
        raise _Refused("post_transform PROBIT is not compiled")
    return _Classifier(labels, per_class, coefficients[:(classes - 1) * vectors].reshape(classes - 1, vectors), rho[:pairs],
                       prob_a[:pairs], prob_b[:pairs], post)


def _pairs(classes: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(classes) for j in range(i + 1, classes)]


def svm_classifier(e: NodeEmitter, g: RewriteGraph, node: onnx.NodeProto) -> None:
    a = _read_classifier(node)
    x = _float_input(e, g, node.input[0])
    rows, features = _rows(g, node.input[0])
    vectors = sum(a.per_class)
    k = _kernel(e, x, rows, _support_vectors(node, vectors, features), _kernel_of(node, vectors))
    decisions = _decisions(e, k, a, rows)
    if _out(node, 0):
        _vote(e, decisions, a, node.output[0])
    if _out(node, 1):
        e.result(_scores(e, decisions, a, rows), node.output[1], rename=False)


def _decisions(e: NodeEmitter, k, a: _Classifier, rows: int):
    """s[n, p] for the pairs (i, j): each class's vectors weighted by its K-1 coefficient rows (one GEMM per class,
    so that a class's inf or NaN kernel values reach only its own pairs, as in onnxruntime), then per pair the part
    of class i (row j-1) plus the part of class j (row i) plus rho."""
    classes, starts = len(a.labels), np.cumsum([0] + a.per_class)
    parts = []
    for c in range(classes):
        block = np.arange(starts[c], starts[c + 1])
        if not len(block):  # a class without support vectors adds nothing
            parts.append(np.zeros((rows, classes - 1), F64))
            continue
        kc = e.cast(e.gather(k, block, axis=1, hint=f"class{c}_kernel"), F64)
        parts.append(e.op("MatMul", [kc, np.ascontiguousarray(a.coefficients[:, block].T).astype(F64)], F64, f"class{c}_part"))
    every = e.op("Concat", parts, F64, "parts", axis=1)   # [N, K * (K-1)]
    width = classes - 1
    first = np.array([i * width + (j - 1) for i, j in _pairs(classes)], np.int64)
    second = np.array([j * width + i for i, j in _pairs(classes)], np.int64)
    total = e.add(e.gather(every, first, axis=1, hint="part_i"), e.gather(every, second, axis=1, hint="part_j"), "pair_sum")
    return e.cast(e.add(total, a.rho.astype(F64), "decisions"), F32)


def _vote(e: NodeEmitter, decisions, a: _Classifier, output: str) -> None:
    classes = len(a.labels)
    wins = e.op("Greater", [decisions, np.array(0, F32)], BOOL, "wins")
    if classes == 2:
        picked = e.op("Where", [wins, a.labels[0:1], a.labels[1:2]], I64, "binary_label")
        e.result(e.reshape(picked, [-1], "label"), output)
        return
    gain = np.zeros((len(a.rho), classes), F32)  # a win adds a vote to i and takes j's
    base = np.zeros(classes, F32)
    for p, (i, j) in enumerate(_pairs(classes)):
        gain[p, i] += 1
        gain[p, j] -= 1
        base[j] += 1
    as_float = e.op("Cast", [wins], F32, "wins_f", to=TensorProto.FLOAT)
    votes = e.add(e.op("MatMul", [as_float, gain], F32, "vote_gain"), base, "votes")  # small integers: exact
    _labels(e, votes, a.labels, output)


def _scores(e: NodeEmitter, decisions, a: _Classifier, rows: int):
    classes = len(a.labels)
    if len(a.prob_a):
        return _post(e, _probabilities(e, decisions, a, rows), a.post)
    if classes > 2:
        return _post(e, decisions, a.post)
    if a.post == "LOGISTIC":
        pair = [_logistic(e, e.op("Neg", [decisions], F32, "negated"), "low"), _logistic(e, decisions, "high")]
    elif a.post == "NONE":
        pair = [e.op("Neg", [decisions], F32, "negated"), decisions]
    else:
        pair = [e.sub(np.array(1, F32), decisions, "complement"), decisions]
    return e.op("Concat", pair, F32, "pair", axis=1)


def _logistic(e: NodeEmitter, v, hint: str):
    """onnxruntime's ComputeLogistic: 1 / (1 + exp(-|v|)), mirrored (1 - it) for v < 0."""
    exp = e.op("Exp", [e.op("Neg", [e.op("Abs", [v], F32, f"{hint}_abs")], F32, f"{hint}_neg_abs")], F32, f"{hint}_exp")
    half = e.div(np.array(1, F32), e.add(np.array(1, F32), exp, f"{hint}_one_plus"), f"{hint}_logistic_abs")
    below = e.op("Greater", [np.array(0, F32), v], BOOL, f"{hint}_below")
    return e.op("Where", [below, e.sub(np.array(1, F32), half, f"{hint}_mirrored"), half], F32, f"{hint}_logistic")


# ------------------------------------------------------------------------------------------------ probabilities


def _probabilities(e: NodeEmitter, decisions, a: _Classifier, rows: int):
    """Platt scaling of each pair (sigmoid_probability, clamped), then libsvm's coupling: [N, K]."""
    v = e.add(e.mul(decisions, a.prob_a, "platt_scaled"), a.prob_b, "platt")
    r = e.sub(np.array(1, F32), _logistic(e, v, "platt"), "pair_probability")  # sigmoid_probability
    low, high = np.array(1e-7, F32), np.float32(1) - np.float32(1e-7)
    r = e.op("Where", [e.op("Greater", [low, r], BOOL, "too_low"), low, r], F32, "clamp_low")        # std::max
    r = e.op("Where", [e.op("Greater", [r, np.array(high)], BOOL, "too_high"), np.array(high), r], F32, "clamp_high")  # std::min
    return _coupling(e, r, len(a.labels), rows)


@dataclass
class _Coupled:
    """The per-row matrix Q of multiclass_probability, as the slices the rounds read."""

    rows_of_q: list  # [N, K] each: Q[i, :] (= Q[:, i]: Q is symmetric, exactly)
    diagonal: list  # [N, 1] each: Q[i, i]
    steps: list  # [N, 2K] each: [e_i, Q[i, :]], what one update adds to [p, Qp] (times diff)
    classes: int


def _q_matrix(e: NodeEmitter, r, classes: int, rows: int) -> _Coupled:
    """Q[i][i] = sum over j != i (in order) of r[j][i]^2, Q[i][j] = -r[j][i] r[i][j]; r[i][j] is pair (i, j)'s value
    for i < j, 1 - it for i > j."""
    pairs = _pairs(classes)
    index = {pair: p for p, pair in enumerate(pairs)}
    complement = e.sub(np.array(1, F32), r, "pair_complement")
    table = e.op("Concat", [r, complement, np.zeros((rows, 1), F32)], F32, "r_table", axis=1)  # [N, 2P + 1]

    def at(i: int, j: int) -> int:  # the column of r[i][j] in the table
        return 2 * len(pairs) if i == j else index[(i, j)] if i < j else len(pairs) + index[(j, i)]

    square = range(classes)
    r_ji = e.gather(table, np.array([at(j, i) for i in square for j in square], np.int64), 1, "r_ji")  # [N, K*K] at i*K+j
    r_ij = e.gather(table, np.array([at(i, j) for i in square for j in square], np.int64), 1, "r_ij")
    off = e.op("Neg", [e.mul(r_ji, r_ij, "r_products")], F32, "q_off")
    squares = e.mul(r_ji, r_ji, "r_squares")  # [i*K + j]: r[j][i]^2
    terms = [e.gather(squares, np.array([i * classes + (t if t < i else t + 1) for i in square], np.int64), 1, f"q_term{t}")
             for t in range(classes - 1)]  # the t-th j != i, for every i at once
    diagonal = _sequential_sum(e, terms, "q_diagonal")
    spread = e.gather(diagonal, np.repeat(np.arange(classes), classes), 1, "q_diag_spread")
    q = e.op("Where", [np.eye(classes, dtype=bool).reshape(-1), spread, off], F32, "q")  # [N, K*K]
    rows_of_q = [e.gather(q, np.arange(i * classes, (i + 1) * classes), 1, f"q_row{i}") for i in square]
    unit = np.eye(classes, dtype=F32)
    steps = [e.op("Concat", [np.repeat(unit[i:i + 1], rows, 0), rows_of_q[i]], F32, f"step{i}", axis=1) for i in square]
    diagonals = [e.gather(diagonal, np.array([i]), 1, f"q_{i}{i}") for i in square]
    return _Coupled(rows_of_q, diagonals, steps, classes)


def _sequential_sum(e: NodeEmitter, terms: list, hint: str):
    total = terms[0]
    for term in terms[1:]:
        total = e.add(total, term, hint)
    return total


def _coupling(e: NodeEmitter, r, classes: int, rows: int):
    """multiclass_probability: COUPLING_ROUNDS rounds, each a stop test then one sweep of updates, a row keeping its
    p from the round whose test it passed first (a row with a NaN stops at once, as onnxruntime's test skips NaN)."""
    q = _q_matrix(e, r, classes, rows)
    p = np.full((rows, classes), np.float32(1) / np.float32(classes), F32)
    done = e.op("IsNaN", [_reduce(e, "ReduceSum", r, -1, "nan_probe")], BOOL, "nan_row")
    eps = np.float32(0.005) / np.float32(classes)
    for _ in range(COUPLING_ROUNDS):
        qp, pqp = _qp(e, q, p)
        error = e.op("Abs", [e.sub(qp, pqp, "qp_error")], F32, "abs_error")
        converged = e.op("Greater", [np.array(eps), _reduce(e, "ReduceMax", error, -1, "max_error")], BOOL, "converged")
        done = e.op("Or", [done, converged], BOOL, "done")
        p = e.op("Where", [done, p, _sweep(e, q, p, qp, pqp)], F32, "p")
    return p


def _qp(e: NodeEmitter, q: _Coupled, p):
    """Qp[i] = sum_j Q[i][j] p[j] and pQp = sum_i p[i] Qp[i], each summed in onnxruntime's order."""
    columns = [e.gather(p, np.array([j]), 1, "p_j") for j in range(q.classes)]
    qp = _sequential_sum(e, [e.mul(q.rows_of_q[j], columns[j], "q_p") for j in range(q.classes)], "qp")  # Q[:, j] = Q[j, :]
    products = e.mul(p, qp, "p_qp")
    pqp = _sequential_sum(e, [e.gather(products, np.array([i]), 1, "p_qp_i") for i in range(q.classes)], "pqp")
    return qp, pqp


def _sweep(e: NodeEmitter, q: _Coupled, p, qp, pqp):
    """One round's updates, class after class: diff = (pQp - Qp[i]) / Q[i][i]; p[i] += diff; then pQp, Qp and p
    rescaled by 1 + diff, in onnxruntime's operation order ([p, Qp] as one tensor: p's other entries gain diff * 0)."""
    state = e.op("Concat", [p, qp], F32, "p_qp_state", axis=1)
    for i in range(q.classes):
        qp_i = e.gather(state, np.array([q.classes + i]), 1, "qp_i")
        diff = e.div(e.sub(pqp, qp_i, "residual"), q.diagonal[i], "diff")
        scale = e.add(np.array(1, F32), diff, "one_plus_diff")
        state = e.div(e.add(state, e.mul(diff, q.steps[i], "diff_step"), "state_step"), scale, "state_next")
        inner = e.add(e.mul(diff, q.diagonal[i], "diff_q"), e.mul(np.array(2, F32), qp_i, "twice_qp"), "inner")
        pqp = e.div(e.div(e.add(pqp, e.mul(diff, inner, "diff_inner"), "pqp_step"), scale, "pqp_scaled"), scale, "pqp_next")
    return e.gather(state, np.arange(q.classes), 1, "p_next")


EXPANSIONS = {"SVMClassifier": svm_classifier, "SVMRegressor": svm_regressor}
