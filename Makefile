# hcc developer entry points. `make demo` and `make test` work on a fresh machine with python3 and git only:
# they create .venv and install the pinned dependencies (pyproject.toml + constraints.txt) first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hcc-installed
DEMO   := out/demo

.PHONY: setup demo lint test test-all bench bench-torch bench-torch-variants bench-int8 bench-sklearn bench-production conformance fuzz clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "pip==26.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[test]"
	# FPGA csim: Xilinx's Apache-2.0 ap_int/ap_fixed headers ship in this wheel; only its files are used, so its
	# Python dependencies are not installed (research/hw-toolchains.md A1).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps "da4ml==0.6.0"
	@touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/hcc compile examples/tiny_cnn.onnx -o $(DEMO) --input-shape image=1x3x32x32
	$(BIN)/hcc inspect $(DEMO)
	$(BIN)/hcc test $(DEMO)
	$(BIN)/python -c "import numpy as np; np.savez('out/image.npz', image=np.random.default_rng(1).standard_normal((1,3,32,32)).astype('float32'))"
	$(BIN)/hcc run $(DEMO) --input out/image.npz -o out/probs.npz --repeat 20

# Lint (ruff, pinned in pyproject.toml's test extra and configured there): any finding fails `make test`.
lint: setup
	$(BIN)/ruff check .

# The default suite (CI runs exactly this: lint, then the tests); slow suites are marked and run by `make test-all`.
# The tests run in TEST_JOBS processes (pytest-xdist), one test file per process at a time (module fixtures such as
# test_ukernels' compiled kernels are built once): on the 2-core CI-like machine one process took 35 min of tests, two
# 23.5 min, and 19 min once the slowest tests moved to test-all (README "Tests"). TEST_JOBS=0 runs them in this process.
TEST_JOBS ?= 2
test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" -q --durations=15 -n $(TEST_JOBS) --dist loadfile

test-all: setup
	$(BIN)/python -m pytest -q -n $(TEST_JOBS) --dist loadfile

# The CPU benchmark suite (tools/bench_suite.py): hcc vs onnxruntime on 11 generated models at 1 thread and all
# cores; writes docs/benchmarks/cpu-suite.md. Run it on a quiet machine. BENCH_ARGS="--quick" for a smoke run.
bench: setup
	$(BIN)/python tools/bench_suite.py $(BENCH_ARGS)

# The same measurement on models torch itself exports (tools/export_torch_models.py, both exporters): models no test
# has seen. torch lives in its own venv at pinned versions (not an hcc dependency); writes docs/benchmarks/cpu-torch-exports.md.
TORCH_VENV := .venv-torch
$(TORCH_VENV)/.installed:
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0" "onnx==1.22.0" "onnxscript==0.7.2" "onnx-ir==1.1.0"
	@touch $@

bench-torch: setup $(TORCH_VENV)/.installed
	$(TORCH_VENV)/bin/python tools/export_torch_models.py out/torch-models
	$(BIN)/python tools/bench_suite.py $$(for f in out/torch-models/*.onnx; do printf -- '--onnx %s ' "$$f"; done) \
		--out docs/benchmarks/cpu-torch-exports.md $(BENCH_ARGS)

# Variants of the same families at other sizes, batches and layouts, and layers the suite lacks
# (tools/export_torch_variants.py: ResNet-50, MobileNetV2 at widths 0.5 / 1.4, MobileNetV3, BERT at other sequence
# lengths and batches, GPT, ViT, a bidirectional LSTM, a bilinear U-Net, DLRM, DS-CNN-L, ...); writes
# docs/benchmarks/cpu-torch-variants.md.
bench-torch-variants: setup $(TORCH_VENV)/.installed
	$(TORCH_VENV)/bin/python tools/export_torch_variants.py out/torch-variants
	$(BIN)/python tools/bench_suite.py $$(for f in out/torch-variants/*.onnx; do printf -- '--onnx %s ' "$$f"; done) \
		--seconds 1.5 --out docs/benchmarks/cpu-torch-variants.md $(BENCH_ARGS)

# The torch exports quantized by onnxruntime's own tool (tools/quantize_models.py: quantize_dynamic, and quantize_static
# in QDQ format with its defaults), then timed like the rest; writes docs/benchmarks/cpu-int8.md. On a CPU without
# VNNI onnxruntime's u8 x s8 kernels saturate, so the table flags its 8-bit-weight models as mismatches there.
bench-int8: setup $(TORCH_VENV)/.installed
	test -d out/torch-models || $(TORCH_VENV)/bin/python tools/export_torch_models.py out/torch-models
	$(BIN)/python tools/quantize_models.py out/torch-models out/int8-models
	$(BIN)/python tools/bench_suite.py $$(for f in out/int8-models/*.onnx; do printf -- '--onnx %s ' "$$f"; done) \
		--seconds 1 --out docs/benchmarks/cpu-int8.md $(BENCH_ARGS)

# scikit-learn pipelines converted by skl2onnx with its defaults (ZipMap, SVM, trees, nearest neighbours, imputer:
# tools/export_sklearn_models.py), in their own pinned venv (not hcc dependencies); writes docs/benchmarks/cpu-sklearn.md.
SKL_VENV := .venv-skl
$(SKL_VENV)/.installed:
	$(PYTHON) -m venv $(SKL_VENV)
	$(SKL_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "scikit-learn==1.9.1" "skl2onnx==1.20.0" "onnx==1.22.0"
	@touch $@

bench-sklearn: setup $(SKL_VENV)/.installed
	$(SKL_VENV)/bin/python tools/export_sklearn_models.py out/sklearn-models
	$(BIN)/python tools/bench_suite.py --sklearn out/sklearn-models --seconds 1 --out docs/benchmarks/cpu-sklearn.md $(BENCH_ARGS)

# Production models shipped inside PyPI packages (tools/production_models.py: Silero VAD, PaddleOCR's PP-OCR via
# rapidocr-onnxruntime; wheels pip-downloaded at pinned versions, nothing installed); writes docs/benchmarks/cpu-production.md.
bench-production: setup
	$(BIN)/python tools/bench_suite.py --production --out docs/benchmarks/cpu-production.md $(BENCH_ARGS)

# Fuzz campaign (tools/fuzz.py): mutated models into `hcc compile`, mutated bundles into `hcc test`/`hcc run`;
# exits 1 on any finding (traceback, crash, hang, wrong result). About 1.2 s per case on 2 cores.
# FUZZ_ARGS="--seed 7 --only bundles" narrows it.
fuzz: setup
	$(BIN)/python tools/fuzz.py --count 1000 $(FUZZ_ARGS)

# The ONNX backend node suite (tools/conformance.py, docs/conformance.md): every case of onnx 1.22.0's node tests,
# niced, 2 at a time; rewrites docs/conformance.md and fails when a case listed in tests/conformance_baseline.txt no
# longer passes (`make test` runs a sample of it). About an hour on 2 cores. CONFORMANCE_ARGS="--ops Conv,Relu" narrows it.
conformance: setup
	nice -n 10 $(BIN)/python tools/conformance.py --jobs 2 --check-baseline --write-docs $(CONFORMANCE_ARGS)

clean:
	rm -rf out .pytest_cache
