#!/usr/bin/env python3
"""Generate the golden files of tests/golden from the AUTHORS' code (state-spaces/s4), see README.md.

    python tests/golden/make_golden.py --s4-repo third_party/s4 [--s4-commit HASH] [--out-dir tests/golden]

For every case it writes <case>.model.safetensors (the native model file, docs/model-format.md, written with
models/train/ssmtrain from the reference module's weights) and <case>.io.safetensors (input [T, Cin] F32,
output [T, Cout] F32 = their code in float32, output_f64 [T, Cout] F64 = their code after .double()).
It then re-reads every model file and runs it through an independent float64 numpy recurrence of the file
contract (check_native below) and prints/records the errors against both references.
"""

import argparse
import copy
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file as np_save_file
from scipy.special import erf

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "models", "train"))

from ssmtrain import reference  # noqa: E402
from ssmtrain.export import build_from_native, export_native, load_native  # noqa: E402
from ssmtrain.import_s4d import model_from_state_dict  # noqa: E402
from ssmtrain.layers import S4D as OurS4D  # noqa: E402

LOG_DT_MIN, LOG_DT_MAX = math.log(0.001), math.log(0.1)


# ----------------------------------------------------------------------------------------------------------------
# Independent float64 numpy implementation of the native file contract (docs/model-format.md), per time step.

def _gelu(x, approximate="none"):
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    return 0.5 * x * (1 + erf(x / math.sqrt(2)))


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


class NpLayer:
    """Streaming layer: call(x [C]) -> y, keeping its own state."""

    def __init__(self, cfg, W):
        self.cfg, self.t = cfg, cfg["type"]
        name = cfg.get("name")
        g = (lambda k: np.asarray(W[f"{name}.{k}"], dtype=np.float64)) if name else None
        if self.t == "linear":
            self.w = g("weight").reshape(cfg["out"], cfg["in"])
            self.b = g("bias") if cfg.get("bias", True) else np.zeros(cfg["out"])
        elif self.t == "layernorm":
            self.w, self.b, self.eps = g("weight"), g("bias"), cfg.get("eps", 1e-5)
        elif self.t == "s4d":
            H, N2 = cfg["d_model"], cfg["d_state"] // 2
            dt = np.exp(g("kernel.log_dt"))[:, None]
            A = -np.exp(g("kernel.log_A_real")) + 1j * g("kernel.A_imag")
            Cr = g("kernel.C")
            self.C = Cr[..., 0] + 1j * Cr[..., 1]
            B = 1.0
            if f"{name}.kernel.B" in W:
                Br = g("kernel.B")
                B = Br[..., 0] + 1j * Br[..., 1]
            if cfg["disc"] == "zoh":
                self.dA = np.exp(dt * A)
                self.dB = (self.dA - 1) / A * B
            elif cfg["disc"] == "bilinear":
                self.dA = (1 + dt * A / 2) / (1 - dt * A / 2)
                self.dB = dt / (1 - dt * A / 2) * B
            else:
                raise ValueError(cfg["disc"])
            self.D = g("D")
            self.x = np.zeros((H, N2), dtype=np.complex128)
            self.out = cfg["output"]
            if self.out != "none":
                k = 2 * H if self.out == "glu" else H
                self.ow, self.ob = g("output_linear.0.weight").reshape(k, H), g("output_linear.0.bias")
            assert cfg["activation"] in ("gelu", "none")
        elif self.t == "residual":
            self.norm = NpLayer(cfg["norm"], W) if cfg.get("norm") else None
            self.body = [NpLayer(c, W) for c in cfg["body"]]

    def __call__(self, v):
        t = self.t
        if t == "linear":
            return self.w @ v + self.b
        if t == "layernorm":
            m = v.mean()
            var = ((v - m) ** 2).mean()
            return (v - m) / np.sqrt(var + self.eps) * self.w + self.b
        if t == "gelu":
            return _gelu(v, self.cfg.get("approximate", "none"))
        if t == "glu":
            h = v.size // 2
            return v[:h] * _sigmoid(v[h:])
        if t in ("silu", "tanh", "relu", "sigmoid"):
            return {"silu": lambda a: a * _sigmoid(a), "tanh": np.tanh, "relu": lambda a: np.maximum(a, 0),
                    "sigmoid": _sigmoid}[t](v)
        if t == "s4d":
            self.x = self.dA * self.x + self.dB * v[:, None]
            y = 2 * (self.C * self.x).sum(-1).real + self.D * v
            if self.cfg["activation"] == "gelu":
                y = _gelu(y)
            if self.out != "none":
                y = self.ow @ y + self.ob
                if self.out == "glu":
                    h = y.size // 2
                    y = y[:h] * _sigmoid(y[h:])
            return y
        if t == "residual":
            z = self.norm(v) if (self.cfg["prenorm"] and self.norm) else v
            for l in self.body:
                z = l(z)
            x = v + z
            return self.norm(x) if (not self.cfg["prenorm"] and self.norm) else x
        raise ValueError(f"layer type {t} not handled by the numpy check")


def check_native(model_path, inp):
    """Run the native file over inp [T, Cin] with the numpy float64 recurrence -> [T, Cout] float64."""
    cfg, W = load_native(model_path)
    layers = [NpLayer(c, W) for c in cfg["layers"]]
    out = []
    for v in np.asarray(inp, dtype=np.float64):
        for l in layers:
            v = l(v)
        out.append(v)
    return np.stack(out)


def rel_err(ours, ref):
    ref = np.asarray(ref, dtype=np.float64)
    return float(np.abs(np.asarray(ours, dtype=np.float64) - ref).max() / max(1.0, np.sqrt((ref ** 2).mean())))


# ----------------------------------------------------------------------------------------------------------------
# Parameter perturbation (so that nothing is trivially at the reference init)

def _noise(shape, g, scale):
    return scale * torch.randn(shape, generator=g)


@torch.no_grad()
def perturb_s4d_params(named, g):
    """named: dict of (our/s4d.py naming) suffix -> parameter. dt is redrawn uniformly in log space over
    [0.001, 0.1] (the reference init range)."""
    for k, p in named.items():
        if k.endswith("kernel.log_dt"):
            p.copy_(torch.rand(p.shape, generator=g) * (LOG_DT_MAX - LOG_DT_MIN) + LOG_DT_MIN)
        elif k.endswith("kernel.log_A_real"):
            p.add_(_noise(p.shape, g, 0.5))  # Re(A) = -0.5 * exp(noise)
        elif k.endswith("kernel.A_imag"):
            p.add_(_noise(p.shape, g, 1.0))
        elif k.endswith("kernel.C") or k.endswith("kernel.B"):
            p.add_(_noise(p.shape, g, 0.3))
        elif k.endswith("D"):
            p.add_(_noise(p.shape, g, 0.3))
        elif "output_linear" in k:
            p.add_(_noise(p.shape, g, 0.1))
        else:
            raise KeyError(k)


@torch.no_grad()
def perturb_model(model, g):
    for k, p in model.named_parameters():
        if k.startswith("s4_layers."):
            continue
        if k.startswith("norms.") and k.endswith("weight"):
            p.copy_(1.0 + _noise(p.shape, g, 0.3))
        elif k.startswith("norms."):
            p.copy_(_noise(p.shape, g, 0.2))
        else:  # encoder / decoder
            p.add_(_noise(p.shape, g, 0.2))
    for i, layer in enumerate(model.s4_layers):
        perturb_s4d_params(dict(layer.named_parameters()), g)


# ----------------------------------------------------------------------------------------------------------------

def run_pair(fn, module, inp):
    """fn(module, input tensor) in float32 and, on a deep copy, in float64 -> (out32, out64) numpy."""
    with torch.no_grad():
        y32 = fn(module, torch.from_numpy(inp)).numpy()
        m64 = copy.deepcopy(module).double()
        y64 = fn(m64, torch.from_numpy(inp).double()).numpy()
    assert y32.dtype == np.float32 and y64.dtype == np.float64
    return y32, y64


def case_s4d_layer_zoh(R, g):
    H, N, T = 8, 16, 300
    torch.manual_seed(101)
    ref = R["s4d"].S4D(H, d_state=N, dropout=0.0, transposed=True).eval()
    perturb_s4d_params(dict(ref.named_parameters()), g)
    ours = OurS4D(H, d_state=N, disc="zoh", activation="gelu", output="glu").eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    inp = torch.randn(T, H, generator=g).numpy()
    fn = lambda m, x: m(x.T[None])[0][0].T  # their S4D: (B, H, L) in, (y, None) out  # noqa: E731
    y32, y64 = run_pair(fn, ref, inp)
    info = {"reference": "models/s4/s4d.py S4D(d_model=8, d_state=16, transposed=True) (ZOH, GELU, Conv1d+GLU)",
            "mapping": "state_dict keys identical; tensors prefixed 's4d.'"}
    return ours, inp, y32, y64, info


def _case_model(R, g, seed, d_input, d_output, prenorm, T):
    S4Model = reference.s4model_class(R["repo"], S4D=R["s4d"].S4D, d_state=32)
    torch.manual_seed(seed)
    ref = S4Model(d_input=d_input, d_output=d_output, d_model=16, n_layers=2, dropout=0.0, prenorm=prenorm).eval()
    perturb_model(ref, g)
    ours = model_from_state_dict(ref.state_dict(), prenorm=prenorm, disc="zoh", activation="gelu")
    inp = torch.randn(T, d_input, generator=g).numpy()
    fn = lambda m, x: m(x[None])[0]  # noqa: E731
    y32, y64 = run_pair(fn, ref, inp)
    info = {"reference": f"example.py S4Model(d_input={d_input}, d_output={d_output}, d_model=16, n_layers=2, "
                         f"dropout=0, prenorm={prenorm}) with models/s4/s4d.py S4D(d_state=32); the statement "
                         "`x = x.mean(dim=1)` removed from forward (decoder per time step)",
            "mapping": "state_dict keys identical (encoder.*, s4_layers.{i}.*, norms.{i}.*, decoder.*)"}
    return ours, inp, y32, y64, info


def case_s4d_model_postnorm(R, g):
    return _case_model(R, g, 202, 1, 1, False, 1000)


def case_s4d_model_prenorm(R, g):
    return _case_model(R, g, 303, 2, 3, True, 1000)


BILINEAR_MAPPING = {
    "s4d.kernel.log_dt": "layer.kernel.inv_dt[:, 0]   (dt_transform='exp', dt_tie: shape [H, 1])",
    "s4d.kernel.log_A_real": "layer.kernel.A_real   (real_transform='exp': Re A = -exp(A_real))",
    "s4d.kernel.A_imag": "-layer.kernel.A_imag   (imag_transform='none': Im A = -A_imag)",
    "s4d.kernel.B": "layer.kernel.B[0]   ([1, H, N/2, 2] -> [H, N/2, 2])",
    "s4d.kernel.C": "layer.kernel.C[0]   ([channels=1, H, N/2, 2] -> [H, N/2, 2])",
    "s4d.D": "layer.D[0]   ([channels=1, H] -> [H])",
    "s4d.output_linear.0.weight": "output_linear.0.weight   (nn.Linear [2H, H], GLU over the last dim)",
    "s4d.output_linear.0.bias": "output_linear.0.bias",
}


def case_s4d_layer_bilinear(R, g):
    H, N, T = 8, 16, 300
    s4 = R["s4"]
    torch.manual_seed(404)
    ref = s4.S4Block(H, transposed=True, mode="diag", disc="bilinear", d_state=N, activation="gelu",
                     final_act="glu", dropout=0.0).eval()
    k = ref.layer.kernel
    assert (k.dt_transform, k.real_transform, k.imag_transform, k.channels, k.repeat, k.dt_fast) == \
        ("exp", "exp", "none", 1, 1, False), "unexpected SSMKernelDiag options"
    assert k.bandlimit is None and not k.is_real
    with torch.no_grad():  # same perturbation, applied in their parameterisation
        k.inv_dt.copy_(torch.rand(k.inv_dt.shape, generator=g) * (LOG_DT_MAX - LOG_DT_MIN) + LOG_DT_MIN)
        k.A_real.add_(_noise(k.A_real.shape, g, 0.5))
        k.A_imag.add_(_noise(k.A_imag.shape, g, 1.0))
        k.B.add_(_noise(k.B.shape, g, 0.3))
        k.C.add_(_noise(k.C.shape, g, 0.3))
        ref.layer.D.add_(_noise(ref.layer.D.shape, g, 0.3))
        for p in ref.output_linear.parameters():
            p.add_(_noise(p.shape, g, 0.1))
    sd = ref.state_dict()
    ours = OurS4D(H, d_state=N, disc="bilinear", activation="gelu", output="glu", use_B=True).eval()
    ours.load_state_dict({
        "kernel.log_dt": sd["layer.kernel.inv_dt"][:, 0],
        "kernel.log_A_real": sd["layer.kernel.A_real"],
        "kernel.A_imag": -sd["layer.kernel.A_imag"],
        "kernel.B": sd["layer.kernel.B"][0],
        "kernel.C": sd["layer.kernel.C"][0],
        "D": sd["layer.D"][0],
        "output_linear.0.weight": sd["output_linear.0.weight"][:, :, None],
        "output_linear.0.bias": sd["output_linear.0.bias"],
    }, strict=True)
    inp = torch.randn(T, H, generator=g).numpy()
    fn = lambda m, x: m(x.T[None])[0][0].T  # noqa: E731
    y32, y64 = run_pair(fn, ref, inp)

    def step_fn(m, x):  # their recurrent mode: setup_step() + step() per sample
        m.setup_step()
        state = m.default_state(1)
        ys = []
        for t in range(x.shape[0]):
            y, state = m.step(x[t][None], state)
            ys.append(y[0])
        return torch.stack(ys)
    s32, s64 = run_pair(step_fn, ref, inp)
    info = {"reference": "models/s4/s4.py S4Block(d_model=8, transposed=True, mode='diag', disc='bilinear', "
                         "d_state=16, activation='gelu', final_act='glu') (FFTConv + SSMKernelDiag, init 'legs')",
            "mapping": BILINEAR_MAPPING,
            "their_step_vs_conv_f32": rel_err(s32, y32), "their_step_vs_conv_f64": rel_err(s64, y64)}
    return ours, inp, y32, y64, info


CASES = [
    ("s4d_layer_zoh", case_s4d_layer_zoh),
    ("s4d_model_postnorm", case_s4d_model_postnorm),
    ("s4d_model_prenorm", case_s4d_model_prenorm),
    ("s4d_layer_bilinear", case_s4d_layer_bilinear),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--s4-repo", default=os.path.join(ROOT, "third_party", "s4"))
    ap.add_argument("--s4-commit", default=None, help="default: git rev-parse HEAD of --s4-repo")
    ap.add_argument("--out-dir", default=HERE)
    ap.add_argument("--cases", nargs="*", default=[c for c, _ in CASES])
    a = ap.parse_args()
    repo = os.path.abspath(a.s4_repo)
    if not reference.repo_ok(repo):
        sys.exit(f"{repo}: not a state-spaces/s4 checkout (need models/s4/s4d.py, models/s4/s4.py, example.py)")
    commit = a.s4_commit or reference.repo_commit(repo) or "unknown"
    torch.set_num_threads(1)
    R = {"repo": repo, "s4d": reference.s4d_module(repo), "s4": reference.s4_module(repo)}
    os.makedirs(a.out_dir, exist_ok=True)
    summary = {}
    for i, (case, fn) in enumerate(CASES):
        if case not in a.cases:
            continue
        g = torch.Generator().manual_seed(1000 + i)
        ours, inp, y32, y64, info = fn(R, g)
        mpath = os.path.join(a.out_dir, f"{case}.model.safetensors")
        iopath = os.path.join(a.out_dir, f"{case}.io.safetensors")
        desc = (f"golden case {case}: weights of the state-spaces/s4 reference (commit {commit}); "
                f"{info['reference']}")
        export_native(ours, mpath, sample_rate=0, name=case, description=desc, dtype=torch.float32)
        # one metadata key (safetensors writes a map's keys in arbitrary order: keep the file reproducible)
        meta = {"golden": json.dumps({"case": case, "s4_commit": commit, "reference": info["reference"],
                                      "mapping": info["mapping"]}, sort_keys=True)}
        np_save_file({"input": np.ascontiguousarray(inp, dtype=np.float32),
                      "output": np.ascontiguousarray(y32, dtype=np.float32),
                      "output_f64": np.ascontiguousarray(y64, dtype=np.float64)}, iopath, metadata=meta)
        # checks: independent numpy float64 recurrence of the file, and our torch module rebuilt from the file
        np64 = check_native(mpath, inp)
        with torch.no_grad():
            m = build_from_native(mpath)
            if isinstance(m, OurS4D):
                tfft = m(torch.from_numpy(inp).T[None])[0].T.numpy()
            else:
                tfft = m(torch.from_numpy(inp)[None])[0].numpy()
        res = {
            "T": int(inp.shape[0]), "Cin": int(inp.shape[1]), "Cout": int(y32.shape[1]),
            "rms_ref": float(np.sqrt((y64 ** 2).mean())),
            "ref_f32_vs_ref_f64": rel_err(y32, y64),
            "numpy_f64_recurrence_vs_ref_f32": rel_err(np64, y32),
            "numpy_f64_recurrence_vs_ref_f64": rel_err(np64, y64),
            "ssmtrain_fft_f32_vs_ref_f32": rel_err(tfft, y32),
            "model_bytes": os.path.getsize(mpath), "io_bytes": os.path.getsize(iopath),
        }
        res.update({k: v for k, v in info.items() if k.startswith("their_")})
        summary[case] = res
        print(case, json.dumps(res, indent=None))
        assert res["numpy_f64_recurrence_vs_ref_f32"] <= 1e-4, "numpy recurrence does not match the reference"
        assert res["model_bytes"] < 200_000 and res["io_bytes"] < 200_000
    with open(os.path.join(a.out_dir, "summary.json"), "w") as f:
        json.dump({"s4_commit": commit, "torch": torch.__version__, "cases": summary}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
