"""Partitioning: give every op a device and outline each device-contiguous group into its own function.

This version places the whole model on one device (one subgraph, `sg0`); the cost-model-driven partitioner
(issue 3) replaces `partition_single_device` and keeps `SubgraphSpec` as its output, so the bundle format and
the backends stay unchanged.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_OPERATOR = re.compile(r'torch\.operator "onnx\.(\w+)".*loc\((#loc\d+|"[^"]*")\)')
_LOC_DEF = re.compile(r'^(#loc\d+) = loc\("([^"]*)"\)', re.M)


@dataclass
class SubgraphSpec:
    """A function of the module to compile for one device."""

    id: str
    device: str
    inputs: list[str]  # tensor names, in argument order
    outputs: list[str]  # tensor names, in result order
    nodes: list[str] = field(default_factory=list)  # ONNX node names (from op locations)
    module_text: str = ""  # torch-onnx dialect module holding exactly this subgraph's function, named `id`


def node_names(torch_text: str) -> list[str]:
    """ONNX node names in program order, read back from the op locations of an imported module."""
    aliases = dict(_LOC_DEF.findall(torch_text))
    names = []
    for _op, loc in _OPERATOR.findall(torch_text):
        names.append(aliases.get(loc, "") if loc.startswith("#") else loc.strip('"'))
    return names


def partition_single_device(torch_text: str, inputs: list[str], outputs: list[str], device: str = "cpu") -> list[SubgraphSpec]:
    """Place the whole imported function on `device` as subgraph `sg0`."""
    renamed, count = re.subn(r'func\.func @("[^"]*"|[\w$.-]+)\(', "func.func @sg0(", torch_text, count=1)
    if count != 1:
        raise ValueError("imported module has no function")
    return [SubgraphSpec("sg0", device, list(inputs), list(outputs), node_names(torch_text), renamed)]
