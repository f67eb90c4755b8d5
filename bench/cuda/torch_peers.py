"""PyTorch doing the same maths as bench_cuda's kernels, timed the same way (fresh inputs per size, warm-up, CUDA
events, median). Prints CSV rows in bench_cuda's format: kernel,L,channels,taps_or_state,median_ms,samples_per_s,
bytes,GBps,pct_copy.

- fftconv_torch: causal convolution by torch.fft, kernel spectrum precomputed (as ours): irfft(rfft(x, 2L)·K)[:L].
- selective_scan_torch_slow: the maths of transformers' MambaMixer.slow_forward scan (discretise over the whole
  sequence, then a Python loop over time) — feasible only at short lengths (it materialises [B, D, L, N]).
- ssd_torch_chunked: Mamba-2's SSD by the chunked algorithm in PyTorch ops (cumsum, masked exp, einsum), chunks of 64.
usage: python3 torch_peers.py [quick]
"""
import sys
import torch

torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
dev = "cuda"
quick = len(sys.argv) > 1 and sys.argv[1] == "quick"
LMAX = 20 if quick else 24
TOTAL = 1 << (24 if quick else 26)
ELEMS = 1 << (26 if quick else 28)


def median_ms(f, warm=3, reps=10):
    for _ in range(warm):
        f()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        f()
        b.record()
        b.synchronize()
        ts.append(a.elapsed_time(b))
    ts.sort()
    return ts[len(ts) // 2]


copy_gbps = 0.0


def row(kernel, L, ch, extra, ms, samples, nbytes):
    gbps = nbytes / (ms * 1e-3) / 1e9
    pct = 100.0 * gbps / copy_gbps if copy_gbps else 100.0
    print(f"{kernel},{L},{ch},{extra},{ms:.4f},{samples / (ms * 1e-3):.4g},{nbytes:.4g},{gbps:.1f},{pct:.1f}", flush=True)


print(f"# device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
n = 1 << 30
a = torch.randn(n, device=dev)
b = torch.empty_like(a)
ms = median_ms(lambda: b.copy_(a))
copy_gbps = 2 * n * 4 / (ms * 1e-3) / 1e9
row("copy_torch", n, 1, 0, ms, n, 2 * n * 4)
del a, b

for lg in range(14, LMAX + 1, 2):
    L = 1 << lg
    H = max(1, TOTAL // L)
    x = torch.randn(H, L, device=dev)
    for taps in sorted({min(L, 4096), L}):
        k = torch.randn(H, taps, device=dev) / taps ** 0.5
        K = torch.fft.rfft(k, n=2 * L)

        def conv():
            return torch.fft.irfft(torch.fft.rfft(x, n=2 * L) * K, n=2 * L)[..., :L]

        ms = median_ms(conv)
        name = "fftconv_torch_fullkernel" if taps == L else "fftconv_torch_k4096"
        row(name, L, H, taps, ms, H * L, 2 * H * L * 4)
        del K, k
    del x
    torch.cuda.empty_cache()


def slow_scan(u, delta, A, B, C, D, z, db):
    # u, delta, z: [batch, dim, L]; B, C: [batch, L, N]; as transformers' slow path (channels-first)
    dt = torch.nn.functional.softplus(delta + db[None, :, None])
    dA = torch.exp(A[None, :, None, :] * dt[:, :, :, None])
    dBu = dt[:, :, :, None] * B[:, None, :, :] * u[:, :, :, None]
    s = torch.zeros(u.shape[0], u.shape[1], A.shape[1], device=dev)
    ys = []
    for i in range(u.shape[2]):
        s = dA[:, :, i] * s + dBu[:, :, i]
        ys.append(torch.matmul(s, C[:, i, :, None])[..., 0])
    y = torch.stack(ys, dim=-1) + u * D[None, :, None]
    return y * torch.nn.functional.silu(z)


for lg in (14, 16):
    L, N, dim = 1 << lg, 16, 1536 if lg == 14 else 384
    u, delta, z = (torch.randn(1, dim, L, device=dev) for _ in range(3))
    delta -= 3
    B, C = torch.randn(1, L, N, device=dev), torch.randn(1, L, N, device=dev)
    A = -torch.exp(torch.randn(dim, N, device=dev) * 0.5 + 0.7)
    D, db = torch.randn(dim, device=dev), 0.1 * torch.randn(dim, device=dev)
    ms = median_ms(lambda: slow_scan(u, delta, A, B, C, D, z, db), warm=1, reps=3)
    row("selective_scan_torch_slow", L, dim, N, ms, dim * L, 4.0 * L * (4 * dim + 2 * N))
    del u, delta, z, B, C
    torch.cuda.empty_cache()


def ssd_chunked(x, dt, A, B, C, D, Q=64):
    # x: [b, L, h, p]; dt: [b, L, h]; A: [h]; B, C: [b, L, n]
    b, L, h, p = x.shape
    c = L // Q
    x, dt = x.view(b, c, Q, h, p), dt.view(b, c, Q, h)
    B, C = B.view(b, c, Q, -1), C.view(b, c, Q, -1)
    lam = torch.cumsum(dt * A, dim=2)                                   # [b, c, Q, h]
    seg = lam[:, :, :, None, :] - lam[:, :, None, :, :]                 # [b, c, i, j, h]
    mask = torch.tril(torch.ones(Q, Q, dtype=torch.bool, device=dev))[None, None, :, :, None]
    Lm = torch.exp(seg.masked_fill(~mask, float("-inf")))
    G = torch.einsum("bcin,bcjn->bcij", C, B)
    M = G[..., None] * Lm * dt[:, :, None, :, :]                        # [b, c, i, j, h]
    y = torch.einsum("bcijh,bcjhp->bcihp", M, x)
    w = torch.exp(lam[:, :, -1:, :] - lam) * dt                         # [b, c, Q, h]
    S = torch.einsum("bcjh,bcjhp,bcjn->bchpn", w, x, B)
    decay = torch.exp(lam[:, :, -1, :])                                 # [b, c, h]
    Sin = torch.zeros_like(S[:, 0])
    ins = []
    for k in range(c):
        ins.append(Sin)
        Sin = decay[:, k, :, None, None] * Sin + S[:, k]
    Sin = torch.stack(ins, dim=1)                                       # [b, c, h, p, n]
    y = y + torch.einsum("bcih,bcin,bchpn->bcihp", torch.exp(lam), C, Sin)
    return (y + x * D[None, None, None, :, None]).reshape(b, L, h, p)


for lg in range(14, min(LMAX, 18) + 1, 2):
    L, P, N = 1 << lg, 64, 64
    Hh = 24
    x = torch.randn(1, L, Hh, P, device=dev)
    dt = 0.05 + 0.02 * torch.rand(1, L, Hh, device=dev)
    A = -(0.5 + torch.rand(Hh, device=dev))
    B, C = 0.1 * torch.randn(1, L, N, device=dev), 0.1 * torch.randn(1, L, N, device=dev)
    D = torch.randn(Hh, device=dev)
    try:
        ms = median_ms(lambda: ssd_chunked(x, dt, A, B, C, D), warm=1, reps=3)
        row("ssd_torch_chunked", L, Hh * P, N, ms, L * Hh * P, 4.0 * L * (2 * Hh * P + Hh + 2 * N))
    except torch.OutOfMemoryError:
        print(f"# ssd_torch_chunked L={L}: out of memory")
    del x, dt, B, C
    torch.cuda.empty_cache()
