"""Session.run's contract on the fast path: inputs are never modified (the CPU uses the caller's arrays without a
copy), outputs are fresh arrays on every run, and odd-layout inputs still work."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import hcc
from hcc.errors import HccError
from hcc.runtime import load

RNG = np.random.default_rng(3)
W = RNG.standard_normal((16, 8)).astype(np.float32)
B = RNG.standard_normal(8).astype(np.float32)


def reference(x: np.ndarray) -> list[np.ndarray]:
    return [np.maximum(x @ W + B, 0), np.concatenate([x, x], axis=0)]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """y = relu(x @ W + B) and z = concat(x, x): one output reads the input through a weight, one copies it."""
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="fc"), helper.make_node("Add", ["h", "b"], ["a"], name="bias"),
             helper.make_node("Relu", ["a"], ["y"], name="relu"), helper.make_node("Concat", ["x", "x"], ["z"], name="cat", axis=0)]
    graph = helper.make_graph(nodes, "io", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 8]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [8, 16])],
                              [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    root = tmp_path_factory.mktemp("session_run")
    onnx.save(model, root / "io.onnx")
    hcc.compile(root / "io.onnx", root / "bundle")
    return load(root / "bundle")


def check(outputs: list[np.ndarray], x: np.ndarray) -> None:
    for got, want in zip(outputs, reference(np.asarray(x))):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_inputs_are_not_modified(session):
    x = RNG.standard_normal((4, 16)).astype(np.float32)
    before = x.copy()
    outputs = session.run(None, {"x": x})
    np.testing.assert_array_equal(x, before)
    assert not any(np.shares_memory(o, x) for o in outputs)
    check(outputs, x)


def test_outputs_are_fresh_arrays(session):
    x = RNG.standard_normal((4, 16)).astype(np.float32)
    first = session.run(None, {"x": x})
    second = session.run(None, {"x": x})
    for a, b in zip(first, second):
        assert a is not b and not np.shares_memory(a, b)
        assert a.flags.writeable and a.flags.owndata or a.base is not None
    for a in first:
        a[...] = np.nan  # the caller owns what it got back
    check(session.run(None, {"x": x}), x)
    check(second, x)


@pytest.mark.parametrize("layout", ["read-only", "fortran-order", "strided-view", "broadcast"])
def test_any_input_layout_is_accepted(session, layout):
    base = RNG.standard_normal((4, 32)).astype(np.float32)
    x = {
        "read-only": np.ascontiguousarray(base[:, :16]),
        "fortran-order": np.asfortranarray(base[:, :16]),
        "strided-view": base[:, ::2],
        "broadcast": np.broadcast_to(base[0, :16], (4, 16)),  # read-only, stride 0
    }[layout]
    if layout == "read-only":
        x.flags.writeable = False
    check(session.run(None, {"x": x}), x)


def test_profile_is_kept_and_cpu_moves_nothing(session):
    session.run(None, {"x": np.ones((4, 16), np.float32)})
    profile = session.last_profile
    assert profile.total > 0 and set(profile.subgraphs) == {sg.id for sg in session.manifest.subgraphs}
    assert all(t >= 0 for t in profile.subgraphs.values())
    assert profile.transfers == []  # host memory: inputs and outputs are handed over, not copied


def test_weights_are_constants_of_the_code(session):
    """A bundle weight is a constant of the compiled code: the product's kernel packs it at its first call and keeps
    the packed copy (ukernels.c packed_weights), so another array passed in the weight's position later does not
    change the result; the pointers of the other arguments are converted on every call (the layouts test above)."""
    sg = session.manifest.subgraphs[0]
    exe = session._executables[sg.id]
    x = RNG.standard_normal((4, 16)).astype(np.float32)
    expected, _ = session.run(None, {"x": x})
    resident = {name: session._resident_weights.get(("cpu#0", name)) for name in sg.inputs}
    assert "w" in sg.inputs  # the weight is an argument (small ones, like b here, may be baked into the code)
    args = [x if name == "x" else np.zeros_like(resident[name]) if name == "w" else resident[name] for name in sg.inputs]
    outs = [np.empty(session._tensors[n].shape, session._tensors[n].dtype) for n in sg.outputs]
    exe.run(args, outs)
    np.testing.assert_array_equal(outs[sg.outputs.index("y")], expected)


def test_unwritable_output_is_an_internal_error(session):
    sg = session.manifest.subgraphs[0]
    exe = session._executables[sg.id]
    args = [np.ones((4, 16), np.float32) if name == "x" else session._resident_weights[("cpu#0", name)] for name in sg.inputs]
    outs = [np.empty(session._tensors[n].shape, session._tensors[n].dtype) for n in sg.outputs]
    outs[0].flags.writeable = False
    with pytest.raises(HccError, match="internal"):
        exe.run(args, outs)


def test_two_sessions_of_one_bundle_keep_their_thread_counts(session):
    """The pool lives in the bundle's .so, which two sessions of one bundle share: each run uses its own session's
    count (onnxruntime's intra_op_num_threads is per session too)."""
    import ctypes

    one, two = load(session.bundle, threads=1), load(session.bundle, threads=2)
    lib = one._steps[0].executable._lib
    lib.hcc_get_num_threads.restype = ctypes.c_int
    x = RNG.standard_normal((4, 16)).astype(np.float32)
    for s, threads in ((one, 1), (two, 2), (one, 1)):
        check(s.run(None, {"x": x}), x)
        assert lib.hcc_get_num_threads() == threads


def test_sessions_run_from_several_threads_at_once(tmp_path):
    """Two sessions of one bundle, each run from its own Python thread at the same time (ctypes releases the GIL in
    the native call): both share the library's thread pool and kernels, and every result is right."""
    import threading

    rng = np.random.default_rng(4)
    w = rng.standard_normal((256, 256)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "mm",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [64, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [64, 256])], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "mm.onnx")
    hcc.compile(tmp_path / "mm.onnx", tmp_path / "mm.bundle")
    sessions = [load(tmp_path / "mm.bundle", threads=2), load(tmp_path / "mm.bundle", threads=2)]
    failures = []

    def work(session, seed):
        local = np.random.default_rng(seed)
        for _ in range(100):
            x = local.standard_normal((64, 256)).astype(np.float32)
            (y,) = session.run(None, {"x": x})
            if not np.allclose(y, x.astype(np.float64) @ w, rtol=1e-4, atol=1e-3):
                failures.append(seed)
                return

    threads = [threading.Thread(target=work, args=(s, i), daemon=True) for i, s in enumerate(sessions * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a run never returned"
    assert failures == []


def test_direct_path_gives_what_the_general_path_gives(session):
    """A one-subgraph CPU bundle runs without the per-run tensor bookkeeping (Session._direct_plan): the same outputs
    as the general path (taken when output names are given), fresh arrays on every run, the same input checks."""
    assert session._direct is not None
    x = RNG.standard_normal((4, 16)).astype(np.float32)
    fast, general = session.run(None, {"x": x}), session.run(list(session.manifest.outputs), {"x": x})
    again = session.run(None, {"x": x})
    for a, b, c in zip(fast, general, again):
        np.testing.assert_array_equal(a, b)
        assert a is not c and not np.shares_memory(a, c)
    assert session.last_profile.total > 0 and set(session.last_profile.subgraphs) == {session.manifest.subgraphs[0].id}
    with pytest.raises(HccError, match="input 'x': dtype float64"):
        session.run(None, {"x": x.astype(np.float64)})


def test_run_bound_puts_bound_constants_in_their_positions():
    """Executable.run_bound's contract for drivers without a cheaper version: the bound constants keep their
    argument positions and the other inputs fill the rest in order."""
    from hcc.runtime.devices.base import Executable

    class Recorder(Executable):
        def run(self, inputs, outputs):
            self.seen = (list(inputs), list(outputs))

    recorder = Recorder()
    recorder.bind_constants({0: "w0", 2: "w2"})
    recorder.run_bound(["x", "y"], ["out"])
    assert recorder.seen == (["w0", "x", "w2", "y"], ["out"])


def test_cpu_run_bound_matches_run(session):
    """The CPU driver's run_bound converts only the unbound pointers: the same outputs as run with every argument."""
    step = session._steps[0]
    x = RNG.standard_normal((4, 16)).astype(np.float32)
    full = [w if w is not None else x for w in step.weights]
    by_run = [np.empty(o.shape, o.dtype) for o in step.outputs]
    by_bound = [np.empty(o.shape, o.dtype) for o in step.outputs]
    step.executable.run(full, by_run)
    step.executable.run_bound([x], by_bound)
    for a, b in zip(by_run, by_bound):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(HccError, match="unbound arguments"):
        step.executable.run_bound([x, x], by_bound)
