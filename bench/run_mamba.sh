#!/usr/bin/env bash
# Mamba / Mamba-2 benchmarks in one run: builds bench_mamba and bench_fma_peak (-DSSM_BENCH=ON in $BUILD), writes the
# 130M-class checkpoints once (random weights, F32 and BF16) with bench/mamba_peer.py, runs bench_mamba and the
# transformers peer on this machine, and writes bench/results/mamba-<date>-<host>.md (+ .json).
#   BUILD=…  build directory (default build-bench-mamba)   LM_DIR=…  where the 130M checkpoints go (default /tmp/ssm-lm)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench-mamba}
LM_DIR=${LM_DIR:-/tmp/ssm-lm}
cmake -S "$ROOT" -B "$BUILD" -DSSM_BENCH=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target bench_mamba bench_fma_peak ssm >/dev/null
[ -d "$LM_DIR/mamba-130m-f32" ] || python3 "$ROOT/bench/mamba_peer.py" --make-lm "$LM_DIR" 2>/dev/null
RAW=$(mktemp -d "${TMPDIR:-/tmp}/ssm-mamba.XXXXXX")
"$BUILD/bench/bench_fma_peak" --benchmark_format=json >"$RAW/fma.json" 2>/dev/null
"$BUILD/bench/bench_mamba" --lm="$LM_DIR/mamba-130m-f32,$LM_DIR/mamba-130m-bf16" --benchmark_format=json >"$RAW/mamba.json"
python3 "$ROOT/bench/mamba_peer.py" --json "$RAW/peer.json" --lm "$LM_DIR/mamba-130m-f32,$LM_DIR/mamba-130m-bf16" >/dev/null 2>&1
mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/mamba-$(date +%Y-%m-%d)-$(hostname -s 2>/dev/null || hostname)"
python3 - "$RAW" "$OUT" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" "$(git -C "$ROOT" rev-parse --short HEAD)" <<'PY'
import json, sys
raw, out, cpu, ncpu, rev = sys.argv[1:]
fma = json.load(open(f"{raw}/fma.json"))["benchmarks"]
peak = max(b.get("GFLOPs", 0) for b in fma)
bm = {b["name"]: b for b in json.load(open(f"{raw}/mamba.json"))["benchmarks"] if b.get("aggregate_name", "median") == "median"}
peer = json.load(open(f"{raw}/peer.json"))
def get(prefix):
    return next(v for k, v in bm.items() if k.startswith(prefix))
rows = ["| what | ssmstream | transformers (torch CPU, slow path) | note |", "| --- | --- | --- | --- |"]
for fam, key in (("Mamba", "BM_MambaStream/D:256/N:16"), ("Mamba-2", "BM_Mamba2Stream/D:256/N:64/P:64")):
    for block in (1, 64):
        b = get(f"{key}/block:{block}/")
        p = peer["blocks"][("mamba" if fam == "Mamba" else "mamba2") + "_step_ns_per_frame"]
        rows.append(f"| {fam} block d_model 256 stream, block {block} | {b['ns_per_frame']/1e3:.1f} µs/frame, {b['GFLOPs']:.1f} GFLOP/s "
                    f"({100*b['GFLOPs']/peak:.0f}% of the {peak:.0f} GFLOP/s FMA peak) | {p/1e3:.0f} µs/frame (cache step) | 1 thread |")
for fam in ("mamba", "mamba2"):
    s = get(f"BM_SignalStream/{fam}/")
    rows.append(f"| signal {fam} (2 blocks d_model 64, N 64) stream block 64 | {s['x_realtime']:.1f}× real time (16 kHz) | | 1 stream |")
    for th in (1, 2):
        b = get(f"BM_SignalBatch/{fam}/threads:{th}")
        rows.append(f"| signal {fam} batch, {th} thread(s), 1 min of 16 kHz | {b['x_realtime']:.1f}× real time, peak RSS {b['peak_rss_mb']:.0f} MB | | |")
cb = get("BM_CopyBandwidth")["GBps_read"]  # GB/s (the counters are in their units)
for d in ("f32", "bf16"):
    b = get(f"BM_LMStep/mamba-130m-{d}")
    p = peer["lm"][f"mamba-130m-{d}"]
    floor = (b["weight_bytes_f32"] - 50280 * 768 * 4) / (2 * cb * 1e9) * 1e3 / (2 if d == "bf16" else 1)  # the file's bytes
    rows.append(f"| 130M-class LM token step ({d.upper()} file) | {b['ms_per_token']:.1f} ms/token ({b['ms_per_token'] / floor:.2f}× the floor), load {b['load_s']:.2f} s | "
                f"{p['ms_per_token']:.0f} ms/token ({p['threads']} threads), load {p['load_s']:.2f} s | floor {floor:.1f} ms (weights read once at "
                f"2 × {cb:.1f} GB/s memcpy read rate; {b.get('weight_bytes_held', b['weight_bytes_f32']) / 1e6:.0f} MB of weights held: BF16 matrices stay BF16) |")
md = f"# Mamba benchmarks — {cpu}, {ncpu} cores, commit {rev}\n\n" + "\n".join(rows) + "\n"
open(out + ".md", "w").write(md)
json.dump({"fma_peak_gflops": peak, "bench": bm, "peer": peer}, open(out + ".json", "w"), indent=1)
print(md)
PY
