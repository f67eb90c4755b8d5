"""EEG data for the eeg-artifact model: EEGdenoiseNet-style mixtures y = x + lambda * n at 125 Hz.

    python3 models/train/biosig/eeg_data.py      # once: writes models/train/data/eeg/eeg_sources.npz

Sources:
  ../shared/data/biosppy-signals/eeg_ec.txt, eeg_eo.txt   real EEG (eyes closed / open), 125 Hz   -> clean x
  ../shared/data/biosppy-signals/emg.txt, emg_1.txt       real EMG, 1000 Hz (resampled to 125 Hz) -> n (EMG)
  $SSM_BIODATA/eog/eog_200hz.csv                          real hEOG + vEOG, 200 Hz (NeuroKit2's example data,
                                                          resampled to 125 Hz)                    -> n (EOG)
Preprocessing follows EEGdenoiseNet (Zhang et al. 2021) where it can: EEG zero-phase band-pass 1-45 Hz (their
1-80 Hz is above our 62.5 Hz Nyquist) with a 50 Hz notch; EOG band-pass 0.3-10 Hz; EMG high-pass 1 Hz. 2-s EEG
epochs whose peak exceeds 5x the recording's median epoch RMS are rejected as not clean (their expert visual check
is not reproducible here). Clean EEG is scaled to a median epoch RMS of 20 (nominal microvolts).

Training draws clean EEG from both recordings (TRAIN_EEG); evaluation only from the eyes-closed one (TEST_EEG):
EEGdenoiseNet's clean EEG had its ocular components removed by ICA (ICLabel), which cannot be done on one channel,
and the eyes-open recording carries 65 % of its power in 1-4 Hz with slow eye-movement-like activity (eyes
closed: 27 %), so it is not an ocular-free ground truth to score EOG removal against.

Split in time, fixed before training: the first 80 % of every recording (EEG, EMG, EOG) trains, the last 20 % is
held out for bench/eeg_eval.py.
"""
import os
import sys
from pathlib import Path

import numpy as np
try:  # only prepare() needs SciPy; training from the cache does not (a lent GPU machine may lack it)
    from scipy.signal import butter, iirnotch, filtfilt, resample_poly, sosfiltfilt
except ImportError:
    pass

FS = 125
EPOCH = 2 * FS
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
CACHE = REPO / "models" / "train" / "data" / "eeg" / "eeg_sources.npz"
TRAIN_FRAC = 0.8
TRAIN_EEG = ("eeg_ec", "eeg_eo")
TEST_EEG = ("eeg_ec",)


def shared_dir():
    for d in [os.environ.get("SSM_DATA"), REPO.parent / "shared" / "data", Path("/work/shared/data")]:
        if d and Path(d, "biosppy-signals").is_dir():
            return Path(d)
    sys.exit("shared data not found: set SSM_DATA to the folder holding biosppy-signals/")


def eog_path():
    p = Path(os.environ.get("SSM_BIODATA", "/work/data")) / "eog" / "eog_200hz.csv"
    if not p.exists():
        sys.exit(f"{p} not found: fetch NeuroKit's data/eog_200hz.csv (see models/eeg-artifact/MODEL.md)")
    return p


def _txt(path):
    return np.loadtxt(path, comments="#").astype(np.float64)


def clean_eeg(x):
    x = x - np.median(x)
    x = sosfiltfilt(butter(2, [1.0, 45.0], "bandpass", fs=FS, output="sos"), x)
    b, a = iirnotch(50.0, 30.0, fs=FS)
    return filtfilt(b, a, x)


def accepted_mask(x, thr=5.0):
    """Per-sample mask: True inside 2-s epochs whose peak is below thr x the median epoch RMS."""
    n = len(x) // EPOCH
    ep = x[:n * EPOCH].reshape(n, EPOCH)
    rms = np.sqrt((ep ** 2).mean(1))
    ok = np.abs(ep).max(1) < thr * np.median(rms)
    m = np.zeros(len(x), bool)
    m[:n * EPOCH] = np.repeat(ok, EPOCH)
    return m, float(np.median(rms)), int(ok.sum()), n


def runs(mask, min_len):
    """(start, stop) of contiguous True runs at least min_len long."""
    d = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    st, en = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [(s, e) for s, e in zip(st, en) if e - s >= min_len]


def prepare(verbose=True):
    d = shared_dir() / "biosppy-signals"
    src = {}
    for name in ("eeg_ec", "eeg_eo"):
        x = clean_eeg(_txt(d / f"{name}.txt"))
        m, med, nok, n = accepted_mask(x)
        x = x * (20.0 / med)
        cut = int(TRAIN_FRAC * len(x)) // EPOCH * EPOCH
        src[f"eeg_train_{name}"], src[f"mask_train_{name}"] = x[:cut].astype(np.float32), m[:cut]
        src[f"eeg_test_{name}"], src[f"mask_test_{name}"] = x[cut:].astype(np.float32), m[cut:]
        if verbose:
            print(f"{name}: {len(x) / FS:.0f} s, {nok}/{n} 2-s epochs accepted as clean")
    for name in ("emg", "emg_1"):
        x = _txt(d / f"{name}.txt")
        x = resample_poly(x - x.mean(), 1, 8)  # 1000 -> 125 Hz, anti-aliased
        x = sosfiltfilt(butter(2, 1.0, "highpass", fs=FS, output="sos"), x)
        cut = int(TRAIN_FRAC * len(x))
        src[f"emg_train_{name}"], src[f"emg_test_{name}"] = x[:cut].astype(np.float32), x[cut:].astype(np.float32)
    e = np.loadtxt(eog_path(), delimiter=",", skiprows=1)
    for c, name in enumerate(("heog", "veog")):
        x = resample_poly(e[:, c] - e[:, c].mean(), 5, 8)  # 200 -> 125 Hz
        x = sosfiltfilt(butter(2, [0.3, 10.0], "bandpass", fs=FS, output="sos"), x)
        cut = int(TRAIN_FRAC * len(x))
        src[f"eog_train_{name}"], src[f"eog_test_{name}"] = x[:cut].astype(np.float32), x[cut:].astype(np.float32)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, **src)
    if verbose:
        print(f"wrote {CACHE}")


def load():
    if not CACHE.exists():
        prepare()
    z = np.load(CACHE)
    return {k: z[k] for k in z.files}


def rms(v):
    return float(np.sqrt(np.mean(v ** 2)) + 1e-12)


def crop(rng, x, L):
    p = rng.integers(0, len(x) - L + 1)
    return x[p:p + L].astype(np.float64)


def clean_crop(rng, src, split, L):
    """A crop of clean EEG of length L lying entirely inside accepted epochs."""
    cands = []
    for name in (TRAIN_EEG if split == "train" else TEST_EEG):
        for s, e in runs(src[f"mask_{split}_{name}"], L):
            cands.append((name, s, e))
    w = np.array([e - s - L + 1 for _, s, e in cands], float)
    name, s, e = cands[rng.choice(len(cands), p=w / w.sum())]
    p = rng.integers(s, e - L + 1)
    return src[f"eeg_{split}_{name}"][p:p + L].astype(np.float64)


def artifact(rng, src, split, kind, L):
    keys = [k for k in src if k.startswith(f"{kind}_{split}_")]
    v = crop(rng, src[keys[rng.integers(len(keys))]], L)
    if split == "train":
        v *= rng.choice([-1.0, 1.0])
    return v


def lam(x, n, snr_db):
    """EEGdenoiseNet's mixing weight: SNR = 10 log10(RMS(x) / RMS(lambda n))."""
    return rms(x) / (rms(n) * 10 ** (snr_db / 10))


def make_batch(rng, src, B, L):
    X = np.empty((B, L), np.float32)
    Y = np.empty((B, L), np.float32)
    for b in range(B):
        x = clean_crop(rng, src, "train", L) * np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
        u = rng.random()
        kinds = ["eog"] if u < 0.4 else ["emg"] if u < 0.8 else ["eog", "emg"]
        n = np.zeros(L)
        for k in kinds:
            a = artifact(rng, src, "train", k, L)
            n += a / rms(a) * np.exp(rng.uniform(-0.5, 0.5))
        r = rng.random()
        snr = rng.uniform(-7, 2) if r < 0.85 else rng.uniform(2, 15) if r < 0.95 else None
        y = x + (lam(x, n, snr) * n if snr is not None else 0.0)
        X[b], Y[b] = y, x
    return X, Y


if __name__ == "__main__":
    prepare()
