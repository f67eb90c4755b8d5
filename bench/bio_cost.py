#!/usr/bin/env python3
"""CPU cost and latency of the shipped biosignal models on one channel, through the `ssm stream` CLI.

    python3 bench/bio_cost.py [--ssm build/apps/ssm/ssm] [--hours 1]

For each model: --hours of its bundled example (tiled) as raw float32 through `ssm stream MODEL --block B` (the
recurrent, real-time view: one ssm::Stream), for B = 1 and B = the largest block that keeps the total latency
under 50 ms. CPU = user + sys seconds of the child process (model load and I/O included) divided by the signal's
duration = the fraction of one core the channel costs. Latency = the model's declared look-ahead
(latency_samples / rate) + buffering (B / rate) + mean compute per block. Writes a Markdown table to stdout.
"""
import argparse
import json
import os
import resource
import subprocess
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
MODELS = [("ecg-denoiser", 360), ("eeg-artifact", 125)]


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ssm", default=str(REPO / "build/apps/ssm/ssm"))
    ap.add_argument("--hours", type=float, default=1.0)
    a = ap.parse_args()
    load = os.getloadavg()[0]
    print(f"load average at start: {load:.1f} (2-core machine shared with other builds: numbers are upper bounds)")
    print("| model | rate | look-ahead | block | buffering | CPU per channel (% of one core) | compute per block "
          "| total latency |")
    print("|---|---|---|---|---|---|---|---|")
    for name, fs in MODELS:
        d = REPO / "models" / name
        info = json.loads(subprocess.run([a.ssm, "info", str(d / f"{name}.safetensors"), "--json"],
                                         capture_output=True, text=True, check=True).stdout)
        lat = int(info["latency_samples"]) / fs
        bmax = max(1, int((0.050 - lat) * fs * 0.98))
        x = np.loadtxt(d / "example_noisy.csv", skiprows=1, dtype=np.float32)
        n = int(a.hours * 3600 * fs)
        sig = np.resize(x, n).astype(np.float32)
        with tempfile.TemporaryDirectory() as td:
            raw = Path(td) / "in.f32"
            sig.tofile(raw)
            for block in sorted({1, bmax}):
                c0 = child_cpu()
                with open(raw, "rb") as fi, open(os.devnull, "wb") as fo:
                    subprocess.run([a.ssm, "stream", str(d / f"{name}.safetensors"), "--block", str(block),
                                    "--rate", str(fs)], stdin=fi, stdout=fo, check=True)
                cpu = child_cpu() - c0
                frac = cpu / (n / fs)
                per_block = cpu / (n / block)
                buf = block / fs
                print(f"| {name} | {fs} Hz | {lat * 1e3:.1f} ms | {block} | {buf * 1e3:.1f} ms | {100 * frac:.3f} % | "
                      f"{per_block * 1e6:.1f} µs | {(lat + buf + per_block) * 1e3:.1f} ms |", flush=True)


if __name__ == "__main__":
    main()
