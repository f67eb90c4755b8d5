"""Write the bundled example inputs of the shipped biosignal models (deterministic; held-out data only).

    python3 models/train/biosig/make_examples.py

models/ecg-denoiser/example_noisy.csv, example_clean.csv: 15 s (5,400 samples, column `ecg`, mV) of held-out
    MIT-BIH record 103 (lead MLII, from minute 2), with held-out NSTDB noise (bw + em + ma at equal power) at 0 dB.
models/eeg-artifact/example_noisy.csv, example_clean.csv: 30 s (3,750 samples, column `eeg`, nominal microvolts,
    125 Hz) of held-out eyes-closed EEG with held-out real EOG (first 15 s) and real EMG (last 15 s) at -3 dB each.
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent.parent
sys.path.insert(0, str(HERE))
import ecg_data  # noqa: E402
import eeg_data  # noqa: E402


def write_csv(path, name, v):
    with open(path, "w") as f:
        f.write(name + "\n")
        for s in v:
            f.write(f"{s:.6f}\n")


def ecg():
    fs = ecg_data.FS
    src = ecg_data.load()
    sig, names = ecg_data.read_record(103)
    c = names.index("MLII")
    s0, L = 120 * fs, 15 * fs
    ref = ecg_data.clean_reference(sig[:, c])[s0:s0 + L]
    raw = sig[s0:s0 + L, c]
    rng = np.random.default_rng(103)
    n = sum(ecg_data.make_noise(rng, src, "test", L, kinds=[k]) for k in ("bw", "em", "ma"))
    n /= np.sqrt(np.mean(n ** 2))
    x = raw + n * np.sqrt(np.mean(ref ** 2))
    out = REPO / "models" / "ecg-denoiser"
    write_csv(out / "example_noisy.csv", "ecg", x)
    write_csv(out / "example_clean.csv", "ecg", ref)


def eeg():
    fs = eeg_data.FS
    src = eeg_data.load()
    x = src["eeg_test_eeg_ec"][: 30 * fs].astype(np.float64)
    half = 15 * fs
    rng = np.random.default_rng(125)
    y = x.copy()
    for k, sl in (("eog", slice(0, half)), ("emg", slice(half, 2 * half))):
        a = eeg_data.artifact(rng, src, "test", k, half)
        y[sl] += eeg_data.lam(x[sl], a, -3.0) * a
    out = REPO / "models" / "eeg-artifact"
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "example_noisy.csv", "eeg", y)
    write_csv(out / "example_clean.csv", "eeg", x)


if __name__ == "__main__":
    ecg()
    eeg()
    print("examples written")
