"""The manifest's program records (artifacts/manifest.py): they survive JSON both ways, nested blocks included, and
a bundle without a program keeps format version 2 and writes no `program` key."""
from __future__ import annotations

import json

from hcc.artifacts.manifest import (
    FORMAT_VERSION,
    PROGRAM_FORMAT_VERSION,
    BlockRecord,
    ConstantRecord,
    Manifest,
    ProgramRecord,
    ScanRecord,
    StepRecord,
    TensorRecord,
)


def _manifest(program: ProgramRecord | None) -> Manifest:
    tensors = [TensorRecord("x", "float32", [2], "input"), TensorRecord("y", "float32", [2], "output")]
    return Manifest(model_name="m", model_sha256="0" * 64, compiler_version="0", toolchain={}, inputs=["x"], outputs=["y"], tensors=tensors,
                    weights=[], subgraphs=[], schedule=[], devices_required=["cpu"], files={}, program=program,
                    format_version=PROGRAM_FORMAT_VERSION if program else FORMAT_VERSION)


def test_a_program_round_trips_through_json():
    body = BlockRecord(inputs=["i", "c", "v"], outputs=["c", "v2", "v2"],
                       steps=[StepRecord("segment", "Add_0", ["v", "i"], ["v2"], bundle="parts/p1")])
    branch = BlockRecord(inputs=[], outputs=["k"], steps=[], constants=[ConstantRecord("k", "program/c0.npy", "float32", [2])])
    steps = [StepRecord("if", "pick", ["x_pos"], ["a"], then_branch=branch, else_branch=BlockRecord([], [], ["x"])),
             StepRecord("loop", "loop", ["n", "", "a"], ["y", "s"], body=body, scans=[ScanRecord("float32", [2])])]
    program = ProgramRecord(main=BlockRecord(inputs=[], steps=steps, outputs=["y"]))
    again = Manifest.from_dict(json.loads(_manifest(program).to_json()))
    assert again.program == program and again.format_version == 3
    assert again.program.parts() == ["parts/p1"]


def test_a_bundle_without_a_program_stays_version_2():
    text = _manifest(None).to_json()
    assert "program" not in json.loads(text) and Manifest.from_dict(json.loads(text)).format_version == 2
