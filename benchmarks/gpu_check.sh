#!/usr/bin/env bash
# The CUDA checks, in one go, on a machine with an NVIDIA GPU (device time is short: compile and test on a
# CPU machine first, tools/cuda_emulated/check.sh). Builds the package with the CUDA kernels for this GPU,
# then runs the tests' device="cuda" cases there: the kernels against their numpy references, tiny models
# against the reference forward pass, every Hugging Face architecture's fixture and the encoder-decoder and
# captioning ones against transformers, and the batch tests (bitwise batch invariance, the step API, prefix
# reuse, context shift).
#
#   bash benchmarks/gpu_check.sh        # from anywhere; a few minutes on 16 cores
#
# The tests' conftest.py imports gguf (llama.cpp's writer, pure Python), which the GPU machine's image lacks:
# bring its wheel in .whl/ (here: pip download --no-deps -d .whl "gguf>=0.16"; carry .whl).
# Environment: PYTHON (default python3) with numpy, pytest, pybind11, tokenizers and jinja2; BUILD_DIR
# (default build/cuda); OUT, when set, gets the test log.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
BUILD_DIR=${BUILD_DIR:-build/cuda}
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
nvcc --version | tail -n 1
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)

start=$(date +%s)
cmake -S . -B "$BUILD_DIR" -G Ninja -DNEXTOKEN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
  -Dpybind11_DIR="$("$PYTHON" -m pybind11 --cmakedir)" \
  -DPython_EXECUTABLE="$("$PYTHON" -c 'import sys; print(sys.executable)')" >/dev/null
cmake --build "$BUILD_DIR" --parallel "$(nproc)"
echo "== built in $(( $(date +%s) - start )) s"

site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
cp -r python/nextoken "$site/"
cp "$BUILD_DIR"/_core*.so "$BUILD_DIR/libnextoken.so" "$site/nextoken/"
for wheel in .whl/gguf-*.whl; do
  if [ -f "$wheel" ]; then "$PYTHON" -m pip install -q --no-deps --target "$site" "$wheel"; fi
done
PYTHONPATH="$site" "$PYTHON" -c 'import nextoken; print("cuda_devices:", nextoken.cuda_devices())'
PYTHONPATH="$site" "$PYTHON" -m pytest -q -p no:cacheprovider tests/test_kernels.py tests/test_model.py tests/test_hf.py \
  tests/test_seq2seq.py tests/test_batches.py -k "cuda or device_is_checked" 2>&1 | tee "${OUT:-$site}/gpu_check.log"
