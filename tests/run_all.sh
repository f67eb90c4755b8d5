#!/usr/bin/env bash
# The project's test command (README, CI): release build + all tests, then an ASan+UBSan build + all tests,
# then short libFuzzer runs on the model-file reader and ssm-monitor's frame parser. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-$(nproc)}"
FUZZ_SECONDS="${FUZZ_SECONDS:-60}"

echo "== release build and tests"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DSSM_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS"

echo "== ASan + UBSan build and tests"
# -O1 -g1: GCC's sanitizer instrumentation at -O2 -g doubles the build (the largest part of CI on 2 cores), while the
# checks and the line-numbered reports are the same.
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
  -DSSM_SANITIZE=ON -DSSM_CUDA=OFF >/dev/null
cmake --build build-asan -j"$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$JOBS" -E "package_find_package"

# The PyTorch side (models/train): mirrors of our layers, export and import. PyTorch is a training-time tool, not a
# dependency of the library; where it is not installed this suite says so and the C++ suites above still ran.
if python3 -c "import torch, safetensors, numpy, pytest, einops" 2>/dev/null; then
  echo "== models/train (PyTorch) tests"
  python3 -m pytest -q models/train/tests
else
  echo "== models/train (PyTorch) tests NOT RUN: install torch numpy safetensors einops pytest to run them"
fi

if [ -x tests/fuzz/run_fuzz.sh ] && [ "$FUZZ_SECONDS" -gt 0 ]; then
  echo "== libFuzzer: model-file reader for ${FUZZ_SECONDS}s"
  tests/fuzz/run_fuzz.sh "$FUZZ_SECONDS"
  echo "== libFuzzer: ssm-monitor's frame parser for $((FUZZ_SECONDS / 3))s"
  SSM_FUZZ_TARGET=fuzz_monitor_frame tests/fuzz/run_fuzz.sh "$((FUZZ_SECONDS / 3))"
fi
echo "== all tests passed"
