#!/usr/bin/env bash
# Runs the CUDA kernels (csrc/kernels/*.cu) on the CPU: builds the package with NEXTOKEN_CUDA=EMULATED (the
# .cu files compiled as C++ over cuda_runtime.h here, which runs a launch's threads as fibers) and runs the
# tests' device="cuda" cases: the kernels against their numpy references, tiny models against the reference
# forward pass, every Hugging Face architecture's fixture and the encoder-decoder ones against transformers
# (test_kernels, test_model, test_hf, test_seq2seq, test_batches). For machines without a GPU, where the test suite cannot run those cases; a GPU runs them for real
# (benchmarks/gpu_check.sh). It checks indexing, reductions and synchronisation, not speed, nor what only a
# GPU does.
#
#   bash tools/cuda_emulated/check.sh [pytest args...]   # from anywhere
#
# Environment: PYTHON (default python), a python with the package's test dependencies; BUILD_DIR (default
# build/cuda_emulated); JOBS (default: the number of cores); ALL=1 adds the slowest cases.
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-python}
BUILD_DIR=${BUILD_DIR:-build/cuda_emulated}
JOBS=${JOBS:-$(nproc)}

cmake -S . -B "$BUILD_DIR" -DNEXTOKEN_CUDA=EMULATED \
  -Dpybind11_DIR="$("$PYTHON" -m pybind11 --cmakedir)" \
  -DPython_EXECUTABLE="$("$PYTHON" -c 'import sys; print(sys.executable)')" >/dev/null
cmake --build "$BUILD_DIR" --parallel "$JOBS"

site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
cp -r python/nextoken "$site/"
cp "$BUILD_DIR"/_core*.so "$BUILD_DIR/libnextoken.so" "$site/nextoken/"
PYTHONPATH="$site" "$PYTHON" -c 'import nextoken; assert nextoken.cuda_devices() == ["CPU emulation (tools/cuda_emulated)"]'
# The slowest cases under emulation (greedy and beam generation of the encoder-decoder models, the batch tests:
# ~10 min) only with ALL=1; a GPU runs them all (benchmarks/gpu_check.sh).
if [ "${ALL:-0}" = 1 ]; then
  select="cuda or device_is_checked"
else
  select="(cuda or device_is_checked) and not (test_greedy_equals or test_beams_equal or test_batches)"
fi
PYTHONPATH="$site" "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_model.py tests/test_hf.py \
  tests/test_seq2seq.py tests/test_batches.py -k "$select" "$@"
