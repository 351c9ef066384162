#!/usr/bin/env bash
# pixelcnn_digits trained on the old data path (commit 3fbc95f: every worker reads the whole split through a
# DistributedSampler) and on this commit's (Ray Data shards), 3 training seeds each (train.seed 0, 1, 2), every
# model evaluated by this commit's evaluation code, so the two columns differ by the data path and the seed only.
#
#   bash benchmarks/data_path_seeds.sh [VENV]     # VENV: a venv with the project installed (default .venv)
#
# Each (path, seed) runs in a fresh clone under a scratch folder: `dvc repro train@pixelcnn_digits` with the seed
# set in params.yaml, then the features stage and `python -m pipelines.evaluate pixelcnn_digits` with components/ and
# pipelines/ of this commit. Writes benchmarks/results/data_path/seeds/<path>_seed<k>.eval.json and summarises them
# (benchmarks/results/data_path/seeds.md, by benchmarks/data_path_seeds.py). About 5 minutes per run on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
venv="$(cd "${1:-$here/.venv}" && pwd)"
before=3fbc95f
after="$(git -C "$here" rev-parse HEAD)"
out="$here/benchmarks/results/data_path/seeds"
scratch="$(mktemp -d /tmp/data_path_seeds.XXXXXX)"
trap 'rm -rf "$scratch"' EXIT
mkdir -p "$out"
export MLFLOW_DISABLE_TELEMETRY=true PATH="$venv/bin:$PATH"
uptime > "$out/load_before.txt"
for path in before after; do
  for seed in 0 1 2; do
    dir="$scratch/$path$seed"
    git clone -q "$here" "$dir"
    git -C "$dir" checkout -q "$([ "$path" = before ] && echo "$before" || echo "$after")"
    # the experiment's train line, with the seed appended (the same line at both commits)
    sed -i "s/train: {epochs: 15, batch_size: 16, lr: 0.002, num_workers: 2}/train: {epochs: 15, batch_size: 16, lr: 0.002, num_workers: 2, seed: $seed}/" "$dir/params.yaml"
    grep -q "num_workers: 2, seed: $seed}" "$dir/params.yaml"
    start=$(date +%s)
    (cd "$dir" && dvc repro -q train@pixelcnn_digits)
    train_s=$(( $(date +%s) - start ))
    # the domain classifier and the evaluation from this commit's code (the old evaluation drew its samples
    # differently); the features stage is deterministic, so every run is scored in the same feature space
    git -C "$dir" checkout -q "$after" -- components pipelines
    (cd "$dir" && python -m pipelines.features && python -m pipelines.evaluate pixelcnn_digits)
    python - "$dir" "$out/${path}_seed$seed.eval.json" "$path" "$seed" "$train_s" <<'EOF'
import json, sys
from pathlib import Path
d, dest, path, seed, train_s = sys.argv[1:]
ev = json.loads((Path(d) / "reports/pixelcnn_digits/eval.json").read_text())
ev["_run"] = {"path": path, "seed": int(seed), "train_wall_s": int(train_s)}
Path(dest).write_text(json.dumps(ev, indent=2, sort_keys=True) + "\n")
EOF
    rm -rf "$dir"
  done
done
uptime > "$out/load_after.txt"
python "$here/benchmarks/data_path_seeds.py" "$out" --commit-before "$before" --commit-after "$after"
