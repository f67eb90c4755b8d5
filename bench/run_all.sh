#!/usr/bin/env bash
# Builds the benchmarks (-DSSM_BENCH=ON in build-bench/) and runs everything in one go: FMA peak, S4D streaming,
# realistic-model batch, the cost-model sweep, FFTW's limit, the PyTorch peer and peak memory. Writes
# bench/results/<date>-<host>.json and .md and prints the Markdown table for bench/README.md.
#
# Environment: FULL=1     adds the 1-hour batch runs and 1-hour peak-memory runs (≈ 65 min in all here)
#              PIN_CPU=1  the core single-threaded runs are pinned to (taskset); PIN_CPU= to not pin
#              BUILD=…    build directory (default build-bench)
#              MEM_SECONDS=…  audio length of the peak-memory run (default 120, FULL: 3600)
# Quick mode (default) takes about 8 minutes on the 2-core Zen 4 VM.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
FULL=${FULL:-0}
PIN_CPU=${PIN_CPU-1}
PIN=()
if [ -n "$PIN_CPU" ] && command -v taskset >/dev/null; then PIN=(taskset -c "$PIN_CPU"); fi
if [ "$FULL" = 1 ]; then
    MEM_SECONDS=${MEM_SECONDS:-3600}; HOUR=all
    export DRIVER_BACKENDS=${DRIVER_BACKENDS-}  # an hour through mem_driver too would add 8 min; the CLI runs cover it
else
    MEM_SECONDS=${MEM_SECONDS:-120}; HOUR=none
fi

log() { echo "[run_all $(date +%H:%M:%S)] $*" >&2; }

log "configure + build in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DSSM_BENCH=ON -DSSM_TESTS=OFF -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target bench_fma_peak bench_s4d mem_driver bench_make_model >/dev/null
# The CLI is someone else's work in progress: a build failure there only skips the CLI memory runs.
cmake --build "$BUILD" -j"$(nproc)" --target ssm >/dev/null 2>&1 || { log "ssm CLI did not build; peak memory uses mem_driver only"; rm -f "$BUILD/apps/ssm/ssm"; }
# The LV2 plugin's benchmark is built when the LV2 headers are there (Debian lv2-dev).
cmake --build "$BUILD" -j"$(nproc)" --target bench_lv2 >/dev/null 2>&1 || log "bench_lv2 did not build (no LV2 headers?); no plugin row"

RAW=$(mktemp -d "${TMPDIR:-/tmp}/ssm-bench.XXXXXX")
mkdir -p "$RAW/conv"
B="$BUILD/bench"
DATE=$(date +%Y-%m-%d)
HOST=$(hostname -s 2>/dev/null || hostname)
CPU=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
python3 - "$RAW/meta.json" "$DATE" "$HOST" "$CPU" "$(nproc)" "$(c++ --version | head -1)" "$FULL" "${PIN_CPU:-none}" "$(git -C "$ROOT" rev-parse --short HEAD)" <<'EOF'
import json, sys
k = ["date", "host", "cpu", "cores", "compiler", "full", "pinned_cpu", "commit"]
json.dump(dict(zip(k, sys.argv[2:])), open(sys.argv[1], "w"))
EOF

# Load snapshot: 1-min load average and, over 1 s, the share of all CPU time that was busy (others and us).
load_snapshot() {  # phase
    python3 - "$RAW/load_$1.json" <<'EOF'
import json, sys, time
def stat():
    v = list(map(int, open("/proc/stat").readline().split()[1:]))
    return sum(v), v[3] + v[4]
t0, i0 = stat(); time.sleep(1.0); t1, i1 = stat()
busy = 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))
json.dump({"loadavg1": float(open("/proc/loadavg").read().split()[0]), "others_busy_pct": busy}, open(sys.argv[1], "w"))
EOF
}

log "FMA peak"
load_snapshot fma
"${PIN[@]}" "$B/bench_fma_peak" --benchmark_repetitions=5 --benchmark_format=json --benchmark_out="$RAW/fma.json" >/dev/null

log "S4D streaming (24 configurations × 3 repetitions)"
load_snapshot stream
"${PIN[@]}" "$B/bench_s4d" --cost=0 --hour=none --benchmark_filter='^BM_S4DStream' --benchmark_repetitions=3 \
    --benchmark_format=json --benchmark_out="$RAW/stream.json" >/dev/null

log "S4D batch, realistic model (1 min × 5 repetitions per backend and thread count; 1 hour too if FULL=1)"
load_snapshot batch
"$B/bench_s4d" --cost=0 --hour="$HOUR" --benchmark_filter='^BM_S4DBatch' --benchmark_format=json --benchmark_out="$RAW/batch.json" >/dev/null

log "cost-model sweep (one process per configuration)"
load_snapshot conv
: >"$RAW/conv/crashes.txt"
i=0
for name in $("$B/bench_s4d" --benchmark_list_tests --benchmark_filter='^BM_S4DConv'); do
    i=$((i + 1))
    re="^$(printf '%s' "$name" | sed 's/[.]/[.]/g')\$"
    if ! "${PIN[@]}" "$B/bench_s4d" --benchmark_filter="$re" --benchmark_format=json --benchmark_out="$RAW/conv/$(printf %03d $i).json" >/dev/null 2>"$RAW/conv/err.txt"; then
        log "  crashed: $name"
        echo "$(echo "$name" | sed 's|/min_time.*||')" >>"$RAW/conv/crashes.txt"
    fi
done

log "FFTW limit for the FFT sizes the library chose"
load_snapshot fftw
SIZES=$(python3 - "$RAW/conv" <<'EOF'
import glob, json, sys
s = set()
for p in glob.glob(sys.argv[1] + "/*.json"):
    try:
        for b in json.load(open(p))["benchmarks"]:
            if b.get("fft_size") and b.get("outputs_per_fft"):
                s.add(f"{int(b['fft_size'])}:{int(b['outputs_per_fft'])}")
    except Exception:
        pass
print(",".join(sorted(s)))
EOF
)
# The realistic model's plan (M=131072 with 2^15 outputs per transform) is covered by the dt_min 0.001 runs.
"${PIN[@]}" "$B/bench_s4d" --cost=0 --hour=none --fftw="$SIZES" --benchmark_filter='^BM_FftwLimit' --benchmark_repetitions=3 \
    --benchmark_format=json --benchmark_out="$RAW/fftw.json" >/dev/null

log "FFT-conv path and FFTW side by side in one process (the floor's ratio)"
load_snapshot ratio
"${PIN[@]}" "$B/bench_s4d" --cost=0 --hour=none --benchmark_filter='^BM_ConvVsFftw' --benchmark_format=json \
    --benchmark_out="$RAW/ratio.json" >/dev/null

if [ -x "$BUILD/plugins/lv2/bench_lv2" ]; then
    log "LV2 plugin, 64-frame blocks at 48 kHz"
    load_snapshot lv2
    "${PIN[@]}" "$BUILD/plugins/lv2/bench_lv2" --benchmark_repetitions=3 --benchmark_format=json --benchmark_out="$RAW/lv2.json" >/dev/null || log "bench_lv2 failed"
fi

log "PyTorch peer"
load_snapshot torch
python3 "$ROOT/bench/torch_peer.py" --out "$RAW/torch.json" >/dev/null || log "torch_peer.py failed"

log "peak memory (${MEM_SECONDS} s of 16 kHz audio)"
load_snapshot memory
bash "$ROOT/bench/peak_memory.sh" "$BUILD" "$MEM_SECONDS" "$RAW/memory.json" || log "peak_memory.sh failed"

mkdir -p "$ROOT/bench/results"
SUFFIX=""
if [ "$FULL" = 1 ]; then SUFFIX=-full; fi
STEM="$ROOT/bench/results/$DATE-$HOST$SUFFIX"
python3 "$ROOT/bench/report.py" "$RAW" "$STEM"
cp -r "$RAW" "$STEM.raw" 2>/dev/null && tar -C "$(dirname "$STEM")" -czf "$STEM.raw.tar.gz" "$(basename "$STEM").raw" && rm -rf "$STEM.raw"
rm -rf "$RAW"
log "wrote $STEM.json, $STEM.md and $STEM.raw.tar.gz"
