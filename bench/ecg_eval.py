#!/usr/bin/env python3
"""ECG denoiser evaluation on held-out MIT-BIH patients with MIT-BIH Noise Stress Test noise.

    python3 bench/ecg_eval.py [--model models/ecg-denoiser/ecg-denoiser.safetensors] [--ssm build/apps/ssm/ssm]
                              [--minutes 5] [--out docs/ecg-eval]

For each held-out record (models/train/biosig/ecg_data.py: TEST, patient-wise; lead MLII), a segment of --minutes
starting at minute 1, each NSTDB noise (bw, em, ma, and "mix" = the three at equal power; noise from the held-out
part of the noise records only) at SNR -6, 0, 6, 12 dB, where SNR = 10 log10(P_clean / P_noise) over the segment
and "clean" is the recorded lead high-passed at 0.5 Hz (zero-phase). Side by side, in one run:
  noisy + NeuroKit2   : nk.ecg_clean (default method) + nk.ecg_peaks (default method) on the noisy signal
  noisy + Pan-Tompkins: our own Pan-Tompkins implementation (pan_tompkins() below) on the noisy signal
  ours + NeuroKit2    : the model run by the C++ `ssm run` binary (not PyTorch), then nk.ecg_peaks on its output
  ours + Pan-Tompkins : the same model output into pan_tompkins()
  ours + NeuroKit2 clean+peaks: the model output through the whole NeuroKit2 pipeline (ecg_clean + ecg_peaks)
  clean + NeuroKit2   : the clean reference through ecg_clean + ecg_peaks (upper bound)
QRS detection is scored against the record's .atr beat annotations (beat symbols only) with a 150 ms tolerance,
one-to-one matching, beats in the first 2 s (model settling) excluded; Se = TP/(TP+FN), +P = TP/(TP+FP),
F1 = 2TP/(2TP+FP+FN), pooled over records. SNR improvement = output SNR - input SNR against the clean reference.
Writes <out>.json, <out>.md (tables) and <out>.png (plot).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "models" / "train" / "biosig"))
import ecg_data as D  # noqa: E402

FS = D.FS
SNRS = [-6, 0, 6, 12]
NOISES = ["bw", "em", "ma", "mix"]
TOL = int(0.150 * FS)
SKIP = 2 * FS


# ---------------------------------------------------------------------------------------------- Pan-Tompkins
def pan_tompkins(x, fs=FS):
    """QRS detector after Pan & Tompkins (IEEE TBME 32(3), 1985), written for this benchmark (offline form):
    1. band-pass 5-15 Hz (2nd-order Butterworth, zero-phase, in place of the paper's integer filters);
    2. five-point derivative (2x[n+2] + x[n+1] - x[n-1] - 2x[n-2]) / 8; 3. squaring;
    4. moving-window integration over 150 ms (centred); 5. local maxima of the integrated signal at least 200 ms
    apart (refractory period) are candidates; 6. two adaptive thresholds per the paper, SPKI/NPKI running
    estimates (0.125 / 0.875), THR1 = NPKI + 0.25 (SPKI - NPKI), THR2 = THR1 / 2, initialised on the first 2 s;
    7. search-back: when no QRS is found for 1.66 x the mean of the last 8 RR intervals, the largest candidate
    in that gap above THR2 is taken; 8. T-wave rejection: a candidate within 360 ms of the previous QRS whose
    maximal slope is under half that QRS's slope is a T wave. The R peak is placed at the largest |band-passed|
    sample within +-75 ms of the integrated-signal peak. Returns sample indices."""
    x = np.asarray(x, np.float64)
    bp = sosfiltfilt(butter(2, [5.0, 15.0], "bandpass", fs=fs, output="sos"), x)
    d = np.convolve(bp, np.array([2, 1, 0, -1, -2]) / 8.0, mode="same")
    sq = d * d
    w = int(0.150 * fs)
    mwi = np.convolve(sq, np.ones(w) / w, mode="same")
    refr = int(0.200 * fs)
    # candidate peaks: local maxima, then greedy suppression within the refractory period
    lm = np.flatnonzero((mwi[1:-1] > mwi[:-2]) & (mwi[1:-1] >= mwi[2:])) + 1
    cands = []
    for i in lm[np.argsort(-mwi[lm])]:
        cands.append(i)
    cands = np.sort(_suppress(np.array(cands, int), mwi, refr))
    if len(cands) == 0:
        return np.array([], int)
    init = mwi[: 2 * fs]
    spki, npki = 0.25 * init.max(), 0.5 * init.mean()
    thr1 = npki + 0.25 * (spki - npki)
    qrs, slopes, rr = [], [], []
    last = -10 * fs
    half = int(0.075 * fs)

    def slope(i):
        a, b = max(0, i - half), min(len(d), i + half)
        return np.abs(d[a:b]).max()

    k = 0
    while k < len(cands):
        i = cands[k]
        pk = mwi[i]
        if pk > thr1:
            if qrs and i - last < int(0.360 * fs) and slope(i) < 0.5 * slopes[-1]:
                npki = 0.125 * pk + 0.875 * npki  # T wave
            else:
                if qrs:
                    rr.append(i - last)
                qrs.append(i)
                slopes.append(slope(i))
                last = i
                spki = 0.125 * pk + 0.875 * spki
        else:
            npki = 0.125 * pk + 0.875 * npki
        thr1 = npki + 0.25 * (spki - npki)
        # search-back
        if len(rr) >= 2 and k + 1 < len(cands):
            mean_rr = np.mean(rr[-8:])
            nxt = cands[k + 1]
            if nxt - last > 1.66 * mean_rr:
                gap = [c for c in cands[k + 1:] if last + refr < c < last + 1.66 * mean_rr]
                gap = [c for c in gap if mwi[c] > 0.5 * thr1]
                if gap:
                    j = max(gap, key=lambda c: mwi[c])
                    rr.append(j - last)
                    qrs.append(j)
                    slopes.append(slope(j))
                    last = j
                    spki = 0.25 * mwi[j] + 0.75 * spki
                    thr1 = npki + 0.25 * (spki - npki)
                    k = int(np.searchsorted(cands, j, side="right"))
                    continue
        k += 1
    out = []
    for i in qrs:
        a, b = max(0, i - half), min(len(bp), i + half + 1)
        out.append(a + int(np.argmax(np.abs(bp[a:b]))))
    return np.unique(np.array(out, int))


def _suppress(idx, v, dist):
    """Keep the largest peaks at least `dist` apart (idx sorted by decreasing v)."""
    taken = np.zeros(len(v), bool)
    keep = []
    for i in idx:
        a, b = max(0, i - dist), min(len(v), i + dist + 1)
        if not taken[a:b].any():
            keep.append(i)
            taken[i] = True
    return np.array(keep, int)


# ---------------------------------------------------------------------------------------------- scoring
def match(ref, det, tol=TOL):
    """One-to-one matching of detections to reference beats within tol samples: (TP, FP, FN)."""
    ref, det = np.sort(ref), np.sort(det)
    used = np.zeros(len(det), bool)
    tp = 0
    for r in ref:
        lo, hi = np.searchsorted(det, r - tol), np.searchsorted(det, r + tol, side="right")
        best, bd = -1, tol + 1
        for j in range(lo, hi):
            if not used[j] and abs(det[j] - r) < bd:
                best, bd = j, abs(det[j] - r)
        if best >= 0:
            used[best] = True
            tp += 1
    return tp, len(det) - tp, len(ref) - tp


def snr_db(ref, est):
    r, e = ref[SKIP:], est[SKIP:]
    return float(10 * np.log10(np.sum(r ** 2) / np.sum((e - r) ** 2)))


def nk_peaks(x, clean_first):
    import neurokit2 as nk
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = nk.ecg_clean(x, sampling_rate=FS) if clean_first else x
        _, info = nk.ecg_peaks(s, sampling_rate=FS)
    return np.asarray(info["ECG_R_Peaks"], int), s


def run_ssm(ssm, model, X, backend="auto"):
    """X: (frames, streams) float32 -> the model's output through the C++ CLI (each column its own stream)."""
    with tempfile.TemporaryDirectory() as td:
        i, o = Path(td) / "in.npy", Path(td) / "out.npy"
        np.save(i, X.astype(np.float32))
        t = time.time()
        r = subprocess.run([ssm, "run", model, str(i), str(o), "--backend", backend, "-q", "--json"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"ssm run failed: {r.stderr.strip()}")
        wall = time.time() - t
        return np.load(o).astype(np.float64), wall, r.stdout


def noise_for(rng, src, kind, L):
    if kind == "mix":
        n = sum(D.make_noise(rng, src, "test", L, kinds=[k]) for k in ("bw", "em", "ma"))
    else:
        n = D.make_noise(rng, src, "test", L, kinds=[kind])
    return n / np.sqrt(np.mean(n ** 2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "models/ecg-denoiser/ecg-denoiser.safetensors"))
    ap.add_argument("--ssm", default=str(REPO / "build/apps/ssm/ssm"))
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--records", default=",".join(map(str, D.TEST)))
    ap.add_argument("--out", default=str(REPO / "docs/ecg-eval"))
    ap.add_argument("--seed", type=int, default=2024)
    a = ap.parse_args()
    import neurokit2 as nk
    src = D.load()
    L = int(a.minutes * 60 * FS)
    start = 60 * FS
    recs = [int(r) for r in a.records.split(",")]
    cols, meta, refs, beats = [], [], {}, {}
    rng = np.random.default_rng(a.seed)
    for r in recs:
        sig, names = D.read_record(r)
        c = names.index("MLII")
        ref = D.clean_reference(sig[:, c])[start:start + L]
        raw = sig[start:start + L, c]
        refs[r] = ref
        b = D.read_beats(r) - start
        beats[r] = b[(b >= SKIP) & (b < L)]
        for kind in NOISES:
            for snr in SNRS:
                n = noise_for(rng, src, kind, L)
                # the noisy input keeps the recording's own baseline (raw lead) plus the scaled noise
                x = raw + n * np.sqrt(np.mean(ref ** 2) / 10 ** (snr / 10))
                cols.append(x)
                meta.append((r, kind, snr))
    X = np.stack(cols, 1)
    print(f"{len(recs)} records x {len(NOISES)} noises x {len(SNRS)} SNRs = {X.shape[1]} streams of "
          f"{a.minutes} min; running the C++ model ...", flush=True)
    Y, wall, js = run_ssm(a.ssm, a.model, X)
    info = json.loads(subprocess.run([a.ssm, "info", a.model, "--json"], capture_output=True, text=True,
                                     check=True).stdout)
    lag = int(info["latency_samples"])  # output at t estimates the clean ECG at t - lag: align before scoring
    if lag:
        Y[:-lag] = Y[lag:].copy()
        Y[-lag:] = Y[-lag - 1]
    print(f"ssm run: {wall:.1f} s wall for {X.size / FS / 3600:.1f} h of signal (batch backend, loaded machine)")
    acc = {}

    def add(key, tp, fp, fn):
        s = acc.setdefault(key, [0, 0, 0])
        s[0] += tp
        s[1] += fp
        s[2] += fn

    snr_rows = {}
    for j, (r, kind, snr) in enumerate(meta):
        x, y, ref, bt = X[:, j], Y[:, j], refs[r], beats[r]
        keep = lambda p: p[p >= SKIP]  # noqa: E731
        pk, xc = nk_peaks(x, True)
        add(("noisy+nk", kind, snr), *match(bt, keep(pk)))
        add(("noisy+pt", kind, snr), *match(bt, keep(pan_tompkins(x))))
        po, _ = nk_peaks(y, False)
        add(("ours+nk", kind, snr), *match(bt, keep(po)))
        po2, _ = nk_peaks(y, True)
        add(("ours+nkc", kind, snr), *match(bt, keep(po2)))
        add(("ours+pt", kind, snr), *match(bt, keep(pan_tompkins(y))))
        # SNR: input (noisy minus its own DC/baseline is part of the error), NeuroKit2 ecg_clean, ours
        sin = snr_db(ref, x - np.median(x))
        snr_rows.setdefault((kind, snr), []).append((sin, snr_db(ref, xc), snr_db(ref, y)))
    for r in recs:
        pk, _ = nk_peaks(refs[r], True)
        add(("clean+nk", "-", 0), *match(beats[r], pk[pk >= SKIP]))

    def prf(t):
        tp, fp, fn = (int(v) for v in t)
        return dict(tp=tp, fp=fp, fn=fn, se=tp / max(1, tp + fn), ppv=tp / max(1, tp + fp),
                    f1=2 * tp / max(1, 2 * tp + fp + fn))

    res = {"records": recs, "minutes": a.minutes, "beats": int(sum(len(b) for b in beats.values())),
           "model": os.path.relpath(a.model, REPO), "latency_samples": lag, "neurokit2": nk.__version__, "ssm_wall_s": wall,
           "qrs": {f"{m}|{k}|{s}": prf(v) for (m, k, s), v in acc.items()},
           "snr": {f"{k}|{s}": dict(zip(["in", "nk_clean", "ours"], np.mean(v, 0).tolist()))
                   for (k, s), v in snr_rows.items()}}
    methods = ["noisy+nk", "noisy+pt", "ours+nk", "ours+pt", "ours+nkc"]
    # pooled over noise types, per SNR
    for m in methods:
        for s in SNRS:
            t = np.sum([acc[(m, k, s)] for k in NOISES], 0)
            res["qrs"][f"{m}|all|{s}"] = prf(t)
        res["qrs"][f"{m}|all|all"] = prf(np.sum([acc[(m, k, s)] for k in NOISES for s in SNRS], 0))
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    j = meta.index((recs[0], "em", 0))
    sl = slice(30 * FS, 38 * FS)
    example = dict(x=X[sl, j] - np.median(X[:, j]), y=Y[sl, j], ref=refs[recs[0]][sl],
                   title=f"record {recs[0]} (held out), NSTDB em at 0 dB")
    Path(a.out + ".json").write_text(json.dumps(res, indent=1))
    md = write_md(res, methods)
    Path(a.out + ".md").write_text(md)
    print(md)
    plot(res, methods, a.out + ".png", example)


NAMES = {"noisy+nk": "noisy → NeuroKit2 clean+peaks", "noisy+pt": "noisy → Pan-Tompkins",
         "ours+nk": "ours (C++) → NeuroKit2 peaks", "ours+pt": "ours (C++) → Pan-Tompkins",
         "ours+nkc": "ours (C++) → NeuroKit2 clean+peaks"}


def write_md(res, methods):
    q = res["qrs"]
    out = [f"Held-out records {res['records']} (lead MLII), {res['minutes']} min each, {res['beats']} beats per "
           f"condition; NeuroKit2 {res['neurokit2']}; 150 ms tolerance.", "",
           "**QRS detection, F1 (Se / +P), pooled over bw, em, ma, mix**", "",
           "| input SNR | " + " | ".join(NAMES[m] for m in methods) + " |",
           "|---|" + "---|" * len(methods)]
    for s in SNRS + ["all"]:
        cells = []
        for m in methods:
            v = q[f"{m}|all|{s}"]
            cells.append(f"{v['f1']:.4f} ({v['se']:.3f} / {v['ppv']:.3f})")
        out.append(f"| {s if s == 'all' else f'{s:+d} dB'} | " + " | ".join(cells) + " |")
    c = q["clean+nk|-|0"]
    out += ["", f"Clean reference through NeuroKit2: F1 {c['f1']:.4f} (Se {c['se']:.3f}, +P {c['ppv']:.3f}).", "",
            "**QRS F1 per noise type** (NeuroKit2 on noisy / ours + NeuroKit2 peaks / Pan-Tompkins on noisy / "
            "ours + Pan-Tompkins)", "", "| noise | " + " | ".join(f"{s:+d} dB" for s in SNRS) + " |",
            "|---|" + "---|" * len(SNRS)]
    for k in NOISES:
        cells = [" / ".join(f"{q[f'{m}|{k}|{s}']['f1']:.3f}" for m in ["noisy+nk", "ours+nk", "noisy+pt", "ours+pt"])
                 for s in SNRS]
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    out += ["", "**SNR (dB) against the clean reference**: input → NeuroKit2 `ecg_clean` (zero-phase, offline) / "
            "ours (causal); improvement of ours in brackets", "", "| noise | " +
            " | ".join(f"{s:+d} dB" for s in SNRS) + " |", "|---|" + "---|" * len(SNRS)]
    for k in NOISES:
        cells = []
        for s in SNRS:
            v = res["snr"][f"{k}|{s}"]
            cells.append(f"{v['in']:.1f} → {v['nk_clean']:.1f} / **{v['ours']:.1f}** ({v['ours'] - v['in']:+.1f})")
        out.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def plot(res, methods, path, z):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    q = res["qrs"]
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for m, st in zip(methods, ["o--", "s--", "o-", "s-", "d-"]):
        ax[0].plot(SNRS, [q[f"{m}|all|{s}"]["f1"] for s in SNRS], st, label=NAMES[m])
    ax[0].set_xlabel("input SNR (dB)")
    ax[0].set_ylabel("QRS F1 (pooled bw/em/ma/mix)")
    ax[0].set_title("QRS detection, held-out patients")
    ax[0].grid(alpha=0.3)
    ax[0].legend(fontsize=8)
    for k in NOISES:
        ax[1].plot(SNRS, [res["snr"][f"{k}|{s}"]["ours"] - res["snr"][f"{k}|{s}"]["in"] for s in SNRS], "o-",
                   label=f"ours, {k}")
        ax[1].plot(SNRS, [res["snr"][f"{k}|{s}"]["nk_clean"] - res["snr"][f"{k}|{s}"]["in"] for s in SNRS], "x:",
                   label=f"nk ecg_clean, {k}")
    ax[1].axhline(0, color="k", lw=0.5)
    ax[1].set_xlabel("input SNR (dB)")
    ax[1].set_ylabel("SNR improvement (dB)")
    ax[1].set_title("SNR improvement")
    ax[1].grid(alpha=0.3)
    ax[1].legend(fontsize=7, ncol=2)
    if z is not None:
        t = np.arange(len(z["x"])) / FS
        ax[2].plot(t, z["x"] + 3, lw=0.6, label="noisy (em, 0 dB)")
        ax[2].plot(t, z["y"] + 1.5, lw=0.8, label="ours (C++)")
        ax[2].plot(t, z["ref"], lw=0.8, label="clean reference")
        ax[2].set_xlabel("s")
        ax[2].set_yticks([])
        ax[2].legend(fontsize=8)
        ax[2].set_title(z["title"])
    else:
        ax[2].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
