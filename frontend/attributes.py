"""Reading an ONNX node's attributes: the one place the frontend's rewrites and checks get an attribute's value, so
that a default and a string attribute's decoding are handled alike everywhere. A leaf module (it imports only onnx),
so frontend/checks.py can use it as well as the rewrites that import checks.
"""
from __future__ import annotations

import onnx
from onnx import helper


def attr_value(node: onnx.NodeProto, name: str, default=None):
    """The value of `node`'s attribute `name` (helper.get_attribute_value's form), or `default` when it is absent."""
    attr = next((a for a in node.attribute if a.name == name), None)
    return default if attr is None else helper.get_attribute_value(attr)


def as_text(value) -> str:
    """A string attribute's value as str: onnx gives bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def attr_text(node: onnx.NodeProto, name: str, default: str) -> str:
    """The string attribute `name` of `node` decoded, or `default` when it is absent."""
    return as_text(attr_value(node, name, default))
