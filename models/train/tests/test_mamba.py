"""ssmtrain.mamba: export/import round trip, causality, SSD chunking == step-by-step recurrence, and training."""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from ssmtrain.mamba import MambaSignalModel, build_mamba_from_native, export_mamba_native, ssd_chunked  # noqa: E402


def test_round_trip(tmp_path):
    torch.manual_seed(0)
    for family, kw in (("mamba", {}), ("mamba", {"bcdt_rms_eps": 1e-6}),
                       ("mamba2", {"d_state": 8, "head_dim": 8, "n_groups": 2, "chunk_size": 8, "dt_limit": (0.001, 1.0)})):
        m = MambaSignalModel(2, 3, d_model=16, n_layers=2, family=family, **kw).eval()
        x = torch.randn(2, 40, 2)
        p = tmp_path / f"{family}.safetensors"
        export_mamba_native(m, p, sample_rate=16000, name="t")
        m2 = build_mamba_from_native(p)
        assert torch.equal(m(x), m2(x))


def test_causal():
    torch.manual_seed(1)
    for family in ("mamba", "mamba2"):
        m = MambaSignalModel(1, 1, d_model=16, n_layers=2, family=family, **({"head_dim": 8, "chunk_size": 8} if family == "mamba2" else {})).eval()
        x = torch.randn(1, 30, 1)
        y = m(x)
        x2 = x.clone()
        x2[:, 20:] += 1.0
        assert torch.allclose(m(x2)[:, :20], y[:, :20], atol=1e-6)


def test_ssd_chunks_equal_the_recurrence():
    torch.manual_seed(2)
    b, L, h, p, n = 2, 37, 3, 4, 5
    x, B, C = torch.randn(b, L, h, p, dtype=torch.float64), torch.randn(b, L, h, n, dtype=torch.float64), torch.randn(b, L, h, n, dtype=torch.float64)
    a = -torch.rand(b, L, h, dtype=torch.float64)
    s = torch.zeros(b, h, p, n, dtype=torch.float64)
    ys = []
    for t in range(L):
        s = torch.exp(a[:, t])[..., None, None] * s + x[:, t, :, :, None] * B[:, t, :, None, :]
        ys.append((s * C[:, t, :, None, :]).sum(-1))
    ref = torch.stack(ys, 1)
    for q in (1, 4, 8, 64):
        assert torch.allclose(ssd_chunked(x, a, B, C, q), ref, atol=1e-10)


def test_trains():
    torch.manual_seed(3)
    for family in ("mamba", "mamba2"):
        m = MambaSignalModel(1, 1, d_model=16, n_layers=1, family=family,
                             **({"d_state": 8, "head_dim": 8, "chunk_size": 16} if family == "mamba2" else {"d_state": 8}))
        opt = torch.optim.Adam(m.parameters(), lr=1e-2)
        x = torch.randn(4, 64, 1)
        target = torch.cumsum(x, 1) * 0.1  # a leaky integrator is a state-space task
        losses = []
        for _ in range(40):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(m(x), target)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert math.isfinite(losses[-1]) and losses[-1] < 0.5 * losses[0], (family, losses[0], losses[-1])
