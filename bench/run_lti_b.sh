#!/usr/bin/env bash
# S4 (DPLR) benchmark row: ours (bench_lti_b) and the authors' S4Block (lti_b_peer.py) on this CPU, in one run.
# Usage: bench/run_lti_b.sh [BUILD_DIR]   (needs -DSSM_BENCH=ON there; third_party/s4 as tests/golden/README.md says)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build-bench}
cmake -S "$ROOT" -B "$BUILD" -DSSM_BENCH=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target bench_lti_b >/dev/null
echo "# machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bench/bench_lti_b" --benchmark_min_time=0.5 --benchmark_counters_tabular=true
python3 "$ROOT/bench/lti_b_peer.py" --s4-repo "${S4_REPO:-$ROOT/third_party/s4}" --h3-repo "${H3_REPO:-$ROOT/third_party/H3}"
