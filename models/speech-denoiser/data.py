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
# Mozilla Common Voice read sentences (CC0) committed to public repositories: Persian and Twi (mp3, 32 kHz).
# Speakers from the clips' tsv `client_id`. Each speaker contributes at most CV_CAP_S seconds (two Persian voices
# hold 47 and 44 minutes); clips whose frame-energy range (95th - 10th percentile of 20 ms frames) is under 30 dB
# are dropped as too noisy to be a clean target. Speakers in CV_VAL validate, CV_TEST are kept out of training.
CV = {"fa": Path("/work/.mirror/yasaman999+SR/repo"), "tw": Path("/work/.mirror/pryyyynz+audio-for-Twi-TTS/repo")}
CV_VAL = {"fa:00243bfe", "fa:96ac0c72"}
CV_TEST = {"fa:ec813b36", "fa:6d63760c", "fa:54db74ed"}
CV_CAP_S = 840.0
# Speech Commands' background noise (CC BY 4.0), real recordings only (white/pink are synthetic; doing_the_dishes
# is already in ../shared/data/noise): training noise only.
SC_NOISE = Path("/work/.mirror/chaeyoung-lee+wids_tutorial/repo")
SC_NOISE_FILES = ["dude_miaowing", "exercise_bike", "running_tap"]

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


def to_12bit(x):
    """Samples on a 12-bit grid (noise floor ~72 dB below full scale): written as PCM_16 FLAC, the 4 zero bits cost
    nothing, so the pack fits the 64 MiB that travels to a GPU machine in one call."""
    return np.round(np.clip(x, -1, 1) * 2048).clip(-2048, 2047) / 2048


def energy_range_db(x):
    n = int(0.02 * FS)
    fr = x[: len(x) // n * n].reshape(-1, n)
    e = 10 * np.log10((fr.astype(np.float64) ** 2).mean(1) + 1e-10)
    return float(np.percentile(e, 95) - np.percentile(e, 10))


def collect_cv(clips, summary):
    import csv
    import io
    import os
    for tag, repo in CV.items():
        files = [p for p in git_ls(repo) if p.startswith("clips/") and p.endswith(".mp3")]
        spk = {}
        for t in [p for p in git_ls(repo) if p.endswith(".tsv")]:
            try:
                text = git_blob(repo, t).decode()
            except subprocess.CalledProcessError:  # a tsv too large for the snapshot: not needed for speakers
                continue
            rows = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
            if rows.fieldnames and "client_id" in rows.fieldnames:
                for r in rows:
                    spk[os.path.basename(r.get("path") or "")] = r["client_id"][:8]
        used, dropped, secs = 0, 0, {}
        for p in sorted(files):
            sid = spk.get(os.path.basename(p))
            if sid is None:
                continue
            key = f"{tag}:{sid}"
            if secs.get(key, 0.0) >= CV_CAP_S:
                continue
            x = trim(read_blob(repo, p))
            if len(x) < FS // 2 or energy_range_db(x) < 30.0:
                dropped += 1
                continue
            split = "val" if key in CV_VAL else "cv_test" if key in CV_TEST else "train"
            clips.setdefault(split, []).append(("cv" + key, x))
            secs[key] = secs.get(key, 0.0) + len(x) / FS
            used += 1
        summary[f"cv_{tag}"] = {"commit": git_head(repo), "clips": used, "dropped_low_quality": dropped,
                                "speakers": len(secs), "minutes": round(sum(secs.values()) / 60, 1)}


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
    collect_cv(clips, summary)
    for split in ("train", "val"):
        items = clips[split]
        if split == "val":  # 2.5 minutes of randomly drawn validation clips: the pack must stay under 64 MiB
            rng = np.random.default_rng(7)
            items = [items[i] for i in rng.permutation(len(items))]
            keep, tot = [], 0
            for it in items:
                if tot < 150 * FS:
                    keep.append(it)
                    tot += len(it[1])
            items = keep
        x, index = concat(items)
        x = to_12bit(x)
        sf.write(pack / f"{split}_speech.flac", x, FS, subtype="PCM_16")
        (pack / f"{split}_speech_index.json").write_text(json.dumps(index))
        summary[split] = {"seconds": round(len(x) / FS, 1), "clips": len(index),
                          "speakers": len({i["speaker"] for i in index})}
    noises = {}
    for p in sorted((SHARED / "noise").glob("*.wav")):
        x, sr = sf.read(p, dtype="float32")
        assert sr == FS
        noises[p.stem] = x
    extra = {}
    for k in SC_NOISE_FILES:
        extra[k] = read_blob(SC_NOISE, f"data/_background_noise_/{k}.wav")
    summary["sc_noise_commit"] = git_head(SC_NOISE)
    for split in ("train", "val"):
        parts = [noises[k] / (np.std(noises[k]) + 1e-9) * 0.1 for k in sorted(noises) if NOISE_SPLIT[k] == split]
        if split == "train":
            parts += [extra[k] / (np.std(extra[k]) + 1e-9) * 0.1 for k in SC_NOISE_FILES]
        nz = to_12bit(np.concatenate(parts))
        sf.write(pack / f"noise_{split}.flac", nz, FS, subtype="PCM_16")
        summary["noise_" + split] = [k for k in sorted(noises) if NOISE_SPLIT[k] == split] + (
            ["sc:" + k for k in SC_NOISE_FILES] if split == "train" else [])
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
