"""Train the causal S4D speech denoiser (16 kHz waveform in, waveform out) and export it.

    python3 models/speech-denoiser/data.py                       # once: builds /work/data/speech-denoiser/pack
    python3 models/speech-denoiser/train.py --pack /work/data/speech-denoiser/pack --out OUTDIR

All mixing happens online on the training device (GPU if present): random 2 s crops of the training
speech, band-limiting (random low-pass 3.4-7.5 kHz, p=0.3), reverberation with a training RIR (p=0.3;
the target is then the reverberant speech: this model denoises, it does not dereverberate), noise from
the training noise recordings (p=0.7), babble made of 3-6 other training crops (p=0.2) or coloured
Gaussian noise (p=0.1), SNR uniform in [-5, 20] dB, then a random level (mixture peak -30..-6 dBFS).
Loss: per-segment -SNR in dB / 10 (log10 of the MSE normalised by the clean power) + 0.1 x L1 of log STFT magnitudes
at three resolutions. Outputs (to --out): speech-denoiser.safetensors, speech-denoiser.pt, train_log.txt,
curves.png.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "models" / "train"))
sys.path.insert(0, str(HERE))
from net import SpeechDenoiser, export  # noqa: E402

FS = 16000


def build(cfg):
    return SpeechDenoiser(**cfg)


class Mixer:
    def __init__(self, pack, split, dev, seed, level_db=(-30.0, -6.0)):
        self.dev = dev
        self.lo, self.hi = level_db
        self.g = torch.Generator(device=dev)
        self.g.manual_seed(seed)
        sp, nz = (self.read(Path(pack) / f"{split}_speech"), self.read(Path(pack) / f"noise_{split}"))
        self.speech = torch.from_numpy(sp).to(dev)
        self.noise = torch.from_numpy(nz).to(dev)
        r = np.load(Path(pack) / "rirs.npz")
        self.rirs = [torch.from_numpy(r[k] / np.sqrt(np.sum(r[k] ** 2))).float().to(dev) for k in r.files]

    @staticmethod
    def read(stem):
        """16-bit FLAC, or the same samples as int16 .npy (for machines without libsndfile)."""
        if stem.with_suffix(".npy").exists():
            return np.load(stem.with_suffix(".npy")).astype(np.float32) / 32768.0
        import soundfile as sf
        return sf.read(stem.with_suffix(".flac"), dtype="float32")[0]

    def u(self, *shape):
        return torch.rand(*shape, generator=self.g, device=self.dev)

    def crops(self, src, B, L):
        st = (self.u(B) * (len(src) - L)).long()
        return src[st[:, None] + torch.arange(L, device=self.dev)[None]]

    def batch(self, B, L):
        s = self.crops(self.speech, B, L)
        s = s / (s.pow(2).mean(1, keepdim=True).sqrt() + 1e-4) * 0.1
        nfft = 2 * L
        # band-limiting augmentation (speech only: a narrow-band microphone in a full-band noise field)
        bl = self.u(B) < 0.3
        if bl.any():
            fc = 3400 + self.u(B) * 4100
            f = torch.fft.rfftfreq(nfft, 1 / FS, device=self.dev)
            mask = torch.sigmoid((fc[:, None] - f[None]) / 150.0)
            mask = torch.where(bl[:, None], mask, torch.ones_like(mask))
            s = torch.fft.irfft(torch.fft.rfft(s, nfft) * mask, nfft)[:, :L]
        # reverberation
        rv = self.u(B) < 0.3
        if rv.any():
            S = torch.fft.rfft(s, nfft)
            idx = (self.u(B) * len(self.rirs)).long()
            H = torch.stack([torch.fft.rfft(self.rirs[i][:L], nfft) for i in idx.tolist()])
            H = torch.where(rv[:, None], H, torch.ones_like(H))
            s = torch.fft.irfft(S * H, nfft)[:, :L]
        # noise
        n = self.crops(self.noise, B, L)
        kind = self.u(B)
        babble = sum(self.crops(self.speech, B, L) for _ in range(4))
        white = torch.randn(B, L, generator=self.g, device=self.dev)
        alpha = self.u(B)[:, None] * 2.0  # spectral slope 0 (white) .. -2 (brown)
        f = torch.fft.rfftfreq(L, 1 / FS, device=self.dev).clamp(min=50.0)
        col = torch.fft.irfft(torch.fft.rfft(white) * (f[None] / 1000.0) ** (-alpha / 2), L)
        n = torch.where((kind < 0.7)[:, None], n, torch.where((kind < 0.9)[:, None], babble, col))
        snr = -5 + 25 * self.u(B)
        ps = s.pow(2).mean(1) + 1e-8
        pn = n.pow(2).mean(1) + 1e-8
        n = n * (ps / pn / 10 ** (snr / 10)).sqrt()[:, None]
        y = s + n
        lvl = 10 ** ((self.lo + (self.hi - self.lo) * self.u(B)) / 20) / (y.abs().amax(1) + 1e-8)
        return y * lvl[:, None], s * lvl[:, None], snr


def si_sdr(est, ref):
    ref = ref - ref.mean(-1, keepdim=True)
    est = est - est.mean(-1, keepdim=True)
    a = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + 1e-9)
    t = a * ref
    return 10 * torch.log10(t.pow(2).sum(-1) / ((est - t).pow(2).sum(-1) + 1e-9) + 1e-9)


def align(yh, y, delay):
    """With `delay` D > 0 the output at t estimates the clean speech at t - D."""
    return (yh[:, delay:], y[:, :-delay]) if delay else (yh, y)


def loss_fn(yh, y, warm, spec_w):
    yh, y = yh[:, warm:], y[:, warm:]
    p = y.pow(2).mean(1) + 1e-7
    # -SNR in dB per segment (log domain: every SNR of the mix counts alike), scaled by 1/10
    mse = (torch.log10((yh - y).pow(2).mean(1) / p + 1e-4)).mean()
    spec = 0.0
    for nfft in (256, 512, 1024):
        win = torch.hann_window(nfft, device=y.device)
        S = lambda v: torch.stft(v, nfft, nfft // 4, window=win, return_complex=True).abs()  # noqa: E731
        sc = (y.pow(2).mean(1, keepdim=True).sqrt() + 1e-5)[:, :, None]
        spec = spec + (torch.log(S(yh) / sc + 1e-3) - torch.log(S(y) / sc + 1e-3)).abs().mean()
    return mse + spec_w * spec / 3, mse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pack", default="/work/data/speech-denoiser/pack")
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seg_s", type=float, default=2.0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--ssm_lr", type=float, default=1e-3)
    ap.add_argument("--spec_w", type=float, default=0.1)
    ap.add_argument("--d_model", type=int, default=64)
    ap.add_argument("--n_layers", type=int, default=4)
    ap.add_argument("--d_state", type=int, default=64)
    ap.add_argument("--dt_min", type=float, default=0.001)
    ap.add_argument("--dt_max", type=float, default=0.1)
    ap.add_argument("--in_gain", type=float, default=1.0, help="encoder weight scale at initialisation")
    ap.add_argument("--level_db", type=float, nargs=2, default=[-30.0, -6.0], help="mixture peak level range, dBFS")
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--max_minutes", type=float, default=1e9)
    ap.add_argument("--eval_every", type=int, default=200)
    ap.add_argument("--delay", type=int, default=0,
                    help="look-ahead in samples: the output at t is trained to estimate the clean speech at t - delay "
                         "(the exported file declares latency_samples = delay)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(HERE))
    ap.add_argument("--work", default=None, help="where the checkpoint and history go (default: --out)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.backends.cuda.matmul.allow_tf32 = False  # the C++ engine runs float32: train in true float32
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work) if a.work else out
    work.mkdir(parents=True, exist_ok=True)
    dev = torch.device(a.device)
    cfg = dict(d_model=a.d_model, n_layers=a.n_layers, d_state=a.d_state, dt_min=a.dt_min, dt_max=a.dt_max, in_gain=a.in_gain)
    model = build(cfg).to(dev)
    nparam = sum(p.numel() for p in model.parameters())
    ssm = [p for n, p in model.named_parameters() if ".kernel." in n]
    ids = {id(p) for p in ssm}
    rest = [p for p in model.parameters() if id(p) not in ids]
    opt = torch.optim.AdamW([{"params": rest, "lr": a.lr, "weight_decay": 0.01},
                             {"params": ssm, "lr": a.ssm_lr, "weight_decay": 0.0}])
    base = [g["lr"] for g in opt.param_groups]

    t0 = time.time()

    def set_lr(step):
        # cosine decay over whichever ends first: --steps or --max_minutes of wall time
        prog = max((step - a.warmup) / (a.steps - a.warmup), (time.time() - t0) / 60 / a.max_minutes)
        f = step / a.warmup if step < a.warmup else 0.5 * (1 + math.cos(math.pi * min(prog, 1.0)))
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * max(f, 0.02)

    tr = Mixer(a.pack, "train", dev, a.seed, a.level_db)
    va = Mixer(a.pack, "val", dev, 999, a.level_db)
    L = int(a.seg_s * FS)
    Xv, Yv, Sv = va.batch(128, 4 * FS)
    warm = 1600  # 0.1 s: the model starts from a zero state
    log = open(out / "train_log.txt", "w")

    def P(*x):
        s = " ".join(str(v) for v in x)
        print(s, flush=True)
        log.write(s + "\n")
        log.flush()

    P(json.dumps({"cfg": cfg, "params": nparam, "args": vars(a), "device": str(dev),
                  "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else None}))
    hist = {"step": [], "train": [], "val_loss": [], "val_sisdr": [], "val_sisdr_in": []}
    run = []
    best = -1e9
    step = 0
    for step in range(1, a.steps + 1):
        set_lr(step)
        model.train()
        X, Y, _ = tr.batch(a.batch, L)
        yh = model(X)
        loss, _ = loss_fn(*align(yh, Y, a.delay), warm, a.spec_w)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run.append(loss.item())
        stop = (time.time() - t0) / 60 > a.max_minutes
        if step % a.eval_every == 0 or step == a.steps or stop:
            model.eval()
            with torch.no_grad():
                yv = torch.cat([model(Xv[i:i + 32]) for i in range(0, len(Xv), 32)])
                ya, Ya = align(yv, Yv, a.delay)
                vl, _ = loss_fn(ya, Ya, warm, a.spec_w)
                sd = si_sdr(ya[:, warm:], Ya[:, warm:]).mean().item()
                sd_in = si_sdr(Xv[:, warm:], Yv[:, warm:]).mean().item()
            hist["step"].append(step)
            hist["train"].append(float(np.mean(run)))
            hist["val_loss"].append(vl.item())
            hist["val_sisdr"].append(sd)
            hist["val_sisdr_in"].append(sd_in)
            run = []
            P(f"step {step} train {hist['train'][-1]:.4f} val_loss {vl.item():.4f} val_sisdr {sd:.2f} dB "
              f"(input {sd_in:.2f}) lr {opt.param_groups[0]['lr']:.2e} t {time.time() - t0:.0f}s")
            if sd > best:
                best = sd
                torch.save({"cfg": cfg, "state_dict": model.state_dict(), "step": step}, work / "speech-denoiser.pt")
        if stop:
            P(f"stopped at step {step}: --max_minutes {a.max_minutes}")
            break
    ck = torch.load(work / "speech-denoiser.pt", map_location="cpu")
    model = build(cfg)
    model.load_state_dict(ck["state_dict"])
    P(f"best val SI-SDR {best:.2f} dB at step {ck['step']}")
    desc = ("causal S4D speech denoiser, 16 kHz mono waveform in/out, " +
            ("zero algorithmic latency" if a.delay == 0 else f"output delayed by {a.delay} samples (look-ahead)"))
    export(model.eval(), out / "speech-denoiser.safetensors", description=desc, latency_samples=a.delay)
    (work / "history.json").write_text(json.dumps(hist))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        ax[0].plot(hist["step"], hist["train"], label="train")
        ax[0].plot(hist["step"], hist["val_loss"], label="validation")
        ax[0].set_xlabel("step"); ax[0].set_ylabel("loss"); ax[0].set_yscale("log"); ax[0].legend()
        ax[1].plot(hist["step"], hist["val_sisdr"], label="model")
        ax[1].plot(hist["step"], hist["val_sisdr_in"], "--", label="noisy input")
        ax[1].set_xlabel("step"); ax[1].set_ylabel("validation SI-SDR (dB)"); ax[1].legend()
        fig.tight_layout()
        fig.savefig(out / "curves.png", dpi=100)
    except Exception as e:  # plotting is optional on the training machine
        P(f"no plot: {e}")


if __name__ == "__main__":
    main()
