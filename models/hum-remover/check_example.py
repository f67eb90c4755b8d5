"""The example through the native engine: SNR against the clean speech and the attenuation at the hum's harmonics.

    build/apps/ssm/ssm run models/hum-remover/hum-remover.safetensors models/hum-remover/example_hum.wav out.wav
    python3 models/hum-remover/check_example.py out.wav
"""
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
FS, SKIP = 16000, 8000  # the first 0.5 s: the model starts from a zero state


def snr(clean, x):
    return 10 * np.log10(np.sum(clean[SKIP:] ** 2) / np.sum((x[SKIP:] - clean[SKIP:]) ** 2))


def hum_power(x, f0=50.0, harmonics=(1, 2, 3), bw=3.0):
    X = np.abs(np.fft.rfft(x[SKIP:] * np.hanning(len(x) - SKIP))) ** 2
    f = np.fft.rfftfreq(len(x) - SKIP, 1 / FS)
    return X[np.any([np.abs(f - k * f0) <= bw for k in harmonics], axis=0)].sum()


clean, _ = sf.read(HERE / "example_clean.wav")
noisy, _ = sf.read(HERE / "example_hum.wav")
out, fs = sf.read(sys.argv[1])
assert fs == FS and len(out) == len(clean)
print(f"SNR in {snr(clean, noisy):.1f} dB -> out {snr(clean, out):.1f} dB; "
      f"hum (50/100/150 Hz) attenuated by {10 * np.log10(hum_power(noisy) / hum_power(out)):.1f} dB")
