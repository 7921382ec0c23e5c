#!/usr/bin/env python
"""Export the benchmark families from torch modules, with both of torch's ONNX exporters, for an unseen-model check.

    .venv-torch/bin/python tools/export_torch_models.py OUT_DIR        # `make bench-torch` makes the venv and runs it

The suite's own models (tools/bench_models.py) are written with onnx.helper in the layout torch.onnx emits; this
script lets torch write them instead, so that what the tests have not seen (its node names, Constant nodes, shape
arithmetic, the dynamo exporter's opset-18 graphs, unfolded BatchNormalization, fused eval-mode transformer layers)
reaches hcc the way a user's model does. Each module is exported twice: `NAME_ts.onnx` by the TorchScript exporter
(opset 17) and `NAME_dyn.onnx` by the dynamo exporter (opset 18). Random weights (seed 0), batch norm statistics
randomised so that folding them is not a no-op. Needs torch (pinned by the make target, not a dependency of hcc).
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        same = stride == 1 and cin == cout
        self.short = nn.Sequential() if same else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.short(x))


class ResNet18(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        widths = [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]
        self.layers = nn.Sequential(*[BasicBlock(cin, cout, s) for (cin, _), (cout, s) in zip([(64, 1)] + widths, widths)])
        self.fc = nn.Linear(512, 1000)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden, self.residual = cin * expand, stride == 1 and cin == cout
        layers = [] if expand == 1 else [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
        layers += [nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
                   nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.f = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.f(x) if self.residual else self.f(x)


class MobileNetV2(nn.Module):
    def __init__(self):
        super().__init__()
        layers, cin = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU6()], 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers += [nn.Conv2d(cin, 1280, 1, bias=False), nn.BatchNorm2d(1280), nn.ReLU6()]
        self.features, self.classifier = nn.Sequential(*layers), nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, 1000))

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class TorchEncoder(nn.Module):
    """nn.TransformerEncoder (GELU, post-LN), token/position/type embeddings and a Tanh pooler: BERT-style, h=256."""

    def __init__(self, hidden: int = 256, layers: int = 2, heads: int = 4, vocab: int = 30522):
        super().__init__()
        self.tok, self.pos, self.typ = nn.Embedding(vocab, hidden), nn.Embedding(512, hidden), nn.Embedding(2, hidden)
        self.norm = nn.LayerNorm(hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, dropout=0.0, activation="gelu", batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.pool = nn.Linear(hidden, hidden)

    def forward(self, ids):
        x = self.norm(self.tok(ids) + self.pos(torch.arange(ids.shape[1]).unsqueeze(0)) + self.typ(torch.zeros_like(ids)))
        x = self.encoder(x)
        return x, torch.tanh(self.pool(x[:, 0]))


class HandBert(nn.Module):
    """Attention written out as Hugging Face's BERT does: q/k/v Linears, view/transpose, scaled scores plus an
    additive mask from an int64 attention mask, softmax, post-LN residuals, erf GELU."""

    def __init__(self, hidden: int = 256, layers: int = 2, heads: int = 4, vocab: int = 30522):
        super().__init__()
        self.hidden, self.heads = hidden, heads
        self.emb, self.pos, self.norm = nn.Embedding(vocab, hidden), nn.Embedding(512, hidden), nn.LayerNorm(hidden)

        def linears(cin, cout):
            return nn.ModuleList(nn.Linear(cin, cout) for _ in range(layers))
        self.q, self.k, self.v, self.o = (linears(hidden, hidden) for _ in range(4))
        self.up, self.down = linears(hidden, 4 * hidden), linears(4 * hidden, hidden)
        self.ln1, self.ln2 = (nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers)) for _ in range(2))

    def forward(self, ids, mask):
        batch, seq = ids.shape
        d = self.hidden // self.heads
        x = self.norm(self.emb(ids) + self.pos(torch.arange(seq).unsqueeze(0)))
        bias = (1.0 - mask[:, None, None, :].float()) * -10000.0

        def heads(t):
            return t.view(batch, seq, self.heads, d).transpose(1, 2)
        for i in range(len(self.q)):
            q, k, v = heads(self.q[i](x)), heads(self.k[i](x)), heads(self.v[i](x))
            attn = torch.softmax(q @ k.transpose(-1, -2) / d ** 0.5 + bias, -1) @ v
            x = self.ln1[i](x + self.o[i](attn.transpose(1, 2).reshape(batch, seq, self.hidden)))
            x = self.ln2[i](x + self.down[i](F.gelu(self.up[i](x))))
        return x


class KeywordLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm, self.fc = nn.LSTM(40, 128, 2), nn.Linear(128, 12)

    def forward(self, x):
        return self.fc(self.lstm(x)[0][-1])


class KeywordGRU(nn.Module):
    """A GRU's last step, then a Linear (tools/export_torch_variants.py makes a 2-layer, sequence-first one)."""

    def __init__(self, features: int = 40, hidden: int = 128, layers: int = 1, batch_first: bool = True, classes: int = 12):
        super().__init__()
        self.gru, self.fc = nn.GRU(features, hidden, layers, batch_first=batch_first), nn.Linear(hidden, classes)
        self.batch_first = batch_first

    def forward(self, x):
        out = self.gru(x)[0]
        return self.fc(out[:, -1] if self.batch_first else out[-1])


class DSCNN(nn.Module):
    def __init__(self):
        super().__init__()
        layers = [nn.Conv2d(1, 64, (10, 4), (2, 2), (5, 1)), nn.BatchNorm2d(64), nn.ReLU()]
        for _ in range(4):
            layers += [nn.Conv2d(64, 64, 3, 1, 1, groups=64), nn.BatchNorm2d(64), nn.ReLU(), nn.Conv2d(64, 64, 1), nn.BatchNorm2d(64), nn.ReLU()]
        self.f, self.fc = nn.Sequential(*layers), nn.Linear(64, 12)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.f(x), 1).flatten(1))


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU())


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.e1, self.e2, self.e3 = _double_conv(3, 16), _double_conv(16, 32), _double_conv(32, 64)
        self.u2, self.d2 = nn.ConvTranspose2d(64, 32, 2, 2), _double_conv(64, 32)
        self.u1, self.d1 = nn.ConvTranspose2d(32, 16, 2, 2), _double_conv(32, 16)
        self.out = nn.Conv2d(16, 2, 1)

    def forward(self, x):
        a = self.e1(x)
        b = self.e2(F.max_pool2d(a, 2))
        c = self.e3(F.max_pool2d(b, 2))
        d = self.d2(torch.cat([self.u2(c), b], 1))
        return self.out(self.d1(torch.cat([self.u1(d), a], 1)))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.f = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))

    def forward(self, x):
        return self.f(x)


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.f1, self.f2, self.f3 = nn.Linear(256, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c2(F.max_pool2d(F.relu(self.c1(x)), 2))), 2)
        return self.f3(F.relu(self.f2(F.relu(self.f1(x.flatten(1))))))


class Recommender(nn.Module):
    def __init__(self):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(10000, 32) for _ in range(8))
        self.bottom = nn.Sequential(nn.Linear(13, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
        self.top = nn.Sequential(nn.Linear(32 * 9, 256), nn.ReLU(), nn.Linear(256, 64), nn.ReLU(), nn.Linear(64, 1), nn.Sigmoid())

    def forward(self, dense, ids):
        return self.top(torch.cat([self.bottom(dense)] + [t(ids[:, i]) for i, t in enumerate(self.tables)], 1))


MODELS = {
    "resnet18": (ResNet18, lambda: (torch.randn(1, 3, 224, 224),)),
    "mobilenet_v2": (MobileNetV2, lambda: (torch.randn(1, 3, 224, 224),)),
    "bert_torch_encoder": (TorchEncoder, lambda: (torch.randint(0, 30522, (1, 128)),)),
    "bert_hand": (HandBert, lambda: (torch.randint(0, 30522, (1, 128)), torch.ones(1, 128, dtype=torch.int64))),
    "lstm_kws": (KeywordLSTM, lambda: (torch.randn(49, 1, 40),)),
    "gru_kws": (KeywordGRU, lambda: (torch.randn(1, 49, 40),)),
    "ds_cnn": (DSCNN, lambda: (torch.randn(1, 1, 49, 10),)),
    "unet": (UNet, lambda: (torch.randn(1, 3, 128, 128),)),
    "mlp_b64": (MLP, lambda: (torch.randn(64, 784),)),
    "lenet5": (LeNet5, lambda: (torch.randn(1, 1, 28, 28),)),
    "recsys": (Recommender, lambda: (torch.randn(32, 13), torch.randint(0, 10000, (32, 8)))),
}


def _eval_with_random_statistics(module: nn.Module) -> nn.Module:
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return module.eval()


def export_both(module: nn.Module, example, out: Path, name: str) -> int:
    """`NAME_ts.onnx` (TorchScript exporter, opset 17) and `NAME_dyn.onnx` (dynamo, opset 18); how many were written.
    One torch cannot export (e.g. the fused encoder layer at opset 17) is reported, not raised."""
    written = 0
    for exporter, opset in (("ts", 17), ("dyn", 18)):
        path = out / f"{name}_{exporter}.onnx"
        try:
            with torch.no_grad():
                if exporter == "ts":
                    torch.onnx.export(module, example(), str(path), opset_version=opset, dynamo=False)
                else:
                    torch.onnx.export(module, example(), str(path), opset_version=opset, dynamo=True, external_data=False)
            written += 1
            print(f"wrote {path}")
        except Exception as exc:  # torch cannot export this one: say so, go on
            print(f"torch could not export {name} with the {exporter} exporter: {type(exc).__name__}: "
                  f"{str(exc).splitlines()[0][:160]}")
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    written = sum(export_both(_eval_with_random_statistics(cls()), example, out, name) for name, (cls, example) in MODELS.items())
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
