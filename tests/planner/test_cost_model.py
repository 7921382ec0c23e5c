"""Cost model: work counts, predictions, transfers, FPGA estimates."""
from __future__ import annotations

import math

import pytest

import graphs
from hcc.backends.fpga.resources import dsp_per_mult
from hcc.frontend.names import name_nodes, node_names
from hcc.planner.cost_model import CostModel, FpgaCostConfig, FpgaEstimate, analyze_model, estimate_fpga, predict, transfer_time
from hcc.planner.device_catalog import builtin_catalog, parse_device_mix
from synthetic_devices import catalog


def test_flops_and_bytes_of_common_ops():
    info = analyze_model(graphs.resnet18())
    conv1 = info.by_name["conv1"]  # 3->64, 7x7, stride 2, 224 -> 112
    assert conv1.macs == 64 * 3 * 49 * 112 * 112
    assert conv1.flops == 2 * conv1.macs + 64 * 112 * 112
    assert conv1.weight_bytes == (64 * 3 * 49 + 64) * 4
    assert conv1.bytes_written == 64 * 112 * 112 * 4
    fc = info.by_name["fc"]
    assert fc.macs == 512 * 1000 and fc.op_class == "matmul"
    total = sum(n.macs for n in info.nodes)
    assert 1.7e9 < total < 1.9e9  # ResNet-18 is ~1.8 GMACs at 224x224
    assert info.by_name["flatten"].bytes == 0  # a view moves no data
    relu = info.by_name["relu1"]
    assert relu.flops == 64 * 112 * 112 and relu.bytes == 2 * 64 * 112 * 112 * 4


def test_matmul_lstm_and_transformer_counts():
    info = analyze_model(graphs.transformer(layers=1, seq=16, dim=64, heads=4))
    q = info.by_name["block0/q"]
    assert q.macs == 16 * 64 * 64
    scores = info.by_name["block0/scores"]  # [1,4,16,16] x [1,4,16,16]
    assert scores.macs == 4 * 16 * 16 * 16 and scores.weights == []
    assert info.by_name["block0/softmax"].op_class == "softmax"
    assert info.by_name["block0/q_reshape"].op_class == "view"


def test_predict_roofline_and_calibrated_forms():
    cat = catalog()
    node = analyze_model(graphs.chain(["MatMul"], shape=(1024, 1024))).nodes[0]
    cpu, gpu = cat["cpu"], cat["gpu:test"]
    assert predict(node, cpu) == pytest.approx(max(node.flops / 1e11, node.bytes / 1e10))
    assert predict(node, gpu) == pytest.approx(max(node.flops / 1e13, node.bytes / 1e11) + 1e-5)
    cpu.linear["matmul"] = (2e-11, 5e-6)
    assert predict(node, cpu) == pytest.approx(2e-11 * node.flops + 5e-6)
    sigmoid = analyze_model(graphs.chain(["Sigmoid"])).nodes[0]
    assert predict(sigmoid, gpu) == math.inf  # gpu:test lacks Sigmoid


def test_transfers_go_through_the_host():
    cat = builtin_catalog()
    cpu, gpu, fpga = cat["cpu"], cat["gpu:sm_90"], cat["fpga:xcu250"]
    n = 1e6
    assert transfer_time(n, cpu, cpu) == 0.0
    assert transfer_time(n, cpu, gpu) == pytest.approx(8e-6 + n / 50e9)
    assert transfer_time(n, gpu, fpga) == pytest.approx(8e-6 + n / 50e9 + 20e-6 + n / 12e9)
    a, b = parse_device_mix("2xgpu:sm_90")[1:]
    assert transfer_time(n, a, a) == 0.0 and transfer_time(n, a, b) == pytest.approx(2 * (8e-6 + n / 50e9))


def test_dsp_per_multiplier_matches_yosys_counts():
    # (wa, wb) -> DSPs on DSP48E1 (A=25) / DSP48E2 (A=27), from research/hw-toolchains.md A4.
    for (wa, wb), (e1, e2) in {(16, 16): (1, 1), (18, 25): (1, 1), (18, 27): (2, 1), (24, 24): (2, 2), (32, 32): (4, 4)}.items():
        assert dsp_per_mult(wa, wb, 25) == e1 and dsp_per_mult(wa, wb, 27) == e2
    assert dsp_per_mult(8, 8, 27) == 0  # narrow products go to LUTs


def test_fpga_estimate_and_overrides():
    u250 = builtin_catalog()["fpga:xcu250"]
    info = analyze_model(graphs.resnet18())
    conv = info.by_name["layer4.0/conv2"]  # 512x512x3x3 = 2.36M MACs per output pixel, 7x7 outputs
    est = estimate_fpga(conv, u250)
    assert est.reuse_factor == math.ceil(512 * 512 * 9 / 1024) and est.strategy == "latency"
    assert est.dsp == 1024
    assert est.latency_cycles >= 49 * est.reuse_factor
    assert est.lut >= 512 * 512 * 9 * 16 // 8  # strategy latency: the weights live in logic
    in_bram = estimate_fpga(conv, u250, strategy="resource")
    assert in_bram.bram18k >= math.ceil(512 * 512 * 9 * 16 / 18432) and in_bram.lut < est.lut / 10
    assert estimate_fpga(info.by_name["layer4.0/add"], u250).dsp == 0
    cm = CostModel()
    variants = cm.fpga_variants(conv, u250)  # 5 multiplier caps x 2 strategies, fastest first
    assert len(variants) == 10 and {v.strategy for v in variants} == {"latency", "resource"}
    assert [v.latency_cycles for v in variants] == sorted(v.latency_cycles for v in variants)
    fixed_by_user = CostModel(fpga_node_configs={conv.name: FpgaCostConfig(reuse_factor=4608, strategy="resource", weight_bits=8)})
    (only,) = fixed_by_user.fpga_variants(conv, u250)
    assert only.reuse_factor == 4608 and only.strategy == "resource" and only.dsp == 512 * 512 * 9 // 4608
    fixed = FpgaEstimate(dsp=10, bram18k=5, lut=100, ff=100, latency_cycles=3e5, reuse_factor=7, source="backend")
    cm = CostModel(fpga_overrides={conv.name: fixed})
    assert cm.fpga_variants(conv, u250) == [fixed]
    assert cm.predict(conv, u250) == pytest.approx(max(3e5 / 300e6, (conv.bytes - conv.weight_bytes) / (77e9 * 0.8)) + 1e-7)
    assert estimate_fpga(info.by_name["fc"], builtin_catalog()["gpu:sm_90"]) is None


def test_node_names_are_stable_and_unique():
    """One naming (frontend/names.py) for the loader, the planner and the FPGA backend: the names placement files
    and bundles have always used (an unnamed node is <op>_<index>, the k-th duplicate <name>__k)."""
    model = graphs.chain(["Relu", "Relu", "Relu", "Relu"])
    model.graph.node[0].name = ""
    model.graph.node[2].name = "n1"  # duplicate of node 1
    model.graph.node[3].name = "n1__2"  # the name the duplicate would get: it takes the next free one
    assert node_names(model) == ["Relu_0", "n1", "n1__2", "n1__2__2"]
    name_nodes(model)
    assert [n.name for n in model.graph.node] == ["Relu_0", "n1", "n1__2", "n1__2__2"]
    assert node_names(model) == [n.name for n in model.graph.node]  # a named model keeps its names
