"""Node names: placement, subgraphs, the bundle and the MLIR import (op locations) refer to ONNX nodes by name.

`node_names` gives every node a stable unique name: its own name when non-empty and not already taken, else
`<op_type>_<index>` (index = position in graph.node), with `_` appended until unique. `name_nodes` writes those
names into a copy of the model so the MLIR import (which uses node names as op locations) sees the same names.
"""
from __future__ import annotations

import onnx


def node_names(model: onnx.ModelProto) -> list[str]:
    """Stable unique names for every node of `model.graph.node`, in graph order (see the module docstring)."""
    reserved = {n.name for n in model.graph.node if n.name}
    taken: set[str] = set()
    names = []
    for index, node in enumerate(model.graph.node):
        name = node.name
        if not name or name in taken:
            name = f"{node.op_type}_{index}"
            while name in taken or name in reserved:
                name += "_"
        taken.add(name)
        names.append(name)
    return names


def name_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` whose nodes carry the names `node_names` gives (import this copy so locations match)."""
    named = onnx.ModelProto()
    named.CopyFrom(model)
    for node, name in zip(named.graph.node, node_names(model)):
        node.name = name
    return named
