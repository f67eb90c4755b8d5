#!/usr/bin/env python3
"""Checks an ssm-monitor recording against the sender's synthetic signal (client.cpp synthetic_sample).
usage: check_recording.py DIR RATE [--min-frames N] [--expect-gap SEQ:FRAMES] [--nan-at SEQ] [--contiguous]
Prints a one-line summary; exits 1 on any mismatch."""
import json, math, os, struct, sys
import argparse

ap = argparse.ArgumentParser()
ap.add_argument("dir"); ap.add_argument("rate", type=float)
ap.add_argument("--min-frames", type=int, default=1)
ap.add_argument("--frames", type=int, default=-1)
ap.add_argument("--expect-gap", default="")
ap.add_argument("--nan-at", type=int, default=-1)
ap.add_argument("--contiguous", action="store_true")
a = ap.parse_args()

meta = json.load(open(os.path.join(a.dir, "meta.json")))
ch = meta["channels"]
samples = open(os.path.join(a.dir, "samples.f32"), "rb").read()
index = open(os.path.join(a.dir, "index.bin"), "rb").read()
nframes_file = len(samples) // (4 * ch)
entries, expect_file = [], 0
for i in range(len(index) // 48):
    seq, ff, frames, flags, dt, rt, gap = struct.unpack_from("<QQIIqqQ", index, 48 * i)
    if ff != expect_file or ff + frames > nframes_file:
        break
    entries.append((seq, ff, frames, flags, gap))
    expect_file += frames

def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]

def synth(c, n, rate):
    t = n / rate
    f = 1.0 + 0.5 * c
    return f32(0.5 * math.sin(2 * math.pi * f * t) + 0.001 * ((n * 7919 + c * 104729) % 1000))

bad = 0
gaps = []
prev_end = None
for seq, ff, frames, flags, gap in entries:
    if flags & 1:
        gaps.append((seq, gap))
        assert prev_end is not None and seq - prev_end == gap, ("gap size", seq, prev_end, gap)
    elif prev_end is not None:
        assert seq == prev_end, ("unmarked discontinuity", prev_end, seq)
    prev_end = seq + frames
    for i in range(frames):
        n = seq + i
        vals = struct.unpack_from("<%df" % ch, samples, 4 * ch * (ff + i))
        for c in range(ch):
            v = vals[c]
            if n == a.nan_at and c == 0:
                if not math.isnan(v):
                    bad += 1
            elif not (abs(v - synth(c, n, a.rate)) <= 1e-6):
                bad += 1
total = expect_file
msg = "recording %s: %d frames in %d entries, gaps %s, mismatches %d" % (a.dir, total, len(entries), gaps, bad)
print(msg)
ok = bad == 0 and total >= a.min_frames
if a.frames >= 0: ok = ok and total == a.frames
if a.expect_gap:
    s, n = map(int, a.expect_gap.split(":"))
    ok = ok and (s, n) in gaps
if a.contiguous:
    ok = ok and not gaps and entries and entries[0][0] == 0
sys.exit(0 if ok else 1)
