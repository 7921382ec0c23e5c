"""`hcc` command line. Every HccError is printed as `hcc: error: ...` without a traceback (exit status 1)."""
from __future__ import annotations

import functools
import sys
import time

import click

from hcc import __version__
from hcc.errors import HccError


def _friendly(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except HccError as exc:
            click.echo(f"hcc: error: {exc}", err=True)
            sys.exit(1)

    return wrapper


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
    "accepted for static inputs when it agrees with the model.",
)


@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "bundle", required=True, type=click.Path(file_okay=False), help="Bundle folder to write (replaced if it is an hcc bundle).")
@shape_option
@click.option("--golden-input", "golden_input", type=click.Path(dir_okay=False), help="npz of inputs (keyed by input name) for the bundle's golden data; default: deterministic random inputs.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random golden inputs.")
@click.option("--target-cpu", default="x86-64-v3", show_default=True, help="CPU the native code targets (x86-64-v2, x86-64-v3, x86-64-v4, or an llc -mcpu name such as 'native').")
@click.option("-q", "--quiet", is_flag=True, help="No progress messages.")
@_friendly
def compile_cmd(model, bundle, input_shapes, golden_input, seed, target_cpu, quiet):
    """Compile MODEL (an .onnx file) into a bundle folder."""
    from hcc.driver import compile_model
    from hcc.frontend.loader import parse_shape_options

    manifest = compile_model(
        model, bundle, input_shapes=parse_shape_options(input_shapes), golden_inputs=golden_input, seed=seed,
        target_cpu=target_cpu, progress=_progress(quiet),
    )
    click.echo(f"compiled {manifest.model_name} -> {bundle}: {len(manifest.subgraphs)} subgraph(s) on {', '.join(manifest.devices_required)}")


def _load_inputs(path: str | None, session) -> dict:
    import numpy as np

    if path is None:
        raise HccError("--input is required (an npz keyed by input name); `hcc test` runs the bundle's own golden inputs")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k.removeprefix("input:"): data[k] for k in data.files if not k.startswith("output:")}
    except FileNotFoundError:
        raise HccError(f"{path}: no such file") from None
    except Exception as exc:
        raise HccError(f"{path}: not a readable .npz file ({exc})") from None


@main.command("run")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--input", "input_path", type=click.Path(dir_okay=False), help="npz of inputs keyed by input name.")
@click.option("-o", "--output", "output_path", type=click.Path(dir_okay=False), help="Write outputs (keyed by output name) to this npz.")
@click.option("--repeat", default=1, show_default=True, help="Run this many times and report the median time.")
@_friendly
def run_cmd(bundle, input_path, output_path, repeat):
    """Run BUNDLE on the inputs in an npz file."""
    import numpy as np

    from hcc.runtime import load

    session = load(bundle)
    for note in session.notes:
        click.echo(f"note: {note}", err=True)
    feeds = _load_inputs(input_path, session)
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        outputs = session.run(None, feeds)
        times.append(time.perf_counter() - start)
    for name, value in zip(session.manifest.outputs, outputs):
        click.echo(f"{name}: {value.dtype} {list(value.shape)}")
    click.echo(f"time: {np.median(times) * 1e3:.3f} ms" + (f" (median of {len(times)})" if len(times) > 1 else ""))
    if output_path:
        with open(output_path, "wb") as f:
            np.savez(f, **dict(zip(session.manifest.outputs, outputs)))
        click.echo(f"wrote {output_path}")


@main.command("golden")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--input", "input_path", type=click.Path(dir_okay=False), help="npz of inputs keyed by input name; default: random (see --seed).")
@click.option("-o", "--output", "output_path", required=True, type=click.Path(dir_okay=False), help="npz to write (keys input:<name>, output:<name>).")
@shape_option
@click.option("--seed", default=0, show_default=True)
@_friendly
def golden_cmd(model, input_path, output_path, input_shapes, seed):
    """Reference outputs of MODEL from onnxruntime, for `hcc test --golden`."""
    from hcc.artifacts.golden import random_inputs, run_onnxruntime, save_golden
    from hcc.driver import load_feeds
    from hcc.frontend.loader import load_model, parse_shape_options

    loaded = load_model(model, parse_shape_options(input_shapes))
    feeds = load_feeds(input_path, loaded.inputs) if input_path else random_inputs(loaded.model, loaded.inputs, seed)
    outputs = run_onnxruntime(loaded.model, feeds)
    save_golden(output_path, feeds, outputs)
    click.echo(f"wrote {output_path}: inputs {sorted(feeds)}, outputs {sorted(outputs)}")


@main.command("test")
@click.argument("bundle", type=click.Path(file_okay=False))
@click.option("--golden", "golden_path", type=click.Path(dir_okay=False), help="Golden npz from `hcc golden`; default: the bundle's own.")
@click.option("--rtol", type=float, help="Relative tolerance (default: the bundle's, per precision).")
@click.option("--atol", type=float, help="Absolute tolerance (default: the bundle's, per precision).")
@_friendly
def test_cmd(bundle, golden_path, rtol, atol):
    """Run BUNDLE on golden inputs and compare with the golden outputs; exit status 1 on a mismatch."""
    from hcc.runtime.golden_check import check_golden

    report = check_golden(bundle, golden_path, rtol=rtol, atol=atol)
    for line in report.lines():
        click.echo(line)
    if not report.passed:
        sys.exit(1)


@main.command("inspect")
@click.argument("bundle", type=click.Path(file_okay=False))
@_friendly
def inspect_cmd(bundle):
    """Show what BUNDLE holds: inputs/outputs, subgraphs and devices, weights, files, toolchain."""
    from hcc.runtime.inspect import describe

    click.echo(describe(bundle))


@main.command("ops")
def ops_cmd():
    """List the ONNX ops hcc compiles."""
    from hcc.frontend.ops import MAX_OPSET, MIN_OPSET, SUPPORTED_OPS

    click.echo(f"default-domain opsets {MIN_OPSET}..{MAX_OPSET}; {len(SUPPORTED_OPS)} ops:")
    click.echo(", ".join(sorted(SUPPORTED_OPS)))


if __name__ == "__main__":
    main()
