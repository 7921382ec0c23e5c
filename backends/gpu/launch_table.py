"""Build the launch table (`hcc-launch-v1`) from the outlined host function.

After kernel outlining the host function of a subgraph holds only: constants, `memref.alloc` (temporary buffers),
`memref.get_global` (constant tensors), view ops (subview, expand/collapse_shape, reinterpret_cast, cast) and
`gpu.launch_func`. Every memref has a static shape and a static strided layout, so each kernel argument resolves at
compile time to (buffer, element offset, sizes, strides): the runtime needs no MLIR, only this table. Anything
else in the host function is an HccError naming the op.

Kernel parameters follow MLIR's bare-pointer GPU calling convention (convert-gpu-to-nvvm
use-bare-ptr-memref-call-conv): a memref argument is one pointer, the base address of its buffer; its static offset,
sizes and strides are compiled into the kernel (the table still lists them under "args" for inspection). An `index`
is an i64; other scalars keep their type.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from hcc.backends.gpu.mlir_util import single_threaded_context
from hcc.devices import LAUNCH_ABI
from hcc.errors import HccError

ELEMENT_DTYPES = {"f32": "float32", "f16": "float16", "f64": "float64", "i64": "int64", "i32": "int32", "i16": "int16",
                  "i8": "int8", "i1": "bool", "ui8": "uint8"}
SCALAR_PARAM = {"index": "i64", "i64": "i64", "i32": "i32", "i16": "i16", "i8": "i8", "i1": "i8", "f32": "f32", "f64": "f64", "f16": "f16"}
VIEW_OPS = {"memref.subview", "memref.expand_shape", "memref.collapse_shape", "memref.reinterpret_cast", "memref.cast"}
IGNORED_OPS = {"arith.constant", "memref.dealloc", "func.return"}


@dataclass
class View:
    buffer: int
    dtype: str
    offset: int
    sizes: list[int]
    strides: list[int]


def _where(op) -> str:
    match = re.search(r'loc\("((?:[^"\\]|\\.)*)"', str(op.location))
    return f"'{op.name}'" + (f' (node "{match.group(1)}")' if match else "")


def _element(t, op) -> str:
    name = str(t)
    if name not in ELEMENT_DTYPES:
        raise HccError(f"GPU backend: element type {name} of {_where(op)} has no runtime dtype")
    return ELEMENT_DTYPES[name]


def _layout(mtype, op) -> tuple[list[int], int]:
    from mlir import ir

    shape = list(mtype.shape)
    if any(d == ir.ShapedType.get_dynamic_size() for d in shape):
        raise HccError(f"GPU backend: {_where(op)} has a dynamic shape ({mtype}); the launch table needs static shapes")
    strides, offset = mtype.get_strides_and_offset()
    dyn = ir.ShapedType.get_dynamic_stride_or_offset()
    if offset == dyn or any(s == dyn for s in strides):
        raise HccError(f"GPU backend: {_where(op)} has a dynamic layout ({mtype}); the launch table needs static views")
    return list(strides), int(offset)


def _dense_to_numpy(attr, mtype, dtype: str) -> np.ndarray:
    from mlir import ir

    shape = list(mtype.shape)
    dense = ir.DenseElementsAttr(attr)
    if dense.is_splat:
        value = dense.get_splat_value()
        scalar = value.value if hasattr(value, "value") else value
        return np.full(shape, scalar, dtype=np.dtype(dtype))
    if dtype == "bool":
        return np.array([bool(x) for x in ir.DenseIntElementsAttr(attr)], dtype=np.bool_).reshape(shape)
    typed = ir.DenseFPElementsAttr(attr) if dtype.startswith("float") else ir.DenseIntElementsAttr(attr)
    return np.array(typed, copy=True).astype(np.dtype(dtype)).reshape(shape)


@dataclass
class _HostTables:
    """What `build` accumulates while it walks the host function: the buffers, the compile-time view of every memref
    value, the scalar constants, the constant arrays and the launch steps (one object instead of eight loose dicts)."""
    buffers: list[dict] = field(default_factory=list)
    views: dict = field(default_factory=dict)  # ir.Value -> View
    constants: dict = field(default_factory=dict)  # value -> python number
    const_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    global_buffer: dict[str, int] = field(default_factory=dict)
    steps: list[dict] = field(default_factory=list)
    kernels: dict[str, dict] = field(default_factory=dict)
    kernel_roots: dict[str, list] = field(default_factory=dict)

    def new_buffer(self, record: dict) -> int:
        """Append `record` as the next buffer; its id is its index (the runtime addresses buffers by id)."""
        record["id"] = len(self.buffers)
        self.buffers.append(record)
        return record["id"]


def build(host_text: str, entry: str, n_inputs: int, n_outputs: int, kernel_names: dict[str, str],
          input_names: list[str], output_names: list[str]) -> tuple[dict, dict[str, np.ndarray], dict[str, list]]:
    """-> (table without toolchain/file fields, constant arrays by buffer name, kernel name -> memref arg roots).

    The third result lists, per kernel, the buffer id of each memref argument (for the no-alias analysis).
    """
    from mlir import ir

    tables = _HostTables()
    with single_threaded_context():
        module = ir.Module.parse(host_text)
        globals_, func = _host_function(module, entry)
        block = func.regions[0].blocks[0]
        args = list(block.arguments)
        if len(args) != n_inputs + n_outputs:
            raise HccError(f"internal: GPU backend: @{entry} has {len(args)} arguments, expected {n_inputs} inputs + {n_outputs} outputs")
        _argument_buffers(tables, func, entry, n_inputs, input_names, output_names)
        for op in block.operations:
            _host_op(tables, op, globals_, kernel_names, entry)

    arena_bytes = pack_temporaries(tables.buffers, tables.steps)
    return _table(tables, entry, arena_bytes), tables.const_arrays, tables.kernel_roots


def _host_function(module, entry: str) -> tuple[dict[str, object], object]:
    """The constant globals by name and func.func @entry: get_global ops are resolved against the former."""
    from mlir import ir

    globals_: dict[str, object] = {}
    func = None
    for op in module.body.operations:
        if op.operation.name == "memref.global":
            globals_[ir.StringAttr(op.attributes["sym_name"]).value] = op
        elif op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == entry:
            func = op
    if func is None:
        raise HccError(f"internal: GPU backend: host function @{entry} not found")
    return globals_, func


def _root_view(value, op, buffer_id: int) -> View:
    """The view of a whole buffer: `value`'s own static layout over buffer `buffer_id`."""
    mtype = value.type
    strides, offset = _layout(mtype, op)
    return View(buffer_id, _element(mtype.element_type, op), offset, list(mtype.shape), strides)


def _argument_buffers(tables: _HostTables, func, entry: str, n_inputs: int, input_names: list[str], output_names: list[str]) -> None:
    """One buffer per function argument (the first `n_inputs` are inputs, the rest outputs), in argument order, so
    the runtime binds the caller's tensors by position."""
    from mlir import ir

    for i, arg in enumerate(func.regions[0].blocks[0].arguments):
        if not isinstance(arg.type, ir.MemRefType):
            raise HccError(f"GPU backend: argument {i} of @{entry} is not a buffer ({arg.type})")
        role, index = ("input", i) if i < n_inputs else ("output", i - n_inputs)
        shape = list(arg.type.shape)
        dtype = _element(arg.type.element_type, func.operation)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        name = (input_names if role == "input" else output_names)[index]
        bid = tables.new_buffer({"role": role, "index": index, "name": name, "dtype": dtype, "shape": shape, "nbytes": nbytes})
        tables.views[arg] = _root_view(arg, func.operation, bid)


def _host_op(tables: _HostTables, op, globals_: dict[str, object], kernel_names: dict[str, str], entry: str) -> None:
    """Resolve one top-level op of the host function into `tables`; an op the table cannot express is an HccError."""
    name = op.operation.name
    if name == "arith.constant":
        _record_constant(tables, op)
    elif name in ("memref.alloc", "memref.alloca"):
        _temp_buffer(tables, op)
    elif name == "memref.get_global":
        _constant_buffer(tables, op, globals_)
    elif name in VIEW_OPS:
        _derived_view(tables, op)
    elif name == "gpu.launch_func":
        tables.steps.append(_launch_step(op, tables.views, tables.constants, kernel_names, tables.kernels, tables.kernel_roots))
    elif name not in IGNORED_OPS:
        raise HccError(f"GPU backend: {_where(op.operation)} in the host code of {entry} cannot be expressed in the launch table")


def _record_constant(tables: _HostTables, op) -> None:
    """Integer and float constants become known values (grid sizes, scalar kernel arguments); others are ignored."""
    from mlir import ir

    attr = op.attributes["value"]
    if isinstance(attr, ir.IntegerAttr):
        tables.constants[op.result] = int(attr.value)
    elif isinstance(attr, ir.FloatAttr):
        tables.constants[op.result] = float(attr.value)


def _temp_buffer(tables: _HostTables, op) -> None:
    """A statically sized alloc becomes a temporary buffer, sized to the span its layout reaches (an arena slot later)."""
    mtype = op.result.type
    if len(op.operands):
        raise HccError(f"GPU backend: {_where(op.operation)} allocates a dynamically sized buffer")
    dtype = _element(mtype.element_type, op.operation)
    shape = list(mtype.shape)
    strides, offset = _layout(mtype, op.operation)
    span = offset + sum((s - 1) * st for s, st in zip(shape, strides)) + 1 if shape else offset + 1
    nbytes = max(span, 0) * np.dtype(dtype).itemsize
    bid = tables.new_buffer({"role": "temp", "dtype": dtype, "shape": shape, "nbytes": int(nbytes)})
    tables.views[op.result] = _root_view(op.result, op.operation, bid)


def _constant_buffer(tables: _HostTables, op, globals_: dict[str, object]) -> None:
    """A get_global reads a constant buffer: one per global however often it is read, its data kept as an array."""
    from mlir import ir

    gname = ir.FlatSymbolRefAttr(op.attributes["name"]).value
    if gname not in tables.global_buffer:
        gop = globals_.get(gname)
        if gop is None or "initial_value" not in gop.attributes:
            raise HccError(f"GPU backend: {_where(op.operation)} reads @{gname}, which has no constant initial value")
        mtype = op.result.type
        dtype = _element(mtype.element_type, op.operation)
        array = _dense_to_numpy(gop.attributes["initial_value"], mtype, dtype)
        bid = tables.new_buffer({"role": "constant", "name": gname, "dtype": dtype, "shape": list(mtype.shape), "nbytes": int(array.nbytes)})
        tables.const_arrays[gname] = array
        tables.global_buffer[gname] = bid
    tables.views[op.result] = _root_view(op.result, op.operation, tables.global_buffer[gname])


def _derived_view(tables: _HostTables, op) -> None:
    """A view op keeps its source's buffer; its result type carries the static offset, sizes and strides."""
    source = op.operands[0]
    if source not in tables.views:
        raise HccError(f"GPU backend: {_where(op.operation)} views a value the launch table cannot resolve")
    mtype = op.result.type
    strides, offset = _layout(mtype, op.operation)
    tables.views[op.result] = View(tables.views[source].buffer, _element(mtype.element_type, op.operation), offset, list(mtype.shape), strides)


def _table(tables: _HostTables, entry: str, arena_bytes: int) -> dict:
    """The hcc-launch-v1 table (key order is part of the artifact: launch.json is written from it)."""
    buffers = tables.buffers
    return {
        "format": LAUNCH_ABI,
        "entry": entry,
        "buffers": buffers,
        "kernels": tables.kernels,
        "steps": tables.steps,
        "inputs": [b["id"] for b in buffers if b["role"] == "input"],
        "outputs": [b["id"] for b in buffers if b["role"] == "output"],
        "temp_bytes": sum(b["nbytes"] for b in buffers if b["role"] == "temp"),
        "arena_bytes": arena_bytes,
        "constant_bytes": sum(b["nbytes"] for b in buffers if b["role"] == "constant"),
    }


ARENA_ALIGNMENT = 256


def pack_temporaries(buffers: list[dict], steps: list[dict]) -> int:
    """Give every temporary buffer an offset in one arena, reusing memory between buffers whose lifetimes (first to
    last step that uses them) do not overlap; -> arena size. Unused temporaries get no memory."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for index, step in enumerate(steps):
        used = [p["buffer"] for p in step.get("params", []) if p["kind"] == "ptr"]
        used += [step[k]["buffer"] for k in ("src", "dst") if k in step]
        for b in used:
            first.setdefault(b, index)
            last[b] = index
    placed: list[tuple[int, int, int, int]] = []  # (offset, end, first, last)
    temps = [b for b in buffers if b["role"] == "temp"]
    for buf in sorted(temps, key=lambda b: (-b["nbytes"], b["id"])):
        if buf["id"] not in first:
            buf["unused"] = True
            continue
        lo, hi = first[buf["id"]], last[buf["id"]]
        size = -(-max(buf["nbytes"], 1) // ARENA_ALIGNMENT) * ARENA_ALIGNMENT
        offset = 0
        for p_off, p_end, p_lo, p_hi in sorted(placed):
            if p_hi < lo or p_lo > hi:  # lifetimes do not overlap
                continue
            if offset + size <= p_off:
                break
            offset = max(offset, p_end)
        buf["arena_offset"] = offset
        buf["live_steps"] = [lo, hi]
        placed.append((offset, offset + size, lo, hi))
    return max((end for _o, end, _l, _h in placed), default=0)


def _const(value, constants: dict, what: str, op) -> int | float:
    if value not in constants:
        raise HccError(f"GPU backend: the {what} of {_where(op.operation)} is not a compile-time constant")
    return constants[value]


def _launch_step(op, views: dict, constants: dict, kernel_names: dict[str, str], kernels: dict, kernel_roots: dict) -> dict:
    from mlir import ir

    if len(op.asyncDependencies) or op.asyncObject is not None:
        raise HccError(f"GPU backend: asynchronous {_where(op.operation)} is not supported")
    if op.clusterSizeX is not None:
        raise HccError(f"GPU backend: {_where(op.operation)} uses thread-block clusters, which hcc-launch-v1 cannot express")
    symbol = str(op.kernel)  # @module::@func
    key = "::".join(part.lstrip("@") for part in symbol.split("::"))
    if key not in kernel_names:
        raise HccError(f"internal: GPU backend: launched kernel {symbol} was not outlined")
    kname = kernel_names[key]
    grid = [int(_const(v, constants, "grid size", op)) for v in (op.gridSizeX, op.gridSizeY, op.gridSizeZ)]
    block = [int(_const(v, constants, "block size", op)) for v in (op.blockSizeX, op.blockSizeY, op.blockSizeZ)]
    shared = 0 if op.dynamicSharedMemorySize is None else int(_const(op.dynamicSharedMemorySize, constants, "dynamic shared memory size", op))
    params: list[dict] = []
    args: list[dict] = []
    roots: list[int] = []
    for value in op.kernelOperands:
        vtype = value.type
        first = len(params)
        if isinstance(vtype, ir.MemRefType):
            if value not in views:
                raise HccError(f"GPU backend: a buffer argument of {_where(op.operation)} cannot be resolved at compile time")
            v = views[value]
            roots.append(v.buffer)
            params.append({"kind": "ptr", "buffer": v.buffer})  # bare pointer: the buffer's base address
            args.append({"memref": {"buffer": v.buffer, "dtype": v.dtype, "offset": v.offset, "sizes": v.sizes, "strides": v.strides},
                         "params": [first, len(params) - first]})
        else:
            tname = str(vtype)
            if tname not in SCALAR_PARAM:
                raise HccError(f"GPU backend: kernel argument of type {tname} in {_where(op.operation)} is not supported")
            value_ = _const(value, constants, "scalar argument", op)
            kind = SCALAR_PARAM[tname]
            params.append({"kind": kind, "value": value_})
            args.append({"scalar": {"type": tname, "value": value_}, "params": [first, 1]})
    if kname in kernels:
        raise HccError(f"internal: GPU backend: kernel {kname} is launched twice")
    kernels[kname] = {"params": [p["kind"] for p in params]}
    kernel_roots[kname] = roots
    return {"op": "launch", "kernel": kname, "grid": grid, "block": block, "shared_bytes": shared, "params": params, "args": args}
