#!/usr/bin/env bash
# ssm-monitor load measurement (not a test): N streams × C channels at R Hz, every channel through a designed
# notch + band-pass chain, E streams (of 32 channels at 360 Hz) also through the shipped ECG denoiser, a headless
# Chromium watching the web view. Reports the server's CPU and peak memory, the browser's and senders' CPU,
# end-to-end latency (device acquisition time → processed, p50/p99 over data messages), loss and gaps.
#
# usage: bench/monitor_load.sh [BUILD_DIR=build] [SECONDS=20]
# env:   STREAMS (62) CHANNELS (32) RATE (500) ECG_STREAMS (2) BLOCK (frames per message: RATE/20) WORKERS (0 = cores)
#        BROWSER (1: a headless Chromium on the page; 0: none)  RECORD (1: --record into the temporary directory)
# Default: 62 × 32 × 500 Hz + 2 × 32 × 360 Hz through the model = 64 streams, 2048 channels, 1.015 M samples/s.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}; secs=${2:-20}
[[ $build = /* ]] || build=$src/$build
M=$build/apps/ssm-monitor/ssm-monitor
STREAMS=${STREAMS:-62} CHANNELS=${CHANNELS:-32} RATE=${RATE:-500} ECG_STREAMS=${ECG_STREAMS:-2}
BLOCK=${BLOCK:-0} WORKERS=${WORKERS:-0} BROWSER=${BROWSER:-1} RECORD=${RECORD:-1}
model=$src/models/ecg-denoiser/ecg-denoiser.safetensors
out=$(mktemp -d /tmp/monitor_load.XXXX)
cd "$out"
"$M" serve --port 0 --port-file port --token load --quiet --workers "$WORKERS" --max-streams 1024 --stats-file stats.json \
    $([ "$RECORD" = 1 ] && echo --record "$out/rec") \
    --chain notch:60,bandpass:0.5:40 --chain-for "ecg*=notch:60,bandpass:0.5:40,$model" 2>serve.log &
SP=$!
pids=()
trap 'kill $SP "${pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s port ] && break; sleep 0.1; done
P=$(cat port)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
hz=$(getconf CLK_TCK)
if [ "$BROWSER" = 1 ] && command -v chromium >/dev/null; then
    chromium --headless --no-sandbox --disable-gpu --user-data-dir="$out/profile" --remote-debugging-port=0 \
        --window-size=1200,1000 "http://127.0.0.1:$P/?token=load" >chrome.log 2>&1 &
    pids+=($!); BP=$!
    sleep 2
fi
s0=$(ticks $SP); t0=$(date +%s.%N)
"$M" send --port "$P" --token load --id eeg --streams "$STREAMS" --channels "$CHANNELS" --rate "$RATE" \
    --seconds "$secs" --block "$BLOCK" --quiet 2>send-eeg.log &
E1=$!; pids+=($E1)
if [ "$ECG_STREAMS" -gt 0 ]; then
    "$M" send --port "$P" --token load --id ecg --streams "$ECG_STREAMS" --channels 32 --rate 360 \
        --seconds "$secs" --block "$BLOCK" --quiet 2>send-ecg.log &
    E2=$!; pids+=($E2)
fi
sleep $((secs / 2))
mid_rss=$(awk '/VmRSS/{print $2}' /proc/$SP/status)
browser_cpu=""
if [ -n "${BP:-}" ]; then  # all Chromium processes of this profile
    bt=0; for p in $(pgrep -f "user-data-dir=$out/profile" || true); do bt=$((bt + $(ticks "$p"))); done; browser_t0=$bt
fi
send_t0=$(( $(ticks $E1) + $(ticks ${E2:-$E1}) ))
sleep $((secs / 4))
send_t1=$(( $(ticks $E1) + $(ticks ${E2:-$E1}) ))
if [ -n "${BP:-}" ]; then
    bt=0; for p in $(pgrep -f "user-data-dir=$out/profile" || true); do bt=$((bt + $(ticks "$p"))); done
    browser_cpu=$(python3 -c "print(round(100*($bt-$browser_t0)/$hz/($secs/4),1))")
fi
wait $E1 || echo "eeg senders reported a failure (see $out/send-eeg.log)"
[ -z "${E2:-}" ] || wait $E2 || echo "ecg senders reported a failure"
s1=$(ticks $SP); t1=$(date +%s.%N)
hwm=$(awk '/VmHWM/{print $2}' /proc/$SP/status)
kill -INT $SP; wait $SP || true
trap - EXIT
kill "${pids[@]}" 2>/dev/null || true
python3 - stats.json "$STREAMS" "$CHANNELS" "$RATE" "$ECG_STREAMS" "$secs" "$s0" "$s1" "$t0" "$t1" "$hz" "$hwm" "$mid_rss" \
    "${browser_cpu:-n/a}" "$send_t0" "$send_t1" <<'PY'
import json, sys, os
st = json.load(open(sys.argv[1]))
S, C, R, E, secs = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
s0, s1, t0, t1, hz = int(sys.argv[7]), int(sys.argv[8]), float(sys.argv[9]), float(sys.argv[10]), int(sys.argv[11])
hwm, mid, bcpu = int(sys.argv[12]), int(sys.argv[13]), sys.argv[14]
snd = (int(sys.argv[16]) - int(sys.argv[15])) / hz / (secs / 4) * 100
expected = S * int(secs * R) + E * int(secs * 360)
recv = sum(v["received"] for v in st["streams"].values())
gaps = sum(v["gaps"] for v in st["streams"].values())
thr = sum(v["throttled"] for v in st["streams"].values())
ch = S * C + E * 32
sps = S * C * R + E * 32 * 360
cpu = (s1 - s0) / hz / (t1 - t0) * 100
print(f"machine: {os.cpu_count()} cores, shared with other jobs (numbers are indicative)")
print(f"load: {S} x {C} ch x {R:g} Hz (notch+band-pass) + {E} x 32 ch x 360 Hz (notch+band-pass+ECG model) = "
      f"{S+E} streams, {ch} channels, {sps/1e6:.3f} M samples/s, {secs:g} s, browser {'on' if bcpu != 'n/a' else 'off'}")
print(f"server CPU: {cpu:.0f}% of one core ({cpu/ch*1:.3f}% per channel); peak RSS {hwm/1024:.0f} MiB (mid-run {mid/1024:.0f} MiB)")
print(f"senders CPU: {snd:.0f}%   browser CPU (all Chromium processes): {bcpu}%")
lat = st["latency_ms"]
print(f"end-to-end latency (acquisition -> processed): p50 {lat['p50']:.2f} ms, p99 {lat['p99']:.2f} ms over {lat['count']} messages")
print(f"frames: expected {expected}, received {recv}, lost {expected - recv} ({100*(expected-recv)/max(1,expected):.3f}%), "
      f"gaps {gaps}, throttle events {thr}; viewer drops {st['viewer_drops']}, viewers closed slow {st['viewers_closed_slow']}")
PY
[ "$RECORD" = 1 ] && echo "recorded: $(du -sh "$out/rec" | cut -f1) in $out/rec (delete when done)"
echo "logs: $out"
