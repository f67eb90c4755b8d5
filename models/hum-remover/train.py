"""Train the small causal S4D mains-hum remover (16 kHz) on CPU and export it to the native format.

    python3 models/hum-remover/train.py                 # 8 minutes of CPU time on one thread
    python3 models/hum-remover/train.py --eval_only     # re-measure the shipped model, rewrite eval_results.json

Data (read from ../shared/data, nothing downloaded):
- speech: fsdd-speech (Free Spoken Digit Dataset, 8 kHz, upsampled 2x to 16 kHz with a polyphase filter, so the
  speech has no content above 4 kHz); speakers george, jackson, lucas, nicolas for training, theo held out;
- hum (synthetic, the thing removed): 50 or 60 Hz +-0.5 % with up to 10 harmonics of random amplitude and phase,
  a slow amplitude wobble, 0 to 20 dB below the speech down to 12 dB above it (SNR -12..+20 dB);
- background (real, kept): the noise/ recordings mixed into both input and target at 15-40 dB below the speech,
  so that the model learns to remove hum and leave everything else alone.

Outputs: hum-remover.safetensors, train_log.txt, eval_results.json, example_hum.wav, example_clean.wav (beside this
file). The PyTorch checkpoint is not kept.
"""
import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO / "models" / "train"))
from ssmtrain.export import build_from_native, export_native  # noqa: E402
from ssmtrain.layers import S4DModel  # noqa: E402

FS = 16000
TRAIN_SPEAKERS = ["george", "jackson", "lucas", "nicolas"]
TEST_SPEAKERS = ["theo"]


def load_speech(speakers):
    out = []
    for p in sorted((DATA / "fsdd-speech" / "recordings").glob("*.wav")):
        if p.stem.split("_")[1] not in speakers:
            continue
        x, fs = sf.read(p, dtype="float64")
        assert fs == 8000
        out.append(resample_poly(x, 2, 1))
    return out


def load_noise():
    out = []
    for p in sorted((DATA / "noise").glob("*.wav")):
        x, fs = sf.read(p, dtype="float64")
        if x.ndim > 1:
            x = x.mean(1)
        if fs != FS:
            x = resample_poly(x, FS, fs)
        out.append(x / (np.sqrt(np.mean(x ** 2)) + 1e-9))
    return out


def speech_segment(rng, utts, L):
    """Utterances one after another with short random gaps, normalised to RMS 0.1 over the speech."""
    y = np.zeros(L)
    t = int(rng.integers(0, FS // 10))
    while t < L:
        u = utts[rng.integers(len(utts))]
        n = min(len(u), L - t)
        y[t:t + n] = u[:n]
        t += n + int(rng.integers(FS // 20, FS // 4))
    return 0.1 * y / (np.sqrt(np.mean(y[y != 0] ** 2)) + 1e-9)


def hum(rng, L, f0=None):
    f0 = (f0 or rng.choice([50.0, 60.0])) * (1 + rng.uniform(-0.005, 0.005))
    t = np.arange(L) / FS
    K = int(rng.integers(1, 11))
    h = np.zeros(L)
    for k in range(1, K + 1):
        if k * f0 > 3000:
            break
        h += rng.uniform(0.1, 1.0) / k ** rng.uniform(0, 1.5) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
    wobble = 1 + rng.uniform(0, 0.2) * np.sin(2 * np.pi * rng.uniform(0.1, 1.0) * t + rng.uniform(0, 2 * np.pi))
    return h * wobble


def mix(rng, y, snr_db, noises, noise_db):
    """-> (input, target): target = speech + background, input = target + hum at snr_db below the speech."""
    p = np.mean(y ** 2)
    n = noises[rng.integers(len(noises))]
    s = int(rng.integers(0, len(n) - len(y)))
    bg = n[s:s + len(y)] * math.sqrt(p / 10 ** (noise_db / 10))
    h = hum(rng, len(y))
    h *= math.sqrt(p / 10 ** (snr_db / 10) / np.mean(h ** 2))
    target = y + bg
    return target + h, target


def make_batch(rng, utts, noises, B, L):
    X, Y = [], []
    for _ in range(B):
        y = speech_segment(rng, utts, L)
        x, t = mix(rng, y, rng.uniform(-12, 20), noises, rng.uniform(15, 40))
        X.append(x)
        Y.append(t)
    return torch.tensor(np.array(X), dtype=torch.float32), torch.tensor(np.array(Y), dtype=torch.float32)


def band_power(x, freqs, bw=3.0):
    """Power of x in +-bw Hz around each frequency (Hann-windowed periodogram)."""
    w = np.hanning(len(x))
    X = np.abs(np.fft.rfft(x * w)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / FS)
    m = np.zeros_like(f, dtype=bool)
    for fr in freqs:
        m |= np.abs(f - fr) <= bw
    return X[m].sum()


def evaluate(model, utts, noises, seed=99):
    """Held-out speaker: hum removal at several SNRs (50 and 60 Hz), and what clean input loses."""
    rng = np.random.default_rng(seed)
    L, warm = 3 * FS, FS // 2
    res = {"speaker": TEST_SPEAKERS, "segments_per_condition": 16, "segment_s": L / FS, "skip_first_s": warm / FS}
    model.eval()
    for snr in (-10, 0, 10):
        ins, outs, att = [], [], []
        for f0 in (50.0, 60.0):
            for _ in range(8):
                y = speech_segment(rng, utts, L)
                bg_db = rng.uniform(20, 40)
                p = np.mean(y ** 2)
                n = noises[rng.integers(len(noises))]
                s = int(rng.integers(0, len(n) - L))
                target = y + n[s:s + L] * math.sqrt(p / 10 ** (bg_db / 10))
                h = hum(rng, L, f0)
                h *= math.sqrt(p / 10 ** (snr / 10) / np.mean(h ** 2))
                x = target + h
                with torch.no_grad():
                    o = model(torch.tensor(x, dtype=torch.float32)[None, :, None])[0, :, 0].double().numpy()
                e_in, e_out = x[warm:] - target[warm:], o[warm:] - target[warm:]
                ins.append(10 * np.log10(np.sum(target[warm:] ** 2) / np.sum(e_in ** 2)))
                outs.append(10 * np.log10(np.sum(target[warm:] ** 2) / np.sum(e_out ** 2)))
                harm = [k * f0 for k in range(1, 11)]
                att.append(10 * np.log10(band_power(x[warm:], harm) / band_power(o[warm:], harm)))
        res[f"snr_{snr}dB"] = {"input_snr_db": float(np.mean(ins)), "output_snr_db": float(np.mean(outs)),
                               "hum_band_attenuation_db": float(np.mean(att))}
    # clean input (speech + background, no hum): how much the model changes it
    errs = []
    for _ in range(16):
        y = speech_segment(rng, utts, L)
        p = np.mean(y ** 2)
        n = noises[rng.integers(len(noises))]
        s = int(rng.integers(0, len(n) - L))
        x = y + n[s:s + L] * math.sqrt(p / 10 ** (30 / 10))
        with torch.no_grad():
            o = model(torch.tensor(x, dtype=torch.float32)[None, :, None])[0, :, 0].double().numpy()
        errs.append(10 * np.log10(np.sum(x[warm:] ** 2) / np.sum((o[warm:] - x[warm:]) ** 2)))
    res["clean_input_snr_db"] = float(np.mean(errs))
    return res


def write_example(utts, noises):
    """3 s of the held-out speaker with 50 Hz hum (3 harmonics) at 0 dB SNR: example_hum.wav, example_clean.wav."""
    rng = np.random.default_rng(7)
    L = 3 * FS
    y = speech_segment(rng, utts, L)
    t = np.arange(L) / FS
    h = np.sin(2 * np.pi * 50 * t) + 0.5 * np.sin(2 * np.pi * 100 * t + 1) + 0.3 * np.sin(2 * np.pi * 150 * t + 2)
    h *= math.sqrt(np.mean(y ** 2) / np.mean(h ** 2))
    sf.write(HERE / "example_clean.wav", y.astype(np.float32), FS, subtype="PCM_16")
    sf.write(HERE / "example_hum.wav", (y + h).astype(np.float32), FS, subtype="PCM_16")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=8.0, help="CPU-time budget for training")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seg_s", type=float, default=0.5)
    ap.add_argument("--lr", type=float, default=4e-3)
    ap.add_argument("--ssm_lr", type=float, default=1e-3)
    ap.add_argument("--d_model", type=int, default=16)
    ap.add_argument("--n_layers", type=int, default=2)
    ap.add_argument("--d_state", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval_only", action="store_true")
    a = ap.parse_args()
    if not (DATA / "fsdd-speech").is_dir():
        sys.exit(f"{DATA} not found: this script needs ../shared/data (fsdd-speech, noise)")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    train_utts, test_utts = load_speech(TRAIN_SPEAKERS), load_speech(TEST_SPEAKERS)
    noises = load_noise()
    out_model = HERE / "hum-remover.safetensors"
    if a.eval_only:
        model = build_from_native(out_model)
        res = evaluate(model, test_utts, noises)
        (HERE / "eval_results.json").write_text(json.dumps(res, indent=2) + "\n")
        print(json.dumps(res, indent=2))
        return

    model = S4DModel(1, 1, d_model=a.d_model, n_layers=a.n_layers, d_state=a.d_state, prenorm=True,
                     disc="zoh", activation="gelu", output="glu")
    nparam = sum(p.numel() for p in model.parameters())
    ssm = [p for n, p in model.named_parameters() if ".kernel." in n]
    ids = {id(p) for p in ssm}
    opt = torch.optim.Adam([{"params": [p for p in model.parameters() if id(p) not in ids], "lr": a.lr},
                            {"params": ssm, "lr": a.ssm_lr}])
    base = [g["lr"] for g in opt.param_groups]
    log = open(HERE / "train_log.txt", "w")

    def say(s):
        print(s, flush=True)
        log.write(s + "\n")
        log.flush()

    say(f"# hum-remover training {time.strftime('%Y-%m-%d %H:%M:%S')} torch={torch.__version__} threads={a.threads}")
    say(f"# args {json.dumps(vars(a))}")
    say(f"# model S4DModel(1, 1, d_model={a.d_model}, n_layers={a.n_layers}, d_state={a.d_state}, prenorm=True, "
        f"disc='zoh', activation='gelu', output='glu') params={nparam}")
    say(f"# speech: {len(train_utts)} train utterances ({', '.join(TRAIN_SPEAKERS)}), {len(test_utts)} held out "
        f"({', '.join(TEST_SPEAKERS)}); noise files {len(noises)}")
    say("step  loss(nmse, last 50)  lr  cpu_s")
    rng = np.random.default_rng(a.seed)
    L, warm = int(a.seg_s * FS), FS // 10
    # The budget is CPU time of this process, so a shared or paused machine does not shorten the schedule.
    t0 = time.process_time()
    budget = a.minutes * 60
    step, run = 0, 0.0
    while time.process_time() - t0 < budget:
        step += 1
        frac = min(1.0, (time.process_time() - t0) / budget)
        f = min(1.0, step / 100) * 0.5 * (1 + math.cos(math.pi * frac))  # warm-up, then cosine over the time budget
        for g, b in zip(opt.param_groups, base):
            g["lr"] = b * f
        X, Y = make_batch(rng, train_utts, noises, a.batch, L)
        model.train()
        yh = model(X.unsqueeze(-1)).squeeze(-1)
        e = (yh - Y)[:, warm:].pow(2).mean(1) / (Y[:, warm:].pow(2).mean(1) + 1e-6)
        loss = e.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        run += loss.item()
        if step % 50 == 0:
            say(f"{step:5d}  {run / 50:.5f}  {opt.param_groups[0]['lr']:.2e}  {time.process_time() - t0:.0f}")
            run = 0.0
    say(f"# {step} steps in {time.process_time() - t0:.0f} s of CPU time")
    model.eval()
    export_native(model, out_model, sample_rate=FS, name="hum-remover",
                  description="Small causal S4D mains-hum remover (16 kHz mono): removes 50/60 Hz hum and its "
                              "harmonics from speech, leaves the rest; trained in minutes on a CPU, see MODEL.md.")
    res = evaluate(build_from_native(out_model), test_utts, noises)
    (HERE / "eval_results.json").write_text(json.dumps(res, indent=2) + "\n")
    say("# held-out evaluation " + json.dumps(res))
    write_example(test_utts, noises)


if __name__ == "__main__":
    main()
