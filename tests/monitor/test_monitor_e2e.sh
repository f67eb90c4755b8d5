#!/usr/bin/env bash
# ssm-monitor end to end: streams over TCP and WebSocket at once; a gap (a frame never sent) detected, reported and
# marked in the recording, never filled; a NaN sample counted and recorded as received; a cut connection resumed
# on the same stream; the recording read back (replay --dump) equal to what was sent; a real kill -9 of the
# server, after which the recording is readable up to the last flush, and a restarted server resumes it; a model
# for another sample rate refused at hello.
set -euo pipefail
M=${SSM_MONITOR:?}; here=$(cd "$(dirname "$0")" && pwd); src=${SSM_SOURCE_DIR:?}
out=${SSM_TEST_OUT:-/tmp}/e2e; rm -rf "$out"; mkdir -p "$out"; cd "$out"
fail() { echo "FAIL: $*" >&2; for f in serve*.log; do echo "== $f" >&2; cat "$f" >&2; done; exit 1; }
start_server() {  # $1 = log name, rest = extra options
    local log=$1; shift
    rm -f port
    "$M" serve --port 0 --port-file port --token tok --stats-file "stats-$log.json" "$@" 2>"serve-$log.log" &
    SP=$!
    for _ in $(seq 50); do [ -s port ] && break; sleep 0.1; done
    [ -s port ] || fail "server did not start"
    P=$(cat port)
}
trap 'kill -9 $SP 2>/dev/null || true' EXIT

# 1. Two streams at once (TCP with a gap, NaN and a cut; WebSocket clean), recorded.
start_server a --record rec --chain notch:60,bandpass:0.5:40
"$M" send --port "$P" --token tok --id tcp1 --channels 4 --rate 500 --seconds 3 --speed 4 \
    --skip-frame 5 --nan-at 100 --cut-after 20 --quiet 2>send-tcp.log &
S1=$!
"$M" send --port "$P" --token tok --id ws1 --ws --channels 3 --rate 250 --seconds 2 --speed 4 --quiet 2>send-ws.log &
S2=$!
wait $S1 || fail "tcp sender: $(cat send-tcp.log)"
wait $S2 || fail "ws sender: $(cat send-ws.log)"
kill -INT $SP; wait $SP || fail "serve exit status"
python3 - stats-a.json <<'PY' || fail "stats of run a"
import json, sys
s = json.load(open(sys.argv[1]))
t, w = s["streams"]["tcp1"], s["streams"]["ws1"]
assert t["gaps"] == 1 and t["gap_frames"] == 25, t          # data frame 5 (frames 125..149) never sent
assert t["reconnects"] == 1 and t["next_seq"] == 1500, t   # the cut connection resumed the same stream
assert t["received"] == 1475, t                             # 1500 sent − 25 skipped, none twice
assert s["nonfinite"] >= 1, s
assert w["received"] == 500 and w["gaps"] == 0, w
PY
grep -q "gap of 25 frames before frame 150" serve-a.log || fail "gap not reported in the log"
python3 "$here/check_recording.py" rec/tcp1 500 --frames 1475 --expect-gap 150:25 --nan-at 100 || fail "tcp1 recording"
python3 "$here/check_recording.py" rec/ws1 250 --frames 500 --contiguous || fail "ws1 recording"
"$M" replay rec/tcp1 --dump tcp1.csv 2>dump.log || fail "replay --dump"
grep -q "gap: 25 frames missing before frame 150" dump.log || fail "replay did not list the gap: $(cat dump.log)"
[ "$(wc -l < tcp1.csv)" = 1476 ] || fail "dump rows: $(wc -l < tcp1.csv)"

# 2. kill -9 while recording; the file is readable up to the last flush (≤ 1 s old); a restart resumes.
start_server b --record rec2
"$M" send --port "$P" --token tok --id dev9 --channels 2 --rate 500 --seconds 4 --speed 1 --retries 0 --quiet 2>send-9.log &
S3=$!
sleep 2.5
kill -9 $SP; wait $SP 2>/dev/null || true
wait $S3 2>/dev/null || true   # the sender loses its server
python3 "$here/check_recording.py" rec2/dev9 500 --min-frames 500 --contiguous || fail "recording after kill -9"
start_server c --record rec2
"$M" send --port "$P" --token tok --id dev9 --channels 2 --rate 500 --seconds 4 --speed 0 2>send-9b.log || fail "resume after restart"
grep -q "resuming at frame" send-9b.log || fail "sender did not resume: $(cat send-9b.log)"
kill -INT $SP; wait $SP || true
python3 "$here/check_recording.py" rec2/dev9 500 --frames 2000 --contiguous || fail "resumed recording not whole"

# 3. A model for 360 Hz refused for a 500 Hz stream, with a clear message; a 360 Hz stream accepted.
model=$src/models/ecg-denoiser/ecg-denoiser.safetensors
if [ -f "$model" ]; then
    start_server d --chain "notch:60,$model"
    if "$M" send --port "$P" --token tok --id wrong --channels 1 --rate 500 --seconds 1 --speed 0 2>send-rate.log; then
        fail "500 Hz stream accepted by a 360 Hz chain"
    fi
    grep -q "model for 360 Hz; this stream is 500 Hz" send-rate.log || fail "refusal message: $(cat send-rate.log)"
    "$M" send --port "$P" --token tok --id right --channels 2 --rate 360 --seconds 2 --speed 0 --quiet || fail "360 Hz refused"
    kill -INT $SP; wait $SP || true
fi
trap - EXIT
echo "e2e: OK"
