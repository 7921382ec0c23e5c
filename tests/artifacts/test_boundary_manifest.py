"""The manifest's boundary record (format version 4, artifacts/manifest.py): it round-trips through JSON, a version-2
manifest (written before it existed) still loads with none, the version and the record must go together, and the
runtime refuses a boundary whose layouts do not cover the manifest's inputs/outputs exactly."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from hcc.artifacts.manifest import (
    BOUNDARY_FORMAT_VERSION,
    FORMAT_VERSION,
    BoundaryRecord,
    Manifest,
    TensorRecord,
    layout_tensors,
    layout_text,
)
from hcc.errors import HccError
from hcc.runtime.validate import check_boundary


def _manifest(boundary: BoundaryRecord | None, inputs: list[str], outputs: list[str]) -> Manifest:
    tensors = [TensorRecord(n, "float32", [2], "input") for n in inputs] + [TensorRecord(n, "float32", [2], "output") for n in outputs]
    return Manifest(model_name="m", model_sha256="0" * 64, compiler_version="0", toolchain={}, inputs=inputs, outputs=outputs,
                    tensors=tensors, weights=[], subgraphs=[], schedule=[], devices_required=["cpu"], files={}, boundary=boundary,
                    format_version=BOUNDARY_FORMAT_VERSION if boundary else FORMAT_VERSION)


SEQUENCE = BoundaryRecord(inputs=["xs", "o"], outputs=["y"],
                          values={"xs": {"sequence": ["xs[0]", "xs[1]"]}, "o": {"optional": None},
                                  "y": {"optional": {"sequence": ["y[0]"]}}})


def test_a_boundary_round_trips_through_json():
    again = Manifest.from_dict(json.loads(_manifest(SEQUENCE, ["xs[0]", "xs[1]"], ["y[0]"]).to_json()))
    assert again.boundary == SEQUENCE and again.format_version == 4
    assert again.boundary.flat("xs") == ["xs[0]", "xs[1]"] and again.boundary.flat("o") == []
    assert layout_text(SEQUENCE.values["y"]) == "optional(sequence[y[0]])"


def test_an_old_manifest_still_loads_without_a_boundary():
    data = json.loads(_manifest(None, ["x"], ["y"]).to_json())
    assert "boundary" not in data and data["format_version"] == 2
    assert Manifest.from_dict(data).boundary is None


@pytest.mark.parametrize("version, boundary, message", [
    (4, None, "needs a boundary"),
    (2, {"inputs": ["x"], "outputs": ["y"], "values": {}}, "cannot hold a boundary"),
])
def test_version_and_boundary_go_together(version, boundary, message):
    data = json.loads(_manifest(None, ["x"], ["y"]).to_json())
    data["format_version"], data["boundary"] = version, boundary
    with pytest.raises(ValueError, match=message):
        Manifest.from_dict(data)


@pytest.mark.parametrize("values, message", [
    ({"xs": {"sequence": ["xs[1]", "xs[0]"]}, "o": {"optional": None}, "y": {"optional": {"sequence": ["y[0]"]}}}, "hold the tensors"),
    ({"xs": {"sequence": ["xs[0]", "xs[1]"]}, "o": {"optional": None}, "y": "y[0]", "z": "q"}, "neither model inputs nor outputs"),
])
def test_an_inconsistent_boundary_is_refused(values, message):
    manifest = _manifest(BoundaryRecord(["xs", "o"], ["y"], values), ["xs[0]", "xs[1]"], ["y[0]"])
    with pytest.raises(HccError, match=message):
        check_boundary(Path("b"), manifest)


def test_a_malformed_layout_is_refused():
    with pytest.raises(ValueError, match="not a boundary layout"):
        layout_tensors({"list": ["a"]})
