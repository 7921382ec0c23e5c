"""Deterministic model builders for the end-to-end tests (onnx.helper + numpy, fixed seeds, opset 17, IR version 8).

Every builder returns a checked `onnx.ModelProto` with shape-inferred outputs. Node names follow the PyTorch-export
style ("layer1.0/conv1"), weights are named after their node ("layer1.0.conv1.weight"), so the tests also exercise
name handling through lifting, import, lowering and the bundle manifest.
"""
from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper
from onnx import helper as h

OPSET = 17
IR_VERSION = 8


class GraphBuilder:
    """Collects nodes and initializers; each helper returns the name of the tensor it produces."""

    def __init__(self, name: str, seed: int):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    # -- primitives ----------------------------------------------------------------------------------------------
    def const(self, name: str, value, dtype=np.float32) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def randn(self, name: str, shape, std: float = 1.0) -> str:
        return self.const(name, self.rng.standard_normal(shape) * std)

    def node(self, op: str, inputs: list[str], name: str, n_out: int = 1, **attrs):
        outputs = [name] if n_out == 1 else [f"{name}:{i}" for i in range(n_out)]
        self.nodes.append(h.make_node(op, inputs, outputs, name=name, **attrs))
        return outputs[0] if n_out == 1 else outputs

    # -- layers --------------------------------------------------------------------------------------------------
    def conv(self, x: str, cin: int, cout: int, k: int, name: str, stride: int = 1, pad: int | None = None,
             group: int = 1, bias: bool = True) -> str:
        pad = k // 2 if pad is None else pad
        prefix = name.replace("/", ".")
        fan_in = cin // group * k * k
        inputs = [x, self.randn(f"{prefix}.weight", (cout, cin // group, k, k), math.sqrt(2.0 / fan_in))]
        if bias:
            inputs.append(self.randn(f"{prefix}.bias", (cout,), 0.1))
        return self.node("Conv", inputs, name, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)

    def bn(self, x: str, c: int, name: str) -> str:
        prefix = name.replace("/", ".")
        inputs = [
            x,
            self.const(f"{prefix}.weight", self.rng.uniform(0.5, 1.2, c)),
            self.const(f"{prefix}.bias", self.rng.standard_normal(c) * 0.1),
            self.const(f"{prefix}.running_mean", self.rng.standard_normal(c) * 0.1),
            self.const(f"{prefix}.running_var", self.rng.uniform(0.5, 1.5, c)),
        ]
        return self.node("BatchNormalization", inputs, name, epsilon=1e-5)

    def relu(self, x: str, name: str) -> str:
        return self.node("Relu", [x], name)

    def gemm(self, x: str, fin: int, fout: int, name: str) -> str:
        """PyTorch nn.Linear export: Gemm with transB=1."""
        prefix = name.replace("/", ".")
        w = self.randn(f"{prefix}.weight", (fout, fin), math.sqrt(1.0 / fin))
        b = self.randn(f"{prefix}.bias", (fout,), 0.1)
        return self.node("Gemm", [x, w, b], name, transB=1)

    def linear(self, x: str, fin: int, fout: int, name: str) -> str:
        """Transformer-style linear layer: MatMul by a [fin, fout] weight, then Add of the bias."""
        prefix = name.replace("/", ".")
        w = self.randn(f"{prefix}.weight", (fin, fout), math.sqrt(1.0 / fin))
        b = self.randn(f"{prefix}.bias", (fout,), 0.1)
        return self.node("Add", [self.node("MatMul", [x, w], f"{name}/MatMul"), b], f"{name}/Add")

    # -- result --------------------------------------------------------------------------------------------------
    def build(self, inputs: list[onnx.ValueInfoProto], outputs: list[str | tuple[str, int]]) -> onnx.ModelProto:
        outs = [(o, TensorProto.FLOAT) if isinstance(o, str) else o for o in outputs]
        graph = h.make_graph(self.nodes, self.name, inputs, [h.make_tensor_value_info(n, t, None) for n, t in outs], self.inits)
        model = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)], ir_version=IR_VERSION, producer_name="hcc-tests")
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
        for declared, full in zip(model.graph.output, inferred.graph.output):
            declared.CopyFrom(full)
        onnx.checker.check_model(model, full_check=True)
        return model


def _input(name: str, shape, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return h.make_tensor_value_info(name, elem, list(shape))


# ---------------------------------------------------------------------------------------------------------------------
def mlp(batch: int | str = 4, features: int = 32, hidden: int = 64, classes: int = 10) -> onnx.ModelProto:
    """Gemm+Relu, MatMul+Add+Relu, Gemm. `batch` may be a dim_param name (e.g. "N") for a dynamic batch."""
    g = GraphBuilder("mlp", seed=1)
    x = g.relu(g.gemm("x", features, hidden, "fc1/Gemm"), "fc1/Relu")
    x = g.relu(g.linear(x, hidden, hidden, "fc2"), "fc2/Relu")
    g.gemm(x, hidden, classes, "logits")
    return g.build([_input("x", [batch, features])], ["logits"])


def cnn(image: int = 32, classes: int = 10) -> onnx.ModelProto:
    """Two Conv-BN-Relu-MaxPool stages, Flatten, two Gemm layers."""
    g = GraphBuilder("cnn", seed=2)
    x = "x"
    for i, (cin, cout) in enumerate([(3, 8), (8, 16)], start=1):
        x = g.conv(x, cin, cout, 3, f"features.{i}/conv", bias=False)
        x = g.relu(g.bn(x, cout, f"features.{i}/bn"), f"features.{i}/relu")
        x = g.node("MaxPool", [x], f"features.{i}/pool", kernel_shape=[2, 2], strides=[2, 2])
    x = g.node("Flatten", [x], "flatten", axis=1)
    side = image // 4
    x = g.relu(g.gemm(x, 16 * side * side, 32, "classifier.0/Gemm"), "classifier.0/Relu")
    g.gemm(x, 32, classes, "logits")
    return g.build([_input("x", [1, 3, image, image])], ["logits"])


def separable_cnn(image: tuple[int, int] = (12, 10), channels: int = 64, blocks: int = 2, classes: int = 5) -> onnx.ModelProto:
    """A depthwise-separable CNN (keyword-spotter style): a stem conv, then depthwise 3x3 + pointwise 1x1 blocks with
    Relu, global average pooling and a Gemm head; with 64 channels every convolution hands its output to the next in
    16-channel blocks."""
    g = GraphBuilder("separable_cnn", seed=7)
    x = g.relu(g.conv("x", 1, channels, 5, "stem", stride=2), "stem/relu")  # 25 taps: the filter-vector kernel
    for i in range(blocks):
        x = g.relu(g.conv(x, channels, channels, 3, f"block{i}/dw", group=channels), f"block{i}/dw/relu")
        x = g.relu(g.conv(x, channels, channels, 1, f"block{i}/pw"), f"block{i}/pw/relu")
    x = g.node("Flatten", [g.node("GlobalAveragePool", [x], "pool")], "flatten", axis=1)
    g.gemm(x, channels, classes, "logits")
    return g.build([_input("x", [1, 1, *image])], ["logits"])


def _basic_block(g: GraphBuilder, x: str, cin: int, cout: int, stride: int, name: str) -> str:
    """ResNet BasicBlock: Conv-BN-Relu-Conv-BN (+ 1x1 Conv-BN downsample when the shape changes), Add, Relu."""
    y = g.conv(x, cin, cout, 3, f"{name}/conv1", stride=stride, bias=False)
    y = g.relu(g.bn(y, cout, f"{name}/bn1"), f"{name}/relu1")
    y = g.bn(g.conv(y, cout, cout, 3, f"{name}/conv2", bias=False), cout, f"{name}/bn2")
    skip = x
    if stride != 1 or cin != cout:
        skip = g.bn(g.conv(x, cin, cout, 1, f"{name}/downsample.0", stride=stride, bias=False), cout, f"{name}/downsample.1")
    return g.relu(g.node("Add", [y, skip], f"{name}/add"), f"{name}/relu2")


def residual_block(channels: int = 16, image: int = 16) -> onnx.ModelProto:
    g = GraphBuilder("residual_block", seed=3)
    _basic_block(g, "x", channels, channels, 1, "block")
    return g.build([_input("x", [1, channels, image, image])], ["block/relu2"])


def transformer_block(vocab: int = 50, seq: int = 8, dim: int = 32, heads: int = 4, batch: int = 1,
                      gelu: str = "erf") -> onnx.ModelProto:
    """Pre-LN encoder block: token + positional embeddings, masked multi-head self-attention, GELU MLP.

    Inputs: `input_ids` int64 [batch, seq]; `attention_mask` float [batch, seq], 1 = attend, 0 = padding, applied
    additively to the attention scores ((mask - 1) * 1e4, the BERT convention). Output: `hidden` [batch, seq, dim].
    `gelu="erf"` is the exact form x*0.5*(1+Erf(x/sqrt2)) (BERT); `gelu="tanh"` the tanh approximation (GPT-2),
    0.5*x*(1+Tanh(sqrt(2/pi)*(x+0.044715*x^3))), built from primitive ops as exporters emit it.
    """
    g = GraphBuilder("transformer_block", seed=4)
    hd = dim // heads
    tok = g.node("Gather", [g.randn("embeddings.word.weight", (vocab, dim), 0.5), "input_ids"], "embeddings/word")
    pos_ids = g.const("embeddings.position_ids", np.arange(seq), np.int64)
    pos = g.node("Gather", [g.randn("embeddings.position.weight", (seq, dim), 0.5), pos_ids], "embeddings/position")
    x = g.node("Add", [tok, pos], "embeddings/add")

    def layer_norm(t: str, name: str) -> str:
        prefix = name.replace("/", ".")
        gamma = g.const(f"{prefix}.weight", g.rng.uniform(0.8, 1.2, dim))
        beta = g.const(f"{prefix}.bias", g.rng.standard_normal(dim) * 0.1)
        return g.node("LayerNormalization", [t, gamma, beta], name, axis=-1, epsilon=1e-5)

    # additive mask [batch, 1, 1, seq]
    one = g.const("attn.one", 1.0)
    neg = g.const("attn.mask_value", 1e4)
    m = g.node("Sub", ["attention_mask", one], "attn/mask/sub")
    m = g.node("Mul", [m, neg], "attn/mask/scale")
    m = g.node("Unsqueeze", [m, g.const("attn.mask_axes", [1, 2], np.int64)], "attn/mask/unsqueeze")

    split_shape = g.const("attn.split_shape", [batch, seq, heads, hd], np.int64)
    merge_shape = g.const("attn.merge_shape", [batch, seq, dim], np.int64)
    ln1 = layer_norm(x, "attn/ln")

    def heads_of(name: str) -> str:
        t = g.linear(ln1, dim, dim, f"attn/{name}")
        t = g.node("Reshape", [t, split_shape], f"attn/{name}/split_heads")
        return g.node("Transpose", [t], f"attn/{name}/transpose", perm=[0, 2, 1, 3])  # [b, h, s, hd]

    q, k, v = heads_of("query"), heads_of("key"), heads_of("value")
    kt = g.node("Transpose", [k], "attn/key/transpose_t", perm=[0, 1, 3, 2])
    scores = g.node("MatMul", [q, kt], "attn/scores")
    scores = g.node("Div", [scores, g.const("attn.sqrt_head_dim", math.sqrt(hd))], "attn/scale")
    scores = g.node("Add", [scores, m], "attn/mask")
    probs = g.node("Softmax", [scores], "attn/softmax", axis=-1)
    ctx = g.node("MatMul", [probs, v], "attn/context")
    ctx = g.node("Transpose", [ctx], "attn/context/transpose", perm=[0, 2, 1, 3])
    ctx = g.node("Reshape", [ctx, merge_shape], "attn/context/merge_heads")
    x = g.node("Add", [x, g.linear(ctx, dim, dim, "attn/output")], "attn/residual")

    ln2 = layer_norm(x, "mlp/ln")
    u = g.linear(ln2, dim, 4 * dim, "mlp/fc1")
    if gelu == "erf":  # u * 0.5 * (1 + erf(u / sqrt(2)))
        e = g.node("Erf", [g.node("Div", [u, g.const("mlp.gelu.sqrt2", math.sqrt(2.0))], "mlp/gelu/div")], "mlp/gelu/erf")
    elif gelu == "tanh":  # u * 0.5 * (1 + tanh(sqrt(2/pi) * (u + 0.044715 * u^3)))
        cube = g.node("Pow", [u, g.const("mlp.gelu.three", 3.0)], "mlp/gelu/pow")
        inner = g.node("Add", [u, g.node("Mul", [cube, g.const("mlp.gelu.coef", 0.044715)], "mlp/gelu/mul_coef")], "mlp/gelu/add_cube")
        inner = g.node("Mul", [inner, g.const("mlp.gelu.sqrt_2_over_pi", math.sqrt(2.0 / math.pi))], "mlp/gelu/scale")
        e = g.node("Tanh", [inner], "mlp/gelu/tanh")
    else:
        raise ValueError(f"gelu must be 'erf' or 'tanh', not {gelu!r}")
    e = g.node("Add", [e, g.const("mlp.gelu.one", 1.0)], "mlp/gelu/add")
    gelu = g.node("Mul", [g.node("Mul", [u, e], "mlp/gelu/mul"), g.const("mlp.gelu.half", 0.5)], "mlp/gelu/half")
    x = g.node("Add", [x, g.linear(gelu, 4 * dim, dim, "mlp/fc2")], "mlp/residual")
    g.node("Identity", [layer_norm(x, "final/ln")], "hidden")
    return g.build([_input("input_ids", [batch, seq], TensorProto.INT64), _input("attention_mask", [batch, seq])], ["hidden"])


def transformer_feeds(vocab: int = 50, seq: int = 8, batch: int = 1, pad: int = 3, seed: int = 5) -> dict[str, np.ndarray]:
    """Valid inputs for `transformer_block`: token ids below `vocab`, and a 0/1 mask whose last `pad` tokens are padding."""
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, seq), np.float32)
    mask[:, seq - pad:] = 0.0
    return {"input_ids": rng.integers(0, vocab, (batch, seq)).astype(np.int64), "attention_mask": mask}


def lstm_model(seq: int = 6, batch: int = 2, features: int = 8, hidden: int = 16, classes: int = 4) -> onnx.ModelProto:
    """One forward LSTM layer (W, R, B, initial_h, initial_c) and a Gemm head on the last hidden state.

    Outputs: `logits` [batch, classes] and the full sequence output `sequence` [seq, batch, hidden].
    """
    g = GraphBuilder("lstm_model", seed=6)
    s = 1.0 / math.sqrt(hidden)
    w = g.const("lstm.W", g.rng.uniform(-s, s, (1, 4 * hidden, features)))
    r = g.const("lstm.R", g.rng.uniform(-s, s, (1, 4 * hidden, hidden)))
    b = g.const("lstm.B", g.rng.uniform(-s, s, (1, 8 * hidden)))
    h0 = g.const("lstm.initial_h", g.rng.standard_normal((1, batch, hidden)) * 0.1)
    c0 = g.const("lstm.initial_c", g.rng.standard_normal((1, batch, hidden)) * 0.1)
    y, y_h, _y_c = g.node("LSTM", ["x", w, r, b, "", h0, c0], "lstm", n_out=3, hidden_size=hidden, direction="forward")
    g.node("Squeeze", [y, g.const("lstm.squeeze_axes", [1], np.int64)], "sequence")
    last = g.node("Squeeze", [y_h, g.const("head.squeeze_axes", [0], np.int64)], "head/squeeze")
    g.gemm(g.relu(last, "head/relu"), hidden, classes, "logits")
    return g.build([_input("x", [seq, batch, features])], ["logits", "sequence"])


def unet_block(image: int = 16, base: int = 8) -> onnx.ModelProto:
    """Two-level U-Net: Conv/MaxPool down, ConvTranspose and Resize (nearest) up with Concat skips, and a
    bilinear-Resize side branch from the bottleneck added to the head."""
    g = GraphBuilder("unet_block", seed=7)

    def conv_relu(x: str, cin: int, cout: int, name: str) -> str:
        return g.relu(g.conv(x, cin, cout, 3, f"{name}/conv"), f"{name}/relu")

    e1 = conv_relu("x", 3, base, "down1")  # [1, base, H, W]
    p1 = g.node("MaxPool", [e1], "down1/pool", kernel_shape=[2, 2], strides=[2, 2])
    e2 = conv_relu(p1, base, 2 * base, "down2")  # [1, 2b, H/2, W/2]
    p2 = g.node("MaxPool", [e2], "down2/pool", kernel_shape=[2, 2], strides=[2, 2])
    mid = conv_relu(p2, 2 * base, 2 * base, "bottleneck")  # [1, 2b, H/4, W/4]

    c = 2 * base
    wt = g.randn("up1.deconv.weight", (c, c, 2, 2), math.sqrt(1.0 / (c * 4)))
    bt = g.randn("up1.deconv.bias", (c,), 0.1)
    u1 = g.node("ConvTranspose", [mid, wt, bt], "up1/deconv", kernel_shape=[2, 2], strides=[2, 2])  # [1, 2b, H/2, W/2]
    u1 = conv_relu(g.node("Concat", [u1, e2], "up1/concat", axis=1), 4 * base, base, "up1")

    roi = g.const("resize.roi", [], np.float32)
    scales = g.const("resize.scales_x2", [1.0, 1.0, 2.0, 2.0])
    u2 = g.node("Resize", [u1, roi, scales], "up2/resize", mode="nearest")  # [1, b, H, W]
    u2 = conv_relu(g.node("Concat", [u2, e1], "up2/concat", axis=1), 2 * base, base, "up2")

    scales4 = g.const("resize.scales_x4", [1.0, 1.0, 4.0, 4.0])
    side = g.node("Resize", [mid, roi, scales4], "side/resize", mode="linear", coordinate_transformation_mode="half_pixel")
    side = g.conv(side, 2 * base, base, 1, "side/conv", pad=0)
    out = g.node("Add", [u2, side], "head/add")
    g.conv(out, base, 2, 1, "head/conv", pad=0)
    return g.build([_input("x", [1, 3, image, image])], ["head/conv"])


def resnet18(image: int = 224, classes: int = 1000, batch: int = 1) -> onnx.ModelProto:
    """ResNet-18 (torchvision layout: 7x7/2 stem, MaxPool, 4 stages of 2 BasicBlocks, GlobalAveragePool, Gemm)."""
    g = GraphBuilder("resnet18", seed=8)
    x = g.conv("x", 3, 64, 7, "conv1", stride=2, pad=3, bias=False)
    x = g.relu(g.bn(x, 64, "bn1"), "relu")
    x = g.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = 64
    for stage, cout in enumerate([64, 128, 256, 512], start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            x = _basic_block(g, x, cin, cout, stride, f"layer{stage}.{block}")
            cin = cout
    x = g.node("GlobalAveragePool", [x], "avgpool")
    x = g.node("Flatten", [x], "flatten", axis=1)
    g.gemm(x, 512, classes, "fc")
    return g.build([_input("x", [batch, 3, image, image])], ["fc"])


ALL = {
    "mlp": mlp, "cnn": cnn, "residual_block": residual_block, "transformer_block": transformer_block,
    "lstm_model": lstm_model, "unet_block": unet_block, "resnet18": resnet18,
}
