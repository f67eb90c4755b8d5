"""Make the bundled example and the PyTorch golden output the C++ test compares against.

    python3 models/speech-denoiser/make_example.py [--item 001]

example_noisy.wav: 5 s of held-out test item (Speech Commands test speakers, held-out noise
speechbrain_noise4, 0 dB SNR), 16-bit PCM. example_pytorch.f32: the PyTorch model's output on exactly
those samples (float32 little-endian, FFT-convolution forward in float32), written with the torch and
ssmtrain versions in example_pytorch.json. example_denoised.wav: the C++ engine's output (ssm run).
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from net import load  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--item", default="001")
    ap.add_argument("--test", default="/work/data/speech-denoiser/test")
    ap.add_argument("--ssm", default=str(HERE.parent.parent / "build/apps/ssm/ssm"))
    a = ap.parse_args()
    x = sf.read(Path(a.test) / f"{a.item}_noisy.wav", dtype="float32")[0][: 5 * 16000]
    x = x / np.abs(x).max() * 0.5  # -6 dBFS peak
    sf.write(HERE / "example_noisy.wav", x, 16000, subtype="PCM_16")
    x16 = sf.read(HERE / "example_noisy.wav", dtype="float32")[0]
    m = load(HERE / "speech-denoiser.safetensors")
    with torch.no_grad():
        y = m(torch.from_numpy(x16)[None])[0].numpy().astype("<f4")
    y.tofile(HERE / "example_pytorch.f32")
    (HERE / "example_pytorch.json").write_text(json.dumps({"torch": torch.__version__, "item": a.item,
                                                           "samples": len(y), "forward": "FFT convolution, float32"}))
    subprocess.run([a.ssm, "run", str(HERE / "speech-denoiser.safetensors"), str(HERE / "example_noisy.wav"),
                    "/tmp/example_denoised_f.wav", "--backend", "stream"], check=True)
    c = sf.read("/tmp/example_denoised_f.wav", dtype="float32")[0]
    print("C++ vs PyTorch: max abs diff", float(np.abs(c - y).max()), "rms", float(np.sqrt(np.mean(y ** 2))))
    sf.write(HERE / "example_denoised.wav", c, 16000, subtype="PCM_16")


if __name__ == "__main__":
    main()
