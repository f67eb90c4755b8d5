"""Golden files for the shipped biosignal models: the PyTorch output on each model's bundled example.

    python3 tests/golden/make_biomodels_golden.py

For each shipped model (models/ecg-denoiser, models/eeg-artifact) the native file is rebuilt as a PyTorch module
with ssmtrain.export.build_from_native (our training package, the code the model was trained with), run in
float64 over the model's example_noisy.csv with the FFT (convolution) view, and written to
tests/golden/biomodels/<model>.io.safetensors: tensors `input` and `output` (frames x 1, float32) and metadata
(torch version, tolerance). tests/test_biomodels.cpp checks the C++ engine against it: max |C++ - torch| <=
TOL x RMS(torch output) with TOL = 1e-4.
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "models" / "train"))
from ssmtrain.export import build_from_native  # noqa: E402

TOL = 1e-4
MODELS = ["ecg-denoiser", "eeg-artifact"]


def main():
    torch.set_num_threads(1)
    out_dir = REPO / "tests" / "golden" / "biomodels"
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in MODELS:
        d = REPO / "models" / name
        x = np.loadtxt(d / "example_noisy.csv", skiprows=1, dtype=np.float64)
        model = build_from_native(str(d / f"{name}.safetensors")).double().eval()
        with torch.no_grad():
            y = model(torch.from_numpy(x).view(1, -1, 1)).view(-1).numpy()
        meta = {"generator": "tests/golden/make_biomodels_golden.py", "torch": torch.__version__,
                "model": f"models/{name}/{name}.safetensors", "input": f"models/{name}/example_noisy.csv",
                "precision": "float64 FFT view", "tolerance": json.dumps({"max_abs_over_rms": TOL})}
        save_file({"input": x.astype(np.float32).reshape(-1, 1), "output": y.astype(np.float32).reshape(-1, 1)},
                  str(out_dir / f"{name}.io.safetensors"), metadata=meta)
        print(f"{name}: {len(x)} frames, output RMS {np.sqrt(np.mean(y ** 2)):.4g}")


if __name__ == "__main__":
    main()
