"""Plots bench/cuda/results/{bench_cuda,torch_peers}.csv into docs/cuda-bench.png (throughput vs length)."""
import csv, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

res = sys.argv[1] if len(sys.argv) > 1 else "bench/cuda/results"
out = sys.argv[2] if len(sys.argv) > 2 else "docs/cuda-bench.png"
rows = []
for f in ("bench_cuda.csv", "torch_peers.csv"):
    for r in csv.reader(l for l in open(f"{res}/{f}") if not l.startswith("#") and not l.startswith("kernel")):
        rows.append(r)
series = {}
for r in rows:
    # the default paths only: chunking (_K*), exponential-split (_poly*) and forced-fused variants stay in the CSV
    if r[0].startswith("copy") or "_K" in r[0] or "_poly" in r[0] or r[0].endswith(("_fused", "_fixup", "_rescan")):
        continue
    series.setdefault(r[0], []).append((int(r[1]), float(r[5]) / 1e9))
fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for name, pts in series.items():
    ax = axes[0] if "fft" in name else axes[1]
    pts.sort()
    ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name, linestyle="--" if "torch" in name else "-")
for ax, title in zip(axes, ("FFT convolution (channels x L = 2^26)", "selective scan / SSD")):
    ax.set_xscale("log", base=2); ax.set_yscale("log"); ax.set_xlabel("sequence length L")
    ax.set_ylabel("G samples/s (channel-steps)"); ax.set_title(title); ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
fig.suptitle("ssmstream CUDA kernels vs PyTorch, NVIDIA H100 80GB HBM3 (medians of CUDA-event timings)")
fig.tight_layout()
fig.savefig(out, dpi=110)
print("wrote", out)
