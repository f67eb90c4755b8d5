#!/usr/bin/env bash
# The web view in headless Chromium: a known record (MIT-BIH 100 through notch + the shipped ECG denoiser, 4x real
# time) and a synthetic stream with a gap are streamed; the page is loaded twice about a second apart
# (--dump-dom); the page's own state must show both streams, traces that moved, raw values equal to what was sent,
# clean values equal to the same chain run offline by `ssm run`, a heart rate near MIT-BIH 100's, and the gap; a
# screenshot is saved in the test output.
set -euo pipefail
M=${SSM_MONITOR:?}; here=$(cd "$(dirname "$0")" && pwd); src=${SSM_SOURCE_DIR:?}
out=${SSM_TEST_OUT:-/tmp}/web; rm -rf "$out"; mkdir -p "$out"; cd "$out"
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || { echo "SKIP: chromium not installed (Debian package chromium)"; exit 77; }
fail() { echo "FAIL: $*" >&2; cat serve.log >&2; exit 1; }
model=$src/models/ecg-denoiser/ecg-denoiser.safetensors
rec=${SSM_SHARED_DATA:-$src/../shared/data}/wfdb-records/100.hea
"$M" serve --port 0 --port-file port --token webtok --chain "notch:60,$model" 2>serve.log &
SP=$!
pids=()
trap 'kill $SP "${pids[@]}" 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -s port ] && break; sleep 0.1; done
P=$(cat port)
csvarg=- ; hrarg=
if [ -f "$rec" ]; then
    "$M" replay "$rec" --dump rec100.csv --seconds 60 2>/dev/null
    "$M" replay "$rec" --port "$P" --token webtok --id ecg100 --speed 4 --seconds 60 --quiet & pids+=($!)
    csvarg=rec100.csv; hrarg=--expect-hr
else
    echo "note: $rec absent; synthetic streams only"
fi
"$M" send --port "$P" --token webtok --id syn --channels 3 --rate 360 --seconds 30 --quiet & pids+=($!)
"$M" send --port "$P" --token webtok --id syn_gap --channels 1 --rate 360 --seconds 30 --skip-frame 30 --quiet & pids+=($!)
sleep 4
chrome() {
    timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir="$out/profile" \
        --virtual-time-budget=10000 --run-all-compositor-stages-before-draw --window-size=1200,1000 "$@" \
        "http://127.0.0.1:$P/?token=webtok" 2>>chrome.log
}
# The page fills <pre id="state"> once its WebSocket has delivered data; headless Chromium's virtual time can end
# the load before that on a busy machine, so a dump without state is retried (up to 5 times).
dump() {
    for _ in 1 2 3 4 5; do
        chrome --dump-dom > "$1" || fail "chromium failed: $(tail -5 chrome.log)"
        grep -q '<pre id="state">{' "$1" && return 0
        echo "note: page state not there yet; loading again"
    done
    fail "the page never showed data"
}
dump dom1.html
sleep 1.5
dump dom2.html
chrome --screenshot="$out/monitor.png" >/dev/null || fail "screenshot failed"
python3 "$here/check_web_state.py" dom1.html dom2.html "$csvarg" $hrarg || fail "page state"
if [ "$csvarg" != - ]; then
    # The clean traces against the same chain run offline (`ssm design` + `ssm run`, one channel at a time): the
    # live path (one ssm::Stream per channel, fed in network-sized blocks) must give the same numbers.
    S=${SSM_CLI:?}
    "$S" design notch --freq 60 --q 30 --rate 360 --then "$model" -o chain.safetensors >/dev/null 2>&1 \
        || fail "ssm design of the offline chain"
    python3 - <<'PY' || fail "splitting the record"
import csv
rows = list(csv.reader(open("rec100.csv")))[1:1 + 60 * 360]
for c in (1, 2):
    with open(f"ch{c - 1}.csv", "w") as f:
        f.write("x\n" + "".join(r[c] + "\n" for r in rows))
PY
    for c in 0 1; do "$S" run chain.safetensors ch$c.csv off$c.csv -q || fail "ssm run ch$c"; done
    paste -d, off0.csv off1.csv > offline.csv
    python3 "$here/check_web_clean.py" dom2.html ecg100 offline.csv 1e-4 || fail "clean traces differ from the offline chain"
fi
[ "$(stat -c %s monitor.png)" -gt 20000 ] || fail "screenshot too small"
echo "screenshot: $out/monitor.png"
echo "web: OK"
