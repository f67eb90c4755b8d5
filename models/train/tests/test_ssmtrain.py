"""pytest models/train/tests -q   (from the repo root; reference tests need third_party/s4 or $S4_REPO)."""

import json
import os
import struct
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ssmtrain import reference  # noqa: E402
from ssmtrain.export import build_from_native, export_native, load_native  # noqa: E402
from ssmtrain.import_s4d import main as import_main  # noqa: E402
from ssmtrain.layers import S4D, S4DModel  # noqa: E402


def perturb(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("log_dt"):
                continue  # keep dt in its [0.001, 0.1] init range
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))


@pytest.mark.parametrize("disc", ["zoh", "bilinear"])
@pytest.mark.parametrize("output", ["glu", "linear", "none"])
def test_recurrent_equals_fft(disc, output):
    torch.manual_seed(1)
    layer = S4D(6, d_state=8, disc=disc, output=output, activation="gelu", use_B=(disc == "bilinear")).eval()
    perturb(layer)
    u = torch.randn(2, 6, 150, dtype=torch.float64)
    y_fft = layer.double()(u)
    y_rec = layer.forward_recurrent(u)
    assert y_fft.shape == y_rec.shape
    assert (y_fft - y_rec).abs().max().item() < 1e-10


@pytest.mark.parametrize("prenorm", [False, True])
def test_model_recurrent_equals_fft(prenorm):
    torch.manual_seed(2)
    m = S4DModel(2, 3, d_model=8, n_layers=2, d_state=8, prenorm=prenorm).eval()
    perturb(m)
    x = torch.randn(1, 120, 2)
    y = m(x)
    assert y.shape == (1, 120, 3)
    assert (y.double() - m.forward_recurrent(x)).abs().max().item() < 1e-5


def test_causal():
    torch.manual_seed(3)
    m = S4DModel(1, 1, d_model=8, n_layers=2, d_state=8).eval()
    x = torch.randn(1, 64, 1)
    x2 = x.clone()
    x2[:, 40:] += 1.0
    with torch.no_grad():
        assert torch.equal(m(x)[:, :40], m(x2)[:, :40]) or (m(x)[:, :40] - m(x2)[:, :40]).abs().max() < 1e-6


@pytest.mark.parametrize("prenorm", [False, True])
def test_export_roundtrip(tmp_path, prenorm):
    torch.manual_seed(4)
    m = S4DModel(2, 3, d_model=8, n_layers=3, d_state=16, prenorm=prenorm).eval()
    perturb(m)
    path = tmp_path / "m.safetensors"
    cfg = export_native(m, path, sample_rate=360, name="t", description="d")
    # the header: one __metadata__ key, JSON config as a string
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    assert list(header["__metadata__"]) == ["ssmstream"]
    assert json.loads(header["__metadata__"]["ssmstream"]) == cfg
    cfg2, arrays = load_native(path)
    assert cfg2 == cfg
    assert [l["type"] for l in cfg["layers"]] == ["linear", "residual", "residual", "residual", "linear"]
    assert cfg["layers"][1]["norm"]["name"] == "norms.0" and cfg["layers"][1]["body"][0]["name"] == "s4_layers.0"
    sd = m.state_dict()
    assert set(arrays) == set(sd)
    assert arrays["s4_layers.0.kernel.C"].shape == (8, 8, 2)
    for k, v in sd.items():
        assert arrays[k].dtype == np.float32
        np.testing.assert_array_equal(arrays[k], v.numpy())
    m2 = build_from_native(path)
    x = torch.randn(1, 50, 2)
    assert torch.equal(m(x), m2(x))


def test_export_layer_roundtrip(tmp_path):
    torch.manual_seed(5)
    layer = S4D(4, d_state=8, disc="bilinear", use_B=True).eval()
    perturb(layer)
    path = tmp_path / "l.safetensors"
    cfg = export_native(layer, path, sample_rate=0, name="l")
    assert cfg["layers"] == [{"type": "s4d", "name": "s4d", "d_model": 4, "d_state": 8, "disc": "bilinear",
                              "activation": "gelu", "output": "glu"}]
    _, arrays = load_native(path)
    assert arrays["s4d.kernel.B"].shape == (4, 4, 2)
    l2 = build_from_native(path)
    u = torch.randn(1, 4, 30)
    assert torch.equal(layer(u), l2(u))


REPO = reference.default_repo()
needs_ref = pytest.mark.skipif(
    not reference.repo_ok(REPO),
    reason=f"state-spaces/s4 checkout not found at {REPO} (git clone https://github.com/state-spaces/s4 "
           "third_party/s4, or set S4_REPO)")


@needs_ref
@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
@pytest.mark.parametrize("prenorm", [False, True])
def test_import_reference_state_dict(tmp_path, prenorm, fmt):
    S4Model = reference.s4model_class(REPO)
    torch.manual_seed(6)
    ref = S4Model(d_input=2, d_output=3, d_model=16, n_layers=2, dropout=0.0, prenorm=prenorm).eval()
    perturb(ref)
    sd_path = tmp_path / f"sd.{fmt}"
    if fmt == "pt":
        torch.save(ref.state_dict(), sd_path)
    else:
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(sd_path))
    out = tmp_path / "m.safetensors"
    args = [str(sd_path), str(out), "--prenorm" if prenorm else "--no-prenorm", "--disc", "zoh",
            "--sample-rate", "100", "--name", "imp"]
    assert import_main(args) == 0
    cfg, arrays = load_native(out)
    assert cfg["sample_rate"] == 100 and cfg["name"] == "imp"
    s4 = cfg["layers"][1]["body"][0]
    assert (s4["d_model"], s4["d_state"], len(cfg["layers"])) == (16, 64, 4)
    m = build_from_native(out)
    x = torch.randn(1, 200, 2)
    with torch.no_grad():
        y_ref = ref(x)  # their forward, minus the mean pooling
        assert (m(x) - y_ref).abs().max().item() < 1e-5
        assert (m.forward_recurrent(x) - y_ref.double()).abs().max().item() < 1e-4
