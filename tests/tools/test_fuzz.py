"""The fuzz target (tools/fuzz.py) at a fixed count and seed: mutated models into `hcc compile`, mutated bundles into
`hcc run`; every outcome must be a clean `hcc: error:` refusal or a correct result. `make fuzz` runs a long campaign.
The judge itself is tested too, so that the fuzz test cannot pass by classifying everything as fine."""
from __future__ import annotations

import subprocess

import pytest

from helpers import load_tool

CI_CASES = 48


@pytest.fixture(scope="module")
def fuzz():
    return load_tool("fuzz")


def _proc(returncode: int, stderr: str) -> subprocess.CompletedProcess:
    return subprocess.CompletedProcess(["hcc"], returncode, stdout="", stderr=stderr)


def test_judge_accepts_only_one_clean_error_line(fuzz):
    assert fuzz.classify_failure(_proc(1, "[hcc   0.10s] loading\nhcc: error: m.onnx: not a valid ONNX file\n"), "x")[0] == "refused"
    assert fuzz.classify_failure(_proc(1, "hcc: error: m.onnx: 1 unsupported op(s):\n  Foo: n1\n"), "x")[0] == "refused"
    assert fuzz.classify_failure(_proc(1, "Traceback (most recent call last):\n  File ...\nValueError: x\n"), "x")[0] == "traceback"
    assert fuzz.classify_failure(_proc(-11, ""), "x")[0] == "crash"
    assert fuzz.classify_failure(None, "x")[0] == "hang"
    assert fuzz.classify_failure(_proc(1, "2026-12-05 [E:onnxruntime] fail\nhcc: error: m.onnx: bad\n"), "x")[0] == "untidy-error"
    assert fuzz.classify_failure(_proc(1, "hcc: error: a\nhcc: error: b\n"), "x")[0] == "untidy-error"
    assert fuzz.classify_failure(_proc(1, ""), "x")[0] == "untidy-error"


def test_cases_replay_from_the_seed(fuzz):
    first = [(c, r.random()) for c, r in fuzz.plan_cases(20, seed=5, only=None)]
    again = [(c, r.random()) for c, r in fuzz.plan_cases(20, seed=5, only=None)]
    assert first == again
    assert {c.family for c, _ in first} == {"model-bytes", "model-graph", "bundle"}


@pytest.mark.slow  # 45 s; `make fuzz` runs a campaign too, and `make test-all` this one
def test_fuzz_campaign_finds_nothing(fuzz, tmp_path):
    outcomes = fuzz.fuzz(CI_CASES, seed=2026, workdir=tmp_path, jobs=2)
    assert len(outcomes) == CI_CASES
    assert all(o.ok for o in outcomes), fuzz.summary(outcomes)
    # the campaign exercised both ways out: refusals and accepted inputs checked for correctness
    verdicts = {o.verdict for o in outcomes}
    assert {"refused", "correct"} <= verdicts, fuzz.summary(outcomes)
