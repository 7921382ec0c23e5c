"""Refuse a model whose stored data contradicts its own declarations, before anything reads that data.

Why: onnx's checker (full_check=False) does not compare an initializer's bytes with its shape, and numpy then fails
deep inside constant folding with a ValueError, or a negative or enormous declared dimension surfaces as a
MemoryError while golden inputs are drawn. Each of these is a broken or hostile file (tools/fuzz.py finds them), and
gets one `hcc: error:` line naming the tensor.
"""
from __future__ import annotations

import math

import onnx
from onnx import helper

from hcc.errors import HccError

# The largest tensor hcc compiles: 2^32 elements (16 GiB of fp32). Generated code indexes with 64-bit integers, but
# golden data and the compiler's own checks hold whole tensors in memory; a larger declared shape is a corrupt file.
MAX_TENSOR_ELEMENTS = 1 << 32
# Element types packed below one byte per element: their raw size is not count * itemsize.
PACKED_TYPES = frozenset(getattr(onnx.TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2")
                         if hasattr(onnx.TensorProto, n))
COMPLEX_TYPES = frozenset({onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128})


def check_dims(dims: list[int], what: str) -> int:
    """The element count of `dims`; an HccError naming `what` when a dimension is negative or the total too large."""
    negative = [d for d in dims if d < 0]
    if negative:
        raise HccError(f"{what}: dimension {negative[0]} in shape {list(dims)} is negative")
    count = math.prod(dims)
    if count > MAX_TENSOR_ELEMENTS:
        raise HccError(f"{what}: shape {list(dims)} has {count} elements, more than hcc compiles (2^32)")
    return count


def _stored_count(init: onnx.TensorProto, count: int) -> tuple[int, int, str] | None:
    """(stored, expected, unit) when the initializer's data disagrees with its shape, else None."""
    if init.data_type in PACKED_TYPES or init.data_type == onnx.TensorProto.STRING:
        return None
    if init.HasField("raw_data"):
        itemsize = helper.tensor_dtype_to_np_dtype(init.data_type).itemsize
        stored, expected = len(init.raw_data), count * itemsize
        return None if stored == expected else (stored, expected, "bytes")
    field = helper.tensor_dtype_to_field(init.data_type)
    stored, expected = len(getattr(init, field)), count * (2 if init.data_type in COMPLEX_TYPES else 1)
    return None if stored == expected else (stored, expected, "values")


def check_initializers(model: onnx.ModelProto, path: str) -> None:
    """Every initializer's dimensions are sane and its stored data is exactly what its shape and type need."""
    for init in model.graph.initializer:
        what = f"{path}: initializer '{init.name}'"
        count = check_dims(list(init.dims), what)
        if init.data_type == onnx.TensorProto.UNDEFINED or init.data_type not in onnx.TensorProto.DataType.values():
            raise HccError(f"{what}: element type {init.data_type} is not an ONNX type")
        mismatch = _stored_count(init, count)
        if mismatch:
            stored, expected, unit = mismatch
            type_name = onnx.TensorProto.DataType.Name(init.data_type)
            raise HccError(f"{what}: holds {stored} {unit} of data, but its shape {list(init.dims)} of {type_name} needs {expected} "
                           "(truncated or corrupt file?)")


def _names(model: onnx.ModelProto):
    graph = model.graph
    yield graph.name
    for opset in model.opset_import:
        yield opset.domain
    for value in list(graph.input) + list(graph.output) + list(graph.value_info) + list(graph.initializer):
        yield value.name
    for node in graph.node:
        yield from (node.name, node.op_type, node.domain, *node.input, *node.output)
        yield from (a.name for a in node.attribute)


def check_text(model: onnx.ModelProto, path: str) -> None:
    """Every name in the graph is valid UTF-8 (protobuf hands an undecodable string field back as bytes, or raises)."""
    try:
        valid = all(isinstance(name, str) for name in _names(model))
    except UnicodeDecodeError:
        valid = False
    if not valid:
        raise HccError(f"{path}: a name in the graph (node, tensor, op or domain) is not valid UTF-8 text (corrupt file?)") from None
