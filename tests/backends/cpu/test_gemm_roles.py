"""ukernels.gemm_roles: which loop dims of a contraction the GEMM kernel takes as M, N, K and batch."""
from __future__ import annotations

import pytest

mlir = pytest.importorskip("mlir.ir")


def _roles(a_map: str, a_shape: str, c_map: str, c_shape: str, ranges: tuple[int, int, int, int]):
    """Roles of C[c_map] += A[a_map] * B[k, n] over loops (d0, d1, d2 = n, d3 = k)."""
    from mlir import ir

    from hcc.backends.cpu import schedule, ukernels

    n, k = ranges[2], ranges[3]
    text = (f"#a = affine_map<(d0, d1, d2, d3) -> ({a_map})>\n#b = affine_map<(d0, d1, d2, d3) -> (d3, d2)>\n"
            f"#c = affine_map<(d0, d1, d2, d3) -> ({c_map})>\n"
            f"func.func @f(%a: tensor<{a_shape}xf32>, %b: tensor<{k}x{n}xf32>, %c: tensor<{c_shape}xf32>) -> tensor<{c_shape}xf32> {{\n"
            "  %r = linalg.generic {indexing_maps = [#a, #b, #c], iterator_types = [\"parallel\", \"parallel\", \"parallel\", \"reduction\"]}\n"
            f"      ins(%a, %b : tensor<{a_shape}xf32>, tensor<{k}x{n}xf32>) outs(%c : tensor<{c_shape}xf32>) {{\n"
            "    ^bb0(%x: f32, %y: f32, %acc: f32):\n"
            "      %m = arith.mulf %x, %y : f32\n      %s = arith.addf %acc, %m : f32\n      linalg.yield %s : f32\n"
            f"  }} -> tensor<{c_shape}xf32>\n  return %r : tensor<{c_shape}xf32>\n}}\n")
    with ir.Context():
        module = ir.Module.parse(text)
        op = next(o for o in module.body.operations[0].regions[0].blocks[0].operations if o.operation.name == "linalg.generic")
        return ukernels.gemm_roles(schedule.analyze(op, 0))


def test_the_longest_a_only_dim_is_m():
    """torch's batch_first encoder layer: transpose(x) [seq 32, batch 4, 256] times the in-projection. M is the
    sequence (32 rows, 4 products that share one packed weight), not the batch of 4 that is innermost in C (32
    products of 4 rows streamed the weight 32 times: 3x slower than onnxruntime)."""
    roles = _roles("d1, d0, d3", "4x32x8", "d0, d1, d2", "32x4x16", (32, 4, 16, 8))
    assert (roles.m, roles.batch, roles.n, roles.ks) == (0, [1], 2, [3])


def test_the_innermost_of_equal_a_only_dims_is_m():
    """A [2, 32, K] activations by a weight, C [2, 32, N]: M is the innermost (the rows of each batch entry)."""
    roles = _roles("d0, d1, d3", "2x32x8", "d0, d1, d2", "2x32x16", (2, 32, 16, 8))
    assert (roles.m, roles.batch) == (1, [0])
    roles = _roles("d0, d1, d3", "8x8x8", "d0, d1, d2", "8x8x16", (8, 8, 16, 8))
    assert (roles.m, roles.batch) == (1, [0])
