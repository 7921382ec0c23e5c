"""Fixtures for the GPU backend tests: small models compiled once per session onto one GPU subgraph (plus its CPU
fallback), the stub libcuda, and host emulators of the kernels (see cuda_stub.py). No GPU is needed."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # cuda_stub.py, shared by this folder's tests

import cuda_stub  # noqa: E402
from helpers import compile_groups  # noqa: E402


# -- models --------------------------------------------------------------------------------------------------------
def attention_block(seq: int = 8, dim: int = 32, heads: int = 4) -> onnx.ModelProto:
    """Transformer-ish block: LayerNorm, Q/K/V MatMul+Add, heads, scaled scores, Softmax, context MatMul, output
    projection, residual Add, final LayerNorm (no Erf: the CPU fallback cannot compile it)."""
    from models import GraphBuilder, _input

    g = GraphBuilder("attention_block", seed=11)
    hd = dim // heads

    def layer_norm(t: str, name: str) -> str:
        prefix = name.replace("/", ".")
        gamma = g.const(f"{prefix}.weight", g.rng.uniform(0.8, 1.2, dim))
        beta = g.const(f"{prefix}.bias", g.rng.standard_normal(dim) * 0.1)
        return g.node("LayerNormalization", [t, gamma, beta], name, axis=-1, epsilon=1e-5)

    split = g.const("attn.split_shape", [1, seq, heads, hd], np.int64)
    merge = g.const("attn.merge_shape", [1, seq, dim], np.int64)
    ln = layer_norm("x", "attn/ln")

    def heads_of(name: str) -> str:
        t = g.linear(ln, dim, dim, f"attn/{name}")
        t = g.node("Reshape", [t, split], f"attn/{name}/split_heads")
        return g.node("Transpose", [t], f"attn/{name}/transpose", perm=[0, 2, 1, 3])

    q, k, v = heads_of("query"), heads_of("key"), heads_of("value")
    kt = g.node("Transpose", [k], "attn/key/transpose_t", perm=[0, 1, 3, 2])
    scores = g.node("MatMul", [q, kt], "attn/scores")
    scores = g.node("Div", [scores, g.const("attn.sqrt_head_dim", math.sqrt(hd))], "attn/scale")
    probs = g.node("Softmax", [scores], "attn/softmax", axis=-1)
    ctx = g.node("MatMul", [probs, v], "attn/context")
    ctx = g.node("Transpose", [ctx], "attn/context/transpose", perm=[0, 2, 1, 3])
    ctx = g.node("Reshape", [ctx, merge], "attn/context/merge_heads")
    x = g.node("Add", ["x", g.linear(ctx, dim, dim, "attn/output")], "attn/residual")
    g.node("Relu", [layer_norm(x, "final/ln")], "hidden")
    return g.build([_input("x", [1, seq, dim])], ["hidden"])


def odd_shapes(rows: int = 5, cols: int = 1031) -> onnx.ModelProto:
    """Loop sizes without good divisors (1031 is prime), a row reduction, a reduction to a scalar (rank-0 output:
    a kernel with no parallel loop), and a 6-d elementwise op (more parallel loops than grid dimensions)."""
    from models import GraphBuilder, _input

    g = GraphBuilder("odd_shapes", seed=12)
    y = g.node("Relu", [g.node("Mul", ["x", g.const("two", 2.0)], "scale")], "activation")
    g.node("ReduceMean", ["x"], "row_mean", axes=[1], keepdims=0)
    g.node("ReduceSum", [y], "total", keepdims=0)
    g.node("Sigmoid", ["z"], "many_dims")  # 6 parallel loops: 2 on threads, 3 on the grid, 1 sequential per thread
    return g.build([_input("x", [rows, cols]), _input("z", [2, 3, 5, 7, 11, 13])], ["activation", "row_mean", "total", "many_dims"])


def gathers() -> onnx.ModelProto:
    """Regressions: a reversing Slice reads its input through a gather (tensor.extract) in the body, so it must not
    share a kernel with the op producing that input (a cross-thread read); Reciprocal carries a torch-mlir cf.assert."""
    from models import GraphBuilder, _input

    g = GraphBuilder("gathers", seed=13)
    y = g.node("Relu", ["x"], "relu")
    st, en = g.const("st", [-1], np.int64), g.const("en", [-1000], np.int64)
    ax, sp = g.const("ax", [1], np.int64), g.const("sp", [-1], np.int64)
    g.node("Slice", [y, st, en, ax, sp], "reverse")
    g.node("Reciprocal", [g.node("Add", [g.node("Abs", ["x"], "abs"), g.const("one", 1.0)], "shift")], "reciprocal")
    return g.build([_input("x", [4, 6])], ["reverse", "reciprocal"])


def mlp():
    import models

    return models.mlp()


def cnn():
    import models

    return models.cnn(image=16)


def mlp_tiled():
    """Large enough for shared-memory tiling: 64x64 @ 64x64 Gemm+ReLU, MatMul+Add+ReLU, 64x64 @ 64x32 Gemm."""
    import models

    return models.mlp(batch=64, features=64, hidden=64, classes=32)


def attention_tiled():
    """The attention block at seq 32, width 64, 2 heads: Q/K/V projections and scores take shared-memory tiling."""
    return attention_block(seq=32, dim=64, heads=2)


def odd_matmul():
    """37x71 @ 71x53 (sizes that are not multiples of the 16x16 tile): the plain kernels."""
    import models

    return models.mlp(batch=37, features=71, hidden=53, classes=10)


def fused_matmuls() -> onnx.ModelProto:
    """Contractions with fused producers and more output dimensions than the grid: a batched MatMul [2,3,32,64] @
    [2,3,64,32] of Relu(a) (the Relu is fused into the contraction's body, batch 2 x 3 heads: 3 on blockIdx.z, the 2
    batches in turn inside each block) with a Sigmoid epilogue, and LayerNorm -> MatMul + Add (the normalization is
    fused into the contraction, its per-row statistics are not staged)."""
    from models import GraphBuilder, _input

    g = GraphBuilder("fused_matmuls", seed=14)
    y = g.node("MatMul", [g.node("Relu", ["a"], "prologue/relu"), "b"], "batched/MatMul")
    g.node("Sigmoid", [y], "batched")
    gamma = g.const("ln.weight", g.rng.uniform(0.8, 1.2, 64))
    beta = g.const("ln.bias", g.rng.standard_normal(64) * 0.1)
    t = g.node("LayerNormalization", ["x", gamma, beta], "ln", axis=-1, epsilon=1e-5)
    g.node("Relu", [g.linear(t, 64, 32, "proj")], "projected")
    return g.build([_input("a", [2, 3, 32, 64]), _input("b", [2, 3, 64, 32]), _input("x", [1, 48, 64])], ["batched", "projected"])


def conv_tiled() -> onnx.ModelProto:
    """3x3 convolutions with bias + ReLU fused, 16x16 output pixels: 16 -> 32 and 64 -> 32 channels with pad 1, and
    16 -> 8 channels with stride 2. Their weight slices are staged in shared memory (plan_shared), the (padded)
    images are read from global memory."""
    from models import GraphBuilder, _input

    g = GraphBuilder("conv_tiled", seed=15)
    g.relu(g.conv("x", 16, 32, 3, "conv", pad=1), "relu")
    g.relu(g.conv("z", 64, 32, 3, "deep/conv", pad=1), "deep")  # 64 input channels: two c steps of 32
    # stride 2, no padding, 8 output channels: output rows on thread y, one output channel per block (blockIdx.z)
    g.relu(g.conv("s", 16, 8, 3, "strided/conv", stride=2, pad=0), "strided")
    return g.build([_input("x", [1, 16, 16, 16]), _input("z", [1, 64, 16, 16]), _input("s", [1, 16, 33, 33])],
                   ["relu", "deep", "strided"])


MODELS = {"mlp": mlp, "cnn": cnn, "attention": attention_block, "odd": odd_shapes, "gathers": gathers,
          "mlp_tiled": mlp_tiled, "attention_tiled": attention_tiled, "odd_matmul": odd_matmul, "fused_matmuls": fused_matmuls,
          "conv_tiled": conv_tiled}


@dataclass
class GpuBundle:
    name: str
    precision: str
    path: Path
    model: onnx.ModelProto
    feeds: dict
    expected: dict
    emulators: list[str]


class BundleCache:
    def __init__(self, root: Path):
        self.root = root
        self.cache: dict[tuple[str, str], GpuBundle] = {}
        self._stub: Path | None = None

    @property
    def stub(self) -> Path:
        if self._stub is None:
            self._stub = cuda_stub.build_stub(self.root)
        return self._stub

    def get(self, name: str, precision: str = "fp32", emulate: bool = True) -> GpuBundle:
        key = (name, precision)
        cached = self.cache.get(key)
        if cached is not None and emulate and not cached.emulators:
            cached.emulators = list(cuda_stub.build_emulators(cached.path, self.root / f"emu_{name}_{precision}").values())
        if key not in self.cache:
            from hcc.artifacts.golden import random_inputs, run_onnxruntime
            from hcc.frontend.loader import load_model

            model = MODELS[name]()
            path = self.root / f"{name}.{precision}.onnx"
            onnx.save(model, path)
            bundle = self.root / f"{name}.{precision}.bundle"
            nodes = [n.name for n in model.graph.node]
            compile_groups(path, bundle, [{"id": "sg0", "device": "gpu:sm_90", "nodes": nodes, "device_index": 0}],
                           keep_ir=True, gpu_precision=precision)
            loaded = load_model(str(path), None)
            feeds = random_inputs(loaded.model, loaded.inputs, seed=321)
            expected = run_onnxruntime(loaded.model, feeds)
            emulators = list(cuda_stub.build_emulators(bundle, self.root / f"emu_{name}_{precision}").values()) if emulate else []
            self.cache[key] = GpuBundle(name, precision, bundle, model, feeds, expected, emulators)
        return self.cache[key]


@pytest.fixture(scope="session")
def gpu_bundles(tmp_path_factory) -> BundleCache:
    return BundleCache(tmp_path_factory.mktemp("gpu"))


@pytest.fixture(scope="session")
def stub_lib(gpu_bundles) -> Path:
    return gpu_bundles.stub
