#!/usr/bin/env bash
# ssm-monitor under bad input: garbage bytes, a malformed hello, an oversized frame, a wrong channel count, a
# truncated frame, a silent client (hello timeout), a bad token, a bad protocol version, an HTTP request without a
# token, and a viewer that never reads — each answered or dropped without a crash, while a good stream (all its
# frames counted at the end) and the server keep running; the non-reading viewer gets snapshots dropped.
set -euo pipefail
M=${SSM_MONITOR:?}; here=$(cd "$(dirname "$0")" && pwd)
out=${SSM_TEST_OUT:-/tmp}/robustness; rm -rf "$out"; mkdir -p "$out"; cd "$out"
fail() { echo "FAIL: $*" >&2; cat serve.log >&2 || true; exit 1; }
"$M" serve --port 0 --port-file port --token tok --hello-timeout 1 --chain notch:50,bandpass:0.5:40 --stats-file stats.json 2>serve.log &
SP=$!
trap 'kill $SP 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s port ] && break; sleep 0.1; done
P=$(cat port)
# the good stream: 64 channels, 500 Hz, 4 s in real time (~150 KB/s of snapshots for the viewer)
"$M" send --port "$P" --token tok --id good --channels 64 --rate 500 --seconds 4 --quiet 2>good.log &
GP=$!
python3 "$here/monitor_probe.py" "$P" tok slowviewer:5 > slow.txt &
VP=$!
probe() { timeout 10 python3 "$here/monitor_probe.py" "$P" tok "$1"; }
r=$(probe garbage);     echo "garbage: $r";     [[ $r == *"ERROR: bad magic"* ]] || fail "garbage: $r"
r=$(probe badhello);    echo "badhello: $r";    [[ $r == *"ERROR: hello:"* ]] || fail "badhello: $r"
r=$(probe oversize);    echo "oversize: $r";    [[ $r == *"exceeds the limit"* ]] || fail "oversize: $r"
r=$(probe wrongch);     echo "wrongch: $r";     [[ $r == *"WELCOME 0"*"wrong channel count"* ]] || fail "wrongch: $r"
r=$(probe truncated);   echo "truncated: $r";   [[ $r == *"WELCOME 0"*"CLOSED"* ]] || fail "truncated: $r"
r=$(probe silent);      echo "silent: $r";      [[ $r == *"CLOSED after "[01]* ]] || fail "silent client not closed within ~1 s: $r"
r=$(probe badtoken);    echo "badtoken: $r";    [[ $r == *"ERROR: bad token"* ]] || fail "badtoken: $r"
r=$(probe badversion);  echo "badversion: $r";  [[ $r == *"unsupported protocol version 2"* ]] || fail "badversion: $r"
r=$(probe httpnotoken); echo "httpnotoken: $r"; [[ $r == *"401"* ]] || fail "httpnotoken: $r"
wait $GP || fail "the good stream's sender failed: $(cat good.log)"
wait $VP || true
grep -q "101" slow.txt || fail "slow viewer was not upgraded: $(cat slow.txt)"
stats=$(python3 - "$P" <<'PY'
import json, sys, urllib.request
print(urllib.request.urlopen("http://127.0.0.1:%s/stats?token=tok" % sys.argv[1], timeout=5).read().decode())
PY
) || fail "server no longer answers /stats"
echo "$stats"
kill -INT $SP; wait $SP || fail "serve exited non-zero"
trap - EXIT
python3 - stats.json <<'PY' || fail "stats check"
import json, sys
s = json.load(open(sys.argv[1]))
g = s["streams"]["good"]
assert g["received"] == 2000 and g["gaps"] == 0, g                      # every frame of the good stream, no gap
assert s["latency_ms"]["p99"] < 1000, s["latency_ms"]                   # never stalled behind the bad clients
assert s["viewer_drops"] > 0, s  # the viewer that never reads had snapshots dropped, nothing else waited
assert s["rejected_connections"] >= 6, s  # garbage, bad hello, oversize, wrong channels, bad token, bad version
print("good stream: 2000/2000 frames, p50 %.2f ms, p99 %.2f ms; viewer drops %d" %
      (s["latency_ms"]["p50"], s["latency_ms"]["p99"], s["viewer_drops"]))
PY
echo "robustness: OK"
