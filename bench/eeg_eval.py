#!/usr/bin/env python3
"""EEG artifact model evaluation with EEGdenoiseNet's protocol and metrics, on held-out data.

    python3 bench/eeg_eval.py [--model models/eeg-artifact/eeg-artifact.safetensors] [--ssm build/apps/ssm/ssm]
                              [--epochs 100] [--out docs/eeg-eval]

Test epochs (EEGdenoiseNet: Zhang et al., J. Neural Eng. 18 (2021) 056057): 2-s epochs of clean EEG x from the
held-out last 20 % of the BioSPPy EEG recordings, mixed y = x + lambda n with a held-out artifact n (the last 20 %
of the EOG / EMG recordings; models/train/biosig/eeg_data.py) at SNR = 10 log10(RMS(x) / RMS(lambda n)) of
-7, -6, ..., 2 dB. Our model is causal and streams, so each scored epoch is preceded by 2 s of the real signal
before it (EEG and the same artifact recording, same lambda) to set the model's state; only the 2-s epoch is
scored. The model runs in the C++ `ssm run` binary (each epoch its own stream).
Metrics per SNR (mean over epochs), as EEGdenoiseNet: RRMSE_temporal = RMS(f(y) - x) / RMS(x);
RRMSE_spectral = RMS(PSD(f(y)) - PSD(x)) / RMS(PSD(x)) with PSD = Welch (1-s Hann segments, 50 % overlap);
CC = Pearson correlation of f(y) and x.
Comparators: the noisy input itself, a causal 2nd-order Butterworth band-pass 1-40 Hz (classic filter, same
data), and the published EEGdenoiseNet baselines (their data; read from the paper, see PUBLISHED below).
Writes <out>.json, <out>.md and <out>.png.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt, welch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "models" / "train" / "biosig"))
import eeg_data as D  # noqa: E402

FS = D.FS
EP = 2 * FS
SNRS = list(range(-7, 3))

# EEGdenoiseNet (Zhang et al. 2021), simple CNN and FCNN on their data. Averages over SNRs: Tables 1 and 2 of the
# paper (exact). Per-SNR RRMSE_temporal: read by eye from Figures 10a (ocular) and 11a (myogenic) of the paper
# (the paper gives no per-SNR table), so about +-0.02.
PUBLISHED = {
    "eog": {"avg": {"FCNN": (0.367, 0.337, 0.906), "simple CNN": (0.359, 0.361, 0.916)},
            "simple CNN rrmse_t": [0.52, 0.46, 0.41, 0.37, 0.345, 0.325, 0.31, 0.30, 0.29, 0.285],
            "FCNN rrmse_t": [0.52, 0.455, 0.41, 0.375, 0.35, 0.33, 0.32, 0.31, 0.30, 0.295]},
    "emg": {"avg": {"FCNN": (0.569, 0.552, 0.804), "simple CNN": (0.639, 0.643, 0.787)},
            "simple CNN rrmse_t": [1.15, 0.95, 0.80, 0.69, 0.60, 0.52, 0.47, 0.42, 0.39, 0.36],
            "FCNN rrmse_t": [1.08, 0.90, 0.75, 0.62, 0.53, 0.45, 0.40, 0.35, 0.32, 0.30]},
}


def metrics(f, x):
    rt = D.rms(f - x) / D.rms(x)
    _, pf = welch(f, FS, nperseg=FS)
    _, px = welch(x, FS, nperseg=FS)
    rs = D.rms(pf - px) / D.rms(px)
    cc = float(np.corrcoef(f, x)[0, 1])
    return rt, rs, cc


def run_ssm(ssm, model, X):
    with tempfile.TemporaryDirectory() as td:
        i, o = Path(td) / "in.npy", Path(td) / "out.npy"
        np.save(i, X.astype(np.float32))
        r = subprocess.run([ssm, "run", model, str(i), str(o), "-q"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"ssm run failed: {r.stderr.strip()}")
        return np.load(o).astype(np.float64)


def latency(ssm, model):
    r = subprocess.run([ssm, "info", model, "--json"], capture_output=True, text=True, check=True)
    return int(json.loads(r.stdout)["latency_samples"])


def make_epochs(src, kind, n_epochs, seed):
    """(noisy (2*EP, cols), clean (2*EP, cols), snr per col) for one artifact kind."""
    rng = np.random.default_rng([seed, 0 if kind == "eog" else 1])
    Xs, Ys, S = [], [], []
    for snr in SNRS:
        for _ in range(n_epochs):
            x = D.clean_crop(rng, src, "test", 2 * EP)
            n = D.artifact(rng, src, "test", kind, 2 * EP)
            lam = D.lam(x[EP:], n[EP:], snr)
            Xs.append(x + lam * n)
            Ys.append(x)
            S.append(snr)
    return np.stack(Xs, 1), np.stack(Ys, 1), np.array(S)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "models/eeg-artifact/eeg-artifact.safetensors"))
    ap.add_argument("--ssm", default=str(REPO / "build/apps/ssm/ssm"))
    ap.add_argument("--epochs", type=int, default=100, help="epochs per SNR per artifact kind")
    ap.add_argument("--out", default=str(REPO / "docs/eeg-eval"))
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    src = D.load()
    bp = butter(2, [1.0, 40.0], "bandpass", fs=FS, output="sos")
    res = {"model": os.path.relpath(a.model, REPO), "epochs_per_snr": a.epochs, "kinds": {}}
    examples = {}
    lag = latency(a.ssm, a.model)  # the model's output at t estimates the clean EEG at t - lag
    res["latency_samples"] = lag
    for kind in ("eog", "emg"):
        Y, C, S = make_epochs(src, kind, a.epochs, a.seed)
        F = run_ssm(a.ssm, a.model, Y)
        B = sosfilt(bp, Y, axis=0)
        rows = {}
        for snr in SNRS:
            cols = np.flatnonzero(S == snr)
            m = {name: np.mean([metrics(Z[EP:, j], C[EP - d:2 * EP - d, j]) for j in cols], 0).tolist()
                 for name, Z, d in (("noisy", Y, 0), ("ours", F, lag), ("bandpass", B, 0))}
            rows[snr] = m
        res["kinds"][kind] = rows
        j = np.flatnonzero(S == -3)[0]
        examples[kind] = (Y[:, j], np.roll(F[:, j], -lag), C[:, j])
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out + ".json").write_text(json.dumps(res, indent=1))
    md = write_md(res)
    Path(a.out + ".md").write_text(md)
    print(md)
    plot(res, examples, a.out + ".png")


def ours_label(res):
    lag = int(res.get("latency_samples", 0))
    return "causal S4D" if lag == 0 else f"S4D, {1000 * lag / FS:.0f} ms look-ahead"


def write_md(res):
    out = [f"{res['epochs_per_snr']} held-out 2-s epochs per SNR and artifact; mean over epochs. "
           "Published baselines: EEGdenoiseNet (their data, not ours); per-SNR values read from the paper's "
           "Figures 10a/11a (±0.02).", ""]
    for kind, title in (("eog", "Ocular (EOG)"), ("emg", "Muscle (EMG)")):
        P = PUBLISHED[kind]
        out += [f"**{title}** — RRMSE temporal / RRMSE spectral / CC", "",
                f"| SNR | noisy input | causal band-pass 1–40 Hz | **ours ({ours_label(res)}, C++)** | simple CNN (paper) "
                "RRMSE_t | FCNN (paper) RRMSE_t | ours below simple CNN? |", "|---|---|---|---|---|---|---|"]
        for i, snr in enumerate(SNRS):
            r = res["kinds"][kind][snr] if snr in res["kinds"][kind] else res["kinds"][kind][str(snr)]
            f = lambda v: f"{v[0]:.3f} / {v[1]:.3f} / {v[2]:.3f}"  # noqa: E731
            ok = "yes" if r["ours"][0] < P["simple CNN rrmse_t"][i] else "**no**"
            out.append(f"| {snr:+d} dB | {f(r['noisy'])} | {f(r['bandpass'])} | **{f(r['ours'])}** | "
                       f"{P['simple CNN rrmse_t'][i]:.2f} | {P['FCNN rrmse_t'][i]:.2f} | {ok} |")
        rows = res["kinds"][kind]
        avg = np.mean([rows[s]["ours"] if s in rows else rows[str(s)]["ours"] for s in SNRS], 0)
        pa = P["avg"]
        out += ["", f"Average over SNRs: ours {avg[0]:.3f} / {avg[1]:.3f} / {avg[2]:.3f}; paper (Table "
                f"{1 if kind == 'eog' else 2}): simple CNN {pa['simple CNN'][0]:.3f} / {pa['simple CNN'][1]:.3f} / "
                f"{pa['simple CNN'][2]:.3f}, FCNN {pa['FCNN'][0]:.3f} / {pa['FCNN'][1]:.3f} / {pa['FCNN'][2]:.3f}.",
                ""]
    return "\n".join(out) + "\n"


def plot(res, examples, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(2, 2, figsize=(13, 7.5))
    for row, kind in enumerate(("eog", "emg")):
        rows = res["kinds"][kind]
        g = lambda name, k: [rows[s][name][k] for s in SNRS]  # noqa: E731
        a = ax[row, 0]
        a.plot(SNRS, g("noisy", 0), "k:", label="noisy input")
        a.plot(SNRS, g("bandpass", 0), "s--", label="causal band-pass 1-40 Hz")
        a.plot(SNRS, g("ours", 0), "o-", lw=2, label=f"ours ({ours_label(res)})")
        a.plot(SNRS, PUBLISHED[kind]["simple CNN rrmse_t"], "^--", label="simple CNN (paper, their data)")
        a.plot(SNRS, PUBLISHED[kind]["FCNN rrmse_t"], "v--", label="FCNN (paper, their data)")
        a.set_ylim(0, max(1.6, 1.05 * max(g("ours", 0))))
        a.set_xlabel("SNR (dB)")
        a.set_ylabel("RRMSE temporal")
        a.set_title(f"{kind.upper()} artifact removal")
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
        y, f, c = examples[kind]
        t = np.arange(len(y)) / FS - 2
        b = ax[row, 1]
        b.plot(t, y, lw=0.6, color="0.6", label="noisy (-3 dB)")
        b.plot(t, c, lw=0.9, label="clean EEG")
        b.plot(t, f, lw=0.9, label="ours")
        b.axvspan(-2, 0, color="0.9", zorder=-1)
        b.set_xlabel("s (grey: context, not scored)")
        b.set_title(f"held-out example, {kind.upper()}")
        b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
