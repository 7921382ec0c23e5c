"""Sequence and optional model inputs/outputs as the flat tensors a bundle computes (manifest `boundary`).

Why: compiled code takes and returns tensors of static shapes only, so a sequence of a length known at compile time
is compiled as its element tensors and an optional of a presence known at compile time as its element or nothing
(frontend/boundary.py). The runtime keeps the model's own interface: it takes a Python list (None for an absent
optional) and returns lists, checking the length, presence and element shapes against what the bundle was compiled
for, with errors that name the model's input. numpy only (the deployable runtime).
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from hcc.artifacts.manifest import BoundaryRecord, Layout, layout_tensors, layout_text
from hcc.errors import HccError


def _flatten(name: str, where: str, layout: Layout, value: Any, out: dict[str, Any],
             shape_of: Callable[[str], tuple[int, ...]]) -> None:
    """Put `value` (the part of input `name` at `where`) into `out` by the flat tensors of `layout`."""
    if isinstance(layout, str):
        if value is None or isinstance(value, (list, tuple)):
            what = "None" if value is None else f"a {type(value).__name__}"
            raise HccError(f"input '{name}'{where}: {what}, expected a tensor of shape {list(shape_of(layout))}")
        array = value if isinstance(value, np.ndarray) else np.asarray(value)
        if array.shape != shape_of(layout):
            raise HccError(f"input '{name}'{where}: shape {list(array.shape)}, expected {list(shape_of(layout))} (the shape "
                           "the bundle was compiled for)")
        out[layout] = array
        return
    if "optional" in layout:
        inner = layout["optional"]
        if inner is None:
            if value is not None:
                raise HccError(f"input '{name}'{where}: the bundle was compiled for an absent optional; pass None "
                               "(recompile to give it a value)")
            return
        if value is None:
            raise HccError(f"input '{name}'{where}: None, but the bundle was compiled for a present optional "
                           f"({layout_text(inner)}); recompile for an absent one")
        _flatten(name, where, inner, value, out, shape_of)
        return
    items = layout["sequence"]
    if not isinstance(value, (list, tuple)):
        raise HccError(f"input '{name}'{where}: a {type(value).__name__}, expected a list of {len(items)} tensors (a sequence)")
    if len(value) != len(items):
        raise HccError(f"input '{name}'{where}: a list of {len(value)} tensors, the bundle was compiled for a sequence of "
                       f"{len(items)}; recompile for this length (--input-shape {name}=[...])")
    for k, (item, element) in enumerate(zip(items, value)):
        _flatten(name, f"{where}[{k}]", item, element, out, shape_of)


def flatten_feeds(boundary: BoundaryRecord, feeds: dict[str, Any], shape_of: Callable[[str], tuple[int, ...]]) -> dict[str, Any]:
    """The model's inputs (lists for sequences, None for an absent optional) as the bundle's flat tensor inputs."""
    if not isinstance(feeds, dict):
        raise HccError("inputs must be a dict {input name: numpy array, or a list for a sequence input}")
    if feeds.keys() != set(boundary.inputs):
        unknown = sorted(set(feeds) - set(boundary.inputs))
        missing = [n for n in boundary.inputs if n not in feeds]
        raise HccError(f"inputs do not match the model: missing {missing}, unknown {unknown} (expected {boundary.inputs})")
    flat: dict[str, Any] = {}
    for name in boundary.inputs:
        if name in boundary.values:
            _flatten(name, "", boundary.values[name], feeds[name], flat, shape_of)
        else:
            flat[name] = feeds[name]
    return flat


def structure(layout: Layout, values: dict[str, np.ndarray]) -> Any:
    """A model value from its flat tensors: a list for a sequence, None for an absent optional."""
    if isinstance(layout, str):
        return values[layout]
    if "optional" in layout:
        return None if layout["optional"] is None else structure(layout["optional"], values)
    return [structure(item, values) for item in layout["sequence"]]


def wanted_tensors(boundary: BoundaryRecord, names: list[str]) -> list[str]:
    """The flat output tensors that the model outputs `names` need."""
    return [t for name in names for t in layout_tensors(boundary.values.get(name, name))]
