"""The speech denoiser's PyTorch module and its export to the native file.

    y = x + decoder(blocks(encoder(x)))        blocks: n_layers x [h = h + S4D(h)]   (no norms)

A global skip (the network learns the correction to the noisy input, and starts as the identity:
the decoder is zero-initialised) around a linear 1->H encoder, residual S4D blocks (GELU, 1x1 + GLU
output) without normalisation (a per-sample LayerNorm over channels would remove the signal's level,
which the correction must follow), and a linear H->1 decoder. Every layer is causal and runs sample by
sample, so the algorithmic latency is zero. Exported with the existing layer families only:
residual(body=[linear, residual(s4d) x n, linear]).
"""
import sys
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "train"))
from ssmtrain.layers import S4D  # noqa: E402
from ssmtrain.export import s4d_config, write_native, load_native  # noqa: E402


class SpeechDenoiser(nn.Module):
    def __init__(self, d_model=64, n_layers=4, d_state=64, dt_min=0.001, dt_max=0.1, in_gain=1.0):
        super().__init__()
        self.cfg = dict(d_model=d_model, n_layers=n_layers, d_state=d_state, dt_min=dt_min, dt_max=dt_max)
        self.encoder = nn.Linear(1, d_model)
        with torch.no_grad():  # speech at -30..-6 dBFS: scale the encoder so the GELUs see O(1) values
            self.encoder.weight.mul_(in_gain)
        self.s4_layers = nn.ModuleList([S4D(d_model, d_state=d_state, disc="zoh", activation="gelu", output="glu",
                                            dt_min=dt_min, dt_max=dt_max) for _ in range(n_layers)])
        self.decoder = nn.Linear(d_model, 1)
        nn.init.zeros_(self.decoder.weight)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x):
        """x: (B, L) waveform -> (B, L)."""
        h = self.encoder(x[:, :, None]).transpose(1, 2)  # (B, H, L)
        for layer in self.s4_layers:
            h = h + layer(h)
        return x + self.decoder(h.transpose(1, 2))[:, :, 0]


def layers_config(m):
    body = [{"type": "linear", "name": "encoder", "in": 1, "out": m.encoder.out_features, "bias": True}]
    for i, s4 in enumerate(m.s4_layers):
        body.append({"type": "residual", "prenorm": False, "body": [s4d_config(s4, f"s4_layers.{i}")]})
    body.append({"type": "linear", "name": "decoder", "in": m.decoder.in_features, "out": 1, "bias": True})
    return [{"type": "residual", "prenorm": False, "body": body}]


def export(m, path, description, latency_samples=0):
    return write_native(str(path), layers_config(m), m.state_dict(), 16000, "speech-denoiser", description,
                        latency_samples=latency_samples)


def load(path):
    """Rebuild the PyTorch module from a native file written by export()."""
    config, arrays = load_native(path)
    body = config["layers"][0]["body"]
    s4 = [b["body"][0] for b in body if b["type"] == "residual"]
    m = SpeechDenoiser(d_model=body[0]["out"], n_layers=len(s4), d_state=s4[0]["d_state"])
    sd = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    m.load_state_dict(sd)
    return m.eval()
