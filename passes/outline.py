"""Outlining: turn a placement (node -> subgraph) into one MLIR function per subgraph.

Works on the torch-onnx dialect module that the importer produced (one `torch.operator "onnx.X"` per ONNX node,
the node's name as its location). Each subgraph becomes `func.func @<id>(external values) -> (exported values)`;
small constants (`onnx.Constant`, `torch.constant.*`) are cloned into every function that uses them, so
compile-time operands such as Reshape shapes stay constants. Each function is then returned as its own module
text, ready for the per-device lowering.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from hcc.errors import HccError

_NAME_LOC = re.compile(r'^loc\("((?:[^"\\]|\\.)*)"')


@dataclass
class SubgraphSpec:
    """An outlined subgraph, ready for its device's backend."""

    id: str
    device: str
    inputs: list[str]  # tensor names, in argument order
    outputs: list[str]  # tensor names, in result order
    nodes: list[str] = field(default_factory=list)  # ONNX node names
    module_text: str = ""  # torch-onnx dialect module holding exactly this subgraph's function, named `id`


@dataclass
class SubgraphGroup:
    """What the partitioner decided for one subgraph: its id, device, and ONNX node names."""

    id: str
    device: str
    nodes: list[str]
    device_index: int = 0


def _loc_name(op) -> str | None:
    match = _NAME_LOC.match(str(op.location))
    return match.group(1).encode().decode("unicode_escape") if match else None


def _is_constant(op) -> bool:
    name = op.operation.name
    if name.startswith("torch.constant."):
        return True
    if name == "torch.operator":
        return str(op.operation.attributes["name"]).strip('"') == "onnx.Constant"
    return False


@dataclass
class _Scan:
    """What one walk over the imported function learns: each value's tensor name and producing group, the
    constants to clone, each group's ops in order, and the return op (kept together so the later steps share it)."""

    names: dict  # ir.Value -> tensor name
    producer_group: dict  # ir.Value -> group id, None for the function's arguments
    constants: dict  # ir.Value -> the constant op that produces it
    ops_of: dict[str, list]  # group id -> its ops, in block order
    return_op: object


def _scan(block, groups: list[SubgraphGroup], arg_names: list[str], node_outputs: dict[str, list[str]]) -> _Scan:
    """Step 1: who produces each value, and its tensor name; every non-constant op must belong to a group."""
    group_of: dict[str, str] = {name: g.id for g in groups for name in g.nodes}
    names = {arg: arg_names[i] for i, arg in enumerate(block.arguments)}
    producer_group: dict = {arg: None for arg in block.arguments}
    constants: dict = {}
    ops_of: dict[str, list] = {g.id: [] for g in groups}
    return_op = None
    for op in block.operations:
        if op.operation.name == "func.return":
            return_op = op
            continue
        if _is_constant(op):
            for result in op.results:
                constants[result] = op
            continue
        node = _loc_name(op)
        if node is None or node not in group_of:
            raise HccError(f"internal: op {op.operation.name} at {op.location} belongs to no subgraph")
        ops_of[group_of[node]].append(op)
        outputs = node_outputs.get(node, [])
        for i, result in enumerate(op.results):
            producer_group[result] = group_of[node]
            names[result] = outputs[i] if i < len(outputs) else f"{node}:{i}"
    assert return_op is not None
    return _Scan(names, producer_group, constants, ops_of, return_op)


def _boundaries(scan: _Scan, groups: list[SubgraphGroup]) -> tuple[dict[str, list], dict[str, list]]:
    """Step 2: the values each group must export (used by another group or returned) and import, in first-use
    order, which fixes the outlined functions' argument and result order."""
    exported: dict[str, list] = {g.id: [] for g in groups}
    imported: dict[str, list] = {g.id: [] for g in groups}

    def note_use(value, user_group: str | None):
        if value in scan.constants:
            return
        source = scan.producer_group[value]
        if source != user_group and source is not None and value not in exported[source]:
            exported[source].append(value)
        if user_group is not None and source != user_group and value not in imported[user_group]:
            imported[user_group].append(value)

    for g in groups:
        for op in scan.ops_of[g.id]:
            for operand in op.operands:
                note_use(operand, g.id)
    for operand in scan.return_op.operands:
        note_use(operand, None)
    return exported, imported


def _emit_function(module, g: SubgraphGroup, scan: _Scan, ins: list, outs: list, func_attrs: dict) -> SubgraphSpec:
    """Step 3: one group's `func.func` appended to the module: its ops cloned in order, each constant they read
    cloned once before its first use, the exported values returned."""
    from torch_mlir import ir
    from torch_mlir.dialects import func

    ftype = ir.FunctionType.get([v.type for v in ins], [v.type for v in outs])
    with ir.InsertionPoint(module.body):
        fn = func.FuncOp(g.id, ftype)
    for key, attr in func_attrs.items():
        fn.attributes[key] = attr
    entry = fn.add_entry_block()
    mapping: dict = dict(zip(ins, entry.arguments))
    with ir.InsertionPoint(entry):
        for op in scan.ops_of[g.id]:
            for operand in op.operands:
                if operand in scan.constants and operand not in mapping:
                    clone = scan.constants[operand].clone()
                    for orig, new in zip(scan.constants[operand].results, clone.results):
                        mapping[orig] = new
            clone = op.clone()
            for i, operand in enumerate(op.operands):
                clone.operands[i] = mapping[operand]
            for orig, new in zip(op.results, clone.results):
                mapping[orig] = new
        func.ReturnOp([mapping[v] for v in outs])
    return SubgraphSpec(g.id, g.device, [scan.names[v] for v in ins], [scan.names[v] for v in outs], list(g.nodes))


def _split_modules(module, specs: list[SubgraphSpec]) -> None:
    """Step 4: one module per subgraph (re-parsed from the whole module's text, so it keeps the dense_resource
    blobs the constants refer to), all other functions erased."""
    from torch_mlir import ir

    for spec in specs:
        single = ir.Module.parse(module.operation.get_asm(enable_debug_info=True, large_elements_limit=None))
        for op in list(single.body.operations):
            if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value != spec.id:
                op.operation.erase()
        spec.module_text = single.operation.get_asm(enable_debug_info=True, large_elements_limit=None)


def outline(torch_text: str, groups: list[SubgraphGroup], arg_names: list[str], node_outputs: dict[str, list[str]],
            graph_outputs: list[str]) -> list[SubgraphSpec]:
    """Split the imported function into one function per group.

    `arg_names`: tensor names of the function's arguments (real inputs, then lifted weights);
    `node_outputs`: ONNX node name -> its output tensor names; `graph_outputs`: the model's outputs in order.
    """
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_dialect

    context = ir.Context()
    torch_dialect.register_dialect(context)
    with context, ir.Location.unknown():
        module = ir.Module.parse(torch_text)
        main = next(op for op in module.body.operations if op.operation.name == "func.func")
        scan = _scan(main.regions[0].blocks[0], groups, arg_names, node_outputs)
        exported, imported = _boundaries(scan, groups)
        func_attrs = {name: main.attributes[name] for name in main.attributes if name.startswith("torch.")}
        specs = [_emit_function(module, g, scan, imported[g.id], exported[g.id], func_attrs) for g in groups]
        main.operation.erase()
        _split_modules(module, specs)
        missing = [n for n in graph_outputs if n not in {o for s in specs for o in s.outputs} | set(arg_names)]
        if missing:
            raise HccError(f"internal: model outputs {missing} are produced by no subgraph")
        return specs
