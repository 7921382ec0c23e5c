#!/usr/bin/env python
"""Variants of the benchmark families, exported by torch with both exporters: other sizes, batches, layouts and the
layers the suite lacks, to find where hcc falls behind on models no test has seen.

    .venv-torch/bin/python tools/export_torch_variants.py OUT_DIR [NAME,...]   # `make bench-torch-variants` runs it

tools/export_torch_models.py exports each family once, at the size the suite uses; users run the same families at
other sizes (a ResNet-50, MobileNetV2 at widths 0.5 and 1.4, BERT at other sequence lengths and batches, a batch-4
bidirectional LSTM, a 4-level U-Net with bilinear upsampling, DLRM's pairwise interactions, LeNet-5 with tanh and
average pooling, DS-CNN-L's 276 channels) and with layers the suite has none of (MobileNetV3's hardswish and
squeeze-excitation, a causal GPT decoder, a ViT with 197 tokens, a 1-D audio CNN, EfficientNet-B0's SiLU and
squeeze-excitation, ConvNeXt's 7x7 depthwise and channels-last LayerNorm, a YOLOv8-style detector's C2f, SPPF and
upsampling, wav2vec 2.0's Conv1d feature encoder with GroupNorm). Each module is exported as
`NAME_ts.onnx` (TorchScript exporter, opset 17) and `NAME_dyn.onnx` (dynamo, opset 18); random weights (seed 0),
batch norm statistics randomised. A module torch cannot export with one exporter is reported and skipped.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_torch_models import (  # noqa: E402
    HandBert,
    InvertedResidual,
    KeywordGRU,
    ResNet18,
    TorchEncoder,
    _double_conv,
    _eval_with_random_statistics,
    export_both,
)


def _width(channels: int, multiplier: float) -> int:
    """torchvision's channel rounding: a multiple of 8, at least 8."""
    return max(8, int(channels * multiplier + 4) // 8 * 8)


class MobileNetV2Width(nn.Module):
    def __init__(self, multiplier: float):
        super().__init__()
        cin = _width(32, multiplier)
        layers = [nn.Conv2d(3, cin, 3, 2, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU6()]
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                layers.append(InvertedResidual(cin, _width(c, multiplier), s if i == 0 else 1, t))
                cin = _width(c, multiplier)
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()]
        self.features, self.fc = nn.Sequential(*layers), nn.Linear(1280, 1000)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        reduced = _width(channels // 4, 1)
        self.a, self.b = nn.Conv2d(channels, reduced, 1), nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        return x * F.hardsigmoid(self.b(F.relu(self.a(F.adaptive_avg_pool2d(x, 1)))))


class V3Block(nn.Module):
    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, hardswish: bool, stride: int):
        super().__init__()
        act = nn.Hardswish if hardswish else nn.ReLU
        layers = [] if expanded == cin else [nn.Conv2d(cin, expanded, 1, bias=False), nn.BatchNorm2d(expanded), act()]
        layers += [nn.Conv2d(expanded, expanded, kernel, stride, kernel // 2, groups=expanded, bias=False),
                   nn.BatchNorm2d(expanded), act()]
        if se:
            layers.append(SqueezeExcite(expanded))
        layers += [nn.Conv2d(expanded, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.f, self.residual = nn.Sequential(*layers), stride == 1 and cin == cout

    def forward(self, x):
        return x + self.f(x) if self.residual else self.f(x)


class MobileNetV3Small(nn.Module):
    def __init__(self):
        super().__init__()
        blocks = [(16, 3, 16, 16, 1, 0, 2), (16, 3, 72, 24, 0, 0, 2), (24, 3, 88, 24, 0, 0, 1), (24, 5, 96, 40, 1, 1, 2),
                  (40, 5, 240, 40, 1, 1, 1), (40, 5, 240, 40, 1, 1, 1), (40, 5, 120, 48, 1, 1, 1), (48, 5, 144, 48, 1, 1, 1),
                  (48, 5, 288, 96, 1, 1, 2), (96, 5, 576, 96, 1, 1, 1), (96, 5, 576, 96, 1, 1, 1)]
        layers = [nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish()]
        layers += [V3Block(*b) for b in blocks] + [nn.Conv2d(96, 576, 1, bias=False), nn.BatchNorm2d(576), nn.Hardswish()]
        self.f = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Linear(1024, 1000))

    def forward(self, x):
        return self.head(F.adaptive_avg_pool2d(self.f(x), 1).flatten(1))


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int):
        super().__init__()
        cout = mid * 4
        self.f = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                               nn.Conv2d(mid, mid, 3, stride, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                               nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        same = stride == 1 and cin == cout
        self.short = nn.Sequential() if same else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.f(x) + self.short(x))


class ResNet50(nn.Module):
    def __init__(self):
        super().__init__()
        layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
        cin = 64
        for mid, n, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
            for i in range(n):
                layers.append(Bottleneck(cin, mid, stride if i == 0 else 1))
                cin = mid * 4
        self.f, self.fc = nn.Sequential(*layers), nn.Linear(2048, 1000)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.f(x), 1).flatten(1))


class GPT(nn.Module):
    """A pre-LN causal decoder (GPT-2's layout): fused q/k/v Linear, an additive causal mask, tanh GELU."""

    def __init__(self, hidden: int = 256, layers: int = 2, heads: int = 4, vocab: int = 5000, seq: int = 128):
        super().__init__()
        self.hidden, self.heads = hidden, heads
        self.tok, self.pos = nn.Embedding(vocab, hidden), nn.Embedding(1024, hidden)

        def linears(cin, cout):
            return nn.ModuleList(nn.Linear(cin, cout) for _ in range(layers))
        self.qkv, self.o = linears(hidden, 3 * hidden), linears(hidden, hidden)
        self.up, self.down = linears(hidden, 4 * hidden), linears(4 * hidden, hidden)
        self.ln1, self.ln2 = (nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers)) for _ in range(2))
        self.lnf, self.head = nn.LayerNorm(hidden), nn.Linear(hidden, vocab, bias=False)
        self.register_buffer("mask", torch.triu(torch.full((seq, seq), float("-inf")), 1))

    def forward(self, ids):
        batch, seq = ids.shape
        d = self.hidden // self.heads
        x = self.tok(ids) + self.pos(torch.arange(seq).unsqueeze(0))
        for i in range(len(self.qkv)):
            q, k, v = (t.view(batch, seq, self.heads, d).transpose(1, 2) for t in self.qkv[i](self.ln1[i](x)).split(self.hidden, -1))
            attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + self.mask[:seq, :seq], -1) @ v
            x = x + self.o[i](attn.transpose(1, 2).reshape(batch, seq, self.hidden))
            x = x + self.down[i](F.gelu(self.up[i](self.ln2[i](x)), approximate="tanh"))
        return self.head(self.lnf(x[:, -1]))


class ViT(nn.Module):
    """ViT-Tiny's layout: 16x16 patches by a strided convolution, a class token (197 tokens), pre-LN encoder layers."""

    def __init__(self, hidden: int = 192, layers: int = 4, heads: int = 3, image: int = 224, patch: int = 16):
        super().__init__()
        self.patch = nn.Conv2d(3, hidden, patch, patch)
        tokens = (image // patch) ** 2
        self.cls, self.pos = nn.Parameter(torch.randn(1, 1, hidden)), nn.Parameter(torch.randn(1, tokens + 1, hidden))
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm, self.fc = nn.LayerNorm(hidden), nn.Linear(hidden, 1000)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
        return self.fc(self.norm(self.encoder(x))[:, 0])


class RecurrentClassifier(nn.Module):
    """A (bidirectional) LSTM over batch-first frames, averaged over time, then a Linear."""

    def __init__(self, features: int = 40, hidden: int = 64, layers: int = 1, bidirectional: bool = True, classes: int = 12):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, layers, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(hidden * (2 if bidirectional else 1), classes)

    def forward(self, x):
        return self.fc(self.lstm(x)[0].mean(1))


class BilinearUNet(nn.Module):
    """Four levels, bilinear upsampling (align_corners=False) instead of transposed convolutions."""

    def __init__(self, c: int = 32):
        super().__init__()
        self.down = nn.ModuleList([_double_conv(3, c), _double_conv(c, 2 * c), _double_conv(2 * c, 4 * c), _double_conv(4 * c, 8 * c)])
        self.up = nn.ModuleList([_double_conv(12 * c, 4 * c), _double_conv(6 * c, 2 * c), _double_conv(3 * c, c)])
        self.out = nn.Conv2d(c, 1, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False), skip], 1))
        return torch.sigmoid(self.out(x))


class GeluMLP(nn.Module):
    def __init__(self, dims: list[int]):
        super().__init__()
        layers = []
        for cin, cout in zip(dims, dims[1:]):
            layers += [nn.Linear(cin, cout), nn.GELU()]
        self.f = nn.Sequential(*layers[:-1])

    def forward(self, x):
        return self.f(x)


class DLRM(nn.Module):
    """DLRM's layout: a bottom MLP, 26 embedding tables, pairwise dot products of all 27 feature vectors (a batched
    matmul and a lower-triangle gather), a top MLP."""

    def __init__(self, tables: int = 26, dim: int = 16, rows: int = 5000):
        super().__init__()
        self.emb = nn.ModuleList(nn.Embedding(rows, dim) for _ in range(tables))
        self.bottom = nn.Sequential(nn.Linear(13, 64), nn.ReLU(), nn.Linear(64, dim), nn.ReLU())
        n = tables + 1
        self.top = nn.Sequential(nn.Linear(dim + n * (n - 1) // 2, 256), nn.ReLU(), nn.Linear(256, 1), nn.Sigmoid())
        lower = torch.tril_indices(n, n, -1)
        self.register_buffer("li", lower[0])
        self.register_buffer("lj", lower[1])

    def forward(self, dense, ids):
        d = self.bottom(dense)
        t = torch.stack([d] + [e(ids[:, i]) for i, e in enumerate(self.emb)], 1)
        return self.top(torch.cat([d, torch.bmm(t, t.transpose(1, 2))[:, self.li, self.lj]], 1))


class ClassicLeNet(nn.Module):
    """LeNet-5 as published: tanh and average pooling."""

    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.f1, self.f2, self.f3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.avg_pool2d(torch.tanh(self.c2(F.avg_pool2d(torch.tanh(self.c1(x)), 2))), 2)
        return self.f3(torch.tanh(self.f2(torch.tanh(self.f1(x.flatten(1))))))


class DSCNNLarge(nn.Module):
    """DS-CNN-L of the keyword-spotting benchmarks: 276 channels (no multiple of 16), a strided depthwise layer."""

    def __init__(self, c: int = 276):
        super().__init__()
        layers = [nn.Conv2d(1, c, (10, 4), (2, 1), (5, 1)), nn.BatchNorm2d(c), nn.ReLU()]
        for stride in (2, 1, 1, 1, 1):
            layers += [nn.Conv2d(c, c, 3, stride, 1, groups=c), nn.BatchNorm2d(c), nn.ReLU(),
                       nn.Conv2d(c, c, 1), nn.BatchNorm2d(c), nn.ReLU()]
        self.f, self.fc = nn.Sequential(*layers), nn.Linear(c, 12)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.f(x), 1).flatten(1))


class M5(nn.Module):
    """A 1-D audio classifier (M5): a strided 80-tap first convolution, batch norm, max pooling."""

    def __init__(self):
        super().__init__()
        layers, cin = [], 1
        for cout, kernel, stride in [(64, 80, 4), (64, 3, 1), (128, 3, 1), (256, 3, 1)]:
            layers += [nn.Conv1d(cin, cout, kernel, stride), nn.BatchNorm1d(cout), nn.ReLU(), nn.MaxPool1d(4)]
            cin = cout
        self.f, self.fc = nn.Sequential(*layers), nn.Linear(256, 35)

    def forward(self, x):
        return self.fc(self.f(x).mean(-1))


class SiLUSqueezeExcite(nn.Module):
    """EfficientNet's squeeze-excitation: average pool, 1x1 reduce with SiLU, 1x1 expand, a sigmoid gate."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(channels, reduced, 1), nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        return x * torch.sigmoid(self.expand(F.silu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))


class MBConv(nn.Module):
    """EfficientNet's inverted residual: 1x1 expand with SiLU, k x k depthwise with SiLU, squeeze-excitation, 1x1 project."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        layers = [nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU()] if expand != 1 else []
        layers += [nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.SiLU(),
                   SiLUSqueezeExcite(mid, max(1, cin // 4)), nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.body, self.residual = nn.Sequential(*layers), stride == 1 and cin == cout

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class EfficientNetB0(nn.Module):
    """EfficientNet-B0's stages (width and depth 1.0) at 224 x 224."""

    STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
              (6, 3, 1, 320, 1)]  # expand, kernel, stride, channels, repeats

    def __init__(self):
        super().__init__()
        layers, cin = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.SiLU()], 32
        for expand, kernel, stride, cout, repeats in self.STAGES:
            for i in range(repeats):
                layers.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.SiLU()]
        self.features, self.fc = nn.Sequential(*layers), nn.Linear(1280, 1000)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt's block: 7x7 depthwise, channels-last LayerNorm, Linear 4x with GELU, Linear back, layer scale, residual."""

    def __init__(self, dim: int):
        super().__init__()
        self.dw, self.norm = nn.Conv2d(dim, dim, 7, padding=3, groups=dim), nn.LayerNorm(dim, eps=1e-6)
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.1))

    def forward(self, x):
        y = self.down(F.gelu(self.up(self.norm(self.dw(x).permute(0, 2, 3, 1))))) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ChannelsNorm(nn.Module):
    """LayerNorm over the channels of an NCHW tensor, through permutes (ConvNeXt's stem and downsampling layers)."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtAtto(nn.Module):
    """ConvNeXt-atto's widths (40, 80, 160, 320) and depths (2, 2, 6, 2), a 4x4/4 patchify stem."""

    def __init__(self, dims=(40, 80, 160, 320), depths=(2, 2, 6, 2)):
        super().__init__()
        layers = [nn.Conv2d(3, dims[0], 4, 4), ChannelsNorm(dims[0])]
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            if i:
                layers += [ChannelsNorm(dims[i - 1]), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            layers += [ConvNeXtBlock(dim) for _ in range(depth)]
        self.features, self.norm, self.fc = nn.Sequential(*layers), nn.LayerNorm(dims[-1], eps=1e-6), nn.Linear(dims[-1], 1000)

    def forward(self, x):
        return self.fc(self.norm(self.features(x).mean((2, 3))))


def _conv_bn_silu(cin: int, cout: int, kernel: int = 1, stride: int = 1) -> nn.Sequential:
    """YOLOv8's Conv: convolution, batch norm, SiLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.SiLU())


class C2f(nn.Module):
    """YOLOv8's C2f: a 1x1 split in two, a chain of residual 3x3 pairs, every stage concatenated, a 1x1."""

    def __init__(self, cin: int, cout: int, repeats: int = 1):
        super().__init__()
        half = cout // 2
        self.split = _conv_bn_silu(cin, 2 * half)
        self.pairs = nn.ModuleList(nn.Sequential(_conv_bn_silu(half, half, 3), _conv_bn_silu(half, half, 3)) for _ in range(repeats))
        self.merge = _conv_bn_silu((2 + repeats) * half, cout)

    def forward(self, x):
        parts = list(self.split(x).chunk(2, 1))
        for pair in self.pairs:
            parts.append(parts[-1] + pair(parts[-1]))
        return self.merge(torch.cat(parts, 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained 5x5 stride-1 max poolings, concatenated."""

    def __init__(self, channels: int):
        super().__init__()
        self.reduce, self.merge = _conv_bn_silu(channels, channels // 2), _conv_bn_silu(channels * 2, channels)

    def forward(self, x):
        pooled = [self.reduce(x)]
        for _ in range(3):
            pooled.append(F.max_pool2d(pooled[-1], 5, 1, 2))
        return self.merge(torch.cat(pooled, 1))


class YoloStyle(nn.Module):
    """A YOLOv8-nano-like detector: C2f backbone, SPPF, nearest-neighbour upsampling and concats in the neck, two heads."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(_conv_bn_silu(3, 16, 3, 2), _conv_bn_silu(16, 32, 3, 2), C2f(32, 32))
        self.p3 = nn.Sequential(_conv_bn_silu(32, 64, 3, 2), C2f(64, 64, 2))
        self.p4 = nn.Sequential(_conv_bn_silu(64, 128, 3, 2), C2f(128, 128, 2))
        self.p5 = nn.Sequential(_conv_bn_silu(128, 256, 3, 2), C2f(256, 256), SPPF(256))
        self.neck4, self.neck3 = C2f(256 + 128, 128), C2f(128 + 64, 64)
        self.head3, self.head4 = nn.Conv2d(64, 84, 1), nn.Conv2d(128, 84, 1)

    def forward(self, x):
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        n4 = self.neck4(torch.cat([F.interpolate(self.p5(p4), scale_factor=2.0, mode="nearest"), p4], 1))
        n3 = self.neck3(torch.cat([F.interpolate(n4, scale_factor=2.0, mode="nearest"), p3], 1))
        return self.head3(n3), self.head4(n4)


class Wav2VecFeatures(nn.Module):
    """wav2vec 2.0's feature encoder at 256 channels: a 10-tap/5 Conv1d with GroupNorm and GELU, six strided Conv1d with
    GELU, then LayerNorm and a projection."""

    def __init__(self, channels: int = 256):
        super().__init__()
        layers = [nn.Conv1d(1, channels, 10, 5, bias=False), nn.GroupNorm(channels, channels), nn.GELU()]
        for kernel in (3, 3, 3, 3, 2, 2):
            layers += [nn.Conv1d(channels, channels, kernel, 2, bias=False), nn.GELU()]
        self.features, self.norm, self.proj = nn.Sequential(*layers), nn.LayerNorm(channels), nn.Linear(channels, 384)

    def forward(self, x):
        return self.proj(self.norm(self.features(x).transpose(1, 2)))


def _ids(vocab: int, shape: tuple) -> torch.Tensor:
    return torch.randint(0, vocab, shape)


def _mask(shape: tuple) -> torch.Tensor:
    return torch.ones(shape, dtype=torch.int64)


VARIANTS = {
    "resnet18_b2_160": (ResNet18, lambda: (torch.randn(2, 3, 160, 160),)),
    "resnet50_160": (ResNet50, lambda: (torch.randn(1, 3, 160, 160),)),
    "mobilenet_v2_w050_160": (lambda: MobileNetV2Width(0.5), lambda: (torch.randn(1, 3, 160, 160),)),
    "mobilenet_v2_w140": (lambda: MobileNetV2Width(1.4), lambda: (torch.randn(1, 3, 224, 224),)),
    "mobilenet_v3_small": (MobileNetV3Small, lambda: (torch.randn(1, 3, 224, 224),)),
    "bert_h384_s64_l4": (lambda: HandBert(384, 4, 6), lambda: (_ids(30522, (1, 64)), _mask((1, 64)))),
    "bert_h256_s256": (lambda: HandBert(256, 2, 4), lambda: (_ids(30522, (1, 256)), _mask((1, 256)))),
    "bert_b4_s32": (lambda: TorchEncoder(256, 2, 4), lambda: (_ids(30522, (4, 32)),)),
    "gpt_h256_s128": (GPT, lambda: (_ids(5000, (1, 128)),)),
    "vit_tiny": (ViT, lambda: (torch.randn(1, 3, 224, 224),)),
    "bilstm_b4": (RecurrentClassifier, lambda: (torch.randn(4, 49, 40),)),
    "lstm_h256_s100": (lambda: RecurrentClassifier(80, 256, 1, False, 20), lambda: (torch.randn(1, 100, 80),)),
    "gru2_h96": (lambda: KeywordGRU(64, 96, 2, False, 10), lambda: (torch.randn(50, 1, 64),)),
    "unet4_bilinear_96": (BilinearUNet, lambda: (torch.randn(1, 3, 96, 96),)),
    "mlp_b1_1024": (lambda: GeluMLP([1024, 1024, 1024, 10]), lambda: (torch.randn(1, 1024),)),
    "mlp_b256": (lambda: GeluMLP([784, 512, 512, 10]), lambda: (torch.randn(256, 784),)),
    "dlrm_b128": (DLRM, lambda: (torch.randn(128, 13), _ids(5000, (128, 26)))),
    "lenet_classic_b8": (ClassicLeNet, lambda: (torch.randn(8, 1, 28, 28),)),
    "ds_cnn_l": (DSCNNLarge, lambda: (torch.randn(1, 1, 49, 10),)),
    "m5_conv1d": (M5, lambda: (torch.randn(1, 1, 16000),)),
    "efficientnet_b0": (EfficientNetB0, lambda: (torch.randn(1, 3, 224, 224),)),
    "convnext_atto": (ConvNeXtAtto, lambda: (torch.randn(1, 3, 224, 224),)),
    "yolo_style_320": (YoloStyle, lambda: (torch.randn(1, 3, 320, 320),)),
    "wav2vec_features": (Wav2VecFeatures, lambda: (torch.randn(1, 1, 16000),)),
}


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__.strip().splitlines()[3].strip(), file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    only = set(argv[1].split(",")) if len(argv) > 1 else None
    unknown = sorted((only or set()) - set(VARIANTS))
    if unknown:
        print(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    written = sum(export_both(_eval_with_random_statistics(make()), example, out, name)
                  for name, (make, example) in VARIANTS.items() if not only or name in only)
    return 0 if written else 1

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
