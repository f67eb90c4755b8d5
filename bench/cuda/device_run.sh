#!/usr/bin/env bash
# On the lent GPU machine, from the repository root: runs the prebuilt GPU tests and benchmarks carried in .devrun/
# (test_cuda, bench_cuda, the ssm app and its CUDA module, and the shared libraries the image lacks), logs to $OUT.
# usage: bash bench/cuda/device_run.sh [tests] [bench] [hour] [torch]   (QUICK=quick for the short sizes)
set -uo pipefail
OUT=${OUT:-/tmp/out}; D=$PWD/.devrun
mkdir -p "$OUT"
export LD_LIBRARY_PATH=$D/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
# The binaries name the source tree they were built in (golden files): make that path point here.
[ -e /work/main ] || { mkdir -p /work && ln -s "$PWD" /work/main; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader | tee "$OUT/gpu.txt"
# cuFFT's LTO callbacks need libnvJitLink: the toolkit's, or the one PyTorch's wheels bring.
J=$(find /usr/local/cuda*/ /opt /usr/lib -name 'libnvJitLink.so.13*' 2>/dev/null | head -1)
echo "nvJitLink: ${J:-none}"; [ -n "$J" ] && export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$(dirname "$J")
export SSM_CUDA_VERBOSE=1
for what in "$@"; do
  case $what in
    tests) "$D/test_cuda" ${TEST_FILTER:+--gtest_filter=$TEST_FILTER} 2>&1 | tee "$OUT/test_cuda.log" | grep -E "parity\]|OK|FAILED|PASSED|Failure|error" ;;
    bench) "$D/bench_cuda" ${QUICK:-} ${BENCH_PARTS:-} 2>&1 | tee "$OUT/bench_cuda.csv" ;;
    hour) SSM_CUDA_MODULE=$D/libssmstream_cuda_module.so CPU_BACKEND=fft CPU_FOR=${CPU_FOR:-hum-remover} \
            bash bench/cuda/hour_run.sh "$D" "$OUT/hour" 2>&1 | tee "$OUT/hour.log" ;;
    torch) PYTHONUNBUFFERED=1 python3 bench/cuda/torch_peers.py ${QUICK:-} 2>&1 | tee "$OUT/torch_peers.csv" ;;
  esac
done
