#!/usr/bin/env bash
# Peak memory (max RSS, /usr/bin/time -v) of a long 16 kHz mono run of the realistic audio model:
#   - through the ssm CLI: `ssm run MODEL in.wav out.wav --backend auto|stream|fft` (if built), and
#   - through bench/mem_driver (raw float32 in chunks → Batch::process → raw float32), the library alone.
# usage: bench/peak_memory.sh BUILD_DIR [SECONDS_OF_AUDIO=3600] [OUT_JSON]
# Writes one JSON object (a list of runs) to OUT_JSON or stdout. Temporary files go under $TMPDIR (deleted).
set -euo pipefail
BUILD=${1:?usage: peak_memory.sh BUILD_DIR [SECONDS] [OUT_JSON]}
SECS=${2:-3600}
OUT=${3:-}
BACKENDS=${BACKENDS:-auto stream fft}
CLI="$BUILD/apps/ssm/ssm"
MAKE="$BUILD/bench/bench_make_model"
DRIVER="$BUILD/bench/mem_driver"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ssm-peakmem.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

"$MAKE" "$WORK/model.safetensors" audio 64 64 4
# Input: SECS seconds of 16 kHz noise as 16-bit PCM WAV (for the CLI) and raw float32 (for the driver),
# written in pieces so this script itself never holds the signal.
python3 - "$WORK" "$SECS" <<'EOF'
import sys, wave, numpy as np
work, secs = sys.argv[1], int(sys.argv[2])
rate, piece = 16000, 16000 * 60
rng = np.random.default_rng(1)
with wave.open(f"{work}/in.wav", "wb") as w, open(f"{work}/in.f32", "wb") as raw:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate)
    left = secs * rate
    while left > 0:
        n = min(piece, left)
        x = (rng.uniform(-0.5, 0.5, n)).astype(np.float32)
        w.writeframes((x * 32767).astype("<i2").tobytes())
        x.tofile(raw)
        left -= n
EOF

results=()
measure() {  # name, command...
    local name=$1; shift
    local log="$WORK/time.log" t0 t1 rc=0
    t0=$(date +%s.%N)
    /usr/bin/time -v "$@" >"$WORK/stdout.log" 2>"$log" || rc=$?
    t1=$(date +%s.%N)
    local rss
    rss=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$log")
    local wall
    wall=$(python3 -c "print(round($t1 - $t0, 2))")
    results+=("{\"run\": \"$name\", \"seconds_audio\": $SECS, \"max_rss_kb\": ${rss:-0}, \"max_rss_mb\": $(python3 -c "print(round(${rss:-0} / 1024, 1))"), \"wall_s\": $wall, \"rc\": $rc}")
    echo "peak_memory: $name: max RSS $(python3 -c "print(round(${rss:-0} / 1024, 1))") MB, ${wall} s, rc=$rc" >&2
    if [ "$rc" != 0 ]; then tail -5 "$log" >&2; fi
}

if [ -x "$CLI" ]; then
    for b in $BACKENDS; do
        measure "cli --backend $b" "$CLI" run "$WORK/model.safetensors" "$WORK/in.wav" "$WORK/out.wav" --backend "$b" --threads 1 -q
        rm -f "$WORK/out.wav"
    done
else
    echo "peak_memory: $CLI not built, CLI runs skipped" >&2
fi
for b in ${DRIVER_BACKENDS-auto}; do
    measure "mem_driver $b" "$DRIVER" "$WORK/model.safetensors" "$WORK/in.f32" /dev/null "$b" 1
done

json="[$(IFS=,; echo "${results[*]}")]"
if [ -n "$OUT" ]; then echo "$json" >"$OUT"; else echo "$json"; fi
