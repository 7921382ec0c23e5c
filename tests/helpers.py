"""Shared test helpers (import as `from helpers import ...`; tests/ is on sys.path via tests/conftest.py)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import onnx

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name: str) -> ModuleType:
    """tools/NAME.py imported by path (tools/ is not a package), registered as `hcc_tools_NAME`."""
    spec = importlib.util.spec_from_file_location(f"hcc_tools_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def compile_and_compare(model: onnx.ModelProto, tmp_path: Path, *, rtol: float = 1e-3, atol: float = 1e-4,
                        input_shapes: dict | None = None, feeds: dict | None = None, name: str = "model", as_written: bool = False):
    """Save `model`, compile it with hcc, run the bundle and check every output against onnxruntime (run on hcc's
    loaded model, or with `as_written` on `model` itself: for ops hcc rewrites, such as the quantized ones).

    Returns (session, outputs, expected) so a test can assert more.
    """
    import hcc
    from hcc.artifacts.golden import random_inputs, run_onnxruntime
    from hcc.frontend.loader import load_model
    from hcc.runtime import load

    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    bundle = tmp_path / f"{name}.bundle"
    hcc.compile(path, bundle, input_shapes=input_shapes)
    loaded = load_model(str(path), input_shapes)
    feeds = feeds if feeds is not None else random_inputs(loaded.model, loaded.inputs, seed=123)
    expected = run_onnxruntime(model if as_written else loaded.model, feeds)
    session = load(bundle)
    outputs = session.run(None, feeds)
    for name_, actual in zip(session.manifest.outputs, outputs):
        ref = expected[name_]
        assert actual.shape == ref.shape, f"{name_}: shape {actual.shape} != {ref.shape}"
        assert actual.dtype == ref.dtype, f"{name_}: dtype {actual.dtype} != {ref.dtype}"
        if ref.dtype.kind in "biu":
            np.testing.assert_array_equal(actual, ref, err_msg=name_)
        else:
            np.testing.assert_allclose(actual, ref, rtol=rtol, atol=atol, err_msg=name_)
    return session, outputs, expected


def hcc_and_onnxruntime(model: onnx.ModelProto, tmp_path: Path, feeds: dict) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Save and compile `model`, run the bundle and onnxruntime (default session, on the model as written) on `feeds`;
    returns (output name, hcc's array, onnxruntime's array) per output, their shapes and dtypes already checked equal.
    For tests that compare with their own per-output tolerances (tests/frontend/test_classical_ml.py, test_svm.py)."""
    import onnxruntime as ort

    import hcc
    from hcc.runtime import load

    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    hcc.compile(path, tmp_path / "bundle")
    session = load(tmp_path / "bundle")
    reference = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in reference.get_outputs()]
    expected = dict(zip(names, reference.run(names, feeds)))
    pairs = []
    for name, actual in zip(session.manifest.outputs, session.run(None, feeds)):
        ref = expected[name]
        assert actual.shape == ref.shape and actual.dtype == ref.dtype, name
        pairs.append((name, actual, ref))
    return pairs


def compile_groups(model_path, bundle_dir, groups: list[dict], *, progress=None, **keywords):
    """Compile with the subgraphs fixed by hand ([{id, device, nodes, device_index}]), bypassing the partitioner: the
    internal path (hcc.driver.compile_groups) that replaced the public `groups=` test hook. `keywords`: hcc.compile's."""
    from hcc.driver import compile_groups as compile_fixed
    from hcc.options import CompileOptions

    options = CompileOptions.from_keywords(**keywords)
    return compile_fixed(model_path, bundle_dir, groups, options, **({"progress": progress} if progress else {}))
