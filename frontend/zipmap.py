"""ZipMap (ai.onnx.ml) at a graph output: what skl2onnx puts after every classifier by default.

A ZipMap turns a [N, C] float tensor of class scores into a sequence of N maps {class label: score}. Maps are not
tensors, so no native code computes them: the compiler replaces the node by an Identity (the output keeps its name
and becomes the float matrix) and the bundle records the labels (manifest TensorRecord.zipmap_keys). The runtime
zips each row with them on the way out (`Session.run`, as onnxruntime returns it: a list of dicts); `hcc run` and the
golden data keep the matrix, its columns in the labels' order. Labels may be int64s or strings: they never reach the
native code.

Refused, naming the node: a ZipMap whose output feeds another node or is not a graph output, an input that is not a
2-D float tensor, or labels whose count differs from the input's columns.
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from hcc.errors import HccError

ML_DOMAIN = "ai.onnx.ml"
ZipMapKeys = list  # list[int] or list[str], in column order


def _keys(node: onnx.NodeProto, where: str) -> ZipMapKeys:
    attrs = {a.name: a for a in node.attribute}
    if "classlabels_int64s" in attrs and attrs["classlabels_int64s"].ints:
        return [int(v) for v in attrs["classlabels_int64s"].ints]
    if "classlabels_strings" in attrs and attrs["classlabels_strings"].strings:
        return [v.decode("utf-8") for v in attrs["classlabels_strings"].strings]
    raise HccError(f"{where}: has neither classlabels_int64s nor classlabels_strings")


def _columns(model: onnx.ModelProto, name: str, where: str) -> int | None:
    """The declared last dimension of `name` where the graph states it (checked again against the keys at run time
    by the bundle's validation, which knows the computed shape)."""
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        if value.name == name and value.type.HasField("tensor_type"):
            tensor = value.type.tensor_type
            if tensor.elem_type not in (0, TensorProto.FLOAT):
                raise HccError(f"{where}: input '{name}' is {TensorProto.DataType.Name(tensor.elem_type)}; ZipMap takes float scores")
            dims = tensor.shape.dim
            if tensor.HasField("shape") and len(dims) != 2:
                raise HccError(f"{where}: input '{name}' has rank {len(dims)}; hcc compiles ZipMap on [N, C] scores")
            return dims[1].dim_value if tensor.HasField("shape") and dims[1].HasField("dim_value") else None
    return None


def strip_zipmaps(model: onnx.ModelProto, path: str) -> dict[str, ZipMapKeys]:
    """Replace, in place, each ZipMap at a graph output by an Identity of its scores; returns {output: labels}."""
    outputs = {o.name: o for o in model.graph.output}
    read = {name for node in model.graph.node for name in node.input}
    zipmaps: dict[str, ZipMapKeys] = {}
    for node in model.graph.node:
        if node.domain != ML_DOMAIN or node.op_type != "ZipMap":
            continue
        where = f"{path}: node '{node.name or node.output[0]}' (ai.onnx.ml.ZipMap)"
        out = node.output[0]
        if out not in outputs or out in read:
            raise HccError(f"{where}: its sequence of maps feeds other nodes; hcc compiles a ZipMap only at a graph "
                           "output (convert with skl2onnx option zipmap=False to keep the scores a tensor)")
        keys = _keys(node, where)
        columns = _columns(model, node.input[0], where)
        if columns is not None and columns != len(keys):
            raise HccError(f"{where}: {len(keys)} class labels for {columns} score columns")
        identity = helper.make_node("Identity", [node.input[0]], [out], name=node.name or f"zipmap_{out}")
        node.CopyFrom(identity)
        outputs[out].CopyFrom(helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, None]))
        zipmaps[out] = keys
    if zipmaps and not any(n.domain == ML_DOMAIN for n in model.graph.node):
        kept = [o for o in model.opset_import if o.domain != ML_DOMAIN]
        del model.opset_import[:]
        model.opset_import.extend(kept)
    return zipmaps

