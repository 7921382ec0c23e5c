"""merge_products.py: contractions of one A by adjacent row blocks of one weight become one contraction."""
from __future__ import annotations

import pytest

mlir = pytest.importorskip("mlir.ir")

_PRODUCT = """
    %s{i} = tensor.extract_slice %w[{row}, 0] [{rows}, 8] [1, 1] : tensor<16x8xf32> to tensor<{rows}x8xf32>
    %p{i} = linalg.generic {{indexing_maps = [#a, #b, #c], iterator_types = ["parallel", "parallel", "reduction"]}}
        ins(%{a}, %s{i} : tensor<2x8xf32>, tensor<{rows}x8xf32>) outs(%zero{n} : tensor<2x{rows}xf32>) {{
      ^bb0(%x: f32, %y: f32, %acc: f32):
        %m = arith.mulf %x, %y : f32
        %s = arith.addf %acc, %m : f32
        linalg.yield %s : f32
    }} -> tensor<2x{rows}xf32> loc("{node}")
"""


def _module(products: list[tuple]) -> str:
    """func(a, b: 2 x 8, w: 16 x 8) returning a @ w[row:row+rows]^T for each (row, rows, a[, ONNX node name])."""
    sizes = sorted({p[1] for p in products})
    zeros = "".join(f"    %e{n} = tensor.empty() : tensor<2x{n}xf32>\n"
                    f"    %zero{n} = linalg.fill ins(%c0 : f32) outs(%e{n} : tensor<2x{n}xf32>) -> tensor<2x{n}xf32>\n" for n in sizes)
    body = "".join(_PRODUCT.format(i=i, row=p[0], rows=p[1], a=p[2], n=p[1], node=p[3] if len(p) > 3 else "lstm")
                   for i, p in enumerate(products))
    results = ", ".join(f"%p{i}" for i in range(len(products)))
    types = ", ".join(f"tensor<2x{p[1]}xf32>" for p in products)
    return ("#a = affine_map<(d0, d1, d2) -> (d0, d2)>\n#b = affine_map<(d0, d1, d2) -> (d1, d2)>\n"
            "#c = affine_map<(d0, d1, d2) -> (d0, d1)>\n"
            f"func.func @f(%a: tensor<2x8xf32>, %b: tensor<2x8xf32>, %w: tensor<16x8xf32>) -> ({types}) {{\n"
            "    %c0 = arith.constant 0.0 : f32\n" + zeros + body + f"    return {results} : {types}\n}}\n")


def _merge(products):
    from mlir import ir

    from hcc.backends.cpu.merge_products import merge_shared_operand_products

    with ir.Context():
        module = ir.Module.parse(_module(products))
        groups = merge_shared_operand_products(module.operation)
        module.operation.verify()
        return groups, str(module)


def test_gate_products_become_one_product_and_column_slices():
    """Three products of one A by rows 0-4, 4-12 and 12-16 of w (given out of order): one product by all of w,
    whose columns 0-4, 4-12, 12-16 are the former results."""
    groups, text = _merge([(4, 8, "a"), (0, 4, "a"), (12, 4, "a")])
    assert groups == 1
    assert text.count("linalg.generic") == 1 and "hcc.merged = 3" in text
    assert "ins(%arg0, %arg2 : tensor<2x8xf32>, tensor<16x8xf32>)" in text  # the whole weight, no slice
    for offset, rows in ((4, 8), (0, 4), (12, 4)):
        assert f"[0, {offset}] [2, {rows}] [1, 1] : tensor<2x16xf32> to tensor<2x{rows}xf32>" in text


@pytest.mark.parametrize("products", [
    [(0, 4, "a"), (8, 4, "a")],   # a gap between the blocks
    [(0, 8, "a"), (4, 8, "a")],   # overlapping blocks
    [(0, 4, "a"), (4, 4, "b")],   # different A operands
    [(0, 4, "a", "q"), (4, 4, "a", "k")],   # two ONNX nodes (each keeps its own precision and profile entry)
])
def test_products_that_do_not_tile_one_weight_block_stay(products):
    groups, text = _merge(products)
    assert groups == 0 and text.count("linalg.generic") == 2 and "hcc.merged" not in text


def test_a_partial_range_is_read_through_one_slice():
    """Rows 4-12 of w (two products): the merged product reads that one slice."""
    groups, text = _merge([(4, 4, "a"), (8, 4, "a")])
    assert groups == 1 and "[4, 0] [8, 8] [1, 1] : tensor<16x8xf32> to tensor<8x8xf32>" in text
