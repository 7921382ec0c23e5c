"""The files around the firmware: csim bridge (extern "C", float in/out), testbench, data files, build_prj.tcl."""
from __future__ import annotations

import numpy as np

from hcc.backends.fpga.emit import HEADER
from hcc.backends.fpga.ir import Program

STACK_THREAD_BYTES = 4 << 20  # above this much of intermediate buffers, run the top on a thread with a large stack


def stack_runner(prog: Program) -> str:
    """`hcc_run_top(ports...)`: calls the top function, on a thread with a big enough stack when the top's local
    buffers (HLS-style local arrays) would not fit on the caller's stack."""
    name = prog.name
    ports = [b for b in prog.inputs] + [b for b in prog.outputs]
    params = ", ".join(f"{'const ' if b.kind == 'input' else ''}{b.id}_t *{b.id}" for b in ports)
    call = ", ".join(b.id for b in ports)
    need = " + ".join(f"sizeof({b.id}_t) * {b.size}" for b in prog.buffers if b.kind == "temp") or "0"
    fields = "\n".join(f"    {'const ' if b.kind == 'input' else ''}{b.id}_t *{b.id};" for b in ports)
    return f"""#include <pthread.h>

namespace {{
const unsigned long hcc_buffer_bytes = {need};
struct hcc_ports {{
{fields}
}};
void *hcc_top_thread(void *p) {{
    hcc_ports *a = static_cast<hcc_ports *>(p);
    {name}({", ".join("a->" + b.id for b in ports)});
    return 0;
}}
void hcc_run_top({params}) {{
    if (hcc_buffer_bytes < {STACK_THREAD_BYTES}UL) {{
        {name}({call});
        return;
    }}
    hcc_ports ports = {{{call}}};
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 2 * hcc_buffer_bytes + (8UL << 20));
    pthread_t thread;
    if (pthread_create(&thread, &attr, hcc_top_thread, &ports) == 0) {{
        pthread_join(thread, 0);
    }} else {{
        {name}({call});
    }}
    pthread_attr_destroy(&attr);
}}
}}  // namespace
"""


def bridge(prog: Program, entry: str) -> str:
    """extern "C" wrapper: float32 buffers (every subgraph input in argument order, then outputs) -> top -> float32.

    Inputs are converted exactly as `input_t v = (double)x` does (the input type's quantization and overflow
    modes); baked-in weights arrive as arguments too (the runtime passes every input) and are ignored."""
    name = prog.name
    params, body = [], []
    k = 0
    for tensor, buf in prog.args:
        if buf is None:
            params.append(f"const float * /* {tensor}: baked into the firmware */")
            continue
        params.append(f"const float *a{k}")
        body.append(f"    static {buf.id}_t {buf.id}[{buf.size}];")
        body.append(f"    for (int i = 0; i < {buf.size}; i++) {buf.id}[i] = (double)a{k}[i];")
        k += 1
    for j, buf in enumerate(prog.outputs):
        params.append(f"float *r{j}")
        body.append(f"    static {buf.id}_t {buf.id}[{buf.size}];")
    call = ", ".join([b.id for b in prog.inputs] + [b.id for b in prog.outputs])
    body.append(f"    hcc_run_top({call});")
    for j, buf in enumerate(prog.outputs):
        body.append(f"    for (int i = 0; i < {buf.size}; i++) r{j}[i] = (float){buf.id}[i].to_double();")
    return (f"{HEADER}// C simulation entry for the hcc runtime (ABI bare-ptr-v1 with float32 buffers).\n"
            f"// Not thread-safe: the buffers are static to keep large arrays off the stack.\n"
            f'#include "../firmware/{name}.cpp"\n\n' + stack_runner(prog) + "\n"
            f'extern "C" void {entry}({", ".join(params)}) {{\n' + "\n".join(body) + "\n}\n")


def testbench(prog: Program) -> str:
    name = prog.name
    ins, outs = prog.inputs, prog.outputs
    decl = "\n".join(f"    static {b.id}_t {b.id}[{b.size}];" for b in ins + outs)
    read = []
    for b in ins:
        read.append(f"        for (int i = 0; i < {b.size}; i++) {{ double v; "
                    f"if (!(s_in >> v)) {{ std::cerr << \"short input line\\n\"; return 2; }} {b.id}[i] = v; }}")
    check = []
    for b in outs:
        check.append(f"        for (int i = 0; i < {b.size}; i++) {{")
        check.append("            double want = 0, ref = 0; sexp >> want; sflt >> ref;")
        check.append(f"            const double got = {b.id}[i].to_double();")
        check.append("            log << got << (i + 1 < " + str(b.size) + " ? \" \" : \"\\n\");")
        check.append("            if (got != want) { if (mismatches < 10) std::cerr << \"sample \" << n << \" " + b.tensor.replace('"', '\\"')
                     + "[\" << i << \"]: got \" << got << \", expected \" << want << \"\\n\"; mismatches++; }")
        check.append("            if (std::fabs(got - ref) > max_dev) max_dev = std::fabs(got - ref);")
        check.append("        }")
    return f"""{HEADER}// C simulation testbench for {name}: runs every sample of tb_input_features.dat and checks the outputs
// bit for bit against tb_output_predictions.dat (hcc's Python fixed-point reference). Also reports the largest
// deviation from tb_output_float.dat (the float32 model, onnxruntime). Usage: {name}_test [data folder]
#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "{name}.h"

{stack_runner(prog)}
int main(int argc, char **argv) {{
    const std::string dir = argc > 1 ? std::string(argv[1]) + "/" : std::string("");
    std::ifstream fin(dir + "tb_input_features.dat"), fexp(dir + "tb_output_predictions.dat"), fflt(dir + "tb_output_float.dat");
    if (!fin || !fexp || !fflt) {{
        std::cerr << "cannot open the testbench data in '" << dir << "'\\n";
        return 2;
    }}
    std::ofstream log(dir + "csim_results.log");
    log.precision(17);
{decl}
    std::string line_in, line_exp, line_flt;
    int n = 0;
    long mismatches = 0;
    double max_dev = 0.0;
    while (std::getline(fin, line_in) && std::getline(fexp, line_exp) && std::getline(fflt, line_flt)) {{
        std::istringstream s_in(line_in), sexp(line_exp), sflt(line_flt);
{chr(10).join(read)}
        hcc_run_top({", ".join(b.id for b in ins + outs)});
{chr(10).join(check)}
        n++;
    }}
    if (n == 0) {{
        std::cerr << "no samples\\n";
        return 2;
    }}
    std::cout << "{name}: " << n << " sample(s), " << mismatches << " mismatch(es) against the fixed-point reference; "
              << "max |csim - float model| = " << max_dev << "\\n";
    std::cout << (mismatches == 0 ? "CSIM PASS" : "CSIM FAIL") << "\\n";
    return mismatches == 0 ? 0 : 1;
}}
"""


def data_lines(samples: list[list[np.ndarray]], exact: bool) -> str:
    """One sample per line; float32 inputs with 9 significant digits (round-trips), fixed values with 17."""
    fmt = "{:.17g}" if exact else "{:.9g}"
    out = []
    for arrays in samples:
        vals = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays]) if arrays else np.zeros(0)
        out.append(" ".join(fmt.format(float(v)) for v in vals))
    return "\n".join(out) + "\n"


def build_tcl(prog: Program, part: str, clock_ns: float) -> str:
    name = prog.name
    alveo = part.lower().startswith("xcu")
    flow, fmt = ("vitis", "xo") if alveo else ("vivado", "ip_catalog")
    return f"""# Vitis HLS project for hcc subgraph {name} (generated; see docs/backends/fpga.md).
#   vitis_hls -f build_prj.tcl                       C simulation + synthesis (defaults below)
#   vitis_hls -f build_prj.tcl -tclargs cosim=1 export=1
# Switches: csim synth cosim export (0/1). Part and clock come from the device the subgraph was compiled for.
array set opt {{csim 1 synth 1 cosim 0 export 0}}
foreach arg $argv {{
    if {{[regexp {{^(\\w+)=(\\d+)$}} $arg -> key value]}} {{ set opt($key) $value }}
}}
set here [file dirname [file normalize [info script]]]
cd $here
open_project -reset {name}_prj
set_top {name}
add_files firmware/{name}.cpp -cflags "-std=c++14 -Ifirmware"
add_files -tb tb/{name}_test.cpp -cflags "-std=c++14 -Ifirmware"
add_files -tb tb/tb_input_features.dat
add_files -tb tb/tb_output_predictions.dat
add_files -tb tb/tb_output_float.dat
open_solution -reset solution1 -flow_target {flow}
set_part {{{part}}}
create_clock -period {clock_ns:g} -name default
set_clock_uncertainty 27%
if {{$opt(csim)}} {{ csim_design -ldflags {{-lpthread}} }}
if {{$opt(synth)}} {{ csynth_design }}
if {{$opt(cosim)}} {{ cosim_design -ldflags {{-lpthread}} }}
if {{$opt(export)}} {{ export_design -format {fmt} }}
exit
"""
