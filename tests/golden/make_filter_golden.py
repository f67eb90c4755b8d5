#!/usr/bin/env python3
"""Golden files for the classic filters (`ssm design`, the `sos` layer) from scipy.signal, see README.md.

    pip install scipy numpy
    python3 tests/golden/make_filter_golden.py [--out-dir tests/golden/filters]

Writes, with plain numpy (no safetensors package needed):
- input.safetensors: `input` [T] F32, N(0, 1), seeded: the signal every case filters.
- <case>.safetensors for every design case: `sos` [S, 6] F64 (scipy's design), `sosfilt` [T] F64 and
  `sosfiltfilt` [T] F64 (scipy on the float32 input, in float64); `__metadata__` holds
  `spec` (the design as JSON, the names ssm::FilterSpec uses), `call` (the scipy call) and the versions.
- prototypes.safetensors: scipy's analogue prototypes at 1 rad/s for orders 1..32: `<family>.<N>.poles` [n, 2]
  (real, imag), `<family>.<N>.zeros` [m, 2] (absent when m = 0), `<family>.<N>.gain` [1].
- summary.json: the cases, versions, and the float64 error of a plain numpy TDF-II cascade against sosfilt.
The output is deterministic for given scipy/numpy versions.
"""

import argparse
import json
import os
import struct

import numpy as np
import scipy
from scipy import signal

HERE = os.path.dirname(os.path.abspath(__file__))
T = 2048  # samples: 23 cases x 2 float64 outputs (and the prototypes) stay under 1 MB in the repository

RIPPLE, ATTEN = 1.0, 40.0             # cheby1 / cheby2
ELLIP_RIPPLE, ELLIP_ATTEN = 0.5, 60.0  # ellip

FAMILIES = {
    "butter": lambda n, wn, bt, fs: signal.butter(n, wn, bt, fs=fs, output="sos"),
    "cheby1": lambda n, wn, bt, fs: signal.cheby1(n, RIPPLE, wn, bt, fs=fs, output="sos"),
    "cheby2": lambda n, wn, bt, fs: signal.cheby2(n, ATTEN, wn, bt, fs=fs, output="sos"),
    "ellip": lambda n, wn, bt, fs: signal.ellip(n, ELLIP_RIPPLE, ELLIP_ATTEN, wn, bt, fs=fs, output="sos"),
    "bessel": lambda n, wn, bt, fs: signal.bessel(n, wn, bt, fs=fs, output="sos", norm="phase"),
}
CALLS = {
    "butter": "butter({n}, {wn}, '{bt}', fs={fs}, output='sos')",
    "cheby1": "cheby1({n}, %g, {wn}, '{bt}', fs={fs}, output='sos')" % RIPPLE,
    "cheby2": "cheby2({n}, %g, {wn}, '{bt}', fs={fs}, output='sos')" % ATTEN,
    "ellip": "ellip({n}, %g, %g, {wn}, '{bt}', fs={fs}, output='sos')" % (ELLIP_RIPPLE, ELLIP_ATTEN),
    "bessel": "bessel({n}, {wn}, '{bt}', fs={fs}, output='sos', norm='phase')",
}
# type -> (order, edge(s) in Hz), all at 250 Hz (an EEG/ECG rate); the order-8 band-pass 0.5-40 Hz is the case where
# the transfer-function (b, a) form breaks down, and odd orders exercise the pairing of a real pole.
TYPES = {
    "lowpass": (5, 30.0),
    "highpass": (4, 1.0),
    "bandpass": (8, [0.5, 40.0]),
    "bandstop": (3, [45.0, 55.0]),
}
RATE = 250.0


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, np.ndarray) in file order; dtypes float32/float64 only."""
    header, offset, blobs = {}, 0, []
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        dt = {np.dtype("<f4"): "F32", np.dtype("<f8"): "F64"}[a.dtype.newbyteorder("<")]
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def tdf2_cascade(sos, x):
    """Independent float64 reference of the file contract: per section y = b0 x + s1; s1 = b1 x - a1 y + s2; s2 = b2 x - a2 y."""
    y = np.array(x, dtype=np.float64)
    for b0, b1, b2, a0, a1, a2 in sos:
        b0, b1, b2, a1, a2 = b0 / a0, b1 / a0, b2 / a0, a1 / a0, a2 / a0
        s1 = s2 = 0.0
        out = np.empty_like(y)
        for t, v in enumerate(y):
            o = b0 * v + s1
            s1 = b1 * v - a1 * o + s2
            s2 = b2 * v - a2 * o
            out[t] = o
        y = out
    return y


def cases():
    for fam in FAMILIES:
        for bt, (n, wn) in TYPES.items():
            spec = {"family": fam, "type": bt, "order": n, "sample_rate": RATE}
            if isinstance(wn, list):
                spec["band"] = wn
            else:
                spec["cutoff"] = wn
            if fam in ("cheby1",):
                spec["ripple_db"] = RIPPLE
            if fam in ("cheby2",):
                spec["attenuation_db"] = ATTEN
            if fam == "ellip":
                spec["ripple_db"], spec["attenuation_db"] = ELLIP_RIPPLE, ELLIP_ATTEN
            sos = FAMILIES[fam](n, wn, bt, RATE)
            yield f"{fam}_{bt}", spec, sos, CALLS[fam].format(n=n, wn=wn, bt=bt, fs=RATE)
    # notch (iirnotch), a comb of notches at a mains frequency and its harmonics, and the DC blocker
    b, a = signal.iirnotch(50.0, 30.0, fs=RATE)
    yield "notch", {"family": "notch", "freq": 50.0, "q": 30.0, "harmonics": 1, "sample_rate": RATE}, \
        np.array([np.concatenate([b, a])]), "iirnotch(50, 30, fs=250)"
    rows = []
    for h in (1, 2, 3):
        b, a = signal.iirnotch(50.0 * h, 30.0, fs=1000.0)
        rows.append(np.concatenate([b, a]))
    yield "comb", {"family": "notch", "freq": 50.0, "q": 30.0, "harmonics": 3, "sample_rate": 1000.0}, \
        np.array(rows), "vstack([iirnotch(50*h, 30, fs=1000) for h in (1, 2, 3)])"
    yield "dcblock", {"family": "dcblock", "cutoff": 0.5, "sample_rate": RATE}, \
        signal.butter(1, 0.5, "highpass", fs=RATE, output="sos"), "butter(1, 0.5, 'highpass', fs=250, output='sos')"


def prototypes():
    out = []
    for n in range(1, 33):
        for fam, (z, p, k) in {
            "butter": signal.buttap(n),
            "cheby1": signal.cheb1ap(n, RIPPLE),
            "cheby2": signal.cheb2ap(n, ATTEN),
            "ellip": signal.ellipap(n, ELLIP_RIPPLE, ELLIP_ATTEN),
            "bessel": signal.besselap(n, norm="phase"),
        }.items():
            p, z = np.atleast_1d(p), np.atleast_1d(z)  # ellipap(1, ...) returns its pole as a 0-d array
            out.append((f"{fam}.{n}.poles", np.stack([np.real(p), np.imag(p)], axis=1).astype(np.float64)))
            if len(z):
                out.append((f"{fam}.{n}.zeros", np.stack([np.real(z), np.imag(z)], axis=1).astype(np.float64)))
            out.append((f"{fam}.{n}.gain", np.array([float(np.real(k))])))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out-dir", default=os.path.join(HERE, "filters"))
    args = ap.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    versions = {"scipy": scipy.__version__, "numpy": np.__version__}
    rng = np.random.default_rng(20240605)
    x = rng.standard_normal(T).astype(np.float32)
    summary = {"versions": versions, "samples": T, "cases": {}}
    write_safetensors(os.path.join(args.out_dir, "input.safetensors"), [("input", x)],
                      {"versions": json.dumps(versions), "generator": "tests/golden/make_filter_golden.py"})
    for name, spec, sos, call in cases():
        sos = np.asarray(sos, dtype=np.float64)
        xd = x.astype(np.float64)
        y = signal.sosfilt(sos, xd)
        yy = signal.sosfiltfilt(sos, xd)
        meta = {"spec": json.dumps(spec), "call": "scipy.signal." + call, "versions": json.dumps(versions),
                "generator": "tests/golden/make_filter_golden.py"}
        write_safetensors(os.path.join(args.out_dir, name + ".safetensors"),
                          [("sos", sos), ("sosfilt", y), ("sosfiltfilt", yy)], meta)
        ref = tdf2_cascade(sos, xd)
        rms = float(np.sqrt(np.mean(y ** 2)))
        summary["cases"][name] = {"spec": spec, "call": call, "sections": int(sos.shape[0]), "rms_sosfilt": rms,
                                  "numpy_tdf2_vs_sosfilt_rel": float(np.max(np.abs(ref - y)) / rms)}
        print(f"{name:18s} S={sos.shape[0]:2d} rms={rms:.3g} numpy-TDF2 vs sosfilt {summary['cases'][name]['numpy_tdf2_vs_sosfilt_rel']:.2e}")
    write_safetensors(os.path.join(args.out_dir, "prototypes.safetensors"), prototypes(),
                      {"versions": json.dumps(versions), "ripple_db": str(RIPPLE), "attenuation_db": str(ATTEN),
                       "ellip_ripple_db": str(ELLIP_RIPPLE), "ellip_attenuation_db": str(ELLIP_ATTEN),
                       "bessel_norm": "phase"})
    with open(os.path.join(args.out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
