#!/usr/bin/env bash
# One hour of 16 kHz audio through `ssm run --backend cuda` and through the CPU path, with the shipped hum-remover
# and the realistic 16 kHz model (Linear 1→64, 4 pre-norm LayerNorm residual S4D blocks H=64 N=64, Linear 64→1, as
# bench/README.md's BM_S4DBatch); prints the timing summaries and the difference between the two outputs.
# usage: bench/cuda/hour_run.sh BIN_DIR OUT_DIR   (BIN_DIR holds ssm and make_test_model)
# CPU_FOR: the models (basenames) also run on the CPU for the comparison, default all; CPU_BACKEND as ssm's --backend.
# MODELS: other model files instead of those two (e.g. the Mamba signal models of bench/cuda/make_mamba_models.py).
set -euo pipefail
BIN=$1; OUT=$2; WORK=${WORK:-/tmp/ssm-hour}
mkdir -p "$WORK" "$OUT"
python3 - "$WORK/hour.wav" <<'PY'
import sys, wave, numpy as np
rate, secs = 16000, 3600
rng = np.random.default_rng(1)
t = np.arange(rate * secs) / rate
x = 0.3 * np.sin(2 * np.pi * 50 * t) * (1 + 0.1 * np.sin(2 * np.pi * 0.1 * t)) + 0.2 * rng.standard_normal(t.size)
pcm = np.clip(x * 32767 * 0.5, -32768, 32767).astype('<i2')
with wave.open(sys.argv[1], 'wb') as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(rate); w.writeframes(pcm.tobytes())
PY
[ -n "${MODELS:-}" ] || "$BIN/make_test_model" "$WORK/realistic.safetensors" 1 1 64 4 64 16000 1
compare() {
python3 - "$1" "$2" <<'PY'
import sys, numpy as np
a = np.load(sys.argv[1]).astype(np.float64); b = np.load(sys.argv[2]).astype(np.float64)
d = a - b
print(f"  frames {a.shape[0]}: rms(cpu) {np.sqrt((b*b).mean()):.4g}, rms(gpu - cpu) / rms(cpu) = {np.sqrt((d*d).mean() / (b*b).mean()):.3e}, max |gpu - cpu| = {np.abs(d).max():.3e}")
PY
}
for m in ${MODELS:-models/hum-remover/hum-remover.safetensors $WORK/realistic.safetensors}; do
  name=$(basename "$m" .safetensors)
  echo "== $name: ssm run --backend cuda (1 h of 16 kHz)"
  "$BIN/ssm" run "$m" "$WORK/hour.wav" "$WORK/$name-gpu.npy" --backend cuda --json -q | tee "$OUT/$name-gpu.json" | grep -E '"seconds"|x_realtime|"backend"' 
  case " ${CPU_FOR:-all} " in *" all "*|*" $name "*) ;; *) echo "== $name: CPU run skipped (CPU_FOR)"; continue ;; esac
  echo "== $name: ssm run --backend ${CPU_BACKEND:-auto} (CPU, $(nproc) threads)"
  "$BIN/ssm" run "$m" "$WORK/hour.wav" "$WORK/$name-cpu.npy" --backend ${CPU_BACKEND:-auto} --json -q | tee "$OUT/$name-cpu.json" | grep -E '"seconds"|x_realtime|"backend"'
  compare "$WORK/$name-gpu.npy" "$WORK/$name-cpu.npy"
done
