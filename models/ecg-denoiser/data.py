"""Data preparation and the noise model for the ECG denoiser.

Run once (CPU, a few seconds):  python3 models/ecg-denoiser/data.py
It reads the read-only records in ../shared/data (or $SSM_DATA) and writes
models/train/data/ecg/ecg_sources.npz (git-ignored, ~8 MB float32): the clean
training/held-out ECG at 360 Hz in mV and the real noise sources, split into a
training part and a held-out part. train.py and evaluate.py mix noise on the fly
with `make_noise` below, so the same noise model is used everywhere.

Splits (never mixed):
  train clean : MIT-BIH 100 MLII and V5, minutes 0-24; a103l II and V (whole);
                s0010_re, all 15 leads (whole)
  held out    : MIT-BIH 100 MLII and V5, minutes 24-30 (last 6 min);
                03700181 MCL1 (whole record, 10 min, another patient and lead)
  not used    : v102s (its II and V traces carry bursts of high-frequency
                artefact inside every QRS, 23-38 % of the power above 40 Hz, so
                it is not a clean reference)
  noise train : first 80 % of emg.txt and emg_1.txt, first 75 % of resp.txt
  noise test  : last 20 % of emg.txt and emg_1.txt, last 25 % of resp.txt
"""
import os
import sys
from pathlib import Path

import numpy as np
from scipy.signal import butter, filtfilt, resample_poly, sosfiltfilt

FS = 360
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CACHE = REPO / "models" / "train" / "data" / "ecg" / "ecg_sources.npz"


def data_dir():
    for d in [os.environ.get("SSM_DATA"), REPO.parent / "shared" / "data", REPO / "shared" / "data",
              Path("/work/shared/data")]:
        if d and Path(d, "wfdb-records").is_dir():
            return Path(d)
    sys.exit("shared data not found: set SSM_DATA to the folder holding wfdb-records/ and biosppy-signals/")


def _resample(x, fs):
    if fs == FS:
        return x.astype(np.float64)
    from math import gcd
    g = gcd(int(fs), FS)
    return resample_poly(x.astype(np.float64), FS // g, int(fs) // g)


def clean_reference(x):
    """Clean target: the recorded lead in mV with its own slow baseline removed
    (zero-phase 2nd-order Butterworth high-pass at 0.5 Hz, applied to the reference only)."""
    sos = butter(2, 0.5, "highpass", fs=FS, output="sos")
    return sosfiltfilt(sos, x - np.median(x))


def _load_biosppy(path):
    x = np.loadtxt(path, comments="#")
    return x - x.mean()


def prepare():
    import wfdb
    d = data_dir()
    w = d / "wfdb-records"
    out = {}
    r100 = wfdb.rdrecord(str(w / "100"))
    split = 24 * 60 * FS
    train, test = [], {}
    for c, name in enumerate(r100.sig_name):
        x = clean_reference(r100.p_signal[:, c])
        train.append(x[:split])
        test[f"100_{name}"] = x[split:]
    a = wfdb.rdrecord(str(w / "a103l"))
    for c in (0, 1):
        train.append(clean_reference(_resample(a.p_signal[:, c], a.fs)))
    s = wfdb.rdrecord(str(w / "s0010_re"))
    for c in range(s.p_signal.shape[1]):
        train.append(clean_reference(_resample(s.p_signal[:, c], s.fs)))
    m = wfdb.rdrecord(str(w / "03700181"))
    test["03700181_MCL1"] = clean_reference(_resample(np.nan_to_num(m.p_signal[:, 0]), m.fs))

    b = d / "biosppy-signals"
    emg = [_resample(_load_biosppy(b / f), 1000) for f in ("emg.txt", "emg_1.txt")]
    resp = _resample(_load_biosppy(b / "resp.txt"), 1000)
    # EMG: drop what is below 5 Hz (drift of the EMG amplifier, not muscle) and normalise to unit RMS
    sos = butter(2, 5, "highpass", fs=FS, output="sos")
    emg = [sosfiltfilt(sos, e) for e in emg]
    emg = [e / e.std() for e in emg]
    resp = resp / resp.std()
    for i, e in enumerate(emg):
        k = int(0.8 * len(e))
        out[f"emg{i}_train"], out[f"emg{i}_test"] = e[:k], e[k:]
    k = int(0.75 * len(resp))
    out["resp_train"], out["resp_test"] = resp[:k], resp[k:]

    out["clean_train"] = np.concatenate(train)
    out["clean_train_starts"] = np.cumsum([0] + [len(t) for t in train])
    for k, v in test.items():
        out[f"test_{k}"] = v
    out = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v) for k, v in out.items()}
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, **out)
    return out


def load():
    if not CACHE.exists():
        prepare()
    z = np.load(CACHE)
    return {k: z[k] for k in z.files}


# ---------------------------------------------------------------- noise model
def _crop_loop(rng, src, L, stretch=1.0):
    """Random crop of length L from src (looped if too short), time-stretched by `stretch`."""
    need = int(np.ceil(L * stretch)) + 2
    reps = int(np.ceil((need + 1) / len(src))) + 1
    x = np.tile(src, reps) if reps > 1 else src
    st = rng.integers(0, len(x) - need + 1)
    seg = x[st:st + need]
    if stretch == 1.0:
        return seg[:L].astype(np.float64)
    t = np.arange(L) * stretch
    return np.interp(t, np.arange(need), seg)


def noise_components(rng, L, src, split="train"):
    """Each component for one segment of L samples at 360 Hz, unit RMS (before weighting)."""
    t = np.arange(L) / FS
    comp = {}
    # 1. real muscle noise (EMG recordings from BioSPPy), random recording, crop, gain envelope
    e = src[f"emg{rng.integers(0, 2)}_{split}"]
    x = _crop_loop(rng, e, L, stretch=rng.uniform(0.8, 1.25))
    env = 1 + rng.uniform(0, 0.8) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi))
    comp["emg"] = x * env
    # 2. baseline wander: 2-5 random sinusoids 0.05-0.7 Hz + the real respiration trace (stretched)
    k = rng.integers(2, 6)
    f = rng.uniform(0.05, 0.7, k)
    a = rng.uniform(0.2, 1.0, k) / np.sqrt(f / 0.05) ** 0.5
    bw = (a[:, None] * np.sin(2 * np.pi * f[:, None] * t + rng.uniform(0, 2 * np.pi, k)[:, None])).sum(0)
    bw /= bw.std() + 1e-9
    r = _crop_loop(rng, src[f"resp_{split}"], L, stretch=rng.uniform(0.5, 1.5))
    r = r - r.mean()
    comp["bw"] = bw + rng.uniform(0, 1.0) * r / (r.std() + 1e-9)
    # 3. electrode-motion-like artefact: offset steps decaying with a 0.2-2 s time constant + 1-12 Hz bursts
    em = np.zeros(L)
    for _ in range(rng.integers(1, 5)):
        p = rng.integers(0, L)
        tau = rng.uniform(0.2, 2.0) * FS
        em[p:] += rng.normal() * np.exp(-np.arange(L - p) / tau)
    for _ in range(rng.integers(1, 4)):
        dur = int(rng.uniform(0.2, 2.0) * FS)
        p = rng.integers(0, max(1, L - dur))
        n = rng.normal(size=dur + 64)
        lo, hi = rng.uniform(1, 3), rng.uniform(6, 12)
        b_, a_ = butter(2, [lo, hi], "bandpass", fs=FS)
        n = filtfilt(b_, a_, n)[32:32 + dur]
        em[p:p + dur] += 1.5 * n / (n.std() + 1e-9) * np.hanning(dur)
    comp["em"] = em
    # 4. mains hum: 50 or 60 Hz (+-0.3 Hz), 2nd and 3rd harmonics, slow amplitude modulation
    f0 = (50.0 if rng.random() < 0.5 else 60.0) + rng.uniform(-0.3, 0.3)
    h = np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))
    h += rng.uniform(0, 0.4) * np.sin(2 * np.pi * 2 * f0 * t + rng.uniform(0, 2 * np.pi))
    h += rng.uniform(0, 0.4) * np.sin(2 * np.pi * 3 * f0 * t + rng.uniform(0, 2 * np.pi))
    h *= 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.02, 0.3) * t + rng.uniform(0, 2 * np.pi))
    comp["mains"] = h
    return {k: v / (v.std() + 1e-9) for k, v in comp.items()}


PROB = {"emg": 0.8, "bw": 0.8, "em": 0.4, "mains": 0.5}


def make_noise(rng, clean, snr_db, src, split="train", kinds=None):
    """Noise for one clean segment at the given SNR (dB, over the segment):
    a random subset of the components (or `kinds`) with random log-uniform power weights,
    scaled so that 10 log10(P_clean / P_noise) = snr_db. Returns noise (no DC)."""
    L = len(clean)
    comp = noise_components(rng, L, src, split)
    if kinds is None:
        kinds = [k for k in comp if rng.random() < PROB[k]] or [list(comp)[rng.integers(0, 4)]]
    w = {k: 10 ** rng.uniform(-1, 1) for k in kinds}
    n = sum(np.sqrt(w[k]) * comp[k] for k in kinds)
    pc = np.mean(clean ** 2)
    pn = np.mean(n ** 2) + 1e-12
    return n * np.sqrt(pc / pn / 10 ** (snr_db / 10))


def make_batch(rng, src, B, L, snr_range=(-8.0, 14.0), hi_frac=0.0, hi_range=(14.0, 40.0)):
    """Training batch: random L-sample windows of the training clean ECG, random gain 0.5-2
    and polarity (records drawn with probability proportional to sqrt(length)), noise at a uniform random SNR
    in snr_range (in hi_range for a fraction hi_frac of segments, so the model also learns to leave
    near-clean ECG alone), plus a DC offset (+-0.5 mV) not counted in the SNR."""
    clean = src["clean_train"]
    starts = src["clean_train_starts"]
    w = np.sqrt(np.diff(starts).astype(np.float64))  # records drawn with probability ~ sqrt(length)
    w /= w.sum()
    X = np.zeros((B, L), np.float32)
    Y = np.zeros((B, L), np.float32)
    for i in range(B):
        j = rng.choice(len(starts) - 1, p=w)
        lo, hi = starts[j], starts[j + 1]
        p = rng.integers(lo, hi - L)
        y = clean[p:p + L].astype(np.float64) * rng.uniform(0.5, 2.0) * (1 if rng.random() < 0.5 else -1)
        snr = rng.uniform(*hi_range) if rng.random() < hi_frac else rng.uniform(*snr_range)
        n = make_noise(rng, y, snr, src, "train")
        X[i] = y + n + rng.uniform(-0.5, 0.5)
        Y[i] = y
    return X, Y


def make_test_stream(clean, snr_db, src, seed, chunk_s=30, kinds=None):
    """Held-out noisy stream: held-out clean ECG + held-out noise, noise redrawn (composition and
    weights) every `chunk_s` seconds, each chunk at exactly snr_db, one DC offset (+-0.5 mV) per stream."""
    rng = np.random.default_rng(seed)
    C = int(chunk_s * FS)
    bounds = list(range(0, len(clean), C)) + [len(clean)]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] < 5 * FS:
        del bounds[-2]
    out = np.zeros(len(clean))
    for a, b in zip(bounds[:-1], bounds[1:]):
        y = clean[a:b].astype(np.float64)
        out[a:b] = y + make_noise(rng, y, snr_db, src, "test", kinds)
    out += rng.uniform(-0.5, 0.5)
    return out.astype(np.float32)


if __name__ == "__main__":
    o = prepare()
    for k, v in o.items():
        print(f"{k:24s} {v.shape} {v.dtype} " + (f"{len(v) / FS / 60:.1f} min" if v.dtype.kind == "f" else ""))
    print("wrote", CACHE, f"{CACHE.stat().st_size / 1e6:.1f} MB")
