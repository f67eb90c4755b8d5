#!/usr/bin/env python3
"""Turns the raw outputs of run_all.sh (Google Benchmark JSON, torch_peer.py, peak_memory.sh, load samples) into
bench/results/<date>-<host>.json and .md, and prints the Markdown summary for bench/README.md.

usage: report.py RAW_DIR OUT_STEM
"""
import glob
import json
import re
import math
import os
import statistics
import sys
from collections import defaultdict

# The cost model as it stands in lib/src/layers/s4d.cpp (ns per sample per channel), to compare with the fit.
CODE_MODEL = {"a": 0.29, "b": 1.8, "c": 0.27, "d": 3.5}


def load_gb(path):
    """Google Benchmark JSON → {run_name: [iteration entries]} (aggregates dropped; medians computed here)."""
    runs = defaultdict(list)
    try:
        with open(path) as f:
            d = json.load(f)
    except (OSError, json.JSONDecodeError):
        return runs, {}
    for b in d.get("benchmarks", []):
        if b.get("run_type") == "aggregate" or b.get("error_occurred"):
            continue
        runs[b.get("run_name", b["name"])].append(b)
    return runs, d.get("context", {})


def med(entries, key):
    vals = [e[key] for e in entries if key in e]
    return statistics.median(vals) if vals else float("nan")


def short(name):
    """Drops Google Benchmark's /min_time:…, /real_time, /iterations:… and /repeats:… suffixes."""
    keep = [p for p in name.split("/") if not p.startswith(("min_time:", "real_time", "iterations:", "repeats:", "process_time"))]
    return "/".join(keep)


def lstsq(xs, ys):
    """y = m·x + q by least squares; returns (m, q, r²)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    m = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else 0.0
    q = my - m * mx
    ss = sum((y - my) ** 2 for y in ys)
    r2 = 1 - sum((y - (m * x + q)) ** 2 for x, y in zip(xs, ys)) / ss if ss > 0 else 1.0
    return m, q, r2


def fmt(v, nd=1):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if abs(v) >= 1e6:
        return f"{v / 1e6:.{max(nd, 2)}f} M"
    if abs(v) >= 1e4:
        return f"{v / 1e3:.{nd}f} k"
    return f"{v:.{nd}f}"


def main():
    raw, stem = sys.argv[1], sys.argv[2]
    meta = json.load(open(os.path.join(raw, "meta.json")))
    res = {"meta": meta}

    # ---- FMA peak
    fma, ctx = load_gb(os.path.join(raw, "fma.json"))
    peak = {short(k): med(v, "GFLOPs") for k, v in fma.items()}
    res["fma_peak_gflops"] = peak
    P = peak.get("BM_FmaPeak_AVX512", float("nan"))
    if math.isnan(P):
        P = peak.get("BM_FmaPeak_AVX2", float("nan"))
    res["context"] = {k: ctx.get(k) for k in ("host_name", "num_cpus", "mhz_per_cpu", "library_build_type", "load_avg")}

    # ---- streaming
    st, _ = load_gb(os.path.join(raw, "stream.json"))
    stream = {}
    for k, v in st.items():
        parts = dict(p.split(":") for p in short(k).split("/")[1:])
        key = (int(parts["H"]), int(parts["N"]), int(parts["block"]))
        stream[key] = {"ns_per_sample": med(v, "ns_per_sample"), "gflops": med(v, "GFLOPs"), "reps": len(v),
                       "flops_per_sample": v[0]["flops_per_sample"], "cpu_over_real": med(v, "cpu_time") / med(v, "real_time")}
        stream[key]["pct_peak"] = 100 * stream[key]["gflops"] / P
    res["stream"] = [{"H": k[0], "N": k[1], "block": k[2], **v} for k, v in sorted(stream.items())]

    # ---- batch (realistic model)
    bt, _ = load_gb(os.path.join(raw, "batch.json"))
    batch = {}
    for k, v in bt.items():
        name = short(k)  # BM_S4DBatch/<backend>/<len>/threads:<t>
        _, backend, length, th = name.split("/")
        batch[(backend, length, int(th.split(":")[1]))] = {
            "samples_per_s": med(v, "items_per_second"), "x_realtime": med(v, "x_realtime"), "reps": len(v),
            "samples_per_s_best": max(e["items_per_second"] for e in v), "samples_per_s_worst": min(e["items_per_second"] for e in v),
            "seconds": med(v, "real_time") / 1e3, "cpu_s_main_thread": med(v, "cpu_time") / 1e3, "plan": v[0].get("label", "")}
    res["batch"] = [{"backend": k[0], "length": k[1], "threads": k[2], **v} for k, v in sorted(batch.items())]

    # ---- conv sweep (one process per configuration: crashes are recorded, not fatal)
    conv = []
    for path in sorted(glob.glob(os.path.join(raw, "conv", "*.json"))):
        runs, _ = load_gb(path)
        for k, v in runs.items():
            e = v[0]
            parts = short(k).split("/")
            row = {"backend": parts[1], "N": int(e["N"]), "ns": med(v, "ns_per_sample_channel"),
                   "kernel_length": int(e.get("kernel_length", 0)), "fft_size": int(e.get("fft_size", 0)),
                   "outputs_per_fft": int(e.get("outputs_per_fft", 0)), "x": e.get("mlogm_per_out", 0.0)}
            if len(parts) > 3:
                row["dtmin"] = float(parts[3].split(":")[1])
            conv.append(row)
    crashes = []
    cpath = os.path.join(raw, "conv", "crashes.txt")
    if os.path.exists(cpath):
        crashes = [l.strip() for l in open(cpath) if l.strip()]
    res["conv"] = conv
    res["conv_crashes"] = crashes

    rec = sorted([r for r in conv if r["backend"] == "recurrence"], key=lambda r: r["N"])
    fft = [r for r in conv if r["backend"] == "fft"]
    fit = {}
    if len(rec) >= 2:
        a, b, r2 = lstsq([r["N"] / 2 for r in rec], [r["ns"] for r in rec])
        fit.update(a=a, b=b, r2_rec=r2)
    if len(fft) >= 2:
        c, d, r2 = lstsq([r["x"] for r in fft], [r["ns"] for r in fft])
        fit.update(c=c, d=d, r2_fft=r2)
    res["cost_fit"] = fit
    cross = []
    for dt in sorted({r["dtmin"] for r in fft}):
        rows = [r for r in fft if r["dtmin"] == dt]
        f_ns = statistics.median(r["ns"] for r in rows)
        x = statistics.median(r["x"] for r in rows)
        entry = {"dtmin": dt, "kernel_length": int(statistics.median(r["kernel_length"] for r in rows)),
                 "fft_size": rows[0]["fft_size"], "fft_ns_measured": f_ns, "mlogm_per_out": x}
        # measured: the first N of the sweep where the recurrence is slower than this FFT
        slower = [r["N"] for r in rec if r["ns"] > f_ns]
        entry["crossover_N_measured"] = min(slower) if slower else None
        if "a" in fit and fit["a"] > 0:
            entry["crossover_N_fit"] = 2 * ((fit["c"] * x + fit["d"]) - fit["b"]) / fit["a"] if "c" in fit else None
            entry["crossover_N_interp"] = 2 * (f_ns - fit["b"]) / fit["a"]
        cm = CODE_MODEL
        entry["crossover_N_code_model"] = 2 * ((cm["c"] * x + cm["d"]) - cm["b"]) / cm["a"]
        cross.append(entry)
    res["crossover"] = cross

    # ---- FFTW limit vs the FFT-conv path
    fw, _ = load_gb(os.path.join(raw, "fftw.json"))
    limit = {}
    for k, v in fw.items():
        e = v[0]
        limit[(int(e["fft_size"]), int(e["outputs_per_fft"]))] = med(v, "ns_per_sample_channel")
    fftw_rows = []
    for r in fft:
        lim = limit.get((r["fft_size"], r["outputs_per_fft"]))
        if lim:
            fftw_rows.append({"N": r["N"], "dtmin": r["dtmin"], "fft_size": r["fft_size"], "outputs_per_fft": r["outputs_per_fft"],
                              "conv_ns": r["ns"], "fftw_ns": lim, "pct_of_fftw": 100 * lim / r["ns"],
                              "conv_msamples_per_s_channel": 1e3 / r["ns"], "fftw_msamples_per_s_channel": 1e3 / lim})
    # The same ratio measured in one process (BM_ConvVsFftw: the path and FFTW's pairs alternated, fastest of each):
    # preferred, as separate processes minutes apart see different neighbours.
    rt, _ = load_gb(os.path.join(raw, "ratio.json"))
    if rt:
        fftw_rows = []
        for k, v in rt.items():
            e = v[0]
            m = re.search(r"N:(\d+)/dtmin:([0-9.]+)", k)
            fftw_rows.append({"N": int(m.group(1)), "dtmin": float(m.group(2)), "fft_size": int(e["fft_size"]),
                              "outputs_per_fft": int(e["outputs_per_fft"]), "conv_ns": e["conv_ns"], "fftw_ns": e["fftw_ns"],
                              "pct_of_fftw": e["pct_of_fftw"], "conv_msamples_per_s_channel": 1e3 / e["conv_ns"],
                              "fftw_msamples_per_s_channel": 1e3 / e["fftw_ns"], "in_process": True})
    res["fftw"] = fftw_rows

    # ---- PyTorch peer, memory, load
    torch_res = json.load(open(os.path.join(raw, "torch.json"))) if os.path.exists(os.path.join(raw, "torch.json")) else {}
    res["torch"] = torch_res
    mem = json.load(open(os.path.join(raw, "memory.json"))) if os.path.exists(os.path.join(raw, "memory.json")) else []
    res["memory"] = mem
    loads = {}
    lv2, _ = load_gb(os.path.join(raw, "lv2.json"))
    to_us = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
    res["lv2"] = {}
    for k, v in lv2.items():
        us = med(v, "real_time") * to_us[v[0].get("time_unit", "ns")]
        res["lv2"][short(k)] = {"us_per_block": us, "cpu_pct": 100 * us / (64 / 48000 * 1e6)}
    for phase in ("fma", "stream", "batch", "conv", "fftw", "ratio", "lv2", "torch", "memory"):
        p = os.path.join(raw, f"load_{phase}.json")
        if os.path.exists(p):
            loads[phase] = json.load(open(p))
    res["load"] = loads

    # ---- floors
    floors = []
    s64 = stream.get((64, 64, 64))
    s1 = stream.get((64, 64, 1))
    if s64:
        floors.append(("Stream H=64 N=64 block 64 ≥ 30% of FMA peak", s64["pct_peak"] >= 30,
                       f"{s64['gflops']:.1f} GFLOP/s = {s64['pct_peak']:.1f}% of {P:.1f}"))
    if s64 and s1:
        r = s1["ns_per_sample"] / s64["ns_per_sample"]
        floors.append(("Stream block 1 within 3× of block 64 (H=64 N=64)", r <= 3, f"{s1['ns_per_sample']:.0f} vs {s64['ns_per_sample']:.0f} ns/sample = {r:.2f}×"))
    if fftw_rows:
        worst = min(fftw_rows, key=lambda r: r["pct_of_fftw"])
        best = max(fftw_rows, key=lambda r: r["pct_of_fftw"])
        real = [r for r in fftw_rows if r["N"] == 64 and r["dtmin"] == 0.001]
        if real:
            r = real[0]
            floors.append((f"FFT-conv path ≥ 50% of FFTW r2c+c2r: the realistic model's size (M={r['fft_size']}, {r['outputs_per_fft']} outputs/FFT)",
                           r["pct_of_fftw"] >= 50, f"{r['pct_of_fftw']:.0f}% ({r['conv_ns']:.1f} vs {r['fftw_ns']:.1f} ns/sample/channel)"))
        floors.append(("FFT-conv path ≥ 50% of FFTW r2c+c2r: every size of the sweep", worst["pct_of_fftw"] >= 50,
                       f"{worst['pct_of_fftw']:.0f}% (M={worst['fft_size']}) … {best['pct_of_fftw']:.0f}% (M={best['fft_size']})"))
    for backend in ("fft", "recurrence"):
        for length in ("1min", "1h"):
            t1, t2 = batch.get((backend, length, 1)), batch.get((backend, length, 2))
            if t1 and t2:
                r = t2["samples_per_s"] / t1["samples_per_s"]
                rb = t2["samples_per_s_best"] / t1["samples_per_s_best"]
                extra = f" (medians of {t2['reps']}; best runs {rb:.2f}×, 2-thread runs spread {fmt(t2['samples_per_s_worst'])}…{fmt(t2['samples_per_s_best'])}/s)" if t2["reps"] > 1 else " (one run each)"
                floors.append((f"Batch ({backend}, {length}) 2 threads ≥ 1.8× 1 thread", r >= 1.8, f"{r:.2f}×{extra}"))
    one = batch.get(("stream", "1min", 1))
    if one:
        for backend in ("fft", "recurrence"):
            t2 = batch.get((backend, "1min", 2))
            if t2:
                r = t2["samples_per_s"] / one["samples_per_s"]
                floors.append((f"Batch ({backend}, 1min, 2 threads) ≥ 1.8× one stream's throughput", r >= 1.8,
                               f"{r:.2f}× ({fmt(t2['samples_per_s'])} vs {fmt(one['samples_per_s'])} samples/s, medians)"))
    for m in mem:
        floors.append((f"Peak memory < 200 MB: {m['run']} ({m['seconds_audio'] / 60:g} min of audio)", m["rc"] == 0 and m["max_rss_mb"] < 200,
                       f"{m['max_rss_mb']:.1f} MB" + ("" if m["rc"] == 0 else f" (rc={m['rc']})")))
    res["floors"] = [{"floor": f, "met": bool(ok), "measured": t} for f, ok, t in floors]

    with open(stem + ".json", "w") as f:
        json.dump(res, f, indent=1, default=str)
    md = markdown(res, P, stream, batch, fit, cross, fftw_rows, torch_res, mem, crashes)
    with open(stem + ".md", "w") as f:
        f.write(md)
    print(md)


def markdown(res, P, stream, batch, fit, cross, fftw_rows, torch_res, mem, crashes):
    m = res["meta"]
    L = []
    L.append(f"### {m['date']} on `{m['host']}`: {m['cpu']} ({m['cores']} cores), {m['compiler']}")
    L.append("")
    L.append(f"Load at the start of each phase (1-min load average; % of both cores busy in the second before it, "
             f"i.e. other processes): " + ", ".join(f"{k} {v.get('loadavg1', '?')}"
             + (f" ({v['others_busy_pct']:.0f}% busy)" if "others_busy_pct" in v else "") for k, v in res["load"].items()) + ".")
    L.append("")
    pk = res["fma_peak_gflops"]
    L.append(f"**FMA peak (1 core, float32):** AVX-512 {fmt(pk.get('BM_FmaPeak_AVX512'))} GFLOP/s, AVX2 "
             f"{fmt(pk.get('BM_FmaPeak_AVX2'))} GFLOP/s (one dependent chain: {fmt(pk.get('BM_FmaLatency_AVX512_1chain'))}).")
    L.append("")
    L.append("**Streaming, one S4D layer (gelu, glu) through `ssm::Stream`, 1 thread** — ns per sample (per layer), GFLOP/s, % of FMA peak:")
    L.append("")
    blocks = sorted({k[2] for k in stream})
    L.append("| H | N | " + " | ".join(f"block {b}" for b in blocks) + " |")
    L.append("|---|---|" + "---|" * len(blocks))
    for H, N in sorted({(k[0], k[1]) for k in stream}):
        cells = []
        for b in blocks:
            s = stream.get((H, N, b))
            cells.append(f"{s['ns_per_sample']:.0f} ns · {s['gflops']:.1f} · {s['pct_peak']:.0f}%" if s else "–")
        L.append(f"| {H} | {N} | " + " | ".join(cells) + " |")
    L.append("")

    L.append("**Realistic model** (encoder 1→64, 4 pre-norm residual S4D blocks H=64 N=64, decoder; 16 kHz mono) vs PyTorch:")
    L.append("")
    L.append("| run | threads | samples/s (median; min…max) | × real time | vs one stream | vs PyTorch (same threads) |")
    L.append("|---|---|---|---|---|---|")
    one_stream = batch.get(("stream", "1min", 1))
    t1min = {r["threads"]: r for r in torch_res.get("fft_1min", [])}
    tch = {r["threads"]: r for r in torch_res.get("fft_chunks_cached", [])}
    for (backend, length, th), v in sorted(batch.items()):
        peer = t1min.get(th) if length == "1min" else tch.get(th)
        ratio = f"{v['samples_per_s'] / peer['samples_per_s']:.2f}×" if peer else "–"
        spread = f" ({fmt(v['samples_per_s_worst'])}…{fmt(v['samples_per_s_best'])}, {v['reps']} runs)" if v["reps"] > 1 else " (1 run)"
        what = "ssmstream Stream, block 64" if backend == "stream" else f"ssmstream Batch {backend}"
        vs = f"{v['samples_per_s'] / one_stream['samples_per_s']:.2f}×" if one_stream else "–"
        L.append(f"| {what}, {length} ({v['plan']}) | {th} | {fmt(v['samples_per_s'])}{spread} | {v['x_realtime']:.1f} | {vs} | {ratio} |")
    for r in torch_res.get("fft_1min", []):
        L.append(f"| PyTorch s4d.py FFT forward, 1 min in one call (cached kernel) | {r['threads']} | {fmt(r['samples_per_s'])} | {r['x_realtime']:.1f} | – | 1 |")
    for r in torch_res.get("fft_chunks_cached", []):
        L.append(f"| PyTorch s4d.py FFT forward, chunks of {r['chunk']} (cached kernel; 1 h projected {r['projected_1h_s']:.0f} s) | {r['threads']} | {fmt(r['samples_per_s'])} | {r['x_realtime']:.1f} | – | 1 |")
    for r in torch_res.get("fft_chunks", []):
        L.append(f"| PyTorch s4d.py FFT forward, chunks of {r['chunk']}, kernel per call as s4d.py | {r['threads']} | {fmt(r['samples_per_s'])} | {r['x_realtime']:.2f} | – | – |")
    L.append("")
    stp = torch_res.get("step")
    s1 = stream.get((64, 64, 1))
    if stp and s1:
        L.append(f"**Per-sample step, H=64 N=64, 1 thread:** ssmstream Stream block 1: {s1['ns_per_sample']:.0f} ns/sample; "
                 f"PyTorch (state-spaces/s4 step, complex64, einsum): {stp['ns_per_sample']:.0f} ns/sample → "
                 f"ssmstream {stp['ns_per_sample'] / s1['ns_per_sample']:.0f}× faster.")
        L.append("")

    if fftw_rows:
        how = ("measured in one process, `BM_ConvVsFftw`: the two alternated 40 times, the fastest of each, CPU time"
               if fftw_rows[0].get("in_process") else "separate processes, medians")
        L.append("**FFT-conv path vs FFTW's own r2c+c2r** (conv alone: S4D H=64, activation/output none, Batch fft, 1 thread; "
                 "FFTW: one r2c+c2r pair of the same size per `outputs_per_fft` outputs; " + how + ") — ns per sample per channel:")
        L.append("")
        L.append("| N | dt_min | FFT size | outputs/FFT | conv path | FFTW limit | % of FFTW |")
        L.append("|---|---|---|---|---|---|---|")
        for r in sorted(fftw_rows, key=lambda r: (r["dtmin"], r["N"])):
            if r["N"] not in (4, 64, 256):
                continue
            L.append(f"| {r['N']} | {r['dtmin']:g} | {r['fft_size']} | {r['outputs_per_fft']} | {r['conv_ns']:.2f} | {r['fftw_ns']:.2f} | {r['pct_of_fftw']:.0f}% |")
        L.append("")

    if fit:
        L.append("**Cost model fit** (ns per sample per channel, conv alone, 1 thread): "
                 f"recurrence = {fit.get('a', float('nan')):.3f}·N/2 + {fit.get('b', float('nan')):.2f} (r² {fit.get('r2_rec', float('nan')):.3f}); "
                 f"FFT = {fit.get('c', float('nan')):.3f}·units + {fit.get('d', float('nan')):.2f} (r² {fit.get('r2_fft', float('nan')):.3f}). "
                 f"In s4d.cpp now: {CODE_MODEL['a']}·N/2 + {CODE_MODEL['b']}; {CODE_MODEL['c']}·units + {CODE_MODEL['d']} (units = M·log2(M)/outputs per transform × (1 + 0.16·log2(M/2^14)) above 2^14).")
        L.append("")
        rec_row = " · ".join(f"N={r['N']}: {r['ns']:.2f}" for r in sorted([r for r in res['conv'] if r['backend'] == 'recurrence'], key=lambda r: r['N']))
        L.append(f"Recurrence measured: {rec_row}.")
        L.append("")
        L.append("Crossover: the N above which the FFT is cheaper, per kernel length (measured: first N of the sweep where the "
                 "recurrence is slower; fit: where the fitted recurrence line meets the measured FFT cost; code's model: the "
                 "constants now in s4d.cpp).")
        L.append("")
        L.append("| dt_min | kernel taps | FFT size | FFT measured | crossover N (measured) | crossover N (fit) | crossover N (code's model) |")
        L.append("|---|---|---|---|---|---|---|")
        for c in cross:
            L.append(f"| {c['dtmin']:g} | {c['kernel_length']} | {c['fft_size']} | {c['fft_ns_measured']:.2f} | "
                     f"{c['crossover_N_measured'] if c['crossover_N_measured'] else '> 256'} | {fmt(c.get('crossover_N_interp'))} | {fmt(c['crossover_N_code_model'])} |")
        L.append("")
    if crashes:
        L.append("**Crashed configurations** (one process each; see README, FFTW alignment): " + ", ".join(crashes))
        L.append("")
    if res.get("lv2"):
        L.append("**LV2 plugin, one 64-frame block at 48 kHz through `run()`** (in-process host, model loaded through the Worker; "
                 "µs per block, and % of one core at 48 kHz, where a block lasts 1333 µs):")
        L.append("")
        L.append("| plugin run | µs per block | % of one core |")
        L.append("|---|---|---|")
        for k, v in sorted(res["lv2"].items()):
            L.append(f"| `{k}` | {v['us_per_block']:.1f} | {v['cpu_pct']:.2f}% |")
        L.append("")
    if mem:
        L.append("**Peak memory** (max RSS, `/usr/bin/time -v`): " + "; ".join(
            f"{r['run']}: {r['max_rss_mb']:.1f} MB ({r['seconds_audio']} s of audio, {r['wall_s']:.0f} s wall{'' if r['rc'] == 0 else ', rc=' + str(r['rc'])})" for r in mem) + ".")
        L.append("")
    L.append("**Floors:**")
    L.append("")
    L.append("| floor | met | measured |")
    L.append("|---|---|---|")
    for f in res["floors"]:
        L.append(f"| {f['floor']} | {'yes' if f['met'] else '**no**'} | {f['measured']} |")
    L.append("")
    return "\n".join(L)


if __name__ == "__main__":
    main()
