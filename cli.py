"""`hcc` command line. Every HccError is printed as `hcc: error: ...` without a traceback (exit status 1)."""
from __future__ import annotations

import functools
import signal
import sys
import time
from pathlib import Path

import click

from hcc import __version__
from hcc.devices import DEVICE_KINDS
from hcc.errors import HccError
from hcc.planner import DEFAULT_TIME_LIMIT_S

DEFAULT_TARGET_CPU = "x86-64-v3"  # hcc.options.DEFAULT_TARGET_CPU (a test keeps them equal; options imports onnx, the CLI starts without it)


def _terminate(signum, _frame):
    """SIGTERM unwinds like Ctrl-C, so the compile's cleanup (worker, staging folder) runs."""
    raise KeyboardInterrupt(f"signal {signum}")


def _friendly(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        signal.signal(signal.SIGTERM, _terminate)
        try:
            return fn(*args, **kwargs)
        except HccError as exc:
            click.echo(f"hcc: error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("hcc: interrupted", err=True)
            sys.exit(130)
        except OSError as exc:  # disk full, read-only or vanished folder: the file and the system's reason
            where = f"{exc.filename}: " if exc.filename else ""
            click.echo(f"hcc: error: {where}{exc.strerror or exc}", err=True)
            sys.exit(1)

    return wrapper


def _options_from_config(config_file: str):
    """`--config FILE`: every compile option from the file; a compile-option flag given as well is refused by name, so
    that what compiled is what the file says."""
    from hcc.options import CompileOptions

    ctx = click.get_current_context()
    given = [p for p in ctx.command.params if p.name not in ("model", "bundle", "config_file", "quiet", "explain")
             and ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
    if given:
        flags = ", ".join(p.opts[0] for p in given)
        raise HccError(f"--config {config_file}: give the compile options in the file or on the command line, not both ({flags})")
    return CompileOptions.from_file(config_file)


def _check_output_file(path: str | None, option: str) -> None:
    """Refuse an output file that cannot be written before any work is done (not after running a model)."""
    if not path:
        return
    parent = Path(path).parent
    if not parent.is_dir():
        raise HccError(f"{option} {path}: folder {parent} does not exist")
    if Path(path).is_dir():
        raise HccError(f"{option} {path}: is a folder, expected a file name")


def _progress(quiet: bool):
    start = time.perf_counter()

    def emit(message: str) -> None:
        if not quiet:
            click.echo(f"[hcc {time.perf_counter() - start:6.2f}s] {message}", err=True)

    return emit


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hcc")
def main() -> None:
    """hcc: compile ONNX models ahead of time into a bundle of native code, and run or test the bundle.

    \b
    Typical use:
      hcc compile model.onnx -o bundle/            # compile (golden I/O from onnxruntime stored inside)
      hcc test bundle/                             # re-run the golden inputs, compare with tolerances
      hcc run bundle/ --input x.npz -o y.npz       # run on your inputs
      hcc inspect bundle/                          # what is inside
    """


shape_option = click.option(
    "--input-shape", "input_shapes", multiple=True, metavar="NAME=D1xD2x...",
    help="Concrete shape for an input (repeatable). Required for inputs with dynamic dimensions; "
    "accepted for static inputs when it agrees with the model. A sequence input is compiled for one length and "
    "element shapes, which it requires: NAME=[2x3,4x3] (two tensors), NAME=[2x3]*4 (four alike), NAME=[] (empty), () "
    "for a scalar element; an optional input for one presence: NAME=2x3 (present; a sequence as above), NAME=none "
    "(absent). The bundle's runtime takes a list (None when absent) and returns lists for sequence outputs.",
)


def placement_options(fn):
    """Options shared by `compile` and `plan`: which devices, what to optimise, budgets, forced placements."""
    options = [
        click.option("--devices", help="Devices to place ops on, comma-separated (compile) or a mix like '4xgpu:sm_90+2xfpga:xcu250+cpu' (plan). "
                     "The host CPU is always included. `hcc devices` lists the catalog."),
        click.option("--objective", type=click.Choice(["latency", "throughput"]), default="latency", show_default=True,
                     help="latency: one inference, subgraphs run in order (sum of op and transfer times); throughput: slowest pipeline stage."),
        click.option("--budget", "budgets", multiple=True, metavar="KEY=VALUE[,KEY=VALUE]",
                     help="Resource budgets, e.g. fpga.dsp=4000,gpu.mem=16GB,cpu.mem=8GB (repeatable)."),
        click.option("--place", "places", multiple=True, metavar="REGEX=DEVICE",
                     help="Force ops whose type or node name fully matches REGEX onto DEVICE, e.g. 'Conv|Gemm=fpga' (repeatable, later wins)."),
        click.option("--prefer", "prefers", multiple=True, metavar="REGEX=DEVICE",
                     help="Like --place, but soft: matching ops go to DEVICE as far as budgets allow (leaner FPGA design points first); "
                          "the rest are placed freely. --place wins over --prefer for the same op."),
        click.option("--placement", "placement_file", type=click.Path(dir_okay=False),
                     help="Placement overrides file (JSON, as written by --save-placement)."),
        click.option("--device-file", type=click.Path(dir_okay=False), help="TOML file adding or overriding device figures (see docs/devices.md)."),
        click.option("--time-limit", "time_limit", type=click.FloatRange(0.1, 3600), default=DEFAULT_TIME_LIMIT_S, show_default=True,
                     metavar="SECONDS",
                     help="Wall-clock limit of the placement search. Plans are deterministic unless the limit cuts the search short "
                          "(the plan's notes then say so)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _overrides(places, prefers=()):
    from hcc.planner.placement import parse_place_option

    return [parse_place_option(p, soft=True) for p in prefers] + [parse_place_option(p) for p in places]


def _planner_options(devices, objective, budgets, places, prefers, placement_file, device_file, time_limit, save_placement=None):
    """The `placement_options` (and compile's --save-placement) as an hcc.options.PlannerOptions."""
    from hcc.options import PlannerOptions

    return PlannerOptions(devices=devices, objective=objective, budgets=tuple(budgets), overrides=tuple(_overrides(places, prefers)),
                          placement_file=placement_file, save_placement=save_placement, device_file=device_file, time_limit_s=time_limit)


def fpga_options(fn):
    """FPGA precision and per-layer config: code generation (compile) and, in compile and plan alike, the
    partitioner's resource estimates (operand widths, fixed reuse factors and strategies)."""
    fn = click.option("--fpga-config", type=click.Path(dir_okay=False),
                      help="TOML with per model / op type / node precision, reuse factor and strategy (docs/backends/fpga.md).")(fn)
    fn = click.option("--fpga-precision", metavar="'ap_fixed<W,I>'|auto",
                      help="Default fixed-point type of FPGA subgraphs (default ap_fixed<16,6>); auto: the narrowest widths that "
                           "cannot overflow on the calibration data.")(fn)
    return fn


gpu_precision_option = click.option(
    "--gpu-precision", type=click.Choice([*DEVICE_KINDS["gpu"].precisions, "auto"]), default=DEVICE_KINDS["gpu"].default_precision,
    show_default=True, help="Precision of GPU subgraphs (fp16 keeps fp32 accumulation); auto: per GPU subgraph, fp16 where "
    "its emulated error (onnxruntime with its tensors rounded to fp16) fits --accuracy, fp32 for the rest.")
accuracy_option = click.option(
    "--accuracy", metavar="BUDGET", help="With --precision auto, --cpu-precision auto and/or --gpu-precision auto: "
    "the error allowed against fp32 "
    "per output, measured on calibration inputs (the golden ones and 3 random) and verified on 4 held-out ones: max_abs=, "
    "rel= (of the output's range), cosine=, top1= (argmax agreement), comma-separated, e.g. max_abs=1e-2.")


def _precision_options(cpu_precision: str, gpu_precision: str, accuracy: str | None, target_cpu: str | None = None):
    """(CpuOptions, GpuOptions): the one --accuracy budget goes to each device kind whose precision is auto."""
    from hcc.options import DEFAULT_TARGET_CPU, CpuOptions, GpuOptions

    if accuracy is not None and "auto" not in (cpu_precision, gpu_precision):
        raise HccError("--accuracy needs --cpu-precision auto or --gpu-precision auto")
    if accuracy is None and "auto" in (cpu_precision, gpu_precision):
        which = "--cpu-precision" if cpu_precision == "auto" else "--gpu-precision"
        raise HccError(f"{which} auto needs --accuracy (e.g. max_abs=1e-2)")
    cpu = CpuOptions(target_cpu=target_cpu or DEFAULT_TARGET_CPU, precision=cpu_precision, accuracy=accuracy if cpu_precision == "auto" else None)
    return cpu, GpuOptions(precision=gpu_precision, accuracy=accuracy if gpu_precision == "auto" else None)


def _precision_auto_options(cpu_precision: str, gpu_precision: str, fpga_precision: str | None, accuracy: str | None, target_cpu: str):
    """compile --precision auto: (CpuOptions, GpuOptions) as given (the driver sets each device's part of the choice);
    a per-device precision given on the command line other than auto contradicts it (an error naming both)."""
    from hcc.options import CpuOptions, GpuOptions

    if accuracy is None:
        raise HccError("--precision auto needs --accuracy (e.g. max_abs=1e-2)")
    source = click.get_current_context().get_parameter_source
    why = "--precision auto chooses each op's precision with its device under --accuracy"
    for flag, name, value in (("--cpu-precision", "cpu_precision", cpu_precision), ("--gpu-precision", "gpu_precision", gpu_precision)):
        if value != "auto" and source(name) != click.core.ParameterSource.DEFAULT:
            raise HccError(f"--precision auto and {flag} {value} contradict: {why}; give one of them")
    if fpga_precision is not None:
        raise HccError(f"--precision auto and --fpga-precision {fpga_precision} contradict: {why} (each FPGA MAC layer's ap_fixed "
                       "width); give one of them (per-layer types that must stay fixed: --fpga-config)")
    return (CpuOptions(target_cpu=target_cpu, precision=cpu_precision, accuracy=accuracy if cpu_precision == "auto" else None),
            GpuOptions(precision=gpu_precision, accuracy=accuracy if gpu_precision == "auto" else None))


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "bundle", required=True, type=click.Path(file_okay=False),
              help="Bundle folder to write. An existing folder is replaced only if it is empty or an intact hcc bundle holding no files of yours; "
              "never the current folder, a folder above it, or one holding the model or another input file.")
@shape_option
@click.option("--golden-input", "golden_input", type=click.Path(dir_okay=False),
              help="npz of inputs (keyed by input name) for the bundle's golden data; default: deterministic random inputs.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1), help="Seed of the random golden inputs.")
@click.option("--target-cpu", default=DEFAULT_TARGET_CPU, show_default=True,
              help="CPU the native code targets (x86-64-v2, x86-64-v3, x86-64-v4, or an llc -mcpu name such as 'native').")
@placement_options
@click.option("--save-placement", type=click.Path(dir_okay=False),
              help="Write the chosen placement (every op's device) as an editable overrides file.")
@click.option("--explain", is_flag=True, help="Print, per op, the predicted time on each device, transfers, the choice and its reason.")
@gpu_precision_option
@click.option("--cpu-precision", type=click.Choice([*DEVICE_KINDS["cpu"].precisions, "auto"]), default=DEVICE_KINDS["cpu"].default_precision,
              show_default=True, help="Precision of the CPU's GEMMs and convolutions: bf16 multiplies bfloat16-rounded operands "
              "with fp32 sums on AMX tiles (the products 2-5x faster, models measured 1.1-2.9x) or, without AMX, on AVX512-BF16 "
              "dot products (GEMMs about 1.9x, models measured 1.4-1.9x on an AMD Zen 4); bf16x3 (AMX only) splits each GEMM "
              "operand into two bfloat16 halves (three tile products, about 2^-16 of each product; GEMMs 1.6-2.7x faster; "
              "convolutions stay fp32); auto: per op, bf16, bf16x3 or (GEMMs of a weight, on AMX-INT8 or AVX512-VNNI CPUs) int8 where its "
              "measured error fits --accuracy, fp32 for the rest. Needs a compile host with those kernels (AMX, AVX512-BF16, "
              "or for int8 alone AVX512-VNNI): the golden "
              "tolerances are measured there, on the golden and on held-out inputs.")
@accuracy_option
@click.option("--precision", "precision", type=click.Choice(["fp32", "auto"]), default="fp32", show_default=True,
              help="auto: each op's precision chosen with its device under --accuracy, as `hcc plan --precision auto` chooses "
              "them (one MILP over (op, device, precision): CPU GEMMs/convolutions fp32|bf16, FPGA MAC layers' ap_fixed "
              "widths 8/12/16/18 bits (32 when none fits); then fp16|fp32 per GPU subgraph), confirmed end to end and checked "
              "on held-out inputs, then compiled at those precisions; the plan is kept in plan/. On the CPU alone it is "
              "--cpu-precision auto. Per-device precisions other than auto contradict it.")
@fpga_options
@click.option("--calib", "calibration", type=click.Path(dir_okay=False),
              help="npz of inputs for --fpga-precision auto (default: the bundle's golden inputs).")
@click.option("--sign", "sign_key", metavar="KEY",
              help="Sign the bundle with this Ed25519 secret key (a .key file from `hcc keygen`, or 64 hex digits); "
              "`hcc run --trust KEY.pub` then refuses any bundle not signed by it.")
@click.option("--save-temps", "save_temps", metavar="DIR", type=click.Path(file_okay=False),
              help="Keep the input IR and the pipeline of every MLIR pass pipeline the compile runs, in order, as "
              "DIR/NNNN-<stage>.mlir and .pipeline (each .mlir's header names the command that reruns it: mlir-opt, or "
              "python -m hcc.passes.pass_runner for the torch-mlir stages); a failing pass's reproducer goes there too. "
              "DIR must be new or empty.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), metavar="FILE",
              help="Take every compile option from this TOML file (sections [cpu], [gpu], [fpga], [planner], [debug], "
              "[golden] with the fields of hcc.options.CompileOptions; README); then no other option flag may be given.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
@_friendly
def compile_cmd(model, bundle, input_shapes, golden_input, seed, target_cpu, devices, objective, budgets, places, prefers, placement_file,
                device_file, time_limit, save_placement, explain, gpu_precision, cpu_precision, accuracy, precision, fpga_precision, fpga_config,
                calibration, sign_key, save_temps, config_file, quiet):
    """Compile MODEL (an .onnx file) into a bundle folder.

    When an MLIR pass pipeline fails, hcc writes a reproducer folder (hcc-repro-<stage>-<n> in the system temp
    folder, or in --save-temps DIR) with the input IR and the pipeline; the error names it, and its hint is the
    command that replays the failure (mlir-opt, or python -m hcc.passes.pass_runner DIR).
    """
    from hcc.driver import compile_model
    from hcc.frontend.loader import parse_shape_options
    from hcc.options import CompileOptions, DebugOptions, FpgaOptions, GoldenOptions

    _check_output_file(save_placement, "--save-placement")
    if precision == "auto" and not config_file:
        cpu, gpu = _precision_auto_options(cpu_precision, gpu_precision, fpga_precision, accuracy, target_cpu)
    else:
        cpu, gpu = _precision_options(cpu_precision, gpu_precision, accuracy, target_cpu) if not config_file else (None, None)
    options = _options_from_config(config_file) if config_file else CompileOptions(
        precision=precision, accuracy=accuracy if precision == "auto" else None,
        input_shapes=parse_shape_options(input_shapes), golden=GoldenOptions(inputs=golden_input, seed=seed), cpu=cpu, gpu=gpu,
        fpga=FpgaOptions(precision=fpga_precision, config=fpga_config, calibration_file=calibration),
        planner=_planner_options(devices, objective, budgets, places, prefers, placement_file, device_file, time_limit, save_placement),
        debug=DebugOptions(save_temps=save_temps), sign_key=sign_key,
    )
    manifest = compile_model(model, bundle, options, progress=_progress(quiet))
    if explain and manifest.plan_report:  # the subgraphs with their devices and precisions, then the per-op table
        click.echo((Path(bundle) / "plan" / "plan.txt").read_text().rstrip())
        click.echo((Path(bundle) / "plan" / "explain.txt").read_text().rstrip())
    elif explain:
        click.echo("(no placement to explain: the whole model is one CPU subgraph; pass --devices)")
    if manifest.program is not None:  # run-time control flow: the host runs compiled pieces (docs/control-flow.md)
        parts = manifest.program.parts()
        click.echo(f"compiled {manifest.model_name} -> {bundle}: a program of {len(parts)} compiled piece(s) with run-time "
                   "If/Loop (hcc inspect shows it)")
        return
    placed = ", ".join(f"{s.id}@{s.device}#{s.device_index}" for s in manifest.subgraphs)
    click.echo(f"compiled {manifest.model_name} -> {bundle}: {len(manifest.subgraphs)} subgraph(s): {placed}")


@main.command("plan")
@click.argument("model", type=click.Path(dir_okay=False))
@shape_option
@placement_options
@fpga_options
@gpu_precision_option
@click.option("--cpu-precision", type=click.Choice([*DEVICE_KINDS["cpu"].precisions, "auto"]), default=DEVICE_KINDS["cpu"].default_precision,
              show_default=True, help="Precision of the CPU's GEMMs and convolutions (as for compile): bf16, bf16x3 (GEMMs), or auto "
              "under --accuracy.")
@accuracy_option
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1),
              help="Seed of the random inputs the precision choices measure on (as compile's golden inputs).")
@click.option("--precision", "precision", type=click.Choice(["fp32", "auto"]), default="fp32", show_default=True,
              help="auto: every device's precision chosen under --accuracy: --cpu-precision auto and --gpu-precision auto "
              "(where left at fp32), and each FPGA MAC layer's ap_fixed width (8/12/16/18 bits, 32 when none fits) from its "
              "measured end-to-end error instead of the default type.")
@click.option("--save-fpga-config", "save_fpga_config", type=click.Path(dir_okay=False),
              help="With --precision auto: write the chosen FPGA types as an fpga.toml for hcc compile --fpga-config.")
@click.option("--explain", is_flag=True, help="Also print the per-op explanation table.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the plan as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages (the precision analysis prints some).")
@_friendly
def plan_cmd(model, input_shapes, devices, objective, budgets, places, prefers, placement_file, device_file, time_limit, fpga_precision,
             fpga_config, gpu_precision, cpu_precision, accuracy, seed, precision, save_fpga_config, explain, json_path, quiet):
    """What-if planning: place MODEL on a device mix without the hardware and without code generation.

    Prints the placement, predicted time and precision per subgraph and device, transfers, utilisation, resource
    use against budgets, and every single-device plan for comparison. With --cpu-precision auto / --gpu-precision
    auto and --accuracy, the precision choices run first (onnxruntime on random inputs; no code generation).
    """
    import json

    from hcc.driver import plan_with_precision
    from hcc.frontend.loader import load_model, parse_shape_options
    from hcc.options import CompileOptions, FpgaOptions, GoldenOptions
    from hcc.planner.plan import format_explanation, format_plan, plan_to_json

    _check_output_file(json_path, "--json")
    _check_output_file(save_fpga_config, "--save-fpga-config")
    if precision == "auto":
        if accuracy is None:
            raise HccError("--precision auto needs --accuracy (e.g. max_abs=1e-2)")
        cpu_precision = "auto" if cpu_precision == "fp32" else cpu_precision
        gpu_precision = "auto" if gpu_precision == "fp32" else gpu_precision
    elif save_fpga_config:
        raise HccError("--save-fpga-config needs --precision auto (it writes the FPGA widths that choice makes)")
    planner = _planner_options(devices, objective, budgets, places, prefers, placement_file, device_file, time_limit)
    cpu, gpu = _precision_options(cpu_precision, gpu_precision, accuracy)
    options = CompileOptions(golden=GoldenOptions(seed=seed), cpu=cpu, gpu=gpu, planner=planner,
                             fpga=FpgaOptions(precision=fpga_precision, config=fpga_config, accuracy=accuracy if precision == "auto" else None))
    loaded = load_model(model, parse_shape_options(input_shapes))
    plan, precision_plan = plan_with_precision(loaded, options, _progress(quiet))
    click.echo(format_plan(plan))
    if save_fpga_config:
        from hcc.planner.fixed_precision import to_toml

        if precision_plan is None or precision_plan.fpga is None:
            raise HccError("--save-fpga-config: the plan has no FPGA MAC layer, so no widths were chosen (nothing written)")
        Path(save_fpga_config).write_text(to_toml(precision_plan.fpga))
        click.echo(f"wrote {save_fpga_config}")
    if explain:
        click.echo(format_explanation(plan.placement))
    if json_path:
        Path(json_path).write_text(json.dumps(plan_to_json(plan), indent=2) + "\n")
        click.echo(f"wrote {json_path}")


@main.command("devices")
@click.option("--calibrate", is_flag=True, help="Measure this CPU with micro-benchmarks of the real CPU backend and store the fitted profile.")
@click.option("--quick", is_flag=True, help="With --calibrate: fewer, smaller benchmarks (about a minute).")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False),
              help="Profile file to write/read (default: $HCC_CACHE_DIR or ~/.cache/hcc/cpu-profile.json).")
@click.option("--device-file", type=click.Path(dir_okay=False), help="TOML file adding or overriding device figures.")
@_friendly
def devices_cmd(calibrate, quick, profile_path, device_file):
    """Devices this host really has (CPU features, NVIDIA GPUs via libcuda) and the catalog the planner uses."""
    from hcc.planner.device_catalog import builtin_catalog, describe_catalog, load_device_file
    from hcc.runtime.devices.cpu import bf16_kernel_name, cpu_low_precisions, int8_kernel_name
    from hcc.runtime.devices.discovery import describe_host_cpu, discover_nvidia_gpus

    host = describe_host_cpu()
    click.echo("this host:")
    click.echo(f"  cpu: {host.model_name or 'unknown'} ({host.vendor}), {host.physical_cores} cores / {host.logical_cpus} threads"
               + (f", {host.mhz:.0f} MHz" if host.mhz else "") + f", {host.mem_bytes / 2**30:.1f} GiB; features: {' '.join(host.flags) or '-'}")
    kernels = {"bf16": bf16_kernel_name(), "bf16x3": "AMX tiles", "int8": int8_kernel_name()}
    low = cpu_low_precisions()
    click.echo("  cpu precisions below fp32 (--cpu-precision): "
               + (", ".join(f"{p} on {kernels[p]}" + (" (auto only)" if p == "int8" else "") for p in low) if low else "none (fp32 only)"))
    gpus = discover_nvidia_gpus()
    if gpus.gpus:
        for gpu in gpus.gpus:
            click.echo(f"  gpu{gpu.index}: {gpu.name}, {gpu.sm} (catalog gpu:{gpu.sm}), {gpu.total_mem / 2**30:.1f} GiB, {gpu.multiprocessors} SMs")
    else:
        click.echo(f"  gpu: none ({gpus.reason})")
    if calibrate:
        from hcc.planner.calibrate import calibrate_cpu

        report = calibrate_cpu(profile_path, quick=quick, progress=lambda m: click.echo(f"  [calibrate] {m}", err=True))
        click.echo(report.format())
    catalog = builtin_catalog(profile_path)
    if device_file:
        catalog = load_device_file(device_file, catalog)
    click.echo("catalog:")
    click.echo(describe_catalog(catalog))


trust_option = click.option("--trust", "trust", multiple=True, metavar="KEY",
                            help="Require the bundle to be signed by this Ed25519 public key (a .pub file or 64 hex digits; repeatable).")


def _load_inputs(path: str | None, manifest) -> dict:
    from hcc.runtime.golden_check import io_bytes_bound, read_input_arrays

    if path is None:
        raise HccError("--input is required (an npz keyed by input name); `hcc test` runs the bundle's own golden inputs")
    return read_input_arrays(path, "--input", io_bytes_bound(manifest))


@main.command("run")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--input", "input_path", type=click.Path(dir_okay=False), help="npz of inputs keyed by input name.")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False),
              help="Write outputs (keyed by output name) to this npz; a ZipMap output (a sequence of maps) as its "
                   "[N, C] score matrix, columns in its class labels' order (hcc inspect lists them).")
@click.option("--repeat", default=1, show_default=True, help="Run this many times and report the median time.")
@click.option("--threads", default=0, show_default=True, type=click.IntRange(min=0),
              help="Threads of the CPU code (0: every CPU this process may use).")
@click.option("--profile", is_flag=True, help="Time every ONNX node of the CPU code and print where the time goes (median over --repeat).")
@trust_option
@_friendly
def run_cmd(bundle, input_path, output_path, repeat, threads, profile, trust):
    """Run BUNDLE on the inputs in an npz file."""
    import numpy as np

    from hcc.runtime import load
    from hcc.runtime.session import zipmap_note

    _check_output_file(output_path, "-o")
    session = load(bundle, threads=threads, trust=list(trust) or None, profile=profile)
    for note in session.notes:
        click.echo(f"note: {note}", err=True)
    feeds = _load_inputs(input_path, session.manifest)
    times, node_times = [], []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        outputs = session.run_tensors(None, feeds)  # a ZipMap output as its score matrix (npz holds arrays)
        times.append(time.perf_counter() - start)
        node_times.append(session.last_profile.nodes)
    for name, value in zip(session.manifest.outputs, outputs):
        click.echo(f"{name}: {value.dtype} {list(value.shape)}{zipmap_note(session.manifest.tensor(name).zipmap_keys)}")
    click.echo(f"time: {np.median(times) * 1e3:.3f} ms" + (f" (median of {len(times)})" if len(times) > 1 else ""))
    if profile:
        _print_profile(node_times, float(np.median(times)))
    if output_path:
        with open(output_path, "wb") as f:
            np.savez(f, **dict(zip(session.manifest.outputs, outputs)))
        click.echo(f"wrote {output_path}")


def _print_profile(runs: list[dict[str, float]], total: float) -> None:
    """Median seconds per node over the runs, largest first, with the share of the median total time."""
    import numpy as np

    if not runs or not runs[0]:
        click.echo("profile: no node timings (no CPU code, or code built as plain loops)")
        return
    medians = {node: float(np.median([r.get(node, 0.0) for r in runs])) for node in runs[0]}
    click.echo(f"{'node':48} {'ms':>9} {'share':>6}")
    for node, seconds in sorted(medians.items(), key=lambda kv: -kv[1]):
        click.echo(f"{node[:48]:48} {seconds * 1e3:9.3f} {seconds / total:6.1%}")
    click.echo(f"{'(outside the nodes: runtime, transfers)':48} {max(0.0, total - sum(medians.values())) * 1e3:9.3f}")


@main.command("golden")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--input", "input_path", type=click.Path(dir_okay=False), help="npz of inputs keyed by input name; default: random (see --seed).")
@click.option("-o", "--output", "output_path", required=True, type=click.Path(dir_okay=False),
              help="npz to write (keys input:<name>, output:<name>).")
@shape_option
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0, 2**32 - 1), help="Seed of the random inputs.")
@_friendly
def golden_cmd(model, input_path, output_path, input_shapes, seed):
    """Reference outputs of MODEL from onnxruntime (onnx.reference where onnxruntime cannot run it), for `hcc test --golden`."""
    from hcc.artifacts.golden import golden_outputs, random_inputs, save_golden
    from hcc.driver import load_feeds
    from hcc.frontend.loader import load_model, parse_shape_options

    _check_output_file(output_path, "-o")
    loaded = load_model(model, parse_shape_options(input_shapes))
    feeds = load_feeds(input_path, loaded.inputs) if input_path else random_inputs(loaded.model, loaded.inputs, seed)
    outputs = golden_outputs(loaded.path, feeds, element_types=loaded.element_types, boundary=loaded.boundary)
    save_golden(output_path, feeds, outputs)
    click.echo(f"wrote {output_path}: inputs {sorted(feeds)}, outputs {sorted(outputs)}")


@main.command("test")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--golden", "golden_path", type=click.Path(dir_okay=False), help="Golden npz from `hcc golden`; default: the bundle's own.")
@click.option("--rtol", type=float, help="Relative tolerance (default: the bundle's, per precision).")
@click.option("--atol", type=float, help="Absolute tolerance (default: the bundle's, per precision).")
@trust_option
@_friendly
def test_cmd(bundle, golden_path, rtol, atol, trust):
    """Run BUNDLE on golden inputs and compare with the golden outputs.

    Exit status 0 when every output passes; 1 when one fails; 2 when none fails but a tolerance is too loose to
    fail at all (INCONCLUSIVE: all zeros, or a constant, would have passed too).
    """
    from hcc.runtime.golden_check import check_golden

    report = check_golden(bundle, golden_path, rtol=rtol, atol=atol, trust=list(trust) or None)
    for line in report.lines():
        click.echo(line)
    if report.failed:
        sys.exit(1)
    if not report.passed:
        sys.exit(2)


@main.command("inspect")
@click.argument("bundle", type=click.Path(file_okay=False))
@_friendly
def inspect_cmd(bundle):
    """Show what BUNDLE holds: inputs/outputs, subgraphs and devices, weights, files, toolchain."""
    from hcc.runtime.inspect import describe

    click.echo(describe(bundle))


@main.command("keygen")
@click.argument("stem", type=click.Path(dir_okay=False))
@_friendly
def keygen_cmd(stem):
    """Make an Ed25519 key pair for signing bundles: STEM.key (secret, owner-only) and STEM.pub (public).

    \b
      hcc keygen release                          # release.key, release.pub
      hcc compile m.onnx -o b/ --sign release.key
      hcc run b/ --input x.npz --trust release.pub
    """
    from hcc.runtime.signing import generate_keys

    secret, public = generate_keys(stem)
    click.echo(f"wrote {secret} (secret: keep it private) and {public} (public: give it to whoever runs your bundles)")


@main.command("ops")
def ops_cmd():
    """List the ONNX ops hcc compiles."""
    from hcc.frontend.ops import MAX_OPSET, MIN_OPSET, NEWEST_OPSET, OLDEST_OPSET, SUPPORTED_OPS

    older = str(OLDEST_OPSET) if OLDEST_OPSET == MIN_OPSET - 1 else f"{OLDEST_OPSET}..{MIN_OPSET - 1}"
    click.echo(f"default-domain opsets {OLDEST_OPSET}..{NEWEST_OPSET} ({older} converted up to {MIN_OPSET}, "
               f"{MAX_OPSET + 1}..{NEWEST_OPSET} down to {MAX_OPSET}); {len(SUPPORTED_OPS)} ops:")
    click.echo(", ".join(sorted(SUPPORTED_OPS)))
    from hcc.frontend.control_flow import HOST_STEP_OPS

    click.echo(f"run on the host with numpy by `hcc compile`'s programs (output shapes that depend on values; "
               f"docs/control-flow.md): {', '.join(HOST_STEP_OPS)}")


if __name__ == "__main__":
    main()
