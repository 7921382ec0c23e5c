"""The HCC_* environment knobs: one reader (hcc/env.py), one true/false convention, documented, recorded when they
change code."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from hcc.env import FALSE_WORDS, KNOBS, TRUE_WORDS, HccEnv, markdown_table, read_env
from hcc.errors import HccError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name, field", [("HCC_CPU_FORK", "cpu_fork"), ("HCC_GPU_SHARED", "gpu_shared"), ("HCC_CUDA_SYNC", "cuda_sync")])
def test_every_switch_reads_the_same_words(name, field):
    for word in TRUE_WORDS:
        assert getattr(read_env({name: word.upper()}), field) is True
    for word in FALSE_WORDS:
        assert getattr(read_env({name: f" {word} "}), field) is False
    assert getattr(read_env({name: ""}), field) == getattr(HccEnv(), field)  # empty: the default
    with pytest.raises(HccError, match=f"environment variable {name}='maybe': expected a switch"):
        read_env({name: "maybe"})


def test_values_are_parsed_and_checked():
    env = read_env({"HCC_CPU_SCHEDULE": "loops", "HCC_CPU_KINDS": "ukernel, conv", "HCC_CPU_SCHEDULE_TIMEOUT": "7.5",
                    "HCC_CACHE_DIR": "/c", "HCC_LIBCUDA": "/x/libcuda.so"})
    assert (env.cpu_schedule, env.cpu_kinds, env.cpu_schedule_timeout_s) == ("loops", ("ukernel", "conv"), 7.5)
    assert env.cache_root == Path("/c") and env.libcuda == "/x/libcuda.so"
    assert read_env({}) == HccEnv() and HccEnv().cache_root == Path.home() / ".cache" / "hcc"
    for name, value, message in [("HCC_CPU_KINDS", "ukernel,gemm", "unknown schedule kind"), ("HCC_CPU_SCHEDULE", "fast", "expected one of"),
                                 ("HCC_CPU_SCHEDULE_TIMEOUT", "-1", "positive number"), ("HCC_CPU_SCHEDULE_TIMEOUT", "nan", "positive number")]:
        with pytest.raises(HccError, match=f"{name}=.*{message}"):
            read_env({name: value})


def test_code_knobs_and_the_worker_record_round_trip():
    env = read_env({"HCC_GPU_SHARED": "off", "HCC_CPU_KINDS": "conv"})
    assert env.code_knobs() == {"HCC_CPU_SCHEDULE": "auto", "HCC_CPU_KINDS": "conv", "HCC_GPU_SHARED": "off", "HCC_AP_TYPES": "unset",
                                "HCC_CUDA_HOME": "unset"}
    assert HccEnv().code_knobs()["HCC_CPU_KINDS"] == "all" and read_env({"HCC_AP_TYPES": "/h"}).code_knobs()["HCC_AP_TYPES"] == "/h"
    assert HccEnv.from_dict(env.to_dict()) == env
    with pytest.raises(HccError, match="unknown field"):
        HccEnv.from_dict({"gpu_sharde": False})


def test_no_other_module_reads_an_hcc_variable():
    """The knobs are read by hcc/env.py alone (the tests and tools may set them)."""
    offenders = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        # hidden folders hold no project code: .venv, and the benchmark venvs (.venv-torch, .venv-skl) whose
        # third-party files need not even be UTF-8
        if rel.parts[0] in ("tests", "tools", "out") or rel.parts[0].startswith(".") or rel == Path("env.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"""(environ|getenv)\b.*["']HCC_""", line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_every_knob_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "README.md's environment table differs from hcc.env.markdown_table()"
    assert {k.name for k in KNOBS} == set(re.findall(r"`(HCC_[A-Z_]+)`", markdown_table()))
