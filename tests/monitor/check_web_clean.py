#!/usr/bin/env python3
"""Checks the clean traces the web view shows against the same chain run offline.

usage: check_web_clean.py DOM STREAM_ID OFFLINE_CSV [TOL]

DOM: a `chromium --dump-dom` of the page (its <pre id="state"> holds each stream's displayed tail).
OFFLINE_CSV: `ssm run` of the stream's chain on the recorded input, one column per channel (header line first), row n
= frame n. The page shows one point per bucket of `dec` frames starting at frame `seq`: the bucket's minimum or its
maximum (peak-preserving decimation). Each displayed clean value must equal the offline minimum or maximum of its
bucket within TOL x the channel's offline RMS (default 1e-4): the live path (one ssm::Stream per channel, fed
in network-sized blocks) and the offline path must be the same maths.
"""
import csv
import html
import json
import math
import re
import sys


def state(path):
    m = re.search(r'<pre id="state">(.*?)</pre>', open(path, encoding="utf-8", errors="replace").read(), re.S)
    if not m or not m.group(1).strip():
        sys.exit("no page state in %s" % path)
    return json.loads(html.unescape(m.group(1)))


def main():
    dom, sid, offline = sys.argv[1], sys.argv[2], sys.argv[3]
    tol = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-4
    st = state(dom)["streams"].get(sid)
    if st is None:
        sys.exit("stream %s not on the page" % sid)
    cols = None
    with open(offline) as f:
        r = csv.reader(f)
        next(r)
        for row in r:
            v = [float(x) for x in row]
            if cols is None:
                cols = [[] for _ in v]
            for c, x in enumerate(v):
                cols[c].append(x)
    if not cols:
        sys.exit("offline output %s is empty" % offline)
    t, dec = st["tail"], st["dec"]
    if len(t["clean"]) != len(cols):
        sys.exit("%s: page has %d channels, offline %d" % (sid, len(t["clean"]), len(cols)))
    errors, checked, worst = [], 0, 0.0
    for c, col in enumerate(cols):
        rms = math.sqrt(sum(x * x for x in col) / len(col)) or 1.0
        for k, seq in enumerate(t["seq"]):
            if seq + dec > len(col):
                errors.append("%s ch%d: page shows frame %d, offline output has %d frames" % (sid, c, seq, len(col)))
                break
            bucket = col[seq:seq + dec]
            v = t["clean"][c][k]
            d = min(abs(v - min(bucket)), abs(v - max(bucket))) / rms
            worst = max(worst, d)
            if not d <= tol:
                errors.append("%s ch%d frames %d..%d: page shows clean %.7g, offline min %.7g max %.7g (%.1e x RMS)"
                              % (sid, c, seq, seq + dec - 1, v, min(bucket), max(bucket), d))
            checked += 1
    print("%s: %d clean points checked against the offline chain, worst %.2e x RMS (tolerance %.0e)"
          % (sid, checked, worst, tol))
    if checked < 50:
        errors.append("%s: only %d clean points to check" % (sid, checked))
    if errors:
        print("\n".join(errors[:20]))
        sys.exit(1)


if __name__ == "__main__":
    main()
