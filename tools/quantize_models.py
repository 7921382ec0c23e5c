"""Quantize float ONNX models with onnxruntime's own tool, the way a user of onnxruntime would, for `make bench-int8`.

Each model of SOURCE (e.g. the `make bench-torch` exports in out/torch-models) becomes, in TARGET:
  <name>_dyn8.onnx   quantize_dynamic (int8 weights, activations quantized at run time: MatMulInteger/ConvInteger)
  <name>_qdq8.onnx   quantize_static, QDQ format, per-channel weights, the tool's defaults otherwise (int8
                     activations), calibrated on 4 inputs of tools/bench_models.default_feeds
A model the tool itself cannot quantize is reported and skipped. Needs only onnxruntime (the main environment).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models  # noqa: E402  (tools/ is not a package)

CALIBRATION_INPUTS = 4


def _reader(model: onnx.ModelProto):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([bench_models.default_feeds(model, seed) for seed in range(CALIBRATION_INPUTS)])

        def get_next(self):
            return next(self.feeds, None)

    return Reader()


def quantize(source: Path, target: Path) -> tuple[list[Path], list[str]]:
    """Write the quantized variants of every model in `source`; returns (written files, failures)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    written, failures = [], []
    for path in sorted(source.glob("*.onnx")):
        model = onnx.load(path)
        jobs = {f"{path.stem}_dyn8.onnx": lambda out: quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8),
                f"{path.stem}_qdq8.onnx": lambda out: quantize_static(str(path), str(out), _reader(model), quant_format=QuantFormat.QDQ,
                                                                      per_channel=True)}
        for name, job in jobs.items():
            out = target / name
            try:
                job(out)
            except Exception as exc:  # the tool's own failure on this export: reported, not ours to fix
                failures.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:200])
                out.unlink(missing_ok=True)
                continue
            written.append(out)
            print(f"quantized {name}", flush=True)
    return written, failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="folder of float .onnx models")
    parser.add_argument("target", type=Path, help="folder for the quantized models (created; only its *_dyn8/_qdq8 files are written)")
    args = parser.parse_args()
    if not args.source.is_dir():
        print(f"quantize_models: error: {args.source} is not a folder of .onnx models", file=sys.stderr)
        return 2
    args.target.mkdir(parents=True, exist_ok=True)
    written, failures = quantize(args.source, args.target)
    for failure in failures:
        print(f"onnxruntime's quantizer failed: {failure}", file=sys.stderr)
    print(f"{len(written)} quantized models in {args.target}")
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
