"""Random-weight Mamba and Mamba-2 signal models for the GPU hour run (bench/cuda/hour_run.sh with MODELS=...):
Linear 1 -> 64, 4 pre-norm RMSNorm residual blocks (Mamba: d_state 16; Mamba-2: head_dim 64, d_state 64, one group,
the SSD kernel's tensor-core shape), RMSNorm, Linear 64 -> 1, 16 kHz. Written with models/train's exporter.
usage: python3 bench/cuda/make_mamba_models.py OUT_DIR"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models", "train"))
from ssmtrain.mamba import MambaSignalModel, export_mamba_native  # noqa: E402

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for fam, kw in [("mamba2", dict(d_state=64, head_dim=64)), ("mamba", dict(d_state=16))]:
    torch.manual_seed(1)
    m = MambaSignalModel(1, 1, d_model=64, n_layers=4, family=fam, **kw).eval()
    export_mamba_native(m, os.path.join(out, f"signal-{fam}.safetensors"), sample_rate=16000, name=f"signal-{fam}",
                        description="random weights (benchmark)")
    print("wrote", os.path.join(out, f"signal-{fam}.safetensors"))
