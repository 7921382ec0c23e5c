"""FPGA config (TOML) parsing and precedence, the HLS lint, and the static estimator."""
from __future__ import annotations

import math

import pytest

from hcc.backends.fpga import config as fconfig
from hcc.backends.fpga import estimate, lint
from hcc.errors import HccError
from hcc.options import FpgaOptions

TOML = """
[model]
precision = "ap_fixed<16,6>"
reuse_factor = 2
strategy = "latency"
max_width = 28

[op_type.Conv]
weight = "ap_fixed<8,3>"
reuse_factor = 4

[node."features.1/conv"]
accum = "ap_fixed<24,10,AP_RND,AP_SAT>"
strategy = "resource"

[node."features.1/relu"]
result = "ap_ufixed<12,4>"

[tensor.x]
precision = "ap_fixed<12,4>"
"""


def test_config_precedence(tmp_path):
    p = tmp_path / "fpga.toml"
    p.write_text(TOML)
    cfg = fconfig.load(p)
    types = {"features.1/conv": "Conv", "features.1/relu": "Relu", "fc": "Gemm"}
    nodes = ["features.1/conv", "features.1/relu"]
    assert cfg.lookup("weight", nodes, types)[0] == "ap_fixed<8,3>"  # op_type beats model
    assert cfg.lookup("reuse_factor", nodes, types)[0] == 4
    assert cfg.lookup("strategy", nodes, types)[0] == "resource"  # node beats op_type
    assert cfg.lookup("accum", nodes, types)[0] == "ap_fixed<24,10,AP_RND,AP_SAT>"
    assert cfg.lookup("result", nodes, types, last_wins=True)[0] == "ap_ufixed<12,4>"  # the fused op's last node
    assert cfg.lookup("weight", ["fc"], types)[0] == "ap_fixed<16,6>"  # model default
    assert cfg.lookup("reuse_factor", ["fc"], types)[0] == 2
    assert cfg.lookup("accum", ["fc"], types)[0] == "auto"
    assert cfg.tensor_type("x")[0] == "ap_fixed<12,4>"
    assert cfg.max_width == 28


def test_command_line_options_set_the_model_default():
    cfg = fconfig.from_options(FpgaOptions(precision="auto", config={"model": {"precision": "ap_fixed<10,4>"}}, reuse_factor=8))
    assert cfg.model["precision"] == "auto" and cfg.model["reuse_factor"] == 8


@pytest.mark.parametrize("bad, msg", [
    ({"model": {"precision": "float"}}, "not a fixed-point type"),
    ({"model": {"reuse": 2}}, "unknown key"),
    ({"model": {"strategy": "fast"}}, "strategy"),
    ({"layers": {}}, "unknown section"),
    ({"node": {"a": {"reuse_factor": 0}}}, "reuse_factor"),
    ({"model": {"table_size": 1000}}, "power of two"),
])
def test_config_errors(bad, msg):
    with pytest.raises(HccError, match=msg):
        fconfig.from_dict(bad)


def test_bad_toml(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[model\nprecision=1")
    with pytest.raises(HccError, match="not valid TOML"):
        fconfig.load(p)


GOOD = """#include <ap_fixed.h>
static void f(const ap_fixed<16,6> x[4], ap_fixed<16,6> y[4]) {
    L: for (int i = 0; i < 4; i++) {
#pragma HLS PIPELINE II=1
        y[i] = x[i];
    }
}
void top(const ap_fixed<16,6> x[4], ap_fixed<16,6> y[4]) {
#pragma HLS INTERFACE m_axi port=x offset=slave bundle=gmem0 depth=4
#pragma HLS INTERFACE s_axilite port=return
    f(x, y);
}
"""


def test_lint_accepts_clean_code():
    assert lint.lint_project({"firmware/top.cpp": GOOD}, "top") == []


@pytest.mark.parametrize("snippet, problem", [
    ("#pragma HLS PIPELINE II=1 turbo=on", "unknown option 'turbo'"),
    ("#pragma HLS MAGIC", "unknown HLS directive"),
    ("for (int i = 0; i < n; i++) {}", "static trip count"),
    ("while (k) { k--; }", "while/do"),
    ("int *p = new int[4];", "dynamic memory"),
    ("void *q = malloc(16);", "dynamic memory"),
    ("std::vector<int> v;", "standard library"),
    ("#include <vector>", "system header"),
    ("#ifdef __SYNTHESIS__", "__SYNTHESIS__"),
])
def test_lint_flags(snippet, problem):
    problems = lint.lint_project({"firmware/top.cpp": GOOD.replace("        y[i] = x[i];", "        y[i] = x[i];\n" + snippet)}, "top")
    assert any(problem in p for p in problems), problems


def test_lint_flags_recursion():
    code = GOOD.replace("    f(x, y);\n}", "    f(x, y);\n    top(x, y);\n}")
    assert any("recursion" in p for p in lint.lint_project({"firmware/top.cpp": code}, "top"))


@pytest.mark.parametrize("wa, wb, a27, a25", [(8, 8, 0, 0), (16, 16, 1, 1), (18, 25, 1, 1), (18, 27, 1, 2), (24, 24, 2, 2), (32, 32, 4, 4)])
def test_dsp_per_multiplier(wa, wb, a27, a25):
    assert estimate.dsp_per_mult(wa, wb, 27) == a27
    assert estimate.dsp_per_mult(wa, wb, 25) == a25


def test_mac_layer_scales_with_reuse_factor():
    e1 = estimate.mac_layer(block=1024, iterations=1, wa=16, wb=16, acc_w=32, n_weights=1024, weight_w=16, reuse_factor=1)
    e4 = estimate.mac_layer(block=1024, iterations=1, wa=16, wb=16, acc_w=32, n_weights=1024, weight_w=16, reuse_factor=4)
    assert (e1.multipliers, e4.multipliers) == (1024, 256)
    assert (e1.dsp, e4.dsp) == (1024, 256)
    assert e4.latency_cycles == e1.latency_cycles + 3 and e4.ii == 4
    r = estimate.mac_layer(block=1024, iterations=1, wa=16, wb=16, acc_w=32, n_weights=65536, weight_w=16, reuse_factor=64,
                           strategy="resource")
    assert r.bram18k == math.ceil(65536 / 64) * 1 * 1  # 1024 banks, 64 deep x 16 wide -> one BRAM18K each


def test_estimate_node_for_the_cost_model():
    conv = estimate.estimate_node("Conv", [[1, 8, 16, 16]], [1, 16, 16, 16], weight_shape=[16, 8, 3, 3], attrs={"group": 1},
                                  precision="ap_fixed<16,6>", reuse_factor=1)
    assert conv.multipliers == 16 * 8 * 9 and conv.dsp == conv.multipliers and conv.latency_cycles >= 256
    dense = estimate.estimate_node("Gemm", [[1, 4096]], [1, 1024], weight_shape=[1024, 4096], attrs={"transB": 1})
    assert dense.reuse_factor >= 1024 and dense.multipliers <= 4096 and dense.notes
    narrow = estimate.estimate_node("MatMul", [[1, 64]], [1, 10], weight_shape=[64, 10], precision="ap_fixed<8,3>")
    assert narrow.dsp == 0 and narrow.lut > 0
    assert estimate.estimate_node("Flatten", [[1, 8, 2, 2]], [1, 32]).latency_cycles == 0
    assert estimate.estimate_node("Softmax", [[1, 10]], [1, 10], attrs={"axis": -1}).dsp > 0


def test_partitioner_and_backend_estimate_a_layer_alike():
    """The cost model (per ONNX node, before codegen) and estimate_node (the backend's per-node view) share the
    formulas of backends/fpga/resources.py: same DSP, BRAM and cycles for the same reuse factor and strategy."""
    from hcc.planner.cost_model import FpgaCostConfig, NodeCost, estimate_fpga
    from hcc.planner.device_catalog import builtin_catalog

    spec = builtin_catalog()["fpga:xcu250"]
    fc = NodeCost(name="fc", index=0, op_type="Gemm", op_class="matmul", dtype="fp32", flops=2 * 256 * 64, macs=256 * 64,
                  bytes_read=0, bytes_written=0, weight_bytes=256 * 64 * 4, inputs=["x"], weights=["w"], outputs=["y"],
                  out_elements=64, mac_block=256 * 64, iterations=1)
    conv = NodeCost(name="conv", index=1, op_type="Conv", op_class="conv", dtype="fp32", flops=0, macs=0, bytes_read=0,
                    bytes_written=0, weight_bytes=32 * 16 * 9 * 4, inputs=["x"], weights=["w"], outputs=["y"],
                    out_elements=32 * 16 * 16, mac_block=16 * 9 * 32, iterations=16 * 16,
                    output_fused=True)  # no output buffer: estimate_node reports the layer alone
    backend = {"fc": dict(op_type="Gemm", input_shapes=[[1, 256]], output_shape=[1, 64], weight_shape=[256, 64]),
               "conv": dict(op_type="Conv", input_shapes=[[1, 16, 16, 16]], output_shape=[1, 32, 16, 16], weight_shape=[32, 16, 3, 3],
                            attrs={"pads": [1, 1, 1, 1]})}
    for node in (fc, conv):
        for rf, strategy in [(1, "latency"), (8, "latency"), (16, "resource"), (64, "resource")]:
            planned = estimate_fpga(node, spec, FpgaCostConfig(reuse_factor=rf, strategy=strategy))
            built = estimate.estimate_node(**backend[node.name], reuse_factor=rf, strategy=strategy)
            assert (planned.dsp, planned.bram18k, planned.latency_cycles, planned.reuse_factor) == \
                   (built.dsp, built.bram18k, built.latency_cycles, built.reuse_factor), (node.name, rf, strategy)
