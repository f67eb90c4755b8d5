#!/usr/bin/env python3
"""Peer for bench_lti_a: the reference code itself on this CPU (run from third_party/, see
tests/golden/make_{lru,s5,dss,ema}_golden.py for the checkouts), H=64, N=64 (S5: P=64 with conj_sym; EMA: ndim 64).
LRU and S5 are JAX (jit), DSS and MEGA's MultiHeadEMA are PyTorch (eval, no_grad, torch's default threads).

    python bench/lti_a_peer.py --json OUT.json [--lru-repo third_party/minimal-LRU] [--s5-repo third_party/S5]

Rows per family:
- batch: the reference module's `apply` (its parallel associative scan), jit-compiled, over 2^17 frames: ns/frame
  (XLA's CPU thread pool: all cores);
- stream: the references have no recurrent step API; `step` is a jitted JAX function x = Λ̄x + B̄u, y = Re(C̃x)(×2) + Du
  built from the reference module's own discretised parameters, called once per frame from Python (block 1) and a
  jitted lax.scan over blocks of 64 frames: ns/frame.
- DSS: batch = DSS(64, d_state=64).forward over 4096 frames (its kernel tensor is H·N·L complex: longer does not fit
  comfortably); no step API in the reference (its `step` is commented out).
- EMA: batch = MultiHeadEMA(64, ndim=64).forward over 2^15 frames; stream = its incremental path (`incremental_state`,
  `one_step` for one frame, `step` for a block of 64).
"""
import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
H, N, L = 64, 64, 1 << 17


def best_of(fn, reps=5):
    fn()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def stream_rows(lam, B, C, D, scale):
    lam, B, C, D = (jnp.asarray(a) for a in (lam, B, C, D))

    @jax.jit
    def step(x, u):
        x = lam * x + B @ u
        return x, scale * (C @ x).real + D * u

    @jax.jit
    def block(x, us):
        return jax.lax.scan(step, x, us)

    x0 = jnp.zeros(lam.shape, lam.dtype)
    u1 = jnp.ones((H,), jnp.float32)
    frames = 2000

    def run1():
        x = x0
        for _ in range(frames):
            x, y = step(x, u1)
        y.block_until_ready()

    us = jnp.ones((64, H), jnp.float32)

    def run64():
        x = x0
        for _ in range(frames // 64):
            x, y = block(x, us)
        y.block_until_ready()

    return {"stream_block1_ns_per_frame": best_of(run1, 3) / frames * 1e9,
            "stream_block64_ns_per_frame": best_of(run64, 3) / (frames // 64 * 64) * 1e9}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--lru-repo", default=os.path.join(ROOT, "third_party", "minimal-LRU"))
    ap.add_argument("--s5-repo", default=os.path.join(ROOT, "third_party", "S5"))
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
    from make_lru_golden import commit_of, load_reference
    rows = {"jax": jax.__version__, "devices": str(jax.devices())}
    x = jnp.asarray(np.random.default_rng(0).standard_normal((L, H)).astype(np.float32))

    lru_mod = load_reference(args.lru_repo)
    mod = lru_mod.LRU(d_hidden=N, d_model=H)
    params = mod.init(jax.random.PRNGKey(0), x[:16])
    f = jax.jit(mod.apply)
    t = best_of(lambda: f(params, x).block_until_ready())
    p = params["params"]
    lam = jnp.exp(-jnp.exp(p["nu_log"]) + 1j * jnp.exp(p["theta_log"]))
    B = (p["B_re"] + 1j * p["B_im"]) * jnp.exp(p["gamma_log"])[:, None]
    rows["lru"] = {"commit": commit_of(args.lru_repo), "batch_ns_per_frame": t / L * 1e9,
                   **stream_rows(lam, B, p["C_re"] + 1j * p["C_im"], p["D"], 1.0)}

    jnp.DeviceArray = jax.Array  # annotation-only alias for s5/ssm.py (removed from current jax)
    sys.path.insert(0, args.s5_repo)
    from s5 import ssm as ref_ssm, ssm_init as ref_init
    from jax.scipy.linalg import block_diag
    blocks, bs = 8, 2 * N // 8
    Lambda, _, _, V, _ = ref_init.make_DPLR_HiPPO(bs)
    Lambda, V = Lambda[: bs // 2], V[:, : bs // 2]
    Lambda = (Lambda * jnp.ones((blocks, bs // 2))).ravel()
    fn = ref_ssm.init_S5SSM(H=H, P=N, Lambda_re_init=Lambda.real, Lambda_im_init=Lambda.imag,
                            V=block_diag(*([V] * blocks)), Vinv=block_diag(*([V.conj().T] * blocks)),
                            C_init="trunc_standard_normal", discretization="zoh", dt_min=0.001, dt_max=0.1,
                            conj_sym=True, clip_eigs=False, bidirectional=False)
    mod = fn()
    params = mod.init(jax.random.PRNGKey(0), x[:16])
    f = jax.jit(mod.apply)
    t = best_of(lambda: f(params, x).block_until_ready())
    bound = mod.bind(params)
    rows["s5"] = {"commit": commit_of(args.s5_repo), "batch_ns_per_frame": t / L * 1e9,
                  **stream_rows(bound.Lambda_bar, bound.B_bar, bound.C_tilde, bound.D, 2.0)}
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tests", "golden"))
    import make_dss_golden
    import make_ema_golden
    dss_repo = os.path.join(ROOT, "third_party", "dss")
    ema_repo = os.path.join(ROOT, "third_party", "mega")
    with torch.no_grad():
        m = make_dss_golden.load_reference(dss_repo).DSS(H, d_state=N, transposed=False).eval()
        xd = torch.randn(1, 4096, H)
        t = best_of(lambda: m(xd))
        rows["dss"] = {"commit": commit_of(dss_repo), "batch_ns_per_frame": t / 4096 * 1e9, "torch": torch.__version__,
                       "threads": torch.get_num_threads()}
        m = make_ema_golden.load_reference(ema_repo).MultiHeadEMA(H, ndim=N).eval()
        Le = 1 << 15
        xe = torch.randn(Le, 1, H)
        t = best_of(lambda: m(xe))
        row = {"commit": commit_of(ema_repo), "batch_ns_per_frame": t / Le * 1e9}
        for block in (1, 64):
            frames = 2048 if block == 1 else 8192

            def run():
                st = {}
                for i in range(0, frames, block):
                    m(xe[i:i + block], incremental_state=st)
            row[f"stream_block{block}_ns_per_frame"] = best_of(run, 3) / frames * 1e9
        rows["ema"] = row
    with open(args.json, "w") as fh:
        json.dump(rows, fh, indent=1)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
