"""The models of the CPU benchmark suite (`tools/bench_suite.py`), built in code with onnx.helper.

Why a suite of generated models: the earlier benchmarks (a MatMul, a 3-conv CNN, an MLP, ResNet-18) had no
attention, recurrence or depthwise convolution, and so hid that hcc was 30x slower than onnxruntime on a BERT
encoder. These are the model families users run, each laid out as its usual exporter (torch.onnx, opset 17) writes
it: a BERT encoder with LayerNormalization, Erf-form GELU and an int64 mask cast to float; MobileNetV2 with ReLU6 as
Clip(0, 6) and batch norm folded into the convolutions (as the eval-mode export does); ResNet-18 with its
BatchNormalization nodes left in (as an unfused export); an LSTM keyword spotter; a U-Net; an embedding+MLP
recommender; small CNNs.

Generating instead of downloading keeps the suite offline, deterministic (fixed seeds) and free of licences, and
lets the sizes change in one place. Weights are random with He/LeCun scaling so that activations stay O(1): the
outputs are finite and non-trivial, which makes the hcc-vs-onnxruntime agreement check meaningful. Where a builder
of tests/models.py fits (ResNet-18, the GraphBuilder helpers), it is imported from there, not copied.

    python tools/bench_models.py OUTDIR [NAME ...]   # writes OUTDIR/NAME.onnx for inspection
"""
from __future__ import annotations

import importlib.util
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto

REPO = Path(__file__).resolve().parent.parent
Feeds = dict[str, np.ndarray]


def test_models() -> ModuleType:
    """tests/models.py (the test suite's builders), imported by path: `tests` is not a package."""
    name = "hcc_tests_models"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "models.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# ---------------------------------------------------------------------------------------------------------------------
# Records and model facts
@dataclass(frozen=True)
class SuiteModel:
    """One benchmark model: how to build it and how to make valid inputs for it."""

    name: str
    family: str
    summary: str  # sizes in one line, for the report
    build: Callable[[], onnx.ModelProto]
    feeds: Callable[[onnx.ModelProto, int], Feeds] | None = None  # None: `default_feeds`
    in_default_run: bool = True  # False: only run when named with --models
    input_shapes: dict[str, list[int]] | None = None  # for a model with dynamic inputs: the shapes it is compiled for

    def make_feeds(self, model: onnx.ModelProto, seed: int) -> Feeds:
        return (self.feeds or default_feeds)(model, seed)


def _dims(value: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value for d in value.type.tensor_type.shape.dim]


def default_feeds(model: onnx.ModelProto, seed: int) -> Feeds:
    """Standard-normal floats; an int64 input that indexes a Gather gets valid indices for that Gather's table."""
    rng = np.random.default_rng(seed)
    tables = {t.name: list(t.dims) for t in model.graph.initializer}
    feeds: Feeds = {}
    for value in model.graph.input:
        shape = _dims(value)
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            feeds[value.name] = rng.standard_normal(shape).astype(np.float32)
            continue
        bound = min((tables[n.input[0]][0] for n in model.graph.node
                     if n.op_type == "Gather" and n.input[1] == value.name and n.input[0] in tables), default=2)
        feeds[value.name] = rng.integers(0, bound, shape).astype(np.int64)
    return feeds


def _shapes(model: onnx.ModelProto) -> dict[str, list[int]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shapes[value.name] = _dims(value)
    return shapes


def _node_flops(node: onnx.NodeProto, shapes: dict[str, list[int]]) -> int:
    """2 x multiply-adds of one Conv, ConvTranspose, Gemm, MatMul or LSTM (other ops count 0)."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    ins = [shapes.get(i, []) for i in node.input]
    if node.op_type == "Conv":
        w = ins[1]
        return 2 * math.prod(shapes[node.output[0]]) * math.prod(w[1:])
    if node.op_type == "ConvTranspose":
        x, w = ins[0], ins[1]
        return 2 * math.prod(x) * math.prod(w[1:])
    if node.op_type == "Gemm":
        a, b = ins[0], ins[1]
        m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
        n = b[0] if attrs.get("transB") else b[1]
        return 2 * m * n * k
    if node.op_type == "MatMul":
        a, out = ins[0], shapes[node.output[0]]
        return 2 * math.prod(out) * a[-1]
    if node.op_type == "LSTM":
        (seq, batch, features), hidden = ins[0], attrs["hidden_size"]
        directions = 2 if attrs.get("direction") == "bidirectional" else 1
        return 2 * seq * batch * directions * 4 * hidden * (features + hidden)
    return 0


def model_flops(model: onnx.ModelProto) -> int:
    """FLOPs of one inference, from the Conv/ConvTranspose/Gemm/MatMul/LSTM shapes (elementwise ops not counted)."""
    shapes = _shapes(model)
    return sum(_node_flops(node, shapes) for node in model.graph.node)


def weight_bytes(model: onnx.ModelProto) -> int:
    return sum(math.prod(t.dims) * 4 for t in model.graph.initializer if t.data_type == TensorProto.FLOAT)


def op_counts(model: onnx.ModelProto) -> str:
    """"Conv x20, Relu x17, ..." ordered by count."""
    return ", ".join(f"{op} x{n}" for op, n in Counter(n.op_type for n in model.graph.node).most_common())


# ---------------------------------------------------------------------------------------------------------------------
# Shared layers (on top of tests/models.py's GraphBuilder)
def _builder(name: str, seed: int):
    return test_models().GraphBuilder(name, seed)


def _input(name: str, shape, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return onnx.helper.make_tensor_value_info(name, elem, list(shape))


def _shared(g, name: str, value, dtype=np.float32) -> str:
    """A constant that many nodes use (exporters write it once): added on first use only."""
    if all(t.name != name for t in g.inits):
        g.const(name, value, dtype)
    return name


def _relu6(g, x: str, name: str) -> str:
    """torch.nn.ReLU6 as torch exports it at opset >= 11: Clip with min/max constants."""
    return g.node("Clip", [x, _shared(g, "clip.min", 0.0), _shared(g, "clip.max", 6.0)], name)


def _layer_norm(g, x: str, dim: int, name: str) -> str:
    prefix = name.replace("/", ".")
    gamma = g.const(f"{prefix}.weight", g.rng.uniform(0.8, 1.2, dim))
    beta = g.const(f"{prefix}.bias", g.rng.standard_normal(dim) * 0.1)
    return g.node("LayerNormalization", [x, gamma, beta], name, axis=-1, epsilon=1e-12)


# ---------------------------------------------------------------------------------------------------------------------
# 1. MLP
def mlp(batch: int) -> onnx.ModelProto:
    """784-1024-512-10: Gemm(transB)+Relu, MatMul+Add+Relu, Gemm (both Linear export forms)."""
    g = _builder(f"mlp_b{batch}", seed=11)
    x = g.relu(g.gemm("x", 784, 1024, "fc1/Gemm"), "fc1/Relu")
    x = g.relu(g.linear(x, 1024, 512, "fc2"), "fc2/Relu")
    g.gemm(x, 512, 10, "logits")
    return g.build([_input("x", [batch, 784])], ["logits"])


# ---------------------------------------------------------------------------------------------------------------------
# 3. MobileNetV2
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def _inverted_residual(g, x: str, cin: int, cout: int, stride: int, expand: int, name: str) -> str:
    """Expand 1x1 + ReLU6, depthwise 3x3 (group=C) + ReLU6, linear 1x1 projection, residual when shapes match."""
    hidden = cin * expand
    y = x
    if expand != 1:
        y = _relu6(g, g.conv(y, cin, hidden, 1, f"{name}/expand", pad=0), f"{name}/expand/relu6")
    y = _relu6(g, g.conv(y, hidden, hidden, 3, f"{name}/dw", stride=stride, group=hidden), f"{name}/dw/relu6")
    y = _scaled_conv(g, y, hidden, cout, f"{name}/project")
    if stride == 1 and cin == cout:
        y = g.node("Add", [x, y], f"{name}/add")
    return y


def _scaled_conv(g, x: str, cin: int, cout: int, name: str) -> str:
    """1x1 conv with LeCun scaling (no activation follows: He scaling would double the variance per block)."""
    prefix = name.replace("/", ".")
    w = g.randn(f"{prefix}.weight", (cout, cin, 1, 1), math.sqrt(0.5 / cin))
    b = g.randn(f"{prefix}.bias", (cout,), 0.1)
    return g.node("Conv", [x, w, b], name, kernel_shape=[1, 1])


def mobilenet_v2(image: int = 224, classes: int = 1000) -> onnx.ModelProto:
    """torchvision MobileNetV2 (width 1.0), batch norm folded into the conv biases as an eval-mode export does."""
    g = _builder("mobilenet_v2", seed=12)
    x = _relu6(g, g.conv("x", 3, 32, 3, "features.0/conv", stride=2), "features.0/relu6")
    cin, index = 32, 1
    for expand, cout, repeats, stride in MOBILENET_V2:
        for i in range(repeats):
            x = _inverted_residual(g, x, cin, cout, stride if i == 0 else 1, expand, f"features.{index}")
            cin, index = cout, index + 1
    x = _relu6(g, g.conv(x, cin, 1280, 1, f"features.{index}/conv", pad=0), f"features.{index}/relu6")
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "avgpool")], "flatten", axis=1)
    g.gemm(x, 1280, classes, "classifier")
    return g.build([_input("x", [1, 3, image, image])], ["classifier"])


# ---------------------------------------------------------------------------------------------------------------------
# 4. BERT-style encoder
@dataclass(frozen=True)
class BertConfig:
    seq: int = 128
    hidden: int = 256
    heads: int = 4
    layers: int = 2
    vocab: int = 30522
    batch: int = 1

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def _bert_embeddings(g, c: BertConfig) -> str:
    """word + token-type (a constant zeros buffer, as exported) + position embeddings, LayerNormalization."""
    word = g.node("Gather", [g.randn("embeddings.word_embeddings.weight", (c.vocab, c.hidden), 0.5), "input_ids"], "embeddings/word")
    types = g.const("embeddings.token_type_ids", np.zeros((c.batch, c.seq)), np.int64)
    typ = g.node("Gather", [g.randn("embeddings.token_type_embeddings.weight", (2, c.hidden), 0.5), types], "embeddings/token_type")
    x = g.node("Add", [word, typ], "embeddings/add")
    pos_ids = g.const("embeddings.position_ids", np.arange(c.seq)[None, :], np.int64)
    pos = g.node("Gather", [g.randn("embeddings.position_embeddings.weight", (512, c.hidden), 0.5), pos_ids], "embeddings/position")
    return _layer_norm(g, g.node("Add", [x, pos], "embeddings/add_position"), c.hidden, "embeddings/LayerNorm")


def _bert_mask(g) -> str:
    """int64 [B, S] 1/0 mask -> additive float [B, 1, 1, S]: (1 - mask) * finfo(float32).min, as transformers does."""
    m = g.node("Unsqueeze", ["attention_mask", g.const("mask.axes", [1, 2], np.int64)], "extended_mask/unsqueeze")
    m = g.node("Cast", [m], "extended_mask/cast", to=TensorProto.FLOAT)
    m = g.node("Sub", [g.const("mask.one", 1.0), m], "extended_mask/sub")
    return g.node("Mul", [m, g.const("mask.min", np.finfo(np.float32).min)], "extended_mask/mul")


def _bert_attention(g, x: str, mask: str, c: BertConfig, name: str) -> str:
    """Self-attention: Q/K/V projections, heads split by Reshape+Transpose (K straight to [B,H,D,S]), scaled masked
    softmax, context merged back, output projection; residual Add and LayerNormalization (post-LN, as BERT)."""
    split = _shared(g, "attention.split_shape", [c.batch, c.seq, c.heads, c.head_dim], np.int64)
    merge = _shared(g, "attention.merge_shape", [c.batch, c.seq, c.hidden], np.int64)

    def heads(which: str, perm: list[int]) -> str:
        t = g.node("Reshape", [g.linear(x, c.hidden, c.hidden, f"{name}/self/{which}"), split], f"{name}/self/{which}/reshape")
        return g.node("Transpose", [t], f"{name}/self/{which}/transpose", perm=perm)

    q, kt, v = heads("query", [0, 2, 1, 3]), heads("key", [0, 2, 3, 1]), heads("value", [0, 2, 1, 3])
    scores = g.node("MatMul", [q, kt], f"{name}/self/scores")
    scores = g.node("Div", [scores, _shared(g, "attention.sqrt_head_dim", math.sqrt(c.head_dim))], f"{name}/self/div")
    probs = g.node("Softmax", [g.node("Add", [scores, mask], f"{name}/self/add_mask")], f"{name}/self/softmax", axis=-1)
    ctx = g.node("Transpose", [g.node("MatMul", [probs, v], f"{name}/self/context")], f"{name}/self/context/transpose", perm=[0, 2, 1, 3])
    ctx = g.node("Reshape", [ctx, merge], f"{name}/self/context/reshape")
    out = g.node("Add", [g.linear(ctx, c.hidden, c.hidden, f"{name}/output/dense"), x], f"{name}/output/residual")
    return _layer_norm(g, out, c.hidden, f"{name}/output/LayerNorm")


def _gelu_erf(g, x: str, name: str) -> str:
    """x * 0.5 * (1 + erf(x / sqrt(2))), the node sequence torch exports for nn.GELU() at opset 17."""
    e = g.node("Erf", [g.node("Div", [x, _shared(g, "gelu.sqrt2", math.sqrt(2.0))], f"{name}/div")], f"{name}/erf")
    e = g.node("Add", [e, _shared(g, "gelu.one", 1.0)], f"{name}/add")
    return g.node("Mul", [g.node("Mul", [x, e], f"{name}/mul"), _shared(g, "gelu.half", 0.5)], f"{name}/mul_half")


def _bert_layer(g, x: str, mask: str, c: BertConfig, index: int) -> str:
    name = f"encoder.layer.{index}"
    x = _bert_attention(g, x, mask, c, f"{name}/attention")
    u = _gelu_erf(g, g.linear(x, c.hidden, 4 * c.hidden, f"{name}/intermediate/dense"), f"{name}/intermediate/gelu")
    out = g.node("Add", [g.linear(u, 4 * c.hidden, c.hidden, f"{name}/output/dense"), x], f"{name}/output/residual")
    return _layer_norm(g, out, c.hidden, f"{name}/output/LayerNorm")


def bert_encoder(c: BertConfig) -> onnx.ModelProto:
    """BertModel as torch exports it: embeddings, `layers` post-LN encoder layers, the Tanh pooler on [CLS].
    Inputs: input_ids, attention_mask (int64 [batch, seq]). Outputs: last_hidden_state, pooler_output."""
    g = _builder(f"bert_h{c.hidden}", seed=13)
    x, mask = _bert_embeddings(g, c), _bert_mask(g)
    for i in range(c.layers):
        x = _bert_layer(g, x, mask, c, i)
    g.node("Identity", [x], "last_hidden_state")
    cls = g.node("Gather", [x, g.const("pooler.cls_index", 0, np.int64)], "pooler/cls", axis=1)
    g.node("Tanh", [g.gemm(cls, c.hidden, c.hidden, "pooler/dense")], "pooler_output")
    ints = TensorProto.INT64
    return g.build([_input("input_ids", [c.batch, c.seq], ints), _input("attention_mask", [c.batch, c.seq], ints)],
                   ["last_hidden_state", "pooler_output"])


def bert_feeds(model: onnx.ModelProto, seed: int) -> Feeds:
    """Token ids across the vocabulary; the mask attends to the first 3/4 of the sequence (the rest is padding)."""
    feeds = default_feeds(model, seed)
    batch, seq = feeds["input_ids"].shape
    mask = np.ones((batch, seq), np.int64)
    mask[:, seq * 3 // 4:] = 0
    feeds["attention_mask"] = mask
    return feeds


# ---------------------------------------------------------------------------------------------------------------------
# 5. LSTM keyword spotter
def lstm_kws(seq: int = 100, features: int = 40, hidden: int = 128, layers: int = 2, classes: int = 12) -> onnx.ModelProto:
    """Stacked forward LSTMs over [seq, 1, features] (zero initial state, as torch exports nn.LSTM), Gemm on the last
    hidden state of the top layer."""
    g = _builder("lstm_kws", seed=14)
    x, size = "x", features
    s = 1.0 / math.sqrt(hidden)
    for i in range(layers):
        w = g.const(f"lstm.{i}.W", g.rng.uniform(-s, s, (1, 4 * hidden, size)))
        r = g.const(f"lstm.{i}.R", g.rng.uniform(-s, s, (1, 4 * hidden, hidden)))
        b = g.const(f"lstm.{i}.B", g.rng.uniform(-s, s, (1, 8 * hidden)))
        zeros = g.const(f"lstm.{i}.initial_state", np.zeros((1, 1, hidden)))
        y, y_h, _ = g.node("LSTM", [x, w, r, b, "", zeros, zeros], f"lstm.{i}", n_out=3, hidden_size=hidden)
        x = g.node("Squeeze", [y, g.const(f"lstm.{i}.squeeze_axes", [1], np.int64)], f"lstm.{i}/squeeze")
        size = hidden
    last = g.node("Squeeze", [y_h, g.const("head.squeeze_axes", [0], np.int64)], "head/squeeze")
    g.gemm(last, hidden, classes, "logits")
    return g.build([_input("x", [seq, 1, features])], ["logits"])


# ---------------------------------------------------------------------------------------------------------------------
# 6. U-Net
def _double_conv(g, x: str, cin: int, cout: int, name: str) -> str:
    x = g.relu(g.conv(x, cin, cout, 3, f"{name}/conv1"), f"{name}/relu1")
    return g.relu(g.conv(x, cout, cout, 3, f"{name}/conv2"), f"{name}/relu2")


def _up(g, x: str, skip: str, cin: int, cout: int, name: str, mode: str) -> str:
    """2x up by ConvTranspose 2x2/2 or nearest Resize + 1x1 conv, Concat with the skip, double conv."""
    if mode == "deconv":
        w = g.randn(f"{name}.up.weight", (cin, cout, 2, 2), math.sqrt(1.0 / cin))
        up = g.node("ConvTranspose", [x, w, g.randn(f"{name}.up.bias", (cout,), 0.1)], f"{name}/up", kernel_shape=[2, 2], strides=[2, 2])
    else:
        scales = g.const(f"{name}.up.scales", [1.0, 1.0, 2.0, 2.0])
        up = g.node("Resize", [x, "", scales], f"{name}/resize", mode="nearest")
        up = g.conv(up, cin, cout, 1, f"{name}/up", pad=0)
    return _double_conv(g, g.node("Concat", [up, skip], f"{name}/concat", axis=1), 2 * cout, cout, name)


def unet(image: int = 128, base: int = 16, classes: int = 2) -> onnx.ModelProto:
    """3 down levels (double 3x3 conv + MaxPool), bottleneck, 3 up levels alternating ConvTranspose and Resize."""
    g = _builder("unet", seed=15)
    skips, x, cin = [], "x", 3
    for level in range(3):
        x = _double_conv(g, x, cin, base << level, f"down{level}")
        skips.append((x, base << level))
        x = g.node("MaxPool", [x], f"down{level}/pool", kernel_shape=[2, 2], strides=[2, 2])
        cin = base << level
    x = _double_conv(g, x, cin, base << 3, "bottleneck")
    cin = base << 3
    for level in reversed(range(3)):
        skip, channels = skips[level]
        x = _up(g, x, skip, cin, channels, f"up{level}", "deconv" if level % 2 == 0 else "resize")
        cin = channels
    g.conv(x, cin, classes, 1, "head", pad=0)
    return g.build([_input("x", [1, 3, image, image])], ["head"])


# ---------------------------------------------------------------------------------------------------------------------
# 7. Embedding + MLP recommender
RECSYS_TABLES = (100000, 50000, 20000, 10000, 5000, 1000, 200, 10)


def recsys(batch: int = 256, dense: int = 13, dim: int = 32, tables=RECSYS_TABLES) -> onnx.ModelProto:
    """DLRM-like: bottom MLP on dense features, one Gather per categorical feature (int64 ids [batch]), Concat,
    top MLP, Sigmoid click probability."""
    g = _builder("recsys", seed=16)
    x = g.relu(g.gemm("dense", dense, 128, "bottom.0"), "bottom.0/relu")
    parts = [g.relu(g.gemm(x, 128, dim, "bottom.1"), "bottom.1/relu")]
    for i, rows in enumerate(tables):
        table = g.randn(f"emb.{i}.weight", (rows, dim), 0.5)
        parts.append(g.node("Gather", [table, f"cat_{i}"], f"emb.{i}/gather"))
    x = g.node("Concat", parts, "interaction/concat", axis=1)
    for i, (fin, fout) in enumerate([(dim * (len(tables) + 1), 256), (256, 128)]):
        x = g.relu(g.gemm(x, fin, fout, f"top.{i}"), f"top.{i}/relu")
    g.node("Sigmoid", [g.gemm(x, 128, 1, "top.2")], "click_probability")
    inputs = [_input("dense", [batch, dense])] + [_input(f"cat_{i}", [batch], TensorProto.INT64) for i in range(len(tables))]
    return g.build(inputs, ["click_probability"])


# ---------------------------------------------------------------------------------------------------------------------
# 8. Small CNNs
def ds_cnn(classes: int = 12, blocks: int = 4, channels: int = 64) -> onnx.ModelProto:
    """DS-CNN keyword spotter (Hello Edge) on 49x10 MFCCs: 10x4/2 conv, depthwise-separable blocks, average pool."""
    g = _builder("ds_cnn", seed=17)
    w = g.randn("conv0.weight", (channels, 1, 10, 4), math.sqrt(2.0 / 40))
    x = g.node("Conv", ["x", w, g.randn("conv0.bias", (channels,), 0.1)], "conv0", kernel_shape=[10, 4], strides=[2, 2], pads=[4, 1, 5, 2])
    x = g.relu(x, "conv0/relu")
    for i in range(blocks):
        x = g.relu(g.conv(x, channels, channels, 3, f"block{i}/dw", group=channels), f"block{i}/dw/relu")
        x = g.relu(g.conv(x, channels, channels, 1, f"block{i}/pw", pad=0), f"block{i}/pw/relu")
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "avgpool")], "flatten", axis=1)
    g.gemm(x, channels, classes, "logits")
    return g.build([_input("x", [1, 1, 49, 10])], ["logits"])


def lenet5() -> onnx.ModelProto:
    """LeNet-5 on 1x1x32x32 (Relu and MaxPool, as in the PyTorch tutorials)."""
    g = _builder("lenet5", seed=18)
    x = "x"
    for i, (cin, cout) in enumerate([(1, 6), (6, 16)]):
        x = g.relu(g.conv(x, cin, cout, 5, f"conv{i + 1}", pad=0), f"conv{i + 1}/relu")
        x = g.node("MaxPool", [x], f"pool{i + 1}", kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Flatten", [x], "flatten", axis=1)
    x = g.relu(g.gemm(x, 16 * 5 * 5, 120, "fc1"), "fc1/relu")
    x = g.relu(g.gemm(x, 120, 84, "fc2"), "fc2/relu")
    g.gemm(x, 84, 10, "fc3")
    return g.build([_input("x", [1, 1, 32, 32])], ["fc3"])


# ---------------------------------------------------------------------------------------------------------------------
def suite() -> list[SuiteModel]:
    """Every model, in report order."""
    small, base = BertConfig(), BertConfig(hidden=768, heads=12)
    return [
        SuiteModel("mlp_b1", "MLP", "784-1024-512-10, batch 1", lambda: mlp(1)),
        SuiteModel("mlp_b64", "MLP", "784-1024-512-10, batch 64", lambda: mlp(64)),
        SuiteModel("resnet18", "CNN", "ResNet-18, 1x3x224x224, unfused BatchNormalization", lambda: test_models().resnet18()),
        SuiteModel("mobilenet_v2", "CNN (depthwise)", "MobileNetV2 1.0, 1x3x224x224, BN folded", mobilenet_v2),
        SuiteModel("bert_h256", "Transformer", "BERT encoder, seq 128, hidden 256, 4 heads, 2 layers", lambda: bert_encoder(small), bert_feeds),
        SuiteModel("bert_h768", "Transformer", "BERT-base width, seq 128, hidden 768, 12 heads, 2 layers", lambda: bert_encoder(base), bert_feeds),
        SuiteModel("lstm_kws", "RNN", "2-layer LSTM, seq 100, batch 1, 40 features, hidden 128", lstm_kws),
        SuiteModel("unet", "Encoder-decoder", "U-Net, 1x3x128x128, base 16, 3 levels", unet),
        SuiteModel("recsys", "Recommender", "8 embedding tables (dim 32) + 13 dense, MLP, batch 256", recsys),
        SuiteModel("ds_cnn", "CNN (depthwise)", "DS-CNN keyword spotter, 1x1x49x10, 4 dw-separable blocks", ds_cnn),
        SuiteModel("lenet5", "CNN", "LeNet-5, 1x1x32x32", lenet5),
    ]


def by_name(names: list[str] | None) -> list[SuiteModel]:
    """The named models (in suite order), or the default run; an unknown name is a ValueError listing the known ones."""
    models = suite()
    if not names:
        return [m for m in models if m.in_default_run]
    known = {m.name for m in models}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [m for m in models if m.name in names]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[-1].strip())
        return 2
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for spec in by_name(argv[2:] or None):
        model = spec.build()
        onnx.save(model, out / f"{spec.name}.onnx")
        print(f"{out / spec.name}.onnx: {model_flops(model) / 1e9:.3f} GFLOP, {weight_bytes(model) / 1e6:.1f} MB; {op_counts(model)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
