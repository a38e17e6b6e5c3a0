#!/usr/bin/env bash
# The whole test suite against an AddressSanitizer + UndefinedBehaviorSanitizer build of the C++ core
# (libnextoken.so and the _core module). Any sanitizer report fails the run.
#
#   bash tools/sanitize.sh                   # from the repository root: everything (see the tests below)
#   bash tools/sanitize.sh [pytest args...]  # just that pytest run, e.g. tests/test_kernels.py -x
#
# Environment:
#   PYTHON     a python with the package's test dependencies installed (default: python)
#   CXX        the C++ compiler (default: what CMake finds). Checked with GCC 12. Clang links its sanitizer
#              runtime into shared libraries only with -shared-libsan, which this script does not add.
#   BUILD_DIR  the CMake build folder (default: build/sanitize; build/ is ignored by git)
#   JOBS       parallel compile jobs (default: the number of cores)
#
# The package is not installed: its Python files and the two instrumented .so files are copied into a
# temporary folder that goes first on PYTHONPATH (subprocesses that tests start, `python -m nextoken ...`,
# inherit it, and the sanitizer settings).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python}
BUILD_DIR=${BUILD_DIR:-build/sanitize}
JOBS=${JOBS:-$(nproc)}
SANITIZE="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

# ---- build ------------------------------------------------------------------------------------------------
# CMakeLists.txt adds -O3 to its own targets after CMAKE_CXX_FLAGS, so the kernels are checked as they ship;
# RelWithDebInfo contributes -g for file:line in the reports.
cmake -S . -B "$BUILD_DIR" \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNEXTOKEN_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$SANITIZE" \
  -DCMAKE_SHARED_LINKER_FLAGS="$SANITIZE" \
  -DCMAKE_MODULE_LINKER_FLAGS="$SANITIZE" \
  -Dpybind11_DIR="$("$PYTHON" -m pybind11 --cmakedir)" \
  -DPython_EXECUTABLE="$("$PYTHON" -c 'import sys; print(sys.executable)')"
cmake --build "$BUILD_DIR" --parallel "$JOBS"

core=$(find "$BUILD_DIR" -maxdepth 1 -name '_core*.so' | head -n 1)
library="$BUILD_DIR/libnextoken.so"
[[ -f "$core" && -f "$library" ]] || { echo "sanitize.sh: no _core*.so / libnextoken.so in $BUILD_DIR" >&2; exit 1; }

# ---- the package, as an install would lay it out ------------------------------------------------------
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/site" "$work/reports"
# Every file of python/nextoken except built modules (a dev build may sit there) and byte-code caches.
(cd python && find nextoken -type f ! -name '*.so' ! -path '*/__pycache__/*') | while read -r f; do
  mkdir -p "$work/site/$(dirname "$f")"
  cp "python/$f" "$work/site/$f"
done
cp "$core" "$library" "$work/site/nextoken/"
mkdir -p "$work/site/nextoken/include/nextoken"
cp include/nextoken/nextoken.h "$work/site/nextoken/include/nextoken/"

# ---- the sanitizer runtime ----------------------------------------------------------------------------
# python itself is not instrumented, so the runtimes the library was linked against must be loaded before
# anything else: LD_PRELOAD them, in the order the library names them (GCC: libasan, then libubsan).
preload=$(ldd "$library" | awk '/lib(asan|ubsan|clang_rt\.asan)[^ ]*\.so/ { print $3 }' | paste -sd: -)
[[ -n "$preload" ]] || { echo "sanitize.sh: $library links no sanitizer runtime" >&2; exit 1; }

# detect_leaks=0: CPython and numpy deliberately leave their interned objects, module state and arenas to
# the OS at exit, so LeakSanitizer would report thousands of allocations that are not ours.
# allocator_may_return_null=1: malloc/calloc answer a request they cannot meet with NULL, as glibc's do,
# instead of aborting; the library checks every result and throws std::bad_alloc (a Python MemoryError),
# which tests of absurd sizes (n_ctx in the billions) expect. Reads and writes are checked all the same.
# abort_on_error=1 (both): a report ends the process with SIGABRT, never with an exit status a test expects
# (UBSan's own would be 1, the status of a C program that reports a bad file).
# log_path: every report also lands in $work/reports (name.pid), so a report from a subprocess whose exit
# status a test does not look at, or expects to be non-zero, still fails this script.
export LD_PRELOAD="$preload${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:log_path=$work/reports/asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$work/reports/ubsan"
export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"

# GCC's libubsan ignores log_path when libasan is loaded as well (its reports go to stderr only, checked with
# GCC 12), so every python process started here, subprocesses included, sets UBSan's report file itself
# through the runtime's own __sanitizer_set_report_path, at start-up (a sitecustomize module, first on the path).
ubsan=$(echo "$preload" | tr : '\n' | grep libubsan || true)
if [[ -n "$ubsan" ]]; then
  cat > "$work/site/sitecustomize.py" <<PY
# Written by tools/sanitize.sh: UBSan's reports into $work/reports (see the script).
import ctypes
ctypes.CDLL("$ubsan")["__sanitizer_set_report_path"](b"$work/reports/ubsan")
PY
fi

echo "== sanitize: LD_PRELOAD=$LD_PRELOAD"
"$PYTHON" -c 'import nextoken, sys; print("== sanitize: nextoken from", nextoken.__file__, "ISA", nextoken.cpu_isa())'
for module in nextoken ${ubsan:+sitecustomize}; do
  [[ "$("$PYTHON" -c "import $module; print($module.__file__)")" == "$work/site/"* ]] \
    || { echo "sanitize.sh: python imports $module from somewhere other than $work/site" >&2; exit 1; }
done

# ---- the tests ----------------------------------------------------------------------------------------
# With no arguments: all of tests/ on the instruction set this CPU picks, then (as .ci/run does) the kernel
# and tiny whole-model tests again on each lower one, whose SIMD loops and tails the CPU would not run on
# its own (a few seconds each). With arguments: pytest with those arguments only.
status=0
if [[ $# -gt 0 ]]; then
  "$PYTHON" -m pytest -p no:cacheprovider "$@" || status=$?
else
  "$PYTHON" -m pytest -p no:cacheprovider tests || status=$?
  for isa in avx2 generic; do
    echo "== sanitize: NEXTOKEN_ISA=$isa"
    NEXTOKEN_ISA=$isa "$PYTHON" -m pytest -p no:cacheprovider -q tests/test_kernels.py tests/test_model.py \
      tests/test_hf.py || status=$?
  done
fi

reports=$(find "$work/reports" -type f | sort)
if [[ -n "$reports" ]]; then
  for r in $reports; do
    echo "== sanitizer report: $(basename "$r")"
    cat "$r"
  done
  echo "sanitize.sh: FAILED, $(echo "$reports" | wc -l) sanitizer report(s)" >&2
  exit 1
fi
[[ $status -eq 0 ]] || { echo "sanitize.sh: FAILED, pytest exited with $status (no sanitizer report)" >&2; exit "$status"; }
echo "== sanitize: clean"
