"""Upsampling restated as the ops hcc compiles fast (issue 10): both forms are what U-Nets and decoders export.

* A nearest Resize whose output repeats every input element an integer number of times along each axis (torch's
  `Upsample(scale_factor=2)`, and ONNX's default half_pixel / round_prefer_floor at factor 2) becomes Reshape ->
  Expand -> Reshape: a broadcast copy. torch-mlir lowers Resize to a gather with computed indices, which runs as
  scalar loops (measured 12x slower than onnxruntime on a 32x64x64 map; the broadcast: 0.75x).
  Which positions repeat is not derived from the attributes: per scaled axis, the ONNX reference evaluator resizes
  an index ramp with the node's own attributes and scale (or size), and only an exact `i // factor` is rewritten.
* A ConvTranspose whose kernel equals its stride (no padding, dilation, output padding or groups) writes every
  output pixel from exactly one input pixel: out[f, h*s+a, w*s+b] = sum_c W[c, f, a, b] x[c, h, w] + B[f]. It becomes a
  1x1 Conv with F*s*s filters (the weight reordered at compile time) and a Reshape -> Transpose -> Reshape that
  interleaves them, instead of a convolution over a zero-inserted input that is 3/4 zeros (measured 5.2x slower
  than onnxruntime on 32->16 channels at 64x64; restated: 1.3x).
* A linear Resize by an integer factor s along some axes (torch's `Upsample(mode="bilinear")` and
  `interpolate(scale_factor=2, mode="bilinear")`, half_pixel / pytorch_half_pixel / asymmetric) computes output
  s*j + p of an axis from the same input offsets j + d with the same weights for every j, once the input is padded
  by repeating its edge elements (which is what clamping the coordinate does). Per axis it becomes that padding
  (a Concat of the edge slices), one weighted sum of Slices per phase p, and a Concat + Reshape that interleaves
  the phases: copies and vectorized elementwise sums instead of a gather by coordinates computed per element
  (measured 10x slower than onnxruntime in a bilinear U-Net). The innermost axis goes first, on the smaller map.
  The taps are not derived from the attributes: the ONNX reference's own weights (resize_matrix.axis_matrix, one
  impulse per input position) must equal the phase form's, or the node is left alone. Sums are in another order
  than onnxruntime's, within float rounding.
* Such a broadcasting Resize read only by a pointwise Conv (1x1, stride 1, no padding) trades places with it: each
  output pixel of Conv(Resize(x)) is the Conv of the one input pixel it repeats, so Resize(Conv(x)) computes the
  same bits with the Conv on the small map (a U-Net's 2x upsampling + 1x1 conv: 4x fewer products, and the copy
  moves the Conv's channels instead of its input's).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from hcc.frontend.attributes import as_text
from hcc.frontend.checks import constant_tensors, static_shape


def restate_upsampling(model: onnx.ModelProto) -> int:
    """Rewrite such Resize and ConvTranspose nodes in place (static shapes only); returns how many."""
    graph = model.graph
    shapes = {v.name: _nonempty(static_shape(v)) for v in list(graph.input) + list(graph.value_info) + list(graph.output)}
    inputs = {v.name for v in graph.input}
    floats = {v.name for v in list(graph.input) + list(graph.value_info) + list(graph.output)
              if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}
    weights = constant_tensors(graph)  # initializers or Constant nodes (paddle2onnx's Resize scales are Constants)
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 0)
    nodes, inits, rewritten = [], [], 0
    swapped = _pointwise_after_resize(graph, shapes, weights, opset)  # Conv name -> (its Resize, their restatement)
    moved = {resize.name for resize, _ in swapped.values()}
    for node in graph.node:
        expansion = None
        if node.name in moved:
            continue  # restated after its Conv, below
        if node.name in swapped:
            expansion = swapped[node.name][1]
        elif node.domain in ("", "ai.onnx") and node.op_type == "Resize":
            expansion = _resize_as_broadcast(node, shapes, weights, opset) or _resize_as_phases(node, shapes, weights, floats)
        elif node.domain in ("", "ai.onnx") and node.op_type == "ConvTranspose":
            expansion = _conv_transpose_as_conv(node, shapes, weights)
        if expansion is None:
            nodes.append(node)
            continue
        nodes.extend(expansion[0])
        inits.extend(expansion[1])
        rewritten += 1
    if rewritten:
        used = {name for n in nodes for name in n.input} | {o.name for o in graph.output}
        nodes = [n for n in nodes if n.op_type != "Constant" or any(o in used for o in n.output)]  # read scales go
        del graph.node[:]
        graph.node.extend(nodes)
        kept = [init for init in graph.initializer if init.name in used or init.name in inputs]  # the old weights go
        del graph.initializer[:]
        graph.initializer.extend(kept + inits)
    return rewritten


def _nonempty(shape: list[int] | None) -> list[int] | None:
    """A static shape without zero-length dims (nothing to restate in an empty tensor), else None."""
    return shape if shape is not None and all(d > 0 for d in shape) else None


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _ints(name: str, values) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(list(values), np.int64), name)


# ------------------------------------------------------------------------------------------------------ Resize


def _resize_as_broadcast(node: onnx.NodeProto, shapes: dict, weights: dict, opset: int):
    attrs = _attrs(node)
    x_shape, y_shape = shapes.get(node.input[0]), shapes.get(node.output[0])
    if as_text(attrs.get("mode", "nearest")) != "nearest" or not x_shape or not y_shape or len(x_shape) != len(y_shape):
        return None
    if as_text(attrs.get("coordinate_transformation_mode", "half_pixel")) == "tf_crop_and_resize" or "axes" in attrs:
        return None
    if any(y % x for x, y in zip(x_shape, y_shape)) or x_shape == y_shape:
        return None
    factors = [y // x for x, y in zip(x_shape, y_shape)]
    scales = _resize_operand(node, 2, weights)
    if scales is None or (scales.size == 0 and _resize_operand(node, 3, weights) is None):
        return None  # scales or sizes given at run time: the output's shape inference already needed them
    if not all(_repeats(attrs, opset, n, f, scales[d] if scales.size else None) for d, (n, f) in enumerate(zip(x_shape, factors)) if f > 1):
        return None
    split = [v for n, f in zip(x_shape, factors) for v in ((n, 1) if f > 1 else (n,))]
    tiled = [v for n, f in zip(x_shape, factors) for v in ((n, f) if f > 1 else (n,))]
    name = node.name
    return ([helper.make_node("Reshape", [node.input[0], f"{name}/split_shape"], [f"{name}/split"], name=f"{name}/split"),
             helper.make_node("Expand", [f"{name}/split", f"{name}/tiled_shape"], [f"{name}/tiled"], name=name),
             helper.make_node("Reshape", [f"{name}/tiled", f"{name}/out_shape"], [node.output[0]], name=f"{name}/merge")],
            [_ints(f"{name}/split_shape", split), _ints(f"{name}/tiled_shape", tiled), _ints(f"{name}/out_shape", y_shape)])


MAX_PHASE_AXIS = 4096  # input length of an axis whose weights are probed (one reference run per position)


def _resize_as_phases(node: onnx.NodeProto, shapes: dict, weights: dict, floats: set[str]):
    """A float32 linear Resize by integer factors as per-axis phases (module docstring), or None."""
    attrs = _attrs(node)
    x_shape, y_shape = shapes.get(node.input[0]), shapes.get(node.output[0])
    if as_text(attrs.get("mode", "nearest")) != "linear" or attrs.get("antialias", 0) or "axes" in attrs or \
            as_text(attrs.get("keep_aspect_ratio_policy", "stretch")) != "stretch" or node.input[0] not in floats:
        return None
    if not x_shape or not y_shape or len(x_shape) != len(y_shape) or x_shape == y_shape or any(y % x for x, y in zip(x_shape, y_shape)):
        return None
    operands = [_resize_operand(node, i, weights) for i in (1, 2, 3)]  # roi, scales, sizes
    if any(v is None for v in operands) or max(x_shape) > MAX_PHASE_AXIS:
        return None
    roi, scales, sizes = (v if v.size else None for v in operands)
    steps = []
    for axis in reversed(range(len(x_shape))):  # the innermost axis first: its interleave runs on the smaller map
        if y_shape[axis] == x_shape[axis]:
            continue
        taps = _phase_taps(node, axis, x_shape, y_shape, roi, scales, sizes)
        if taps is None:
            return None
        steps.append((axis, taps))
    nodes, inits = [], []
    value, shape = node.input[0], list(x_shape)
    for k, (axis, taps) in enumerate(steps):
        out = node.output[0] if k == len(steps) - 1 else f"{node.name}/axis{axis}"
        step_nodes, step_inits = _phases_along(f"{node.name}/axis{axis}", value, out, shape, axis, taps)
        nodes += step_nodes
        inits += step_inits
        value, shape = out, shape[:axis] + [shape[axis] * len(taps)] + shape[axis + 1:]
    return nodes, inits


def _phase_taps(node, axis: int, x_shape: list[int], y_shape: list[int], roi, scales, sizes) -> list | None:
    """Per phase p of the axis, [(input offset d, weight)] such that output s*j + p = sum of weight * x[clamp(j + d)]
    for every j, as the reference's weights of this axis say (to 1e-6); None when no such form exists."""
    from hcc.frontend.resize_matrix import axis_matrix

    n, factor = x_shape[axis], y_shape[axis] // x_shape[axis]
    try:
        matrix = axis_matrix(node, axis, x_shape, y_shape, roi, scales, sizes, np.float64)
    except Exception:  # the reference refuses something about this node: leave it to the general path
        return None
    middle = n // 2
    taps = []
    for p in range(factor):
        row = matrix[factor * middle + p]
        taps.append([(int(i) - middle, float(row[i])) for i in np.flatnonzero(row)])
        if not taps[-1] or any(abs(d) > 1 for d, _ in taps[-1]):
            return None
    rebuilt = np.zeros_like(matrix)
    for j in range(n):
        for p, phase in enumerate(taps):
            for d, w in phase:
                rebuilt[factor * j + p, min(max(j + d, 0), n - 1)] += w
    return taps if np.allclose(rebuilt, matrix, rtol=0, atol=1e-6) else None


def _phases_along(prefix: str, value: str, out: str, shape: list[int], axis: int, taps: list):
    """Nodes computing `out` = `value` resized along `axis` by the phases `taps` (_phase_taps)."""
    n, rank = shape[axis], len(shape)
    lo, hi = any(d < 0 for phase in taps for d, _ in phase), any(d > 0 for phase in taps for d, _ in phase)
    nodes, inits = [], [_ints(f"{prefix}/axis", [axis])]

    def sliced(source: str, start: int, length: int, name: str) -> str:
        inits.extend([_ints(f"{name}/start", [start]), _ints(f"{name}/end", [start + length])])
        nodes.append(helper.make_node("Slice", [source, f"{name}/start", f"{name}/end", f"{prefix}/axis"], [name], name=name))
        return name

    padded = value
    if lo or hi:
        pieces = ([sliced(value, 0, 1, f"{prefix}/first")] if lo else []) + [value] + \
            ([sliced(value, n - 1, 1, f"{prefix}/last")] if hi else [])
        padded = f"{prefix}/padded"
        nodes.append(helper.make_node("Concat", pieces, [padded], name=padded, axis=axis))
    column = [1 if d == axis + 1 else shape[d] if d <= axis else shape[d - 1] for d in range(rank + 1)]
    phases = []
    for p, phase in enumerate(taps):
        total = _weighted_taps(f"{prefix}/p{p}", phase, lambda d, t, p=p: sliced(padded, d + int(lo), n, f"{prefix}/p{p}t{t}"),
                               nodes, inits)
        inits.append(_ints(f"{prefix}/p{p}/shape", column))
        nodes.append(helper.make_node("Reshape", [total, f"{prefix}/p{p}/shape"], [f"{prefix}/p{p}"], name=f"{prefix}/p{p}"))
        phases.append(f"{prefix}/p{p}")
    nodes.append(helper.make_node("Concat", phases, [f"{prefix}/phases"], name=f"{prefix}/phases", axis=axis + 1))
    inits.append(_ints(f"{prefix}/out_shape", shape[:axis] + [n * len(taps)] + shape[axis + 1:]))
    nodes.append(helper.make_node("Reshape", [f"{prefix}/phases", f"{prefix}/out_shape"], [out], name=f"{prefix}/interleave"))
    return nodes, inits


def _weighted_taps(prefix: str, phase: list, tap, nodes: list, inits: list) -> str:
    """The value sum(w * tap(d)) over the phase's taps. Weights that sum to 1 (linear interpolation) are computed as
    main + sum(w * (other - main)), the main tap being the heaviest: no product is shared between phases (the
    phases' 0.75 * x[j] would be one node after CSE, read twice, and so not fused into either sum)."""
    weights = [w for _, w in phase]
    main = int(np.argmax(weights))
    blend = abs(sum(weights) - 1.0) < 1e-6
    total = tap(phase[main][0], main) if blend else None
    for t, (d, w) in enumerate(phase):
        if blend and t == main:
            continue
        term = tap(d, t)
        if blend:
            nodes.append(helper.make_node("Sub", [term, total], [f"{prefix}/t{t}/step"], name=f"{prefix}/t{t}/step"))
            term = f"{prefix}/t{t}/step"
        if w != 1.0 or blend:
            inits.append(numpy_helper.from_array(np.array(w, np.float32), f"{prefix}/t{t}/w"))
            nodes.append(helper.make_node("Mul", [term, f"{prefix}/t{t}/w"], [f"{prefix}/t{t}/weighted"], name=f"{prefix}/t{t}/weighted"))
            term = f"{prefix}/t{t}/weighted"
        if total is not None:
            nodes.append(helper.make_node("Add", [total, term], [f"{prefix}/t{t}/sum"], name=f"{prefix}/t{t}/sum"))
            term = f"{prefix}/t{t}/sum"
        total = term
    return total


def _pointwise_after_resize(graph: onnx.GraphProto, shapes: dict, weights: dict, opset: int) -> dict:
    """{Conv name: (Resize node, restatement)} for each broadcasting Resize (spatial axes only) whose one reader is a
    pointwise Conv on its data input: a 1x1 kernel, stride 1, no padding (named nodes only: the loader names every
    node)."""
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    swapped = {}
    for node in graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type != "Resize" or not node.name or node.output[0] in outputs:
            continue
        conv = readers.get(node.output[0], [])
        if len(conv) != 1 or conv[0].op_type != "Conv" or conv[0].domain not in ("", "ai.onnx") or not conv[0].name:
            continue
        conv = conv[0]
        x_shape, y_shape = shapes.get(node.input[0]), shapes.get(node.output[0])
        w = weights.get(conv.input[1])
        if list(conv.input).count(node.output[0]) != 1 or conv.input[0] != node.output[0] or w is None or len(w.dims) != 4:
            continue
        if not x_shape or not y_shape or len(x_shape) != 4 or x_shape[:2] != y_shape[:2] or list(w.dims[2:]) != [1, 1]:
            continue
        attrs = _attrs(conv)
        auto_pad = as_text(attrs.get("auto_pad", "NOTSET"))
        if any(v != 1 for v in attrs.get("strides", [1, 1])) or any(v != 0 for v in attrs.get("pads", [0] * 4)) or \
                auto_pad not in ("NOTSET", "VALID"):
            continue
        expansion = _conv_then_resize(conv, node, shapes, weights, opset)  # the broadcast checks of the Resize itself
        if expansion is not None:
            swapped[conv.name] = (node, expansion)
    return swapped


def _conv_then_resize(conv: onnx.NodeProto, resize: onnx.NodeProto, shapes: dict, weights: dict, opset: int):
    """The Conv on the Resize's input, then the broadcast of its output to the Conv's original output; None unless the
    Resize is a broadcast (_resize_as_broadcast: the same axes, lengths and attributes, only the channels differ)."""
    small = f"{conv.name}/before_upsampling"
    first = onnx.NodeProto()
    first.CopyFrom(conv)
    first.input[0] = resize.input[0]
    first.output[0] = small
    out_shape = shapes.get(conv.output[0])
    if not out_shape or len(out_shape) != 4:
        return None
    local = dict(shapes)
    local[small] = [out_shape[0], out_shape[1], *shapes[resize.input[0]][2:]]
    moved = onnx.NodeProto()
    moved.CopyFrom(resize)
    moved.input[0], moved.output[0] = small, conv.output[0]
    expansion = _resize_as_broadcast(moved, local, weights, opset)
    return None if expansion is None else ([first, *expansion[0]], expansion[1])


def _resize_operand(node: onnx.NodeProto, index: int, weights: dict) -> np.ndarray | None:
    """A constant operand (empty when absent), or None when it is computed at run time."""
    if len(node.input) <= index or not node.input[index]:
        return np.zeros(0, np.float32)
    init = weights.get(node.input[index])
    return numpy_helper.to_array(init).reshape(-1) if init is not None else None


def _repeats(attrs: dict, opset: int, length: int, factor: int, scale: float | None) -> bool:
    """Whether the node's own attributes map output position o of this axis to input o // factor: the ONNX reference
    resizes a ramp [0, length) shaped [1, length] to [1, length * factor]."""
    from onnx.reference import ReferenceEvaluator

    kept = {k: v for k, v in attrs.items() if k in ("coordinate_transformation_mode", "nearest_mode", "mode", "exclude_outside")}
    inputs = ["x", "", "scales"] if scale is not None else ["x", "", "", "sizes"]
    resize = helper.make_node("Resize", inputs, ["y"], **kept)
    consts = [numpy_helper.from_array(np.array([1.0, scale], np.float32), "scales")] if scale is not None else \
        [_ints("sizes", [1, length * factor])]
    graph = helper.make_graph([resize], "ramp", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, length])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(opset, 11))])
    ramp = np.arange(length, dtype=np.float32)[None]
    try:
        (out,) = ReferenceEvaluator(model).run(None, {"x": ramp})
    except Exception:  # the reference refuses something about this node: leave it to the general path
        return False
    expected = np.arange(length * factor) // factor
    return out.shape == (1, length * factor) and np.array_equal(out[0], expected.astype(np.float32))


# ------------------------------------------------------------------------------------------------------ ConvTranspose


def _conv_transpose_as_conv(node: onnx.NodeProto, shapes: dict, weights: dict):
    attrs = _attrs(node)
    x_shape, y_shape = shapes.get(node.input[0]), shapes.get(node.output[0])
    w_init = weights.get(node.input[1])
    if not x_shape or not y_shape or len(x_shape) != 4 or w_init is None or len(w_init.dims) != 4:
        return None
    c, f, kh, kw = w_init.dims
    bias = weights.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and bias is None:
        return None
    plain = (list(attrs.get("kernel_shape", [kh, kw])) == [kh, kw] == list(attrs.get("strides", [1, 1]))
             and all(v == 0 for v in attrs.get("pads", [0] * 4)) and all(v == 1 for v in attrs.get("dilations", [1, 1]))
             and all(v == 0 for v in attrs.get("output_padding", [0, 0])) and attrs.get("group", 1) == 1
             and as_text(attrs.get("auto_pad", "NOTSET")) in ("NOTSET", "VALID"))
    n, _, h, w = x_shape
    if not plain or kh * kw == 1 or x_shape[1] != c or y_shape != [n, f, h * kh, w * kw]:
        return None
    weight = numpy_helper.to_array(w_init)
    name = node.name
    packed = weight.transpose(1, 2, 3, 0).reshape(f * kh * kw, c, 1, 1)  # filter (f, a, b) = W[:, f, a, b]
    inits = [numpy_helper.from_array(np.ascontiguousarray(packed), f"{name}/pixel_filters")]
    conv_inputs = [node.input[0], f"{name}/pixel_filters"]
    if bias is not None:
        inits.append(numpy_helper.from_array(np.repeat(numpy_helper.to_array(bias), kh * kw), f"{name}/pixel_bias"))
        conv_inputs.append(f"{name}/pixel_bias")
    inits += [_ints(f"{name}/blocks_shape", [n, f, kh, kw, h, w]), _ints(f"{name}/out_shape", y_shape)]
    return ([helper.make_node("Conv", conv_inputs, [f"{name}/pixels"], name=name, kernel_shape=[1, 1]),
             helper.make_node("Reshape", [f"{name}/pixels", f"{name}/blocks_shape"], [f"{name}/blocks"], name=f"{name}/blocks"),
             helper.make_node("Transpose", [f"{name}/blocks"], [f"{name}/interleaved"], name=f"{name}/interleave",
                              perm=[0, 1, 4, 2, 5, 3]),
             helper.make_node("Reshape", [f"{name}/interleaved", f"{name}/out_shape"], [node.output[0]], name=f"{name}/merge")],
            inits)
