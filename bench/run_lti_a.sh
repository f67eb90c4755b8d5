#!/usr/bin/env bash
# LRU / S5 / DSS / MEGA-EMA benchmarks in one run: builds bench_lti_a (-DSSM_BENCH=ON in $BUILD), runs it and the JAX reference peer
# (bench/lti_a_peer.py, run with $PY: a Python with jax + flax, e.g. third_party/venv/bin/python) on this machine,
# and writes bench/results/lti_a-<date>-<host>.md (+ .json).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
PY=${PY:-python3}
cmake -S "$ROOT" -B "$BUILD" -DSSM_BENCH=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target bench_lti_a >/dev/null
RAW=$(mktemp -d "${TMPDIR:-/tmp}/ssm-lti-a.XXXXXX")
"$BUILD/bench/bench_lti_a" --benchmark_repetitions=3 --benchmark_format=json >"$RAW/ours.json"
"$PY" "$ROOT/bench/lti_a_peer.py" --json "$RAW/peer.json" >/dev/null 2>&1
mkdir -p "$ROOT/bench/results"
OUT="$ROOT/bench/results/lti_a-$(date +%Y-%m-%d)-$(hostname -s 2>/dev/null || hostname)"
python3 - "$RAW" "$OUT" "$(lscpu | sed -n 's/^Model name: *//p' | head -1)" "$(nproc)" "$(uptime | sed 's/.*load average: //')" <<'PY'
import json, sys
raw, out, cpu, ncpu, load = sys.argv[1:]
bm = {b["run_name"]: b for b in json.load(open(f"{raw}/ours.json"))["benchmarks"] if b.get("aggregate_name") == "median"}
peer = json.load(open(f"{raw}/peer.json"))
lines = [f"# LRU / S5 / DSS / MEGA-EMA, H=64, N=64 — {cpu}, {ncpu} cores, load average {load} (loaded machine: numbers are indicative)", "",
         "| family | ssmstream stream block 1 (ns/frame) | block 64 | ssmstream batch 1 thread (ns/frame) | batch 2 threads | "
         "batch, recurrence forced, 1 thread | batch backend (auto) | "
         "reference batch (ns/frame) | reference-side stream block 1 | block 64 |", "| --- " * 10 + "|"]
fmt = lambda v: "n/a" if v is None else f"{v:.0f}"
for fam in ("lru", "s5", "dss", "ema"):
    g = lambda k: bm[k]["ns_per_frame"]
    p = {"stream_block1_ns_per_frame": None, "stream_block64_ns_per_frame": None, **peer[fam]}
    lines.append(f"| {fam} | {g(f'BM_LtiAStream/{fam}/H:64/N:64/block:1/real_time'):.0f} | {g(f'BM_LtiAStream/{fam}/H:64/N:64/block:64/real_time'):.0f} | "
                 f"{g(f'BM_LtiABatch/{fam}/H:64/N:64/threads:1/recurrence:0/real_time'):.0f} | "
                 f"{g(f'BM_LtiABatch/{fam}/H:64/N:64/threads:2/recurrence:0/real_time'):.0f} | "
                 f"{g(f'BM_LtiABatch/{fam}/H:64/N:64/threads:1/recurrence:1/real_time'):.0f} | "
                 f"{bm[f'BM_LtiABatch/{fam}/H:64/N:64/threads:1/recurrence:0/real_time'].get('label', '')} | "
                 f"{p['batch_ns_per_frame']:.0f} | {fmt(p['stream_block1_ns_per_frame'])} | {fmt(p['stream_block64_ns_per_frame'])} |")
lines += ["", "One frame = 64 channel samples through one layer. ns per channel-sample = ns/frame ÷ 64.",
          "LRU/S5 peers: the reference module's jit `apply` (batch, 2^17 frames) and, since the references have no step, a jitted "
          "JAX step / lax.scan built from the reference module's own discretised parameters. DSS peer: the reference `DSS.forward` "
          "over 4096 frames (no step API: n/a). EMA peer: `MultiHeadEMA.forward` over 2^15 frames and its incremental path.",
          f"Reference commits: LRU {peer['lru']['commit']}, S5 {peer['s5']['commit']}, DSS {peer['dss']['commit']}, "
          f"MEGA {peer['ema']['commit']}; jax {peer['jax']}, torch {peer['dss']['torch']} ({peer['dss']['threads']} threads)."]
open(out + ".md", "w").write("\n".join(lines) + "\n")
json.dump({"ours": bm, "peer": peer}, open(out + ".json", "w"), indent=1)
print("\n".join(lines))
PY
