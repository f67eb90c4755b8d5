"""Train a causal S4D denoiser for a biosignal task and export it to the native model file.

    python3 models/train/biosig/ecg_data.py                                   # once (ECG cache)
    python3 models/train/biosig/train_denoiser.py --task ecg --out models/ecg-denoiser
    python3 models/train/biosig/train_denoiser.py --task eeg --out models/eeg-artifact

CPU is enough for the small models (the first shipped models were trained on 1 CPU thread of a shared 2-core
machine); `--device cuda` trains on a GPU (batches are still made by --workers CPU processes). The task module
(ecg_data.py / eeg_data.py) supplies FS, load() and make_batch(rng, src, B, L) -> (noisy, clean) float32 arrays.
Writes to --out: <name>.safetensors, <name>.pt (PyTorch checkpoint, for the golden-file test), train_log.txt.
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
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from ssmtrain.layers import S4DModel  # noqa: E402
from ssmtrain.export import model_layers, model_tensors, write_native  # noqa: E402

TASKS = {
    "ecg": dict(module="ecg_data", name="ecg-denoiser", seg_s=6.0, warm_s=1.0,
                desc="Causal S4D ECG denoiser (one lead, 360 Hz, mV in and out): removes baseline wander, muscle "
                     "noise, electrode motion and mains hum. Trained on 32 MIT-BIH Arrhythmia records with MIT-BIH "
                     "Noise Stress Test noise; see MODEL.md."),
    "eeg": dict(module="eeg_data", name="eeg-artifact", seg_s=8.0, warm_s=1.0,
                desc="Causal S4D EEG artifact suppressor (one channel, 125 Hz, microvolts in and out): removes "
                     "ocular (EOG) and muscle (EMG) artifacts. Trained on EEGdenoiseNet-style mixtures of real EEG "
                     "and real EMG/synthetic EOG; see MODEL.md."),
}


def loss_fn(yhat, y, warm, delay=0):
    """Per-segment MSE divided by the clean segment's power (SNR-like), after the warm-up samples. With `delay`
    D > 0 the output at time t is trained to estimate the clean signal at t - D (D samples of look-ahead; the
    exported file declares latency_samples = D)."""
    if delay:
        yhat, y = yhat[:, delay:], y[:, :-delay]
    yh, yt = yhat[:, warm:], y[:, warm:]
    p = yt.pow(2).mean(1) + 1e-6
    return ((yh - yt).pow(2).mean(1) / p).mean()


class Batches(torch.utils.data.IterableDataset):
    def __init__(self, mod, B, L, seed):
        self.mod, self.B, self.L, self.seed = mod, B, L, seed

    def __iter__(self):
        import importlib
        info = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([self.seed, info.id if info else 0])
        m = importlib.import_module(self.mod)
        src = m.load()
        while True:
            X, Y = m.make_batch(rng, src, self.B, self.L)
            yield torch.from_numpy(X), torch.from_numpy(Y)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=sorted(TASKS), required=True)
    ap.add_argument("--steps", type=int, default=2500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seg_s", type=float, default=None)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--ssm_lr", type=float, default=1e-3)
    ap.add_argument("--d_model", type=int, default=32)
    ap.add_argument("--n_layers", type=int, default=3)
    ap.add_argument("--d_state", type=int, default=32)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--max_minutes", type=float, default=1e9,
                    help="time budget: after 100 steps the cosine schedule is shortened to fit it")
    ap.add_argument("--delay", type=int, default=0, help="look-ahead samples (declared latency)")
    ap.add_argument("--init", type=str, default=None, help="start from this checkpoint (.pt written by this script)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", type=str, default="cpu", help="cpu or cuda")
    ap.add_argument("--out", type=str, required=True)
    a = ap.parse_args()
    t = TASKS[a.task]
    import importlib
    mod = importlib.import_module(t["module"])
    FS = mod.FS
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dict(d_model=a.d_model, n_layers=a.n_layers, d_state=a.d_state, prenorm=True, dropout=a.dropout)
    model = S4DModel(1, 1, disc="zoh", activation="gelu", output="glu", **cfg)
    if a.init:
        model.load_state_dict(torch.load(a.init, map_location="cpu")["state_dict"])
    dev = torch.device(a.device)
    model.to(dev)
    nparam = sum(p.numel() for p in model.parameters())
    ssm = [p for n, p in model.named_parameters() if ".kernel." in n]
    ids = {id(p) for p in ssm}
    opt = torch.optim.Adam([{"params": [p for p in model.parameters() if id(p) not in ids], "lr": a.lr},
                            {"params": ssm, "lr": a.ssm_lr}])
    base = [g["lr"] for g in opt.param_groups]
    steps, warmup = a.steps, a.warmup

    def set_lr(step):
        f = step / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) /
                                                                                  max(1, steps - warmup))))
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * f

    L = int((a.seg_s or t["seg_s"]) * FS)
    warm = int(t["warm_s"] * FS)
    dl = torch.utils.data.DataLoader(Batches(t["module"], a.batch, L, a.seed), batch_size=None,
                                     num_workers=a.workers, persistent_workers=a.workers > 0,
                                     pin_memory=dev.type == "cuda", prefetch_factor=8 if a.workers > 0 else None)
    log = open(out / "train_log.txt", "w")

    def say(s):
        print(s, flush=True)
        log.write(s + "\n")
        log.flush()

    say(f"# {t['name']} training {time.strftime('%Y-%m-%d %H:%M:%S')} torch={torch.__version__} "
        f"threads={a.threads} workers={a.workers} device={dev}"
        + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""))
    say(f"# args {json.dumps(vars(a))}")
    say(f"# model S4DModel(1, 1, **{cfg}, disc='zoh', activation='gelu', output='glu') params={nparam}")
    say("step  loss(nmse, mean of last 50)  lr  elapsed_s")
    t0 = time.time()
    it = iter(dl)
    run, n, step = 0.0, 0, 0
    while step < steps:
        step += 1
        if step == 101 and a.max_minutes < 1e8:
            per = (time.time() - t0) / 100
            fit = int(100 + (a.max_minutes * 60 - (time.time() - t0)) / per)
            if fit < steps:
                say(f"# {per * 1000:.0f} ms/step: schedule shortened to {fit} steps for --max_minutes {a.max_minutes}")
                steps = fit
        set_lr(step)
        X, Y = next(it)
        X, Y = X.to(dev, non_blocking=True), Y.to(dev, non_blocking=True)
        model.train()
        loss = loss_fn(model(X.unsqueeze(-1)).squeeze(-1), Y, warm, a.delay)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run += loss.item()
        n += 1
        if step % 50 == 0 or step == steps:
            say(f"{step:5d}  {run / n:.4f}  {opt.param_groups[0]['lr']:.2e}  {time.time() - t0:.0f}")
            run, n = 0.0, 0
    say(f"# training time {time.time() - t0:.0f} s, {step} steps")
    model.eval()
    model.to("cpu")
    torch.save({"cfg": cfg, "delay": a.delay, "state_dict": model.state_dict()}, out / f"{t['name']}.pt")
    desc = t["desc"] + (f" Output lags the input by {a.delay} samples (look-ahead)." if a.delay else "")
    write_native(out / f"{t['name']}.safetensors", model_layers(model), model_tensors(model), FS, t["name"], desc,
                 latency_samples=a.delay)
    say(f"# exported {out / (t['name'] + '.safetensors')}")


if __name__ == "__main__":
    main()
