#!/usr/bin/env bash
# On a lent GPU machine (`run` with carry models/train/data/ecg2/ecg_sources_i16.npz and
# models/train/data/eeg/eeg_sources.npz), from the repository root: trains biosignal denoisers side by side on one
# GPU, each with its own CPU workers making batches, and leaves every run's directory (model file, checkpoint, log)
# in $OUT/runs.tgz. Each line of RUNS is "name | train_denoiser.py arguments".
#   RUNS="ecg-a|--task ecg --d_model 64 --n_layers 4 --delay 15" bash models/train/biosig/gpu_train.sh
set -uo pipefail
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__)" | tee -a "$OUT/gpu.txt"
pids=()
while IFS='|' read -r name args; do
  [ -z "$name" ] && continue
  # shellcheck disable=SC2086
  PYTHONUNBUFFERED=1 python3 models/train/biosig/train_denoiser.py $args --device cuda --out "$OUT/$name" \
    > "$OUT/$name.log" 2>&1 &
  pids+=($!)
  echo "started $name: $args"
done <<< "$RUNS"
for p in "${pids[@]}"; do wait "$p"; done
for f in "$OUT"/*.log; do echo "== $f"; tail -3 "$f"; done
# One archive for everything: `run` brings back only a few files per call.
(cd "$OUT" && tar czf runs.tgz --remove-files -- */ *.log)
