"""Predicted vs measured CPU time: how well the (calibrated) cost model predicts hcc's own compiled code.

    python tools/calibration_check.py MODEL.onnx [MODEL.onnx ...] [--input-shape NAME=DIMS] [--repeat 50]

For each model: `hcc plan` on the host CPU alone (the cost model's prediction, with the profile that
`hcc devices --calibrate` wrote, if any), then compile, run the bundle `--repeat` times and report the median.
Prints predicted, measured and measured/predicted per model.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import hcc
import hcc.runtime
from hcc.artifacts.golden import random_inputs
from hcc.frontend.loader import load_model, parse_shape_options
from hcc.planner.plan import make_plan


def measure(model: Path, shapes: dict, repeat: int) -> tuple[float, float]:
    loaded = load_model(str(model), shapes)
    predicted = make_plan(loaded, "cpu").predicted_latency
    with tempfile.TemporaryDirectory() as tmp:
        hcc.compile(model, Path(tmp) / "b", input_shapes=shapes)
        session = hcc.runtime.load(Path(tmp) / "b")
        feeds = random_inputs(loaded.model, loaded.inputs, seed=1)
        for _ in range(3):
            session.run(None, feeds)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            session.run(None, feeds)
            times.append(time.perf_counter() - start)
    return predicted, statistics.median(times)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--input-shape", action="append", default=[], metavar="NAME=DIMS")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args(argv)
    shapes = parse_shape_options(args.input_shape)
    print(f"{'model':<28} {'predicted':>12} {'measured':>12} {'measured/predicted':>19}")
    for model in args.models:
        predicted, measured = measure(model, shapes, args.repeat)
        print(f"{model.stem:<28} {predicted * 1e3:>9.3f} ms {measured * 1e3:>9.3f} ms {measured / predicted:>18.2f}x", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
