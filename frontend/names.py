"""Node names: the one naming of ONNX nodes that placement, subgraphs, the bundle, error messages and the MLIR import
(op locations) all refer to.

The loader names every node once, right after loading (`name_nodes`, in place, again after an inlined If adds
nodes): a node keeps its own name when it is the first with that name; an unnamed node is `<op_type>_<index>`
(index = position in graph.node); the k-th node (k >= 2) with the same name is `<name>__<k>`. A candidate that an
earlier node already holds (a node literally named `a__2` after two `a`) takes the next free `__<k>`. These are the
names `--save-placement`, `--place` and bundles have always used, so they must not change: on a model the loader
named, `node_names` returns the nodes' own names unchanged. The planner and the FPGA backend call `node_names` on
the models they get, and so see the same names.
"""
from __future__ import annotations

import onnx


def node_names(model: onnx.ModelProto) -> list[str]:
    """Unique names for every node of `model.graph.node`, in graph order (see the module docstring)."""
    taken: set[str] = set()
    seen: dict[str, int] = {}  # base name -> how many nodes had it
    names = []
    for index, node in enumerate(model.graph.node):
        base = node.name or f"{node.op_type}_{index}"
        count = seen.get(base, 0)
        name = base if count == 0 else f"{base}__{count + 1}"
        while name in taken:
            count += 1
            name = f"{base}__{count + 1}"
        seen[base] = count + 1
        taken.add(name)
        names.append(name)
    return names


def fresh_name(base: str, taken: set[str], first_suffix: int = 1) -> str:
    """`base`, or `base_<k>` (k = first_suffix, first_suffix + 1, ...) when `taken` holds it; the name is added to
    `taken`. The frontend's rewrites name the values, nodes and initializers they create with it."""
    name, k = base, first_suffix
    while name in taken:
        name = f"{base}_{k}"
        k += 1
    taken.add(name)
    return name


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node of `model` its `node_names` name, in place."""
    for node, name in zip(model.graph.node, node_names(model)):
        node.name = name
