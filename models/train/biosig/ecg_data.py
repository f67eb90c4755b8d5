"""ECG data for the ecg-denoiser: MIT-BIH Arrhythmia (48 records) + MIT-BIH Noise Stress Test noise.

    python3 models/train/biosig/ecg_data.py      # once: writes models/train/data/ecg2/ecg_sources.npz

Sources (fetched into $SSM_BIODATA, default /work/data; never committed; see models/ecg-denoiser/MODEL.md):
  $SSM_BIODATA/mitdb/NNN.{hea,dat,atr}   MIT-BIH Arrhythmia Database, all 48 records (360 Hz, 2 leads)
  $SSM_BIODATA/nstdb/{bw,ma}.{hea,dat}   NSTDB baseline wander and muscle artifact noise records (360 Hz, 2 ch)
  $SSM_BIODATA/nstdb/118e00.{hea,dat}    NSTDB record 118 + electrode motion at 0 dB; the "em" noise is recovered
                                         as 118e00 - 118 inside nst's 2-minute noise blocks (NSTDB's em.dat itself
                                         was not available)

Patient-wise split (fixed before any training): the 44 non-paced records sorted by number, every fourth one
starting at the third (index % 4 == 2) is held out; 201 and 202 (same patient) are both kept in training.
Records 105 and 203 (heavy noise of their own: not a clean reference) and the paced 102, 104, 107, 217 are not used
for training. Noise: the first 70 % of bw and ma, and em blocks at minutes 5-23, are for training; the last 30 % of
bw and ma and em blocks at minutes 25-30 are held out for evaluation.
"""
import os
import sys
from pathlib import Path

import numpy as np
try:  # only prepare() needs SciPy; training from the cache does not (a lent GPU machine may lack it)
    from scipy.signal import butter, sosfiltfilt, sosfilt
except ImportError:
    pass

FS = 360
HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
CACHE = REPO / "models" / "train" / "data" / "ecg2" / "ecg_sources.npz"
# The same sources packed small enough to travel to a lent GPU machine (36 MB instead of 179): int16 at 1 uV,
# first differences, zlib. `python3 ecg_data.py --pack` writes it; load() uses it when the float cache is absent.
PACKED = CACHE.with_name("ecg_sources_i16.npz")

ALL = [100, 101, 102, 103, 104, 105, 106, 107, 108, 109, 111, 112, 113, 114, 115, 116, 117, 118, 119, 121, 122,
       123, 124, 200, 201, 202, 203, 205, 207, 208, 209, 210, 212, 213, 214, 215, 217, 219, 220, 221, 222, 223, 228,
       230, 231, 232, 233, 234]
PACED = [102, 104, 107, 217]
NONPACED = [r for r in ALL if r not in PACED]
TEST = [r for i, r in enumerate(NONPACED) if i % 4 == 2 and r not in (201, 202)]
NOISY_OWN = [105, 203]
TRAIN = [r for r in NONPACED if r not in TEST and r not in NOISY_OWN]
BEATS = set("NLRBAaJSVrFejnE/fQ")


def biodata():
    d = Path(os.environ.get("SSM_BIODATA", "/work/data"))
    if not (d / "mitdb").is_dir():
        sys.exit(f"MIT-BIH data not found under {d}/mitdb: set SSM_BIODATA (see models/ecg-denoiser/MODEL.md)")
    return d


def clean_reference(x):
    """The clean target: the recorded lead (mV) with its slow baseline removed by a zero-phase 2nd-order
    Butterworth high-pass at 0.5 Hz (applied to the reference only; the model itself is causal)."""
    sos = butter(2, 0.5, "highpass", fs=FS, output="sos")
    return sosfiltfilt(sos, x - np.median(x))


def read_record(num, chan=None):
    import wfdb
    r = wfdb.rdrecord(str(biodata() / "mitdb" / str(num)))
    return r.p_signal if chan is None else r.p_signal[:, chan], r.sig_name


def read_beats(num):
    import wfdb
    a = wfdb.rdann(str(biodata() / "mitdb" / str(num)), "atr")
    keep = np.array([s in BEATS for s in a.symbol])
    return np.asarray(a.sample)[keep]


def em_noise():
    """Electrode-motion noise recovered from NSTDB 118e00 - MIT-BIH 118 (physical units, mV), per 2-min block."""
    import wfdb
    d = biodata()
    a = wfdb.rdrecord(str(d / "nstdb" / "118e00"), physical=False).d_signal.astype(np.float64)
    b = wfdb.rdrecord(str(d / "mitdb" / "118"), physical=False).d_signal.astype(np.float64)
    diff = (a - b) / 200.0  # both records: 200 ADC units per mV
    blocks = {}
    for start_min in range(5, 30, 4):
        s, e = start_min * 60 * FS, min((start_min + 2) * 60 * FS, len(diff))
        off = np.median(diff[s - 60 * FS:s - 1], axis=0)  # constant offset of the clean block before it
        blocks[start_min] = diff[s:e] - off
    return blocks


def noise_sources():
    """{'train': {'bw': [...], 'ma': [...], 'em': [...]}, 'test': {...}}, each a list of 1-D float64 arrays (mV)."""
    import wfdb
    d = biodata()
    out = {"train": {}, "test": {}}
    for kind in ("bw", "ma"):
        x = wfdb.rdrecord(str(d / "nstdb" / kind)).p_signal
        cut = int(0.7 * len(x))
        out["train"][kind] = [x[:cut, c] - x[:cut, c].mean() for c in range(2)]
        out["test"][kind] = [x[cut:, c] - x[cut:, c].mean() for c in range(2)]
    em = em_noise()
    out["train"]["em"] = [b[:, c] for k, b in em.items() if k < 25 for c in range(2)]
    out["test"]["em"] = [b[:, c] for k, b in em.items() if k >= 25 for c in range(2)]
    return out


def prepare():
    src = {}
    for r in TRAIN:
        x, names = read_record(r)
        for c in range(2):
            src[f"train_{r}_{names[c]}"] = clean_reference(x[:, c]).astype(np.float32)
    ns = noise_sources()
    for split in ("train", "test"):
        for kind, lst in ns[split].items():
            for i, v in enumerate(lst):
                src[f"noise_{split}_{kind}_{i}"] = v.astype(np.float32)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, **src)
    print(f"wrote {CACHE}: {len(TRAIN)} training records ({sorted(TRAIN)}), held out {TEST}")


def pack():
    z = np.load(CACHE)
    out = {}
    for k in z.files:
        q = np.round(z[k].astype(np.float64) * 1000.0)
        assert np.abs(q).max() < 32767, k
        out[k] = np.diff(q, prepend=0).astype(np.int16)
    np.savez_compressed(PACKED, **out)
    print(f"wrote {PACKED} ({PACKED.stat().st_size / 1e6:.1f} MB)")


def load():
    if not CACHE.exists() and PACKED.exists():
        z = np.load(PACKED)
        return {k: (np.cumsum(z[k].astype(np.int64)) / 1000.0).astype(np.float32) for k in z.files}
    if not CACHE.exists():
        prepare()
    z = np.load(CACHE)
    return {k: z[k] for k in z.files}


def crop(rng, x, L):
    """A random crop of length L from x (wrapping around when x is shorter)."""
    if len(x) >= L:
        p = rng.integers(0, len(x) - L + 1)
        return x[p:p + L].astype(np.float64)
    p = rng.integers(0, len(x))
    return np.resize(np.roll(x, -p), L).astype(np.float64)


def mains(rng, L):
    t = np.arange(L) / FS
    f = rng.choice([50.0, 60.0]) + rng.uniform(-0.3, 0.3)
    y = np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3))
    for h in (2, 3):
        y += rng.uniform(0, 0.3) * np.sin(2 * np.pi * h * f * t + rng.uniform(0, 6.3))
    return y


def make_noise(rng, src, split, L, kinds=None):
    """Unit-RMS noise of length L: a random subset of NSTDB bw/ma/em (the split's part), each at a random weight;
    in training also sometimes mains hum and a DC step."""
    kinds = kinds or ["bw", "ma", "em"]
    pick = [k for k in kinds if rng.random() < 0.6] or [kinds[rng.integers(len(kinds))]]
    n = np.zeros(L)
    for k in pick:
        keys = [key for key in src if key.startswith(f"noise_{split}_{k}_")]
        v = crop(rng, src[keys[rng.integers(len(keys))]], L)
        if split == "train":
            v *= rng.choice([-1.0, 1.0])
        v = v - v.mean()
        n += v / (np.sqrt(np.mean(v ** 2)) + 1e-9) * np.exp(rng.uniform(-1.2, 1.2))
    if split == "train" and rng.random() < 0.25:
        h = mains(rng, L)
        n += h / np.sqrt(np.mean(h ** 2)) * np.exp(rng.uniform(-2.0, 0.5))
    return n / (np.sqrt(np.mean(n ** 2)) + 1e-12)


def mix(clean, noise, snr_db):
    """clean + noise scaled so that 10*log10(P_clean / P_noise) = snr_db over the segment."""
    pc = np.mean(clean ** 2)
    return clean + noise * np.sqrt(pc / 10 ** (snr_db / 10)) / (np.sqrt(np.mean(noise ** 2)) + 1e-12)


def make_batch(rng, src, B, L):
    keys = [k for k in src if k.startswith("train_")]
    X = np.empty((B, L), np.float32)
    Y = np.empty((B, L), np.float32)
    for b in range(B):
        y = crop(rng, src[keys[rng.integers(len(keys))]], L)
        y *= np.exp(rng.uniform(np.log(0.5), np.log(2.0))) * rng.choice([-1.0, 1.0], p=[0.2, 0.8])
        snr = rng.uniform(-8, 18) if rng.random() < 0.85 else rng.uniform(18, 40)
        x = mix(y, make_noise(rng, src, "train", L), snr) + rng.uniform(-0.5, 0.5)
        X[b], Y[b] = x, y
    return X, Y


if __name__ == "__main__":
    if "--pack" in sys.argv:
        pack()
    else:
        prepare()
