#!/usr/bin/env bash
# A search on a GPU, checked: 4 trials at --gpus-per-trial 0.25 (all four share one GPU), then
# every trial's run in MLflow must say it ran on cuda (tag device=cuda, latency_kernel
# eager:cuda), carry peak_gpu_mb > 0 and energy from NVML (energy_source=nvml), and Tune must
# have reserved 0.25 GPU for each. Prints PASS (exit 0) or what is missing (exit 1); on a
# machine without a GPU the search is refused in one line and this exits 2.
#
#   bench/gpu_check.sh                  # from the checkout, with .venv (make venv)
#   PYTHON=python bench/gpu_check.sh    # another interpreter (CONCURRENCY=N: trials at a time, 4)
#   bench/gpu_check.sh --check NAME URI STORAGE   # only the checks, on an existing search
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

check() {  # NAME TRACKING_URI STORAGE
    "$PYTHON" - "$1" "$2" "$3" <<'EOF'
import json, sys
from pathlib import Path
from mlflow.tracking import MlflowClient

name, uri, storage = sys.argv[1:4]
client = MlflowClient(uri)
experiment = client.get_experiment_by_name(name)
runs = [] if experiment is None else client.search_runs(
    [experiment.experiment_id], "tags.`gnn_search.role` = 'trial'")
problems = [] if len(runs) == 4 else [f"{len(runs)} trial runs, expected 4"]
for run in runs:
    tags, metrics, tid = run.data.tags, run.data.metrics, run.data.tags.get("gnn_search.trial_id")
    wanted = {"device": "cuda", "energy_source": "nvml", "latency_kernel": "eager:cuda"}
    problems += [f"trial {tid}: tag {k}={tags.get(k)!r}, expected {v!r}"
                 for k, v in wanted.items() if tags.get(k) != v]
    if not metrics.get("peak_gpu_mb", 0) > 0:
        problems.append(f"trial {tid}: peak_gpu_mb={metrics.get('peak_gpu_mb')!r}, expected > 0")
    if run.info.status != "FINISHED":
        problems.append(f"trial {tid}: status {run.info.status}")
# what Tune reserved for each trial (as its saved experiment state restores it)
from ray.tune import ExperimentAnalysis

for trial in ExperimentAnalysis(str(Path(storage, name))).trials:
    reserved = trial.placement_group_factory.required_resources
    if reserved.get("GPU") != 0.25:
        problems.append(f"trial {trial.trial_id}: Tune reserved {reserved}, expected GPU 0.25")
for line in problems:
    print("FAIL:", line)
if not problems:
    for run in runs:
        m = run.data.metrics
        print(f"trial {run.data.tags['gnn_search.trial_id']}: latency_ms={m['latency_ms']:.3f} "
              f"energy_mj={m.get('energy_mj', float('nan')):.4f} "
              f"peak_gpu_mb={m['peak_gpu_mb']:.1f} val_acc={m.get('val_acc', float('nan')):.3f}")
    print("PASS: 4 trials on cuda at 0.25 GPU each, peak_gpu_mb and NVML energy recorded")
sys.exit(1 if problems else 0)
EOF
}

if [[ "${1:-}" == "--check" ]]; then
    check "$2" "$3" "$4"
    exit $?
fi

out=$(mktemp -d "${TMPDIR:-/tmp}/gnn-gpu-check-XXXXXX")
name=gpu-check
uri="sqlite:///$out/mlflow.db"
status=0
"$PYTHON" -m search.cli run --space cora_node --trials 4 --concurrency "${CONCURRENCY:-4}" \
    --gpus-per-trial 0.25 \
    --name "$name" --storage "$out/ray" --tracking-uri "$uri" --energy-window 2 --quiet \
    > "$out/search.log" 2>&1 || status=$?
if [[ $status -ne 0 ]]; then
    tail -n 1 "$out/search.log" >&2
    [[ $status -eq 2 ]] && echo "gpu_check: the search was refused (above); no GPU run" >&2
    exit "$status"
fi
check "$name" "$uri" "$out/ray"
echo "(search log, MLflow database and Tune storage: $out)"
