"""Build the speech-denoiser data packs (kept out of git) from the fetched repositories.

    python3 models/speech-denoiser/data.py [--out /work/data/speech-denoiser]

Sources (see MODEL.md for licences and commits):
  speech: Free Spoken Digit Dataset (Jakobovski/free-spoken-digit-dataset, 8 kHz, 6 speakers) and the
          Speech Commands v0.01 subset in vinsis/speech-commands-recognition (16 kHz, 300 clips);
  noise:  ../shared/data/noise (6 real recordings), rirs: ../shared/data/rirs (4 RIRs).
Splits are speaker-disjoint (FSDD by speaker name, Speech Commands by the dataset's own
validation/testing lists, which are speaker-disjoint by construction) and noise-disjoint.

Writes to --out:
  train_speech.flac / val_speech.flac  concatenated 16 kHz clips (each clip peak-normalised to -3 dBFS,
                                       separated by 0.1 s of silence) + *_index.json (offsets, speakers)
  noise_train.flac, noise_val.flac     concatenated real noise recordings of each split
  rirs.npz                              the training RIRs (rir1-3); rir4 is kept for the test set
  test/NNN_{clean,noisy}.wav + test/list.json   the fixed held-out evaluation set
  pack/                                 the files the GPU run needs (< 64 MiB)
"""
import argparse
import json
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly, fftconvolve

FS = 16000
FSDD = Path("/work/.mirror/Jakobovski+free-spoken-digit-dataset/repo")
SC = Path("/work/.mirror/vinsis+speech-commands-recognition/repo")
SHARED = Path("/work/shared/data")

FSDD_SPLIT = {"george": "train", "jackson": "train", "nicolas": "train", "yweweler": "train",
              "theo": "val", "lucas": "test"}
NOISE_SPLIT = {"doing_the_dishes": "train", "speechbrain_noise1": "train", "speechbrain_noise3": "train",
               "speechbrain_noise5": "val", "speechbrain_noise4": "test", "speechbrain_noise2": "test"}
TEST_RIR = "rir4"


def git_blob(repo, path):
    return subprocess.run(["git", "-C", str(repo), "show", f"HEAD:{path}"], check=True,
                          capture_output=True).stdout


def git_ls(repo):
    out = subprocess.run(["git", "-C", str(repo), "ls-tree", "-r", "--name-only", "HEAD"], check=True,
                         capture_output=True, text=True).stdout
    return out.split("\n")


def git_head(repo):
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()


def read_blob(repo, path):
    import io
    x, sr = sf.read(io.BytesIO(git_blob(repo, path)), dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    if sr != FS:
        g = np.gcd(sr, FS)
        x = resample_poly(x, FS // g, sr // g).astype(np.float32)
    return x


def trim(x, thr_db=-40.0):
    """Drop leading/trailing near-silence (keeps 20 ms margins)."""
    a = np.abs(x)
    thr = a.max() * 10 ** (thr_db / 20)
    idx = np.nonzero(a > thr)[0]
    if len(idx) == 0:
        return x
    lo, hi = max(idx[0] - 320, 0), min(idx[-1] + 320, len(x))
    return x[lo:hi]


def norm(x):
    return (x / (np.abs(x).max() + 1e-9) * 10 ** (-3 / 20)).astype(np.float32)


def collect():
    clips = {"train": [], "val": [], "test": []}
    for p in git_ls(FSDD):
        if p.startswith("recordings/") and p.endswith(".wav"):
            spk = p.split("/")[-1].split("_")[1]
            clips[FSDD_SPLIT[spk]].append(("fsdd:" + spk, read_blob(FSDD, p)))
    root = "speech_commands_v0.01/"
    test_l = set(git_blob(SC, root + "testing_list.txt").decode().split())
    val_l = set(git_blob(SC, root + "validation_list.txt").decode().split())
    for p in git_ls(SC):
        if p.startswith(root) and p.endswith(".wav"):
            rel = p[len(root):]
            split = "test" if rel in test_l else "val" if rel in val_l else "train"
            spk = rel.split("/")[-1].split("_")[0]
            clips[split].append(("sc:" + spk, read_blob(SC, p)))
    return clips


def concat(items, gap=0.1):
    z = np.zeros(int(gap * FS), np.float32)
    parts, index, pos = [], [], 0
    for spk, x in items:
        x = norm(trim(x))
        parts += [x, z]
        index.append({"speaker": spk, "start": pos, "len": len(x)})
        pos += len(x) + len(z)
    return np.concatenate(parts), index


def make_test(clips, noises, rir, out, n_items=48, seed=1234):
    """Fixed held-out set: n_items of ~4-8 s (one test speaker's clips in a row, 0.15-0.4 s pauses),
    mixed with a held-out noise at SNRs -5, 0, 5, 10, 15, 20 dB (cycled), every third item also
    reverberated with the held-out RIR (the reference is then the reverberant speech)."""
    rng = np.random.default_rng(seed)
    by_spk = {}
    for spk, x in clips:
        by_spk.setdefault(spk, []).append(norm(trim(x)))
    fsdd = [s for s in by_spk if s.startswith("fsdd:")]
    sc = [s for s in by_spk if s.startswith("sc:")]
    out.mkdir(parents=True, exist_ok=True)
    snrs = [-5, 0, 5, 10, 15, 20]
    names = sorted(noises)
    meta = []
    for i in range(n_items):
        if i % 2 == 0 or not sc:
            spk = fsdd[i % len(fsdd)]
            pool = by_spk[spk]
            sel = [pool[j] for j in rng.choice(len(pool), 10, replace=False)]
            spk_desc = spk
        else:  # Speech Commands test clips are one or two per speaker: chain several speakers
            ks = rng.choice(len(sc), min(6, len(sc)), replace=False)
            sel = [by_spk[sc[k]][0] for k in ks]
            spk_desc = "sc:" + "+".join(sc[k][3:] for k in ks)
        parts = [np.zeros(int(0.3 * FS), np.float32)]
        for x in sel:
            parts += [x * 10 ** (rng.uniform(-6, 0) / 20), np.zeros(int(rng.uniform(0.15, 0.4) * FS), np.float32)]
        s = np.concatenate(parts)
        rev = i % 3 == 2
        if rev:
            s = fftconvolve(s, rir / np.sqrt(np.sum(rir ** 2)))[: len(s)].astype(np.float32)
        nname = names[i % len(names)]
        nz = noises[nname]
        if len(nz) < len(s):
            nz = np.tile(nz, int(np.ceil(len(s) / len(nz))))
        off = rng.integers(0, len(nz) - len(s) + 1)
        n = nz[off: off + len(s)]
        snr = snrs[i % len(snrs)]
        ps, pn = np.mean(s ** 2), np.mean(n ** 2) + 1e-12
        n = n * np.sqrt(ps / pn / 10 ** (snr / 10))
        y = s + n
        g = 10 ** (rng.uniform(-25, -6) / 20) / (np.abs(y).max() + 1e-9)
        y, s = y * g, s * g
        sf.write(out / f"{i:03d}_clean.wav", s, FS, subtype="FLOAT")
        sf.write(out / f"{i:03d}_noisy.wav", y, FS, subtype="FLOAT")
        meta.append({"id": f"{i:03d}", "speaker": spk_desc, "noise": nname, "snr_db": snr, "reverb": rev,
                     "seconds": round(len(s) / FS, 2)})
    (out / "list.json").write_text(json.dumps(meta, indent=1))
    return meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/work/data/speech-denoiser")
    a = ap.parse_args()
    out = Path(a.out)
    pack = out / "pack"
    pack.mkdir(parents=True, exist_ok=True)
    clips = collect()
    summary = {"fsdd_commit": git_head(FSDD), "speech_commands_commit": git_head(SC)}
    for split in ("train", "val"):
        x, index = concat(clips[split])
        sf.write(pack / f"{split}_speech.flac", x, FS, subtype="PCM_16")
        (pack / f"{split}_speech_index.json").write_text(json.dumps(index))
        summary[split] = {"seconds": round(len(x) / FS, 1), "clips": len(index),
                          "speakers": len({i["speaker"] for i in index})}
    noises = {}
    for p in sorted((SHARED / "noise").glob("*.wav")):
        x, sr = sf.read(p, dtype="float32")
        assert sr == FS
        noises[p.stem] = x
    for split in ("train", "val"):
        parts = [noises[k] / (np.std(noises[k]) + 1e-9) * 0.1 for k in sorted(noises) if NOISE_SPLIT[k] == split]
        sf.write(pack / f"noise_{split}.flac", np.clip(np.concatenate(parts), -1, 1), FS, subtype="PCM_16")
        summary["noise_" + split] = [k for k in sorted(noises) if NOISE_SPLIT[k] == split]
    rirs = {}
    for p in sorted((SHARED / "rirs").glob("*.wav")):
        rirs[p.stem] = sf.read(p, dtype="float32")[0]
    np.savez(pack / "rirs.npz", **{k: v for k, v in rirs.items() if k != TEST_RIR})
    test_noises = {k: v for k, v in noises.items() if NOISE_SPLIT[k] == "test"}
    meta = make_test(clips["test"], test_noises, rirs[TEST_RIR], out / "test")
    summary["test"] = {"items": len(meta), "seconds": round(sum(m["seconds"] for m in meta), 1),
                       "speakers": sorted({s for s, _ in clips["test"]})[:3] + ["..."],
                       "n_speakers": len({s for s, _ in clips["test"]}), "noises": sorted(test_noises),
                       "rir": TEST_RIR}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
