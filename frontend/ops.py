"""Which ONNX ops hcc compiles, and a check that names every unsupported node at once.

The list is what the test-suite proves against onnxruntime (tests/frontend/test_op_coverage.py), not everything
the torch-mlir converter might accept: an op is added here together with its test.
"""
from __future__ import annotations

import onnx

from hcc.errors import HccError

SUPPORTED_OPS: frozenset[str] = frozenset(
    """
    Abs Add And ArgMax AveragePool BatchNormalization Cast Ceil Clip Concat Constant ConstantOfShape Conv ConvTranspose
    Cos Div Dropout Einsum Elu Equal Erf Exp Expand Flatten Floor Gather Gelu Gemm GlobalAveragePool GlobalMaxPool Greater
    GreaterOrEqual HardSigmoid HardSwish Identity InstanceNormalization LayerNormalization LeakyRelu Less LessOrEqual
    Log LogSoftmax LSTM MatMul Max MaxPool Min Mod Mul Neg Not Or Pad Pow Range Reciprocal ReduceMax ReduceMean ReduceMin
    ReduceSum Relu Reshape Resize Shape Sigmoid Sign Sin Slice Softmax Softplus Split Sqrt Squeeze Sub Sum Tanh Tile
    Transpose Unsqueeze Where
    """.split()
)

# Ops that torch-mlir converts but that the CPU backend cannot compile yet: they are not in SUPPORTED_OPS, and the
# error for a model that uses one says why. Their coverage cases run as strict xfails, so when the backend is fixed
# the suite reports XPASS for exactly the ops to move back into SUPPORTED_OPS.
BLOCKED_OPS: dict[str, str] = {}

# Opsets of the default domain that the importer and converter are tested with.
MIN_OPSET = 11
MAX_OPSET = 22


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    raise HccError("the model does not import the default ONNX opset (ai.onnx); cannot tell which op semantics apply")


def check_opset(model: onnx.ModelProto, path: str) -> None:
    opset = default_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise HccError(
            f"{path}: opset {opset} is outside the supported range {MIN_OPSET}..{MAX_OPSET}",
            hint="convert it with onnx.version_converter.convert_version(model, 17) and try again",
        )


def check_supported(model: onnx.ModelProto, path: str) -> None:
    """Raise one HccError listing every unsupported op type with the names of the nodes that use it."""
    unsupported: dict[str, list[str]] = {}
    for index, node in enumerate(model.graph.node):
        domain = node.domain if node.domain not in ("", "ai.onnx") else ""
        key = node.op_type if not domain else f"{domain}.{node.op_type}"
        if domain or node.op_type not in SUPPORTED_OPS:
            unsupported.setdefault(key, []).append(node.name or f"<unnamed node #{index}>")
    if unsupported:
        lines = []
        for op in sorted(unsupported):
            names = unsupported[op]
            shown = ", ".join(names[:8]) + (f", ... ({len(names)} nodes)" if len(names) > 8 else "")
            why = f" (known limitation: {BLOCKED_OPS[op]})" if op in BLOCKED_OPS else ""
            lines.append(f"  {op}: {shown}{why}")
        raise HccError(
            f"{path}: {len(unsupported)} unsupported op type(s):\n" + "\n".join(lines),
            hint="`hcc ops` lists the supported ops",
        )
