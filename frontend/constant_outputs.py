"""Model outputs whose value is a constant. A bundle output is written by compiled code, so such an output is made
the output of an Identity of an initializer: a value computed at compile time by `identity_of_constant` (the
boundary's rewrites, frontend/boundary.py and sequences.py, and constant folding, frontend/fold.py), the model's own
constant outputs (a Constant node's, an initializer) by `materialize_constant_outputs`, which keeps that constant.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.frontend.names import fresh_name


def identity_of_constant(value: np.ndarray, output: str, name: str, initializers: list[onnx.TensorProto]) -> onnx.NodeProto:
    """An Identity named `name` writing `output` from a new initializer `<output>__folded` holding `value` (appended
    to `initializers`)."""
    source = f"{output}__folded"
    initializers.append(numpy_helper.from_array(np.asarray(value), source))
    return helper.make_node("Identity", [source], [output], name=name)


def materialize_constant_outputs(model: onnx.ModelProto) -> int:
    """Make every model output that is a constant (a Constant node's value, an initializer) the output of an Identity
    of an initializer, in place, so that the compiled code writes it like any output (onnxruntime returns such outputs
    too; before, hcc refused them). Runs after constant folding, which would fold the Identity back. Returns how many."""
    producers = {out: node for node in model.graph.node for out in node.output}
    initializers = {init.name for init in model.graph.initializer}
    taken = initializers | set(producers) | {v.name for v in model.graph.input}
    changed = 0
    for output in model.graph.output:
        node = producers.get(output.name)
        is_constant = node is not None and node.op_type == "Constant" and node.domain in ("", "ai.onnx")
        if not is_constant and not (node is None and output.name in initializers):
            continue
        source = fresh_name(f"{output.name}__constant", taken)
        taken.add(source)
        identity = onnx.helper.make_node("Identity", [source], [output.name], name=f"{output.name}/constant_output")
        if is_constant:
            node.output[0] = source  # the Constant now feeds the Identity, right after it (readers come later)
            position = list(model.graph.node).index(node) + 1
        else:
            init = next(i for i in model.graph.initializer if i.name == output.name)
            init.name = source
            position = 0  # other readers of the initializer read the Identity's output, first in the graph
        model.graph.node.insert(position, identity)
        changed += 1
    return changed
