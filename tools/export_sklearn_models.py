#!/usr/bin/env python
"""Train scikit-learn pipelines and convert them with skl2onnx, for an unseen-model check of classical ML.

    .venv-skl/bin/python tools/export_sklearn_models.py OUT_DIR     # `make bench-sklearn` makes the venv and runs it

hcc's classical-ML tests build ai.onnx.ml nodes by hand (tests/frontend/test_classical_ml.py); this script lets
skl2onnx write them, with its defaults, as a user gets them: a ZipMap after every classifier (and, as
`NAME_nozipmap.onnx`, the same model converted with zipmap=False), ArrayFeatureExtractor label lookups, Scan-based
distances for nearest neighbours, Imputer, SVM and tree ensembles. Data: scikit-learn's synthetic
make_classification / make_regression (seeded); `NAME.npy` holds 64 rows of the training data, the inputs the
suite compiles and times each model with. Needs scikit-learn and skl2onnx (pinned by the make target, not
dependencies of hcc).
"""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.datasets import make_classification, make_regression
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.ensemble import (
    AdaBoostClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import Lasso, LinearRegression, LogisticRegression, Ridge, SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Binarizer, MaxAbsScaler, MinMaxScaler, Normalizer, OneHotEncoder, PolynomialFeatures, RobustScaler, StandardScaler
from sklearn.svm import SVC, SVR, LinearSVC, LinearSVR
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

OPSETS = {"": 17, "ai.onnx.ml": 3}
ROWS = 64  # rows of each model's input


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    x3, y3 = make_classification(600, 10, n_informative=6, n_classes=3, random_state=0)
    x2, y2 = make_classification(600, 10, random_state=1)
    xr, yr = make_regression(600, 10, random_state=2)
    x3, x2, xr = (a.astype(np.float32) for a in (x3, x2, xr))
    missing = x3.copy()
    missing[::7, 3] = np.nan
    categorical = x3.copy()
    categorical[:, 0] = np.random.default_rng(0).integers(0, 4, len(x3))
    return {"3 classes": (x3, y3), "2 classes": (x2, y2), "regression": (xr, yr), "missing": (missing, y3),
            "categorical": (categorical, y3), "regression/100": (xr, yr / 100)}


def estimators() -> dict[str, tuple[object, str]]:
    """name: (estimator, dataset)."""
    forest = dict(max_depth=6, random_state=0)
    return {
        "logreg3": (LogisticRegression(max_iter=500), "3 classes"),
        "logreg2": (LogisticRegression(max_iter=500), "2 classes"),
        "scaler_logreg": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), "3 classes"),
        "sgd": (SGDClassifier(random_state=0), "3 classes"),
        "linsvc": (LinearSVC(), "3 classes"),
        "svc_linear": (SVC(kernel="linear"), "3 classes"),
        "svc_rbf": (SVC(), "3 classes"),
        "svc_rbf_proba": (SVC(probability=True, random_state=0), "3 classes"),
        "svc_binary": (SVC(), "2 classes"),
        "gnb": (GaussianNB(), "3 classes"),
        "knn3": (KNeighborsClassifier(5), "3 classes"),
        "mlp3": (MLPClassifier((32,), max_iter=300, random_state=0), "3 classes"),
        "dt3": (DecisionTreeClassifier(max_depth=8, random_state=0), "3 classes"),
        "rf3": (RandomForestClassifier(20, **forest), "3 classes"),
        "rf2": (RandomForestClassifier(20, **forest), "2 classes"),
        "et3": (ExtraTreesClassifier(20, **forest), "3 classes"),
        "gb3": (GradientBoostingClassifier(n_estimators=20, random_state=0), "3 classes"),
        "gb2": (GradientBoostingClassifier(n_estimators=20, random_state=0), "2 classes"),
        "ada3": (AdaBoostClassifier(n_estimators=10, random_state=0), "3 classes"),
        "impute_rf": (make_pipeline(SimpleImputer(), RandomForestClassifier(10, max_depth=5, random_state=0)), "missing"),
        "pca_logreg": (make_pipeline(PCA(5), LogisticRegression(max_iter=500)), "3 classes"),
        "norm_maxabs_logreg": (make_pipeline(Normalizer(), MaxAbsScaler(), LogisticRegression(max_iter=500)), "3 classes"),
        "binarizer_logreg": (make_pipeline(Binarizer(), LogisticRegression()), "3 classes"),
        "onehot_columns": (make_pipeline(ColumnTransformer([("onehot", OneHotEncoder(handle_unknown="ignore"), [0]),
                                                            ("scaled", StandardScaler(), list(range(1, 10)))]),
                                         LogisticRegression(max_iter=500)), "categorical"),
        "linreg": (LinearRegression(), "regression"),
        "minmax_ridge": (make_pipeline(MinMaxScaler(), Ridge()), "regression"),
        "robust_lasso": (make_pipeline(RobustScaler(), Lasso()), "regression"),
        "poly_ridge": (make_pipeline(PolynomialFeatures(2), Ridge()), "regression"),
        "svd_ridge": (make_pipeline(TruncatedSVD(5), Ridge()), "regression"),
        "linsvr": (LinearSVR(), "regression"),
        "svr": (SVR(), "regression/100"),
        "knn_regressor": (KNeighborsRegressor(5), "regression"),
        "dt_regressor": (DecisionTreeRegressor(max_depth=8, random_state=0), "regression"),
        "rf_regressor": (RandomForestRegressor(20, **forest), "regression"),
        "gb_regressor": (GradientBoostingRegressor(n_estimators=20, random_state=0), "regression"),
    }


def export(out: Path) -> list[str]:
    """Fit and convert every estimator; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    data = datasets()
    written = []
    for name, (estimator, dataset) in estimators().items():
        x, y = data[dataset]
        estimator.fit(x, y)
        np.save(out / f"{name}.npy", x[:ROWS])
        written.append(_save(to_onnx(estimator, x[:1], target_opset=OPSETS), out / f"{name}.onnx"))
        if _has_zipmap(out / f"{name}.onnx"):  # the same classifier with its probabilities left a tensor
            plain = to_onnx(estimator, x[:1], target_opset=OPSETS, options={id(estimator): {"zipmap": False}})
            written.append(_save(plain, out / f"{name}_nozipmap.onnx"))
    return written


def _has_zipmap(path: Path) -> bool:
    import onnx

    return any(node.op_type == "ZipMap" for node in onnx.load(path).graph.node)


def _save(model, path: Path) -> str:
    path.write_bytes(model.SerializeToString())
    return path.name


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__.split("\n\n")[1])
    warnings.filterwarnings("ignore")  # convergence warnings of the small trainings
    files = export(Path(sys.argv[1]))
    print(f"wrote {len(files)} models to {sys.argv[1]}")
