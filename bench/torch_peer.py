#!/usr/bin/env python3
"""PyTorch peer for bench_s4d, on this CPU, in the same run (see README.md).

(a) step:  the reference S4D module stepped sample by sample, H=64 N=64, batch 1, complex64 state, written as
           state-spaces/s4 steps its diagonal kernel (SSMKernelDiag.step + FFTConv.step): x = dA·x + dB·u (einsum),
           y = 2·Re(C·x), + D·u, GELU, 1×1 conv H→2H, GLU. torch.set_num_threads(1). → ns per sample.
(b) fft:   the reference forward as s4d.py (S4DKernel + rfft/irfft convolution of length 2L, D skip, GELU,
           Conv1d(H, 2H, 1), GLU), inside the same realistic model as BM_S4DBatch (Linear 1→64, 4 pre-norm
           LayerNorm residual S4D blocks H=64 N=64, Linear 64→1):
             fft_1min        one forward over the whole minute (L = 960 000). Kernels computed once before timing,
                             2^16 taps (past ~36k taps they are below 1e-7 of ‖K‖₁ for these dt) zero-padded to L:
                             s4d.py would build the H×N/2×L Vandermonde every call, 15.7 GB at this L.
             fft_chunks      1-hour-equivalent: consecutive chunks of 32 768 frames, kernel of length 32 768 built
                             per call exactly as s4d.py; timed over a bounded number of chunks, in samples/s.
             fft_chunks_cached   the same with the chunk kernels cached (what an inference port would do).
           The chunked reference carries no state between chunks (its forward has none): throughput only.
All under torch.inference_mode(). Prints one JSON object.
"""
import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

RATE = 16000


class S4DRef:
    """Parameters and the two views of one S4D layer (S4D-Lin initialisation, ZOH, B = 1)."""

    def __init__(self, H, N, gen, dt_min=0.001, dt_max=0.1):
        self.H, self.N2 = H, N // 2
        self.log_dt = torch.rand(H, generator=gen) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.C = torch.randn(H, self.N2, dtype=torch.cfloat, generator=gen)
        self.log_A_real = torch.log(0.5 * torch.ones(H, self.N2))
        self.A_imag = math.pi * torch.arange(self.N2, dtype=torch.float32).repeat(H, 1)
        self.D = torch.randn(H, generator=gen)
        k = 1.0 / math.sqrt(H)
        self.W = (torch.rand(2 * H, H, 1, generator=gen) * 2 - 1) * k  # Conv1d(H, 2H, kernel_size=1)
        self.b = (torch.rand(2 * H, generator=gen) * 2 - 1) * k
        # discretisation for the recurrent step (ZOH)
        dt = torch.exp(self.log_dt)
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dtA = A * dt.unsqueeze(-1)
        self.dA = torch.exp(dtA)
        self.dB = (self.dA - 1.0) / A
        self.dC = self.C

    def kernel(self, L):
        """S4DKernel.forward of s4d.py: K (H, L)."""
        dt = torch.exp(self.log_dt)
        C = self.C
        A = -torch.exp(self.log_A_real) + 1j * self.A_imag
        dtA = A * dt.unsqueeze(-1)
        K = dtA.unsqueeze(-1) * torch.arange(L, device=A.device)
        C = C * (torch.exp(dtA) - 1.0) / A
        return 2 * torch.einsum("hn, hnl -> hl", C, torch.exp(K)).real

    def kernel_padded(self, L, taps=1 << 16):
        """K for the first `taps` lags (the rest is below float tolerance for dt ≥ 0.001), zero-padded to L."""
        return F.pad(self.kernel(min(taps, L)), (0, max(0, L - taps)))

    def forward(self, u, k=None):
        """S4D.forward of s4d.py on u (B, H, L)."""
        L = u.size(-1)
        if k is None:
            k = self.kernel(L)
        k_f = torch.fft.rfft(k, n=2 * L)
        u_f = torch.fft.rfft(u, n=2 * L)
        y = torch.fft.irfft(u_f * k_f, n=2 * L)[..., :L]
        y = y + u * self.D.unsqueeze(-1)
        y = F.gelu(y)
        y = F.conv1d(y, self.W, self.b)
        return F.glu(y, dim=-2)

    def step(self, u, state):
        """SSMKernelDiag.step + FFTConv.step on u (B, H)."""
        next_state = torch.einsum("h n, b h n -> b h n", self.dA, state) + torch.einsum("h n, b h -> b h n", self.dB, u)
        y = torch.einsum("h n, b h n -> b h", self.dC, next_state)
        y = 2 * y.real
        y = y + u * self.D
        y = F.gelu(y)
        y = F.conv1d(y.unsqueeze(-1), self.W, self.b).squeeze(-1)
        return F.glu(y, dim=-1), next_state


class AudioModel:
    def __init__(self, H=64, N=64, blocks=4, seed=1):
        gen = torch.Generator().manual_seed(seed)
        self.H = H
        self.enc_w = torch.randn(H, 1, generator=gen)
        self.enc_b = torch.randn(H, generator=gen) * 0.1
        self.layers = [S4DRef(H, N, gen) for _ in range(blocks)]
        self.norms = [(torch.ones(H), torch.zeros(H)) for _ in range(blocks)]
        self.dec_w = torch.randn(1, H, generator=gen) / math.sqrt(H)
        self.dec_b = torch.zeros(1)

    def forward(self, x, kernels=None):
        """x (L,) mono → (L,), as S4Model.forward with prenorm (B=1, channels-first inside the blocks)."""
        h = F.linear(x.unsqueeze(-1), self.enc_w, self.enc_b)  # (L, H)
        h = h.transpose(0, 1).unsqueeze(0)  # (1, H, L)
        for i, layer in enumerate(self.layers):
            z = F.layer_norm(h.transpose(-1, -2), (self.H,), *self.norms[i]).transpose(-1, -2)
            z = layer.forward(z, None if kernels is None else kernels[i])
            h = h + z
        return F.linear(h.squeeze(0).transpose(0, 1), self.dec_w, self.dec_b).squeeze(-1)


def bench_step(H, N, steps, reps):
    gen = torch.Generator().manual_seed(2)
    layer = S4DRef(H, N, gen)
    u = torch.rand(steps, 1, H, generator=gen) - 0.5
    times = []
    for _ in range(reps):
        state = torch.zeros(1, H, N // 2, dtype=torch.cfloat)
        for t in range(50):  # warm-up
            _, state = layer.step(u[t], state)
        t0 = time.perf_counter()
        for t in range(steps):
            _, state = layer.step(u[t], state)
        times.append((time.perf_counter() - t0) / steps * 1e9)
    return {"H": H, "N": N, "steps": steps, "ns_per_sample": statistics.median(times), "reps_ns": times}


def bench_fft_1min(model, threads, reps):
    torch.set_num_threads(threads)
    L = 60 * RATE
    x = torch.rand(L, generator=torch.Generator().manual_seed(3)) - 0.5
    kernels = [layer.kernel_padded(L) for layer in model.layers]
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        model.forward(x, kernels)
        times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    return {"threads": threads, "frames": L, "seconds": s, "reps_s": times, "samples_per_s": L / s, "x_realtime": L / s / RATE}


def bench_fft_chunks(model, threads, chunk, budget_s, cached, max_chunks=200):
    """Times consecutive chunks until budget_s has passed (at least one chunk)."""
    torch.set_num_threads(threads)
    x = torch.rand(chunk * 4, generator=torch.Generator().manual_seed(4)) - 0.5
    kernels = [layer.kernel(chunk) for layer in model.layers] if cached else None
    if cached:
        model.forward(x[:chunk], kernels)  # warm-up (the per-call variant is too slow to spend a call on it)
    done, per = 0, []
    t_start = time.perf_counter()
    while done < max_chunks and time.perf_counter() - t_start < budget_s:
        off = (done % 4) * chunk
        t0 = time.perf_counter()
        model.forward(x[off:off + chunk], kernels)
        per.append(time.perf_counter() - t0)
        done += 1
    s = statistics.median(per)
    return {"threads": threads, "chunk": chunk, "chunks_timed": done, "kernel": "cached" if cached else "per call (s4d.py)",
            "seconds_per_chunk": s, "samples_per_s": chunk / s, "x_realtime": chunk / s / RATE,
            "projected_1h_s": 3600 * RATE / (chunk / s)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the step run")
    ap.add_argument("--reps-1min", type=int, default=1, help="repetitions of the 1-minute forward (~25 s each)")
    ap.add_argument("--chunk-budget", type=float, default=8.0, help="seconds per chunked run")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--out")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    res = {"torch": torch.__version__, "float32_matmul_precision": torch.get_float32_matmul_precision()}
    with torch.inference_mode():
        torch.set_num_threads(1)
        res["step"] = bench_step(64, 64, a.steps, a.reps)
        model = AudioModel()
        res["fft_1min"] = [bench_fft_1min(model, t, a.reps_1min) for t in threads]
        res["fft_chunks"] = [bench_fft_chunks(model, 1, 1 << 15, a.chunk_budget, cached=False)]
        res["fft_chunks_cached"] = [bench_fft_chunks(model, t, 1 << 15, a.chunk_budget, cached=True) for t in threads]
    txt = json.dumps(res, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(txt)
    print(txt)


if __name__ == "__main__":
    main()
