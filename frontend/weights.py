"""Keep weights out of the generated code: large float initializers become extra graph inputs fed at run time.

Dense constants in MLIR make the IR, LLVM IR and the .so heavy and slow to compile (research/mlir-bindings.md §4);
passed as arguments, weights live in the bundle's weights file and the code stays small. Initializers that the
converter needs as compile-time constants (shapes, axes, pads, scales, ...) stay constants.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

# Operand positions that must stay compile-time constants (shape-like operands).
CONSTANT_OPERANDS: dict[str, set[int]] = {
    "Reshape": {1}, "Expand": {1}, "Slice": {1, 2, 3, 4}, "Unsqueeze": {1}, "Squeeze": {1}, "Split": {1},
    "Resize": {1, 2, 3}, "ReduceMean": {1}, "ReduceSum": {1}, "ReduceMax": {1}, "ReduceMin": {1}, "Pad": {1, 2, 3},
    "Tile": {1}, "Range": {0, 1, 2}, "ConstantOfShape": {0}, "TopK": {1}, "Clip": {1, 2}, "Gather": {1},
    "CumSum": {1}, "OneHot": {1, 2}, "Dropout": {1, 2}, "LSTM": {4}, "GRU": {4}, "Pow": {1},
}
MIN_LIFT_ELEMENTS = 64
LIFTABLE_DTYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE}


@dataclass
class LiftedModel:
    model: onnx.ModelProto  # weights appear as graph inputs after the real inputs
    weights: dict[str, np.ndarray]  # in argument order


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """Turn large `Constant` nodes into initializers so that they can be lifted like any weight."""
    graph = model.graph
    kept = []
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = node.attribute[0].t
            if tensor.data_type in LIFTABLE_DTYPES and int(np.prod(tensor.dims)) >= MIN_LIFT_ELEMENTS:
                init = onnx.TensorProto()
                init.CopyFrom(tensor)
                init.name = node.output[0]
                graph.initializer.append(init)
                continue
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def lift_weights(model: onnx.ModelProto) -> LiftedModel:
    """Return a copy of `model` whose large float initializers are graph inputs, and their values."""
    lifted = onnx.ModelProto()
    lifted.CopyFrom(model)
    _constants_to_initializers(lifted)
    graph = lifted.graph

    pinned: set[str] = set()  # initializers used where a compile-time constant is required
    for node in graph.node:
        for position in CONSTANT_OPERANDS.get(node.op_type, ()):
            if position < len(node.input) and node.input[position]:
                pinned.add(node.input[position])
    graph_outputs = {o.name for o in graph.output}

    weights: dict[str, np.ndarray] = {}
    kept_inits = []
    for init in graph.initializer:
        big = int(np.prod(init.dims)) >= MIN_LIFT_ELEMENTS
        if init.data_type in LIFTABLE_DTYPES and big and init.name not in pinned and init.name not in graph_outputs:
            weights[init.name] = np.ascontiguousarray(numpy_helper.to_array(init))
        else:
            kept_inits.append(init)

    # Inputs that shadow initializers (old exporters list weights as inputs too) are weights or constants, not inputs.
    initializer_names = {init.name for init in graph.initializer}
    real_inputs = [v for v in graph.input if v.name not in initializer_names]
    weight_inputs = [onnx.helper.make_tensor_value_info(name, onnx.helper.np_dtype_to_tensor_dtype(arr.dtype), list(arr.shape))
                     for name, arr in weights.items()]
    del graph.input[:]
    graph.input.extend(real_inputs + weight_inputs)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)
    return LiftedModel(lifted, weights)
