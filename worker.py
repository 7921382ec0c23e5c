"""Child-process entry for everything that touches MLIR/LLVM: `python -m hcc.worker REQUEST.json RESPONSE.json`.

The xtc bindings are an assertions build: a bad pipeline can abort() the interpreter. Running import, lowering and
codegen here turns such a crash into an error message in the parent (hcc.driver) instead of a dead compiler.
Progress lines go to stdout; the response (or the error) goes to RESPONSE.json.
"""
from __future__ import annotations

import json
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from hcc.devices import parse_device
from hcc.options import CompileOptions, ModelFiles

REQUEST_VERSION = 1  # bump when a field changes meaning: a worker refuses a request of another version


@dataclass
class WorkerRequest:
    """What the driver asks the worker to compile: the lifted model and its weights, the subgraph groups in order,
    the options, and where pass reproducers (`repro_dir`, outside the staging folder) and `--save-temps` IR go."""

    options: CompileOptions
    model: str
    weights_file: str
    bundle_dir: str
    inputs: list[str]
    outputs: list[str]
    groups: list[dict]
    repro_dir: str | None = None
    save_temps: str | None = None  # the created --save-temps folder, absolute
    weights: list[str] = field(default_factory=list)  # the lifted weights' names (among `inputs`)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return {"version": REQUEST_VERSION, **data, "options": self.options.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> WorkerRequest:
        from hcc.errors import HccError

        data = dict(data)
        if data.pop("version", None) != REQUEST_VERSION:
            raise HccError(f"internal: compile worker request version is not {REQUEST_VERSION}: the compiler and its worker differ")
        return cls(**{**data, "options": CompileOptions.from_dict(data["options"])})

    @property
    def files(self) -> ModelFiles:
        return ModelFiles(model=self.model, weights=self.weights_file, weight_names=frozenset(self.weights))


def _progress(message: str) -> None:
    print(message, flush=True)


def compile_subgraphs(request: WorkerRequest) -> dict:
    """Import, outline and compile every subgraph; the response the driver assembles the manifest from."""
    from hcc.passes import pass_runner

    # every pass pipeline below runs through pass_runner: reproducers and --save-temps go where the driver says
    with pass_runner.active(pass_runner.PassContext(save_temps=request.save_temps, repro_root=request.repro_dir)):
        return _compile_all(request)


def _compile_all(request: WorkerRequest) -> dict:
    import onnx

    from hcc.backends.cpu import toolchain
    from hcc.frontend.importer import import_to_torch_dialect
    from hcc.passes.outline import SubgraphGroup, outline

    bundle = Path(request.bundle_dir)
    model = onnx.load(request.model)
    start = time.perf_counter()
    torch_text = import_to_torch_dialect(model)
    _progress(f"imported {len(model.graph.node)} ONNX nodes into MLIR ({time.perf_counter() - start:.2f}s)")

    groups = [SubgraphGroup(**g) for g in request.groups]
    node_outputs = {node.name: list(node.output) for node in model.graph.node}
    # Bool outputs leave through a uint8 Cast (frontend/bool_boundary.py): the tensor keeps its model name.
    for outputs in node_outputs.values():
        outputs[:] = [o.removesuffix("__hcc_u8") for o in outputs]
    specs = outline(torch_text, groups, request.inputs, node_outputs, request.outputs)
    if len(specs) > 1:
        _progress(f"outlined {len(specs)} subgraphs: " + ", ".join(f"{s.id}@{s.device}" for s in specs))
    results = []
    for spec in specs:
        result = _compile_one(spec, bundle, request)
        result["device_index"] = next(g.device_index for g in groups if g.id == spec.id)
        results.append(result)
    versions = toolchain.versions()
    if any(parse_device(spec.device).kind == "gpu" for spec in specs):
        from hcc.backends.gpu import toolchain as gpu_toolchain

        versions.update(gpu_toolchain.versions())
    return {"ok": True, "subgraphs": results, "toolchain": versions}


def _compile_one(spec, bundle: Path, request: WorkerRequest) -> dict:
    """One subgraph: linalg, its device's artifacts, and a CPU fallback where the device kind wants one."""
    from hcc.backends import backend_for
    from hcc.backends.cpu import backend as cpu_backend
    from hcc.backends.cpu import lowering
    from hcc.passes.to_linalg import lower_to_linalg

    t0 = time.perf_counter()
    device = parse_device(spec.device)
    linalg_text = lower_to_linalg(spec.module_text, contraction_barriers=device.kind == "cpu")
    signature = lowering.function_signature(linalg_text, spec.id)
    t1 = time.perf_counter()
    _progress(f"{spec.id}: lowered {len(spec.nodes)} ops to linalg ({t1 - t0:.2f}s)")
    artifacts = backend_for(spec.device).compile_subgraph(linalg_text, spec, bundle, request.options, request.files)
    fallback = None
    if device.facts is not None and device.facts.cpu_fallback:  # a CPU artifact for when the device is missing at run time
        fallback = cpu_backend.compile_subgraph(linalg_text, spec, bundle, request.options, request.files)[0]
    for artifact in artifacts + ([fallback] if fallback else []):
        for line in cpu_backend.schedule_warnings(spec.id, artifact.meta.get("schedule", [])):
            _progress(f"warning: {line}")
    _progress(f"{spec.id}: {spec.device} artifacts ({time.perf_counter() - t1:.2f}s): " + ", ".join(a.file for a in artifacts))
    return {
        "id": spec.id,
        "device": spec.device,
        "nodes": spec.nodes,
        "inputs": spec.inputs,
        "outputs": spec.outputs,
        "input_types": [[t.shape, t.element] for t in signature.inputs],
        "output_types": [[t.shape, t.element] for t in signature.results],
        "artifacts": [asdict(a) for a in artifacts],
        "fallback": asdict(fallback) if fallback else None,
    }


def _die_with_parent() -> None:
    """If the compiler is killed (SIGKILL gives it no chance to stop us), stop too instead of writing on."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


def main(argv: list[str]) -> int:
    _die_with_parent()
    request_path, response_path = argv[1], argv[2]
    from hcc.errors import HccError

    try:
        response = compile_subgraphs(WorkerRequest.from_dict(json.loads(Path(request_path).read_text())))
    except HccError as exc:
        response = {"ok": False, "error": exc.message, "hint": exc.hint}
    except OSError as exc:  # disk full, a folder made read-only mid-compile: the system's reason, not a crash report
        where = f"{exc.filename}: " if exc.filename else ""
        response = {"ok": False, "error": f"{where}{exc.strerror or exc}"}
    except Exception as exc:  # an unexpected failure: keep the traceback for the bug report
        response = {"ok": False, "error": f"internal compiler error: {type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    Path(response_path).write_text(json.dumps(response))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
