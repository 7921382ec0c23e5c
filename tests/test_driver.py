"""The compile driver: a crashing code-generation worker becomes an HccError, not a dead interpreter."""
from __future__ import annotations

import os
import stat

import pytest

from hcc import driver
from hcc.errors import HccError


def test_worker_abort_becomes_an_error(tmp_path, monkeypatch):
    # Stand-in for an LLVM assertion: the child interpreter dies with SIGABRT after printing a diagnostic.
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'Assertion `isa<X>(Val)` failed.' >&2\nkill -ABRT $$\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(driver.sys, "executable", str(fake))
    with pytest.raises(HccError, match=r"(?s)killed by signal 6.*Assertion"):
        driver._run_worker({"model": "m.onnx"}, progress=lambda _m: None)


def test_worker_error_is_passed_through(tmp_path):
    with pytest.raises(HccError, match="internal compiler error"):
        driver._run_worker({"model": os.fspath(tmp_path / "missing.onnx"), "bundle_dir": os.fspath(tmp_path)}, progress=lambda _m: None)
