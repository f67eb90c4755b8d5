#!/usr/bin/env python3
"""Plot a shipped biosignal model's bundled example through the C++ engine: noisy input, `ssm run` output (shifted
back by the model's declared latency) and the clean reference. Writes models/<name>/example.png.

    python3 models/train/biosig/plot_example.py ecg-denoiser [--ssm build/apps/ssm/ssm] [--seconds 6]
"""
import argparse
import json
import os
import subprocess
import tempfile

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def column(path):
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)[:, 0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name")
    ap.add_argument("--ssm", default=os.path.join(ROOT, "build", "apps", "ssm", "ssm"))
    ap.add_argument("--seconds", type=float, default=6.0)
    a = ap.parse_args()
    d = os.path.join(ROOT, "models", a.name)
    model = os.path.join(d, a.name + ".safetensors")
    info = json.loads(subprocess.run([a.ssm, "info", model, "--json"], check=True, capture_output=True, text=True).stdout)
    rate, lat = float(info["sample_rate"]), int(info["latency_samples"])
    noisy, clean = column(os.path.join(d, "example_noisy.csv")), column(os.path.join(d, "example_clean.csv"))
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.csv")
        subprocess.run([a.ssm, "run", model, os.path.join(d, "example_noisy.csv"), out], check=True, capture_output=True)
        y = column(out)
    y = np.concatenate([y[lat:], np.full(lat, np.nan)])  # output t+lat answers input t
    skip = int(2 * rate)  # the first 2 s: the state settling

    def snr(x):
        e = (x - clean)[skip:len(clean) - lat]
        return 10 * np.log10(np.sum(clean[skip:len(clean) - lat] ** 2) / np.sum(e ** 2))

    n = int(a.seconds * rate)
    t = np.arange(skip, skip + n) / rate
    fig, ax = plt.subplots(3, 1, figsize=(11, 6), sharex=True, sharey=True)
    for k, (x, title) in enumerate([(noisy, f"noisy input ({snr(noisy):.1f} dB SNR)"),
                                    (y, f"ssm run output, shifted back by its {lat}-sample latency ({snr(y):.1f} dB SNR)"),
                                    (clean, "clean reference")]):
        ax[k].plot(t, x[skip:skip + n], lw=0.8, color=["tab:gray", "tab:blue", "tab:green"][k])
        ax[k].set_title(title, fontsize=10, loc="left")
    ax[-1].set_xlabel("time (s)")
    fig.suptitle(f"{a.name}: bundled example through the C++ engine", fontsize=11)
    fig.tight_layout()
    fig.savefig(os.path.join(d, "example.png"), dpi=90)
    print(f"{a.name}: SNR {snr(noisy):.1f} dB -> {snr(y):.1f} dB; wrote {os.path.join(d, 'example.png')}")


if __name__ == "__main__":
    main()
