"""Shared test helpers: compile a model built in code, run the bundle, compare with onnxruntime."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/models.py, tests/helpers.py

from helpers import compile_and_compare  # noqa: E402


@pytest.fixture
def compile_check(tmp_path):
    def run(model, **kwargs):
        return compile_and_compare(model, tmp_path, **kwargs)

    return run
