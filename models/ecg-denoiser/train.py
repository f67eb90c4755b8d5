"""Train the causal S4D ECG denoiser and export it to the native format.

    python3 models/ecg-denoiser/data.py            # once: builds models/train/data/ecg/ecg_sources.npz
    python3 models/ecg-denoiser/train.py           # CPU (1 thread) or CUDA if present

The shipped model was trained on one H100 with (the defaults are that run's settings; the run's
--max_minutes budget cut its 9000-step cosine schedule to 5024 steps after 225 warm-up steps):
    OMP_NUM_THREADS=1 python3 models/ecg-denoiser/train.py --workers 7 --out OUTDIR
On a CPU it takes ~1-3 s a step, too slow for the full run.

Outputs (to --out, default models/ecg-denoiser/): ecg-denoiser.safetensors, train_log.txt,
curves.png, and the PyTorch checkpoint ecg-denoiser.pt (kept out of git: written to
models/train/data/ecg/ unless --out is given).
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "models" / "train"))
sys.path.insert(0, str(HERE))
import data  # noqa: E402
from ssmtrain.layers import S4DModel  # noqa: E402
from ssmtrain.export import export_native  # noqa: E402

FS = data.FS


def build(cfg):
    return S4DModel(1, 1, d_model=cfg["d_model"], n_layers=cfg["n_layers"], d_state=cfg["d_state"],
                    prenorm=cfg["prenorm"], dropout=cfg.get("dropout", 0.0), disc="zoh", activation="gelu", output="glu")


class Batches(torch.utils.data.IterableDataset):
    def __init__(self, B, L, seed, hi_frac):
        self.B, self.L, self.seed, self.hi_frac = B, L, seed, hi_frac

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info else 0
        rng = np.random.default_rng([self.seed, wid])
        src = data.load()
        while True:
            X, Y = data.make_batch(rng, src, self.B, self.L, hi_frac=self.hi_frac)
            yield torch.from_numpy(X), torch.from_numpy(Y)


def loss_fn(yhat, y, warm, spec_w):
    """Per-segment MSE normalised by the clean segment's power (an SNR-like loss, so that gain
    augmentation does not weight loud segments more), skipping the first `warm` samples (the
    model starts from a zero state), plus an optional L1 on STFT log-magnitudes."""
    yh, yt = yhat[:, warm:], y[:, warm:]
    p = yt.pow(2).mean(1) + 1e-4
    mse = ((yh - yt).pow(2).mean(1) / p).mean()
    if spec_w <= 0:
        return mse, mse
    win = torch.hann_window(128, device=y.device)
    S = lambda v: torch.stft(v, 128, 32, window=win, return_complex=True).abs()  # noqa: E731
    sh, st = S(yh), S(yt)
    spec = (torch.log(sh + 1e-3) - torch.log(st + 1e-3)).abs().mean()
    return mse + spec_w * spec, mse


def val_set(src, n=96, L=8 * FS, seed=1234):
    """Fixed held-out segments (held-out ECG, held-out noise) at SNRs spread over -6..12 dB."""
    rng = np.random.default_rng(seed)
    keys = [k for k in src if k.startswith("test_")]
    X, Y, S = [], [], []
    for i in range(n):
        c = src[keys[i % len(keys)]]
        p = rng.integers(0, len(c) - L)
        y = c[p:p + L].astype(np.float64)
        snr = [-6, 0, 6, 12][i % 4]
        X.append(y + data.make_noise(rng, y, snr, src, "test") + rng.uniform(-0.5, 0.5))
        Y.append(y)
        S.append(snr)
    return (torch.tensor(np.array(X), dtype=torch.float32), torch.tensor(np.array(Y), dtype=torch.float32),
            np.array(S))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5024)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seg_s", type=float, default=8.0)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--ssm_lr", type=float, default=1e-3)
    ap.add_argument("--spec_w", type=float, default=0.05)
    ap.add_argument("--d_model", type=int, default=64)
    ap.add_argument("--n_layers", type=int, default=4)
    ap.add_argument("--d_state", type=int, default=64)
    ap.add_argument("--postnorm", dest="prenorm", action="store_false", help="default: prenorm residual blocks")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--hi_snr_frac", type=float, default=0.2, help="fraction of segments at 14-40 dB SNR")
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max_minutes", type=float, default=1e9, help="stop early (cosine schedule still ends at --steps)")
    ap.add_argument("--eval_every", type=int, default=250)
    ap.add_argument("--warmup", type=int, default=225, help="linear warm-up steps before the cosine decay")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=str, default=str(HERE))
    ap.add_argument("--device", type=str, default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out if a.out != str(HERE) else data.CACHE.parent
    dev = torch.device(a.device)
    cfg = dict(d_model=a.d_model, n_layers=a.n_layers, d_state=a.d_state, prenorm=a.prenorm, dropout=a.dropout)
    model = build(cfg).to(dev)
    nparam = sum(p.numel() for p in model.parameters())

    ssm = [p for n, p in model.named_parameters() if ".kernel." in n or n.startswith("kernel.")]
    ids = {id(p) for p in ssm}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.Adam([{"params": rest, "lr": a.lr}, {"params": ssm, "lr": a.ssm_lr}])
    base = [g["lr"] for g in opt.param_groups]
    warmup = a.warmup

    def set_lr(step):
        f = step / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / (a.steps - warmup)))
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * f

    src = data.load()
    L = int(a.seg_s * FS)
    dl = torch.utils.data.DataLoader(Batches(a.batch, L, a.seed, a.hi_snr_frac), batch_size=None, num_workers=a.workers,
                                     persistent_workers=a.workers > 0, prefetch_factor=4 if a.workers else None)
    Xv, Yv, Sv = val_set(src)
    Xv, Yv = Xv.to(dev), Yv.to(dev)
    warm = FS  # 1 s

    log = open(out / "train_log.txt", "w")

    def say(s):
        print(s, flush=True)
        log.write(s + "\n")
        log.flush()

    say(f"# ecg-denoiser training  {time.strftime('%Y-%m-%d %H:%M:%S')}  device={dev} "
        f"torch={torch.__version__} threads={a.threads} workers={a.workers}")
    say(f"# args {json.dumps(vars(a))}")
    say(f"# model S4DModel(1, 1, **{cfg}, disc='zoh', activation='gelu', output='glu')  params={nparam}")
    say(f"# train clean: {len(src['clean_train']) / FS / 60:.1f} min; segment {a.seg_s} s; batch {a.batch}; "
        f"SNR -8..14 dB ({a.hi_snr_frac:.0%} of segments 14..40 dB); "
        f"loss = power-normalised MSE after 1 s + {a.spec_w} * STFT log-mag L1")
    say("step  train_loss  train_nmse  val_nmse  val_snr_out_dB[-6,0,6,12]  lr  elapsed_s")

    hist = {"step": [], "train": [], "val": [], "val_step": [], "val_snr": []}
    t0 = time.time()
    run_loss, run_mse, run_n = 0.0, 0.0, 0
    it = iter(dl)
    step = 0
    while step < a.steps:
        step += 1
        if step == 201 and a.max_minutes < 1e8:
            # fit the cosine schedule into the time budget, measured over the first 200 steps
            fit = int(200 + (a.max_minutes * 60 * 0.93 - (time.time() - t0)) / ((time.time() - t0) / 200))
            if fit < a.steps:
                say(f"# {(time.time() - t0) / 200 * 1000:.0f} ms/step: shortening the schedule to {fit} steps "
                    f"to fit --max_minutes {a.max_minutes}")
                a.steps = fit
                warmup = min(warmup, a.steps // 10)
        set_lr(step)
        X, Y = next(it)
        X, Y = X.to(dev, non_blocking=True), Y.to(dev, non_blocking=True)
        model.train()
        yhat = model(X.unsqueeze(-1)).squeeze(-1)
        loss, mse = loss_fn(yhat, Y, warm, a.spec_w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run_loss += loss.item()
        run_mse += mse.item()
        run_n += 1
        if step % 50 == 0:
            hist["step"].append(step)
            hist["train"].append(run_mse / run_n)
        if step % a.eval_every == 0 or step == a.steps or time.time() - t0 > a.max_minutes * 60:
            model.eval()
            with torch.no_grad():
                yv = model(Xv.unsqueeze(-1)).squeeze(-1)
                e = (yv - Yv)[:, warm:].pow(2).mean(1)
                p = Yv[:, warm:].pow(2).mean(1)
                vn = (e / (p + 1e-4)).mean().item()
                snr = (10 * torch.log10(p / e)).cpu().numpy()
            per = [float(snr[Sv == s].mean()) for s in (-6, 0, 6, 12)]
            hist["val_step"].append(step)
            hist["val"].append(vn)
            hist["val_snr"].append(per)
            say(f"{step:5d}  {run_loss / run_n:.4f}  {run_mse / run_n:.4f}  {vn:.4f}  "
                f"[{', '.join(f'{v:5.1f}' for v in per)}]  {opt.param_groups[0]['lr']:.2e}  {time.time() - t0:.0f}")
            run_loss, run_mse, run_n = 0.0, 0.0, 0
            if time.time() - t0 > a.max_minutes * 60:
                say(f"# stopped by --max_minutes at step {step}")
                break
    train_s = time.time() - t0
    say(f"# training time {train_s:.0f} s ({step} steps, {train_s / step * 1000:.0f} ms/step)")

    model.eval().cpu()
    torch.save({"cfg": cfg, "state_dict": model.state_dict(), "hist": hist}, ckpt_dir / "ecg-denoiser.pt")
    desc = ("Causal S4D ECG denoiser (single lead, 360 Hz, input and output in mV). Removes muscle noise, "
            "baseline wander, electrode-motion-like artefacts and 50/60 Hz mains hum. Trained on MIT-BIH 100 "
            "(first 24 min), PTB s0010_re, CinC 2015 a103l with real EMG noise; see MODEL.md.")
    export_native(model, str(out / "ecg-denoiser.safetensors"), sample_rate=FS, name="ecg-denoiser",
                  description=desc)
    say(f"# exported {out / 'ecg-denoiser.safetensors'} ({(out / 'ecg-denoiser.safetensors').stat().st_size} bytes)")
    with open(out / "history.json", "w") as f:
        json.dump(hist, f)
    try:
        plot_curves(hist, out / "curves.png")
    except ImportError as e:  # matplotlib missing on the training machine: plot later with --plot_only
        say(f"# curves.png not drawn here ({e}); run train.py --plot_only {out / 'history.json'}")


def plot_curves(hist, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    ax[0].semilogy(hist["step"], hist["train"], label="train (noise-mixed training ECG)")
    ax[0].semilogy(hist["val_step"], hist["val"], "o-", label="held-out (ECG + noise never trained on)")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("MSE / clean power")
    ax[0].set_title("loss")
    ax[0].grid(True, which="both", alpha=0.3)
    ax[0].legend()
    v = np.array(hist["val_snr"])
    for i, s in enumerate((-6, 0, 6, 12)):
        ax[1].plot(hist["val_step"], v[:, i], "o-", label=f"input SNR {s} dB")
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("output SNR (dB)")
    ax[1].set_title("held-out output SNR")
    ax[1].grid(True, alpha=0.3)
    ax[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--plot_only":
        hp = Path(sys.argv[2])
        plot_curves(json.load(open(hp)), hp.parent / "curves.png")
    else:
        main()
