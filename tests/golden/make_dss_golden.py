#!/usr/bin/env python3
"""Golden files for the `dss` layer from the DSS authors' code itself (ag1988/dss, PyTorch), see docs/families-a.md.

    git clone https://github.com/ag1988/dss third_party/dss        # the .pt under misc/ is not needed
    git -C third_party/dss checkout 777084e777c27caba2e87eceecb3f49d1b761cd8
    pip install torch numpy safetensors einops opt_einsum omegaconf
    python tests/golden/make_dss_golden.py [--repo third_party/dss] [--out-dir tests/golden/lti_a]

Only `src/models/sequence/ss/standalone/dss.py` is imported (`DSS`, `DSSKernel`); it imports
`pytorch_lightning.utilities.rank_zero_only` for its logger only, so an identity stub is registered when
pytorch_lightning is absent. Run on CPU, one thread, float32 (and the same module after .double() for output_f64).
Its state_dict is written under the layer's name unchanged (`dss.kernel.Lambda`, `dss.kernel.log_dt`, `dss.kernel.W`,
`dss.D`, `dss.output_linear.weight`, ...).
Cases (defaults of configs/model/layer/dss.yaml: version softmax, hippo_skew_pos_imag, sep_dt_re_im, dt 0.001-0.1,
activation gelu; d_state 64 in the stack, 16 in the single layers):
- dss_layer_softmax: DSS(8, d_state=16), T=400 = the kernel length the reference normalises over (kernel_length 400);
- dss_layer_softmax_maxlen: max_kernel_length=100, T=400 (the L-tap FIR beyond the first 100 samples; kernel_length 100);
- dss_layer_exp: version='exp', postact='glu', T=400 (untruncated);
- dss_stack: Linear(1->128), 4 x [x + DSS(LayerNorm(x))] with DSS(128, d_state=64) the reference module, Linear(128->4),
  T=256 (kernel_length 256); the residual/norm/linear glue is torch's own nn modules.
All parameters are moved off their init with fixed seeds (Lambda += N(0, 0.1) real (kept < 0) and imaginary, W, D,
output_linear += N(0, 0.1)). Tolerance in the C++ test: max|ours - ref| <= 1e-4 * max(1, RMS(ref)).
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import types

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))


def load_reference(repo):
    try:
        import pytorch_lightning.utilities  # noqa: F401
    except ImportError:
        pl = types.ModuleType("pytorch_lightning")
        ut = types.ModuleType("pytorch_lightning.utilities")
        ut.rank_zero_only = lambda f: f
        pl.utilities = ut
        sys.modules["pytorch_lightning"], sys.modules["pytorch_lightning.utilities"] = pl, ut
    path = os.path.join(repo, "src", "models", "sequence", "ss", "standalone", "dss.py")
    spec = importlib.util.spec_from_file_location("dss_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def commit_of(repo):
    try:
        return subprocess.check_output(["git", "-C", repo, "rev-parse", "HEAD"], text=True).strip()
    except Exception:  # noqa: BLE001
        return "unknown"


def perturb(m, g):
    with torch.no_grad():
        for n, p in m.named_parameters():
            d = torch.randn(p.shape, generator=g) * 0.1
            if n.endswith("kernel.Lambda"):
                p[:, 1] += d[:, 1]
                p[:, 0] = -(p[:, 0].abs() * torch.exp(d[:, 0]))
            elif n.endswith("Lambda_log_neg_re") or n.endswith("Lambda_im"):
                p += d
            elif not n.endswith("log_dt"):
                p += d


class Stack(torch.nn.Module):
    def __init__(self, ref, H, N, L):
        super().__init__()
        self.encoder = torch.nn.Linear(1, H)
        self.norms = torch.nn.ModuleList([torch.nn.LayerNorm(H) for _ in range(L)])
        self.layers = torch.nn.ModuleList([ref.DSS(H, d_state=N, transposed=False) for _ in range(L)])
        self.decoder = torch.nn.Linear(H, 4)

    def forward(self, x):  # [B, T, 1]
        x = self.encoder(x)
        for n, l in zip(self.norms, self.layers):
            x = x + l(n(x))[0]
        return self.decoder(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", default=os.path.join(ROOT, "third_party", "dss"))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "lti_a"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    torch.set_num_threads(1)
    ref = load_reference(args.repo)
    commit = commit_of(args.repo)
    meta = {"reference": "ag1988/dss src/models/sequence/ss/standalone/dss.py", "commit": commit,
            "torch": torch.__version__, "tolerance": "max|ours-ref| <= 1e-4*max(1,RMS(ref))"}
    summary = {"meta": meta}
    g = torch.Generator().manual_seed(11)

    def save(case, model, prefix_of, config_layers, x, run):
        model.eval()
        with torch.no_grad():
            y32 = run(model, x).numpy()
            m64 = __import__("copy").deepcopy(model).double()
            y64 = run(m64, x.double()).numpy()
        sd = {}
        for k, v in model.state_dict().items():
            sd[prefix_of(k)] = v.detach().float().contiguous()
        cfg = {"format": "ssmstream", "version": 1, "name": case, "description": f"golden: ag1988/dss DSS @ {commit}",
               "sample_rate": 0, "layers": config_layers}
        save_file(sd, os.path.join(args.out_dir, case + ".model.safetensors"), metadata={"ssmstream": json.dumps(cfg)})
        c = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        save_file({"input": c(x[0].numpy()), "output": c(y32[0]), "output_f64": c(y64[0])},
                  os.path.join(args.out_dir, case + ".io.safetensors"), metadata={"golden": json.dumps(meta)})
        summary[case] = {"rms": float(np.sqrt(np.mean(y64 ** 2))), "f32_vs_f64": float(np.max(np.abs(y32 - y64)))}

    # single layers: input [1, T, H] with transposed=False (same state_dict as the default transposed=True except
    # output_linear: nn.Linear instead of TransposedLinear; both are accepted)
    for case, kw, T, L in [("dss_layer_softmax", {}, 400, 400),
                           ("dss_layer_softmax_maxlen", {"max_kernel_length": 100}, 400, 100),
                           ("dss_layer_exp", {"version": "exp", "postact": "glu"}, 400, None)]:
        H, N = 8, 16
        torch.manual_seed(3)
        m = ref.DSS(H, d_state=N, transposed=True, **kw)
        perturb(m, g)
        x = torch.randn(1, T, H, generator=g)
        run = lambda mod, inp: mod(inp.transpose(-1, -2))[0].transpose(-1, -2)  # noqa: E731
        layer = {"type": "dss", "name": "dss", "d_model": H, "d_state": N, "version": kw.get("version", "softmax"),
                 "activation": "gelu", "postact": kw.get("postact", "none")}
        if L:
            layer["kernel_length"] = L
        save(case, m, lambda k: "dss." + k, [layer], x, run)

    # a 4-layer H=128 stack with the reference's default d_state
    H, N, T, NL = 128, 64, 256, 4
    torch.manual_seed(4)
    m = Stack(ref, H, N, NL)
    perturb(m, g)
    x = torch.randn(1, T, 1, generator=g)
    layers = [{"type": "linear", "name": "encoder", "in": 1, "out": H}]
    for i in range(NL):
        layers.append({"type": "residual", "prenorm": True,
                       "norm": {"type": "layernorm", "name": f"norms.{i}", "dim": H},
                       "body": [{"type": "dss", "name": f"layers.{i}", "d_model": H, "d_state": N, "version": "softmax",
                                 "kernel_length": T}]})
    layers.append({"type": "linear", "name": "decoder", "in": H, "out": 4})
    save("dss_stack", m, lambda k: k, layers, x, lambda mod, inp: mod(inp))
    with open(os.path.join(args.out_dir, "dss_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    sys.exit(main())
