"""Speech denoiser evaluation: noisy input, speexdsp, RNNoise, DeepFilterNet 3 and ours, side by side.

    python3 bench/denoise_eval.py --test /work/data/speech-denoiser/test \
        --model models/speech-denoiser/speech-denoiser.safetensors --ssm build/apps/ssm/ssm --out docs

The test set (models/speech-denoiser/data.py) is held-out speakers x held-out noises, SNR -5..20 dB,
with a clean reference. Metrics: PESQ-WB (`pesq`), STOI (`pystoi`), SI-SDR; real-time factor =
processing seconds / audio seconds on this CPU. Each system's output is
shifted back by its delay (measured once by cross-correlation with the input) before scoring; (one process; ours through the C++ `ssm run`, whose
--json timing is the engine's, file I/O excluded). Writes OUT/denoise-eval.json, OUT/denoise-eval-table.md
and OUT/denoise-eval.png.
"""
import argparse
import ctypes
import ctypes.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

FS = 16000


def si_sdr(est, ref):
    ref = ref - ref.mean()
    est = est - est.mean()
    a = np.dot(est, ref) / (np.dot(ref, ref) + 1e-12)
    t = a * ref
    return 10 * np.log10(np.sum(t ** 2) / (np.sum((est - t) ** 2) + 1e-12) + 1e-12)


def measured_delay(y, x, max_lag=2000):
    """Output delay in samples: the lag (0..max_lag) that best aligns the output with the input."""
    n = len(x) - max_lag
    c = [np.dot(y[k:k + n], x[:n]) / (np.linalg.norm(y[k:k + n]) + 1e-9) for k in range(max_lag)]
    return int(np.argmax(c))


def to_i16(x):
    return np.clip(np.round(x * 32768), -32768, 32767).astype(np.int16)


class Speex:
    """speexdsp's noise suppressor (libspeexdsp, Debian libspeexdsp-dev) through ctypes, 10 ms frames."""
    name, latency_ms = "speexdsp NS", 10.0
    SET_DENOISE = 0

    def __init__(self):
        path = ctypes.util.find_library("speexdsp") or "libspeexdsp.so.1"
        self.lib = ctypes.CDLL(path)
        self.lib.speex_preprocess_state_init.restype = ctypes.c_void_p
        self.lib.speex_preprocess_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
        self.lib.speex_preprocess_run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int16)]
        self.lib.speex_preprocess_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
        self.lib.speex_preprocess_state_destroy.argtypes = [ctypes.c_void_p]

    def __call__(self, x):
        n = 160
        st = self.lib.speex_preprocess_state_init(n, FS)
        on = ctypes.c_int(1)
        self.lib.speex_preprocess_ctl(st, self.SET_DENOISE, ctypes.byref(on))
        pcm = to_i16(np.concatenate([x, np.zeros((-len(x)) % n, np.float32)]))
        out = np.empty_like(pcm)
        buf = (ctypes.c_int16 * n)()
        for i in range(0, len(pcm), n):
            ctypes.memmove(buf, pcm[i:i + n].ctypes.data, 2 * n)
            self.lib.speex_preprocess_run(st, buf)
            out[i:i + n] = np.frombuffer(buf, np.int16)
        self.lib.speex_preprocess_state_destroy(st)
        return out[: len(x)].astype(np.float32) / 32768


class RNNoise:
    """RNNoise (`pyrnnoise`), 48 kHz, 10 ms frames; 16 kHz audio is resampled 3x up and down."""
    name, latency_ms = "RNNoise", 20.0  # 10 ms frames + 10 ms analysis window overlap

    def __call__(self, x):
        from pyrnnoise import rnnoise
        st = rnnoise.create()
        y48 = to_i16(resample_poly(x, 3, 1))
        n = rnnoise.FRAME_SIZE
        y48 = np.concatenate([y48, np.zeros((-len(y48)) % n, np.int16)])
        out = []
        for i in range(0, len(y48), n):
            d, _ = rnnoise.process_frame(st, y48[i:i + n])
            out.append(np.asarray(d).reshape(-1))
        rnnoise.destroy(st)
        o = np.concatenate(out).astype(np.float32) / 32768
        return resample_poly(o, 1, 3)[: len(x)].astype(np.float32)


class Ours:
    name = "ours (S4D, C++ ssm run)"

    def __init__(self, ssm, model):
        self.ssm, self.model = ssm, model
        info = subprocess.run([ssm, "info", model], capture_output=True, text=True, check=True).stdout
        lat = [ln for ln in info.splitlines() if ln.startswith("latency")][0]
        self.latency_ms = int(lat.split()[1]) / FS * 1000
        self.engine_s = 0.0

    def __call__(self, x):
        with tempfile.TemporaryDirectory() as d:
            i, o = Path(d) / "in.wav", Path(d) / "out.wav"
            sf.write(i, x, FS, subtype="FLOAT")
            r = subprocess.run([self.ssm, "run", self.model, str(i), str(o), "--backend", "stream", "--json"],
                               capture_output=True, text=True, check=True)
            self.engine_s += json.loads(r.stdout[r.stdout.index("{"):])["seconds"]
            return sf.read(o, dtype="float32")[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--test", default="/work/data/speech-denoiser/test")
    ap.add_argument("--model", default="models/speech-denoiser/speech-denoiser.safetensors")
    ap.add_argument("--ssm", default="build/apps/ssm/ssm")
    ap.add_argument("--out", default="docs")
    ap.add_argument("--limit", type=int, default=0, help="evaluate only the first N items")
    a = ap.parse_args()
    from pesq import pesq
    from pystoi import stoi

    meta = json.loads((Path(a.test) / "list.json").read_text())
    if a.limit:
        meta = meta[: a.limit]
    methods = [("noisy input", None, 0.0), ]
    systems = [Speex(), RNNoise(), Ours(a.ssm, a.model)]
    notes = {}
    try:
        import df  # noqa: F401
        import torchaudio  # noqa: F401  deepfilternet 0.5.6 imports it
        notes["DeepFilterNet 3"] = "importable but not wired"
    except Exception as e:
        notes["DeepFilterNet 3"] = (f"not run: `deepfilternet` 0.5.6 (bundled DFN3) fails to import here: "
                                    f"{type(e).__name__}: {e}")
    rows = {"noisy input": {"latency_ms": 0.0, "proc_s": 0.0, "items": []}}
    for s in systems:
        rows[s.name] = {"latency_ms": s.latency_ms, "proc_s": 0.0, "items": []}
    total = 0.0
    for m in meta:
        ref = sf.read(Path(a.test) / f"{m['id']}_clean.wav", dtype="float32")[0]
        noisy = sf.read(Path(a.test) / f"{m['id']}_noisy.wav", dtype="float32")[0]
        total += len(noisy) / FS
        outs = {"noisy input": noisy}
        for s in systems:
            t = time.perf_counter()
            outs[s.name] = s(noisy)
            rows[s.name]["proc_s"] += time.perf_counter() - t
        for k, y in outs.items():
            if "delay" not in rows[k]:  # measured once, on the first item, then applied to every item
                rows[k]["delay"] = measured_delay(y, noisy)
            d = rows[k]["delay"]
            y = np.concatenate([y[d:], np.zeros(d, np.float32)])[: len(ref)]
            rows[k]["items"].append({"id": m["id"], "snr_db": m["snr_db"],
                                     "pesq_wb": float(pesq(FS, ref, y, "wb")),
                                     "stoi": float(stoi(ref, y, FS, extended=False)),
                                     "si_sdr": float(si_sdr(y, ref))})
        print(m["id"], {k: round(rows[k]["items"][-1]["pesq_wb"], 2) for k in rows}, flush=True)
    ours = systems[-1]
    rows[ours.name]["engine_rtf"] = ours.engine_s / total
    summary = {}
    for k, r in rows.items():
        it = r["items"]
        summary[k] = {"pesq_wb": np.mean([i["pesq_wb"] for i in it]), "stoi": np.mean([i["stoi"] for i in it]),
                      "si_sdr": np.mean([i["si_sdr"] for i in it]), "latency_ms": r["latency_ms"],
                      "rtf": r["proc_s"] / total if k != "noisy input" else None,
                      "engine_rtf": r.get("engine_rtf"), "measured_delay_ms": r["delay"] / FS * 1000}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "denoise-eval.json").write_text(json.dumps({"summary": summary, "rows": rows, "notes": notes,
                                                       "audio_seconds": total, "items": len(meta)}, indent=1))
    lines = ["| system | PESQ-WB | STOI | SI-SDR (dB) | algorithmic latency | measured output delay | RTF (this CPU) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for k, v in summary.items():
        rtf = "—" if v["rtf"] is None else f"{v['rtf']:.3f}"
        if v["engine_rtf"] is not None:
            rtf += f" (engine {v['engine_rtf']:.3f})"
        lines.append(f"| {k} | {v['pesq_wb']:.2f} | {v['stoi']:.3f} | {v['si_sdr']:.2f} | {v['latency_ms']:.1f} ms | {v['measured_delay_ms']:.2f} ms | {rtf} |")
    for k, n in notes.items():
        lines.append(f"| {k} | — | — | — | 40 ms (published) | — | {n} |")
    table = "\n".join(lines) + "\n"
    (out / "denoise-eval-table.md").write_text(table)
    print(table)
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        snrs = sorted({m["snr_db"] for m in meta})
        fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
        for k, r in rows.items():
            for j, met in enumerate(["pesq_wb", "stoi", "si_sdr"]):
                ax[j].plot(snrs, [np.mean([i[met] for i in r["items"] if i["snr_db"] == s]) for s in snrs], "o-", label=k)
        for j, t in enumerate(["PESQ-WB", "STOI", "SI-SDR (dB)"]):
            ax[j].set_xlabel("input SNR (dB)")
            ax[j].set_title(t)
        ax[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "denoise-eval.png", dpi=90)
    except Exception as e:
        print("no plot:", e, file=sys.stderr)


if __name__ == "__main__":
    main()
