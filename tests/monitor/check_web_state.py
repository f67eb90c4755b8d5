#!/usr/bin/env python3
"""Reads the page state that ssm-monitor's web view writes into <pre id="state"> (from `chromium --dump-dom`) and
checks it against what was sent. usage: check_web_state.py DOM1 DOM2 RECORD_CSV|- [--expect-hr]
DOM1/DOM2: two dumps taken about a second apart (traces must move between them)."""
import html, json, math, re, sys, csv

def state(path):
    m = re.search(r'<pre id="state">(.*?)</pre>', open(path, encoding="utf-8", errors="replace").read(), re.S)
    if not m or not m.group(1).strip():
        sys.exit("no page state in %s (page did not receive data)" % path)
    return json.loads(html.unescape(m.group(1)))

def f32(x):
    import struct
    return struct.unpack("<f", struct.pack("<f", x))[0]

def synth(c, n, rate):
    return f32(0.5 * math.sin(2 * math.pi * (1.0 + 0.5 * c) * n / rate) + 0.001 * ((n * 7919 + c * 104729) % 1000))

s1, s2 = state(sys.argv[1]), state(sys.argv[2])
record = None
if sys.argv[3] != "-":
    record = {}
    with open(sys.argv[3]) as f:
        r = csv.reader(f); next(r)
        for row in r:
            record[int(row[0])] = [float(v) for v in row[1:]]
errors = []
for sid, st in s2["streams"].items():
    t = st["tail"]
    dec = st["dec"]
    if st["points"] < 50:
        errors.append("%s: only %d points" % (sid, st["points"]))
    if sid not in s1["streams"] or not st["last_seq"] > s1["streams"][sid]["last_seq"]:
        errors.append("%s: trace did not move (%s → %s)" % (sid, s1["streams"].get(sid, {}).get("last_seq"), st["last_seq"]))
    checked = 0
    for k, seq in enumerate(t["seq"]):
        for c in range(len(t["raw"])):
            v = t["raw"][c][k]
            if sid.startswith("syn"):
                want = [synth(c, n, 360.0) for n in range(seq, seq + dec)]
            elif record is not None and sid.startswith("ecg"):
                want = [record[n][c] for n in range(seq, seq + dec) if n in record]
            else:
                continue
            if not any(abs(v - w) <= 1e-5 * max(1.0, abs(w)) for w in want):
                errors.append("%s ch%d seq %d: page shows %g, sent %s" % (sid, c, seq, v, want))
            if not math.isfinite(t["clean"][c][k]):
                errors.append("%s ch%d seq %d: clean not finite" % (sid, c, seq))
            checked += 1
    print("%s: %d points, last frame %d, %d raw values checked against the source, hr %.1f, gaps %d, lag %.1f ms, sqi %s"
          % (sid, st["points"], st["last_seq"], checked, st["hr"], st["gaps"], st["lag_ms"], st["sqi"]))
    if "--expect-hr" in sys.argv and sid.startswith("ecg") and not (60 <= st["hr"] <= 90):
        errors.append("%s: heart rate %.1f not in 60..90 (MIT-BIH 100 is about 75 bpm)" % (sid, st["hr"]))
    if sid == "syn_gap" and st["gaps"] != 1:
        errors.append("syn_gap: %d gaps shown, expected 1" % st["gaps"])
if errors:
    print("\n".join(errors)); sys.exit(1)
