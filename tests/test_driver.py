"""The compile driver: a crashing code-generation worker becomes an HccError, not a dead interpreter."""
from __future__ import annotations

import os
import stat

import pytest

from hcc import driver
from hcc.errors import HccError
from hcc.options import CompileOptions
from hcc.worker import WorkerRequest


def test_worker_abort_becomes_an_error(tmp_path, monkeypatch):
    # Stand-in for an LLVM assertion: the child interpreter dies with SIGABRT after printing a diagnostic.
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'Assertion `isa<X>(Val)` failed.' >&2\nkill -ABRT $$\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(driver.sys, "executable", str(fake))
    with pytest.raises(HccError, match=r"(?s)killed by signal 6.*Assertion"):
        driver._run_worker({"model": "m.onnx"}, progress=lambda _m: None, staging=tmp_path)


def _request(tmp_path, **changes) -> dict:
    request = WorkerRequest(options=CompileOptions(), model=os.fspath(tmp_path / "missing.onnx"), weights_file=os.fspath(tmp_path / "w.npz"),
                            bundle_dir=os.fspath(tmp_path), inputs=["x"], outputs=["y"], groups=[])
    return {**request.to_dict(), **changes}


def test_worker_error_is_passed_through(tmp_path):
    # An OSError in the worker is reported as the file and the system's reason, not as an internal compiler error.
    with pytest.raises(HccError, match="missing.onnx: No such file or directory"):
        driver._run_worker(_request(tmp_path), progress=lambda _m: None, staging=tmp_path)


@pytest.mark.parametrize("changes, message", [
    ({"version": 0}, "request version is not 1"),
    ({"options": {**CompileOptions().to_dict(), "version": 99}}, "compile options version 99 is not 1"),
    ({"options": {**CompileOptions().to_dict(), "gpu": {"precision": "fp8"}}}, "--gpu-precision 'fp8': unsupported"),
])
def test_the_worker_refuses_a_request_of_another_version_or_with_a_bad_option(tmp_path, changes, message):
    """The request is versioned and its options are checked again on arrival: a worker from another hcc, or a
    request edited on the way, is an error naming what differs, not a compile with silently different options."""
    with pytest.raises(HccError, match=message):
        driver._run_worker(_request(tmp_path, **changes), progress=lambda _m: None, staging=tmp_path)


def test_worker_scratch_lives_in_the_staging_folder(tmp_path, monkeypatch):
    """The worker's TMPDIR (where the toolchains put their files) is inside the staging folder, and gone after:
    a compile killed outright leaves its scratch where the next compile sweeps abandoned staging folders."""
    fake, seen = tmp_path / "python", tmp_path / "seen"
    fake.write_text(f"#!/bin/sh\necho \"$TMPDIR\" > {seen}\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(driver.sys, "executable", str(fake))
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(HccError, match="exited with status 3"):
        driver._run_worker({"model": "m.onnx"}, progress=lambda _m: None, staging=staging)
    scratch = seen.read_text().strip()
    assert os.path.dirname(scratch) == os.fspath(staging) and not os.path.exists(scratch)
