"""Evaluate the shipped ecg-denoiser.safetensors on held-out data, against a classic causal filter.

    python3 models/ecg-denoiser/evaluate.py            # writes eval_results.json, example*.csv, example.png

The model is rebuilt from the native file itself (ssmtrain.export.build_from_native: config from
its metadata, tensors by name, which map 1:1 to the PyTorch state_dict) and run causally over whole held-out streams from a
zero state, exactly as a streaming engine would. Held-out data: MIT-BIH 100 minutes 24-30 (MLII
and V5) and the whole of record 03700181 (MCL1), mixed with held-out parts of the noise sources
(data.make_test_stream), at input SNRs -6, 0, 6, 12 dB. The first 2 s of every stream are left
out of the metrics (start-up transients of every method).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.signal import butter, filtfilt, iirnotch, lfilter, sosfilt, sosfiltfilt

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "models" / "train"))
sys.path.insert(0, str(HERE))
import data  # noqa: E402
from ssmtrain.export import build_from_native, load_native  # noqa: E402

FS = data.FS
SNRS = (-6, 0, 6, 12)
SKIP = 2 * FS


def model_from_native(path):
    cfg, _ = load_native(path)
    return build_from_native(path), cfg


def _s4d_long(layer, u, chunk=4096):
    """Exactly S4D.forward (causal FFT convolution with the full-length kernel), with the kernel built
    chunk by chunk in float64 so that 10-minute streams fit in memory."""
    L = u.size(-1)
    dA, dB, C = layer.kernel.discretize(torch.float64)
    CB = C * dB
    E = torch.exp(torch.log(dA).unsqueeze(-1) * torch.arange(chunk, dtype=torch.float64))  # dA^j, j < chunk
    step = dA ** chunk
    K = torch.zeros(layer.h, L, dtype=torch.float64)
    w = CB.clone()  # C dB dA^a at chunk start a
    for a in range(0, L, chunk):
        n = min(chunk, L - a)
        K[:, a:a + n] = 2 * torch.einsum("hn,hnl->hl", w, E[..., :n]).real
        w = w * step
        if w.abs().max() < 1e-14:  # the rest of the kernel is zero to float64 precision
            break
    u64 = u.to(torch.float64)
    y = torch.fft.irfft(torch.fft.rfft(u64, n=2 * L) * torch.fft.rfft(K, n=2 * L), n=2 * L)[..., :L]
    y = y + u64 * layer.D.to(torch.float64).unsqueeze(-1)
    return layer._post(y.to(u.dtype))


def run_model(m, x):
    """Causal run over the whole stream from a zero state (S4DModel structure, long-sequence S4D)."""
    with torch.no_grad():
        u = torch.tensor(np.asarray(x), dtype=torch.float32)[None, :, None]
        y = m._run(u, _s4d_long, lambda norm, z: norm(z), m.encoder, m.decoder)
        return y[0, :, 0].numpy().astype(np.float64)


def baseline(x, lo=0.5, hi=40.0):
    """Classic causal ECG filter: 2nd-order Butterworth band-pass lo-hi Hz (4 poles) + 50 and 60 Hz
    notches (Q=30), all run forward only (scipy lfilter/sosfilt), like a monitor would."""
    y = sosfilt(butter(2, [lo, hi], "bandpass", fs=FS, output="sos"), x)
    for f0 in (50.0, 60.0):
        b, a = iirnotch(f0, 30.0, fs=FS)
        y = lfilter(b, a, y)
    return y


def zero_phase(x, lo=0.5, hi=40.0):
    """The same filters run forward and backward (filtfilt): NOT causal, offline only; an upper
    reference for what band-pass filtering can do without phase distortion."""
    y = sosfiltfilt(butter(2, [lo, hi], "bandpass", fs=FS, output="sos"), x)
    for f0 in (50.0, 60.0):
        b, a = iirnotch(f0, 30.0, fs=FS)
        y = filtfilt(b, a, y)
    return y


def metrics(y, ref, x):
    y, ref, x = y[SKIP:], ref[SKIP:], x[SKIP:]
    e = y - ref
    snr_in = 10 * np.log10(np.sum(ref ** 2) / np.sum((x - ref - np.mean(x - ref)) ** 2))
    snr_out = 10 * np.log10(np.sum(ref ** 2) / np.sum(e ** 2))
    return dict(snr_in=snr_in, snr_out=snr_out, snr_imp=snr_out - snr_in, rmse=float(np.sqrt(np.mean(e ** 2))),
                corr=float(np.corrcoef(y, ref)[0, 1]))


def qrs_scores(sig, ann, tol=int(0.15 * FS)):
    """neurokit2 detector (its own ecg_clean + ecg_peaks, default 'neurokit' method) vs reference beats."""
    import neurokit2 as nk
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cl = nk.ecg_clean(sig, sampling_rate=FS)
            _, info = nk.ecg_peaks(cl, sampling_rate=FS)
            det = np.asarray(info["ECG_R_Peaks"], int)
        except Exception:
            det = np.zeros(0, int)
    ann = ann[ann >= SKIP]
    det = det[det >= SKIP - tol]
    used = np.zeros(len(det), bool)
    tp = 0
    for a in ann:
        if len(det) == 0:
            break
        j = np.searchsorted(det, a)
        best = None
        for k in (j - 1, j):
            if 0 <= k < len(det) and not used[k] and abs(det[k] - a) <= tol:
                if best is None or abs(det[k] - a) < abs(det[best] - a):
                    best = k
        if best is not None:
            used[best] = True
            tp += 1
    fp = int(np.sum(~used & (det >= SKIP)))
    fn = len(ann) - tp
    return dict(se=tp / max(1, tp + fn), ppv=tp / max(1, tp + fp), tp=tp, fp=fp, fn=fn)


def make_example(m, src, out, start_s=60.0, dur_s=15.0, snr=0.0, seed=7):
    """15 s of held-out MIT-BIH 100 MLII (minute 25) with held-out noise at 0 dB:
    all four noise kinds present, so the figure shows each being removed."""
    c = src["test_100_MLII"]
    a = int(start_s * FS)
    ref = c[a:a + int(dur_s * FS)].astype(np.float64)
    x = data.make_test_stream(ref, snr, src, seed, chunk_s=dur_s, kinds=["emg", "bw", "em", "mains"])
    np.savetxt(out / "example_noisy.csv", x, fmt="%.4f", header="ecg", comments="")
    np.savetxt(out / "example_clean.csv", ref, fmt="%.4f", header="ecg", comments="")
    x = np.loadtxt(out / "example_noisy.csv", skiprows=1)  # what a user of the CSV gets
    ref = np.loadtxt(out / "example_clean.csv", skiprows=1)
    y = run_model(m, x)
    b = baseline(x)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = np.arange(len(x)) / FS
    sel = (t >= 3) & (t < 11)
    rows = [("noisy input (held-out ECG + held-out EMG, wander, motion, mains; 0 dB)", x, "tab:gray"),
            ("ssmstream S4D denoiser (causal, zero latency)", y, "tab:blue"),
            ("classic causal filter: 0.5-40 Hz Butterworth + 50/60 Hz notch", b, "tab:orange"),
            ("clean reference", ref, "black")]
    fig, ax = plt.subplots(4, 1, figsize=(12, 8.5), sharex=True)
    lim = (min(ref[sel].min(), y[sel].min()) - 0.3, max(ref[sel].max(), y[sel].max()) + 0.3)
    for i, (title, s, col) in enumerate(rows):
        ax[i].plot(t[sel], s[sel], color=col, lw=0.8)
        if i in (1, 2):
            ax[i].plot(t[sel], ref[sel], color="black", lw=0.6, alpha=0.35, label="clean reference")
            ax[i].legend(loc="upper right", fontsize=8)
            mm = metrics(s, ref, x)
            title += f"   (SNR {mm['snr_out']:.1f} dB, r = {mm['corr']:.3f})"
        if i > 0:
            ax[i].set_ylim(*lim)
        ax[i].set_title(title, fontsize=10, loc="left")
        ax[i].set_ylabel("mV")
        ax[i].grid(alpha=0.3)
    ax[-1].set_xlabel("time (s) in example_noisy.csv (MIT-BIH 100, minute 25, never trained on)")
    fig.tight_layout()
    fig.savefig(out / "example.png", dpi=90)
    return dict(model=metrics(y, ref, x), baseline=metrics(b, ref, x))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(HERE / "ecg-denoiser.safetensors"))
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--no_qrs", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = Path(a.out)
    m, cfg = model_from_native(a.model)
    nparam = sum(p.numel() for p in m.parameters())
    src = data.load()
    streams = {k[5:]: src[k] for k in src if k.startswith("test_")}
    res = {"params": nparam, "streams": {}, "qrs": {}}
    rows = []
    for name, ref in streams.items():
        ref = ref.astype(np.float64)
        for i, snr in enumerate(SNRS):
            x = data.make_test_stream(ref, snr, src, seed=1000 + 10 * i + len(name)).astype(np.float64)
            y = run_model(m, x)
            b = baseline(x)
            r = {"model": metrics(y, ref, x), "baseline": metrics(b, ref, x), "input": metrics(x, ref, x),
                 "baseline_0.5-100": metrics(baseline(x, 0.5, 100.0), ref, x),
                 "zero_phase_offline": metrics(zero_phase(x), ref, x)}
            res["streams"][f"{name}@{snr}"] = r
            rows.append((name, snr, r))
            print(f"{name:16s} {snr:+3d} dB  in {r['input']['snr_in']:5.1f}  model {r['model']['snr_out']:5.1f} dB "
                  f"rmse {r['model']['rmse']:.3f} r {r['model']['corr']:.3f} | baseline {r['baseline']['snr_out']:5.1f} dB "
                  f"rmse {r['baseline']['rmse']:.3f} r {r['baseline']['corr']:.3f}", flush=True)
            if name == "100_MLII" and not a.no_qrs:
                import wfdb
                ann = wfdb.rdann(str(data.data_dir() / "wfdb-records" / "100"), "atr")
                beats = set("NLRBAaJSVrFejnE/fQ?")
                split = 24 * 60 * FS
                s = np.array([p - split for p, sym in zip(ann.sample, ann.symbol) if sym in beats and p >= split])
                q = {"noisy": qrs_scores(x, s), "model": qrs_scores(y, s), "baseline": qrs_scores(b, s)}
                if i == 0:
                    res["qrs"]["clean"] = qrs_scores(ref, s)
                res["qrs"][str(snr)] = q
                print("   QRS  " + "  ".join(f"{k}: Se {v['se']:.3f} PPV {v['ppv']:.3f}" for k, v in q.items()), flush=True)
    # pooled over the three held-out streams (mean of per-stream dB values)
    res["summary"] = {}
    for snr in SNRS:
        rs = [r for n, s, r in rows if s == snr]
        res["summary"][str(snr)] = {k: {mk: float(np.mean([r[k][mk] for r in rs])) for mk in rs[0][k]}
                                    for k in rs[0]}
    res["example"] = make_example(m, src, out)
    with open(out / "eval_results.json", "w") as f:
        json.dump(res, f, indent=1)
    print_tables(res)


def print_tables(res):
    print("\nmean over the 3 held-out streams (100 MLII, 100 V5, 03700181 MCL1):")
    print("| input SNR | S4D out SNR | S4D ΔSNR | S4D RMSE mV | S4D r | filter out SNR | filter ΔSNR | filter RMSE mV | filter r |")
    print("|---|---|---|---|---|---|---|---|---|")
    for snr, v in res["summary"].items():
        m, b = v["model"], v["baseline"]
        print(f"| {int(snr):+d} dB | {m['snr_out']:.1f} dB | {m['snr_imp']:+.1f} dB | {m['rmse']:.3f} | {m['corr']:.3f} | "
              f"{b['snr_out']:.1f} dB | {b['snr_imp']:+.1f} dB | {b['rmse']:.3f} | {b['corr']:.3f} |")
    print("\nother comparators, output SNR (dB), same streams:")
    print("| input SNR | causal 0.5-100 Hz + notch | zero-phase 0.5-40 Hz + notch (offline, not causal) |")
    print("|---|---|---|")
    for snr, v in res["summary"].items():
        print(f"| {int(snr):+d} dB | {v['baseline_0.5-100']['snr_out']:.1f} | {v['zero_phase_offline']['snr_out']:.1f} |")
    if res["qrs"]:
        print("\nQRS detection (neurokit2) on MIT-BIH 100 minutes 24-30, vs 100.atr (±150 ms):")
        print(f"clean reference: Se {res['qrs']['clean']['se']:.3f} PPV {res['qrs']['clean']['ppv']:.3f}")
        print("| input SNR | noisy Se / PPV | S4D Se / PPV | filter Se / PPV |")
        print("|---|---|---|---|")
        for snr in SNRS:
            q = res["qrs"][str(snr)]
            print(f"| {snr:+d} dB | " + " | ".join(f"{q[k]['se']:.3f} / {q[k]['ppv']:.3f}" for k in ("noisy", "model", "baseline")) + " |")


if __name__ == "__main__":
    main()
