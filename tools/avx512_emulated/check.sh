#!/usr/bin/env bash
# Checks matmul_int8.cpp's AVX-512 VNNI variant on any x86-64 CPU, AVX-512 or not: compiled against SIMDe's
# portable intrinsics (apt-get install libsimde-dev), it must give the baseline variant's bits on every
# packed weight type. For kernel work on machines without AVX-512, where the test suite cannot run that
# variant; an AVX-512 machine runs it for real in tests/test_kernels.py.
#
#   bash tools/avx512_emulated/check.sh      # from anywhere; CXX picks the compiler (default g++)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
CXX=${CXX:-g++}
flags="-std=c++17 -O2 -Wno-psabi -I$root/csrc"
$CXX $flags -c "$here/generic.cpp" -o "$out/generic.o"
$CXX $flags -mavx2 -mfma -mf16c -c "$here/emulated.cpp" -o "$out/emulated.o"
$CXX $flags -c "$here/main.cpp" -o "$out/main.o"
$CXX $flags -c "$root/csrc/kernels/quant.cpp" -o "$out/quant.o"
$CXX $flags -c "$root/csrc/parallel.cpp" -o "$out/parallel.o"
$CXX "$out"/*.o -o "$out/check" -pthread
"$out/check"
