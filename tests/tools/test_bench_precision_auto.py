"""tools/bench_precision_auto.py (issue 13's targets: `--cpu-precision auto` under a budget against hcc fp32) end to
end on the suite's smallest GEMM model, so that it cannot rot between full runs: both bundles compile, the plan's
choice is read back, the budget is checked on unseen inputs and the report has a row per thread count."""
from __future__ import annotations

import pytest

from hcc.runtime.devices.cpu import cpu_low_precisions
from helpers import load_tool


@pytest.mark.skipif(not cpu_low_precisions(), reason="this CPU has neither AMX bf16 tiles nor AVX512-BF16")
def test_auto_against_fp32_on_one_model(tmp_path, capsys):
    tool = load_tool("bench_precision_auto")
    out = tmp_path / "auto.md"
    assert tool.main(["--cases", "mlp_b64:max_abs=1e-2", "--threads", "1,2", "--seconds", "0.2", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| mlp_b64 |")]
    assert [row.split("|")[3].strip() for row in rows] == ["1", "2"]
    assert all("OVER BUDGET" not in row and "max_abs" in row for row in rows)
    assert "bf16" in rows[0]  # the budget lets some GEMM go below fp32
