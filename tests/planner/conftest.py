"""Partitioner tests: never read the developer's own CPU calibration profile, and share a synthetic catalog."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # graphs.py


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HCC_CACHE_DIR", str(tmp_path / "hcc-cache"))
