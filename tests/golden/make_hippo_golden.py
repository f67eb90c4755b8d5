#!/usr/bin/env python3
"""Golden files for the `hippo` layer and ssm::hippo (HiPPO operators) from the AUTHORS' code, state-spaces/s4.

    python tests/golden/make_hippo_golden.py --s4-repo third_party/s4 [--out-dir tests/golden/hippo]

Reference code, run as is from the checkout (nothing copied):
- `src/models/hippo/hippo.py` `transition(measure, N)`: the A, B of LegS, LegT, LagT, FouT (the issue's reference);
- `src/models/hippo/visualizations.py` `HiPPO` (the LTI HiPPO operator module: scipy `cont2discrete`, float32 buffers
  `dA`, `dB`, recurrent forward) and `basis` (the reconstruction basis). That file carries its own, differently
  normalised `transition`; its module-level name is re-bound to hippo.py's `transition` before `HiPPO` is built,
  so the operator is hippo.py's. It imports seaborn only for plot styling (a stub is registered when absent) and
  `src.models.functional.unroll` only for its fast path (stubbed; forward runs with fast=False, their loop).
  Its reconstruction basis is for its own normalisation; for hippo.py's LegT and FouT (A, B halved: a window of 2
  time units) the basis is evaluated at s/2, and for LagT `basis` lists times in reverse (its `reconstruct` flips).

Per case: <case>.model.safetensors (native: one `hippo` layer, tensors `hippo.dA` [N, N], `hippo.dB` [N] = the
module's buffers as saved, F32) and <case>.io.safetensors: `input` [T, C], `output_f64` [T, C*N] (their module after
.double(), forward fast=False; their float32 run is compared in the summary only, to keep the files small), `dA_f64`/`dB_f64` (their cont2discrete call in
float64, before the module's float32 cast), `recon_s` [S] and `basis` [S, N] (their basis at those past times).
Tolerance of the C++ test (tests/test_lti_b.cpp): coefficients max|ours - ref64| <= 1e-4 * max(1, RMS(ref64));
ssm::hippo::discretize vs dA_f64 <= 1e-9 relative; ssm::hippo::basis vs basis <= 1e-9 * max|basis|.
"""
import argparse
import copy
import json
import os
import sys
import types

import numpy as np
import torch
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
COMMIT = "e757cef57d89e448c413de7325ed5601aceaac13"


def load_reference(repo):
    repo = os.path.abspath(repo)
    if repo not in sys.path:
        sys.path.insert(0, repo)
    try:
        import seaborn  # noqa: F401
    except ImportError:
        sb = types.ModuleType("seaborn")
        sb.set = lambda *a, **k: None
        sb.set_style = lambda *a, **k: None
        sys.modules["seaborn"] = sb
    # visualizations.py imports `src.models.functional.unroll` for its fast=True path only ("Not necessary, can
    # comment out and set fast=False"), and unroll pulls in hydra through src.utils: a stub stands in; we run fast=False.
    import importlib
    functional = importlib.import_module("src.models.functional")
    stub = sys.modules.setdefault("src.models.functional.unroll", types.ModuleType("src.models.functional.unroll"))
    functional.unroll = stub
    hippo = importlib.import_module("src.models.hippo.hippo")
    vis = importlib.import_module("src.models.hippo.visualizations")
    vis.transition = hippo.transition  # their HiPPO module, with hippo.py's transition (see the docstring)
    return hippo, vis


def their_basis(vis, measure, N, s):
    name = {"fout": "fourier"}.get(measure, measure)
    if measure in ("legt", "fout"):
        return vis.basis(name, N, s / 2).numpy()
    if measure == "lagt":
        return vis.basis(name, N, s).numpy()[::-1].copy()
    return vis.basis(name, N, s).numpy()


def make_case(hippo, vis, g, measure, N, dt, T, C, disc):
    from scipy import signal
    torch.manual_seed(0)
    mod = vis.HiPPO(N, method={"fout": "fourier"}.get(measure, measure), dt=dt, T=1.0, discretization=disc)
    # A smooth signal with some noise: a sum of random sines (periods 0.5-5 time units) + 5% white noise.
    t = np.arange(T) * dt
    u = np.zeros((T, C))
    for c in range(C):
        for _ in range(4):
            f = g.uniform(0.2, 2.0)
            u[:, c] += g.normal() * np.sin(2 * np.pi * f * t + g.uniform(0, 6.3))
    u += 0.05 * g.standard_normal((T, C))
    inp = u.astype(np.float32)
    with torch.no_grad():
        y32 = mod(torch.from_numpy(inp), fast=False).numpy().reshape(T, C * N)
        m64 = copy.deepcopy(mod).double()
        y64 = m64(torch.from_numpy(inp).double(), fast=False).numpy().reshape(T, C * N)
    A, B = hippo.transition(measure, N)
    dA64, dB64, _, _, _ = signal.cont2discrete((A, B, np.ones((1, N)), np.zeros((1,))), dt=dt, method=disc)
    s = np.linspace(0.01, 1.99, 50) if measure in ("legt", "fout") else np.linspace(0.01, 6.0, 50)
    basis = their_basis(vis, measure, N, s)
    layer = {"type": "hippo", "name": "hippo", "channels": C, "order": N, "measure": measure, "dt": dt,
             "discretization": disc}
    config = {"format": "ssmstream", "version": 1, "name": f"hippo-{measure}-golden", "sample_rate": 0,
              "description": f"state-spaces/s4@{COMMIT[:7]} HiPPO({N}, method={measure!r}, dt={dt}) golden",
              "layers": [layer]}
    sd = mod.state_dict()
    assert set(sd) == {"dA", "dB"}, sd.keys()
    tensors = {"hippo.dA": np.ascontiguousarray(sd["dA"].numpy()), "hippo.dB": np.ascontiguousarray(sd["dB"].numpy())}
    io = {"input": inp, "output_f64": np.ascontiguousarray(y64),
          "dA_f64": np.ascontiguousarray(dA64), "dB_f64": np.ascontiguousarray(dB64[:, 0]),
          "recon_s": s.astype(np.float64), "basis": np.ascontiguousarray(basis, dtype=np.float64)}
    rms = float(np.sqrt(np.mean(y64 ** 2)))
    info = {"module": f"visualizations.py HiPPO({N}, method={measure!r}, dt={dt}, discretization={disc!r}) with "
                      "hippo.py transition", "T": T, "channels": C, "rms_ref": rms,
            "ref_f32_vs_f64": float(np.abs(y32 - y64).max() / max(1.0, rms))}
    return config, tensors, io, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--s4-repo", default=os.path.join(ROOT, "third_party", "s4"))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "hippo"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    hippo, vis = load_reference(a.s4_repo)
    os.makedirs(a.out_dir, exist_ok=True)
    g = np.random.default_rng(7)
    cases = {
        "hippo_legs": ("legs", 32, 0.01, 600, 1, "bilinear"),
        "hippo_legt": ("legt", 32, 0.005, 500, 2, "bilinear"),
        "hippo_lagt": ("lagt", 16, 0.01, 600, 1, "bilinear"),
        "hippo_fout": ("fout", 32, 0.005, 500, 1, "bilinear"),
        "hippo_legs_zoh": ("legs", 16, 0.01, 300, 3, "zoh"),
    }
    summary = {"reference": f"state-spaces/s4@{COMMIT}", "torch": torch.__version__, "cases": {}}
    for case, args in cases.items():
        config, tensors, io, info = make_case(hippo, vis, g, *args)
        save_file(tensors, os.path.join(a.out_dir, f"{case}.model.safetensors"), metadata={"ssmstream": json.dumps(config)})
        save_file(io, os.path.join(a.out_dir, f"{case}.io.safetensors"),
                  metadata={"golden": json.dumps({"reference": f"state-spaces/s4@{COMMIT}", **info})})
        summary["cases"][case] = info
        print(case, json.dumps(info))
    with open(os.path.join(a.out_dir, "hippo_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
