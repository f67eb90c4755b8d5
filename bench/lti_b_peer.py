#!/usr/bin/env python3
"""The reference side of bench/run_lti_b.sh: the authors' S4 (state-spaces/s4 `models/s4/s4.py`, S4Block with
mode='dplr', d_state=64, H=64, its defaults otherwise) on this CPU, float32, 1 thread unless --threads.

  step:  setup_step(mode) then step() per sample at batch 1 (their recurrent view; 'dense' is the default mode,
         'linear' the O(N) DPLR step): ns per sample (one frame of H channels) for the whole S4Block.
  conv:  forward() on (1, H, L) (their convolution view: Cauchy kernel + Woodbury via the pure-torch fallback, then
         FFT convolution), L = 2^12 and 2^13 (the naive Cauchy materialises (2, 2, H, N/2, L/2) complex entries): Msamples/s = L·H per second, kernel generation included (as in their
         forward).

  hippo: their LTI HiPPO module (LegS, N=64, 64 channels), forward(fast=False) per frame.
  h3:   HazyResearch/H3 H3(64, d_state=64): forward (L = 2^12, 2^14) and step() per sample.
  gss:  gated-state-spaces-pytorch GSS(dim=64, dss_kernel_H=64, dss_kernel_N=64): forward only (no step there).

Times are process CPU time (time.process_time, 1 torch thread): on a loaded shared machine wall time would mostly
measure the other jobs; ours (bench_lti_b) counts CPU time the same way for streaming.

Prints one JSON object. Usage: python bench/lti_b_peer.py --s4-repo third_party/s4 [--steps 2000]
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "models", "train"))
from ssmtrain import reference  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--s4-repo", default=reference.default_repo())
    ap.add_argument("--h3-repo", default=os.path.join(ROOT, "third_party", "H3"))
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    s4 = reference.s4_module(a.s4_repo)
    H, N = 64, 64
    torch.manual_seed(0)
    block = s4.S4Block(H, mode="dplr", d_state=N, transposed=True, dropout=0.0).eval()
    res = {"reference": "state-spaces/s4 S4Block(64, mode='dplr', d_state=64)", "torch": torch.__version__,
           "threads": a.threads}
    with torch.no_grad():
        for L in (1 << 12, 1 << 13):
            x = torch.randn(1, H, L)
            block(x)  # warm-up (also sets l_kernel)
            times = []
            for _ in range(a.reps):
                t0 = time.process_time()
                block(x)
                times.append(time.process_time() - t0)
            res[f"conv_L{L}_Msamples_per_s"] = L * H / statistics.median(times) / 1e6
        for mode in ("dense", "linear"):
            b = block
            b.setup_step(mode=mode)
            state = b.default_state(1)
            u = torch.randn(a.steps, 1, H)
            for t in range(100):
                _, state = b.step(u[t], state)
            times = []
            for _ in range(a.reps):
                t0 = time.process_time()
                for t in range(a.steps):
                    _, state = b.step(u[t], state)
                times.append((time.process_time() - t0) / a.steps * 1e9)
            res[f"step_{mode}_ns_per_sample"] = statistics.median(times)
    # HiPPO: their LTI operator module (visualizations.py HiPPO, hippo.py's transition), LegS N=64, dt=1e-3, on
    # (L, H=64) inputs: its recurrent forward (fast=False), ns per frame of 64 channels.
    sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
    from make_hippo_golden import load_reference  # noqa: E402
    _, vis = load_reference(a.s4_repo)
    hp = vis.HiPPO(64, method="legs", dt=1e-3)
    x = torch.randn(2000, H)
    with torch.no_grad():
        hp(x[:100], fast=False)
        times = []
        for _ in range(a.reps):
            t0 = time.process_time()
            hp(x, fast=False)
            times.append((time.process_time() - t0) / x.shape[0] * 1e9)
    res["hippo_legs_N64_H64_forward_ns_per_sample"] = statistics.median(times)

    # H3: HazyResearch/H3 H3(64, d_state=64) (third_party/H3): forward on (1, L, 64) and step() per sample.
    # Both checkouts have a top-level `src` package: forget state-spaces/s4's before importing H3's.
    for k in [k for k in sys.modules if k == "src" or k.startswith("src.")]:
        del sys.modules[k]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p) != os.path.abspath(a.s4_repo)]
    from make_h3_golden import load_h3  # noqa: E402
    h3 = load_h3(a.h3_repo)
    torch.manual_seed(0)
    m = h3.H3(64, d_state=64).eval()
    with torch.no_grad():
        for L in (1 << 12, 1 << 14):
            x = torch.randn(1, L, 64)
            m(x)
            times = []
            for _ in range(a.reps):
                t0 = time.process_time()
                m(x)
                times.append(time.process_time() - t0)
            res[f"h3_conv_L{L}_Msamples_per_s"] = L * 64 / statistics.median(times) / 1e6
        m.ssm_k_kernel._setup_step()
        m.kernel._setup_step()
        sk, sd = m.ssm_k_kernel.default_state(1), m.kernel.default_state(1)
        u = torch.randn(a.steps, 1, 1, 64)
        times = []
        for _ in range(a.reps):
            t0 = time.process_time()
            for t in range(a.steps):
                _, sk, sd = m.step(u[t], sk, sd)
            times.append((time.process_time() - t0) / a.steps * 1e9)
        res["h3_step_ns_per_sample"] = statistics.median(times)

    # GSS: gated-state-spaces-pytorch 0.1.0 GSS(dim=64, dss_kernel_H=64, dss_kernel_N=64): forward only (the package
    # has no recurrent step; its forward materialises the kernel and convolves by FFT).
    try:
        from gated_state_spaces_pytorch import GSS
        g = GSS(dim=64, dss_kernel_H=64, dss_kernel_N=64).eval()
        with torch.no_grad():
            for L in (1 << 12, 1 << 14):
                x = torch.randn(1, L, 64)
                g(x)
                times = []
                for _ in range(a.reps):
                    t0 = time.process_time()
                    g(x)
                    times.append(time.process_time() - t0)
                res[f"gss_conv_L{L}_Msamples_per_s"] = L * 64 / statistics.median(times) / 1e6
    except ImportError:
        res["gss"] = "gated-state-spaces-pytorch not installed (pip install gated-state-spaces-pytorch==0.1.0)"
    print(json.dumps(res))


if __name__ == "__main__":
    main()
