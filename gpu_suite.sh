#!/usr/bin/env bash
# The whole GPU check in one call on a lent GPU machine (no internet, torch preinstalled):
# unpack the data, run the CUDA tests, `bench.py speed`, the paper-profile grid (every built-in
# strategy on split-cifar and permuted-cifar plus the standard CIFAR-10 comparison, 3 seeds each,
# several runs in parallel on the one GPU), then `bench.py report`. Everything it produces goes
# to results/ and, packed, to $OUT.
#
#   bash gpu_suite.sh            # expects .dev/cifar10_jpeg.npz + .dev/make_cifar10.py, optional .whl/
#   DRY_RUN=1 bash gpu_suite.sh  # CPU dry run with a tiny grid (checks the plumbing only)
set -u
cd "$(dirname "$0")"
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
JOBS=${JOBS:-6}
GRID_LIMIT=${GRID_LIMIT:-360}
DATA=${NLBENCH_DATA:-/tmp/nlbench-data}
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/suite.log"; }

log "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo no GPU)"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/suite.log"

# Avalanche for the speed comparison: carried wheels, if any. wandb is too large to carry and
# avalanche imports it only for its W&B logger, which is never used here: an empty stand-in.
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && \
    mkdir -p /tmp/site/wandb && touch /tmp/site/wandb/__init__.py && export PYTHONPATH=/tmp/site
fi
AVALANCHE_FLAG=""
$PY -c "from avalanche.training.supervised import Naive" 2>/dev/null || { AVALANCHE_FLAG="--skip-avalanche"; log "avalanche not importable: speed runs without it"; }

if [ ! -d "$DATA/cifar-10-batches-py" ]; then
  log "unpacking CIFAR-10"
  $PY .dev/make_cifar10.py "$DATA" >/dev/null || { log "data unpack failed"; exit 2; }
fi
export NLBENCH_DATA="$DATA"

if [ -n "${DRY_RUN:-}" ]; then
  DEV=cpu; PROFILE=quick
  GRID_SETS="--set backbone.width=8 train.epochs=1 data.train_per_class=20 data.test_per_class=10"
  SPEED_ARGS="--device cpu --images 500 --workers 0"
else
  DEV=cuda; PROFILE=paper; GRID_SETS=""; SPEED_ARGS="--device cuda"
  log "CUDA tests"
  timeout 150 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -4 | tee -a "$OUT/suite.log"
fi

log "speed"
timeout 200 $PY bench.py speed $SPEED_ARGS --data full $AVALANCHE_FLAG --out results/speed.json 2>&1 | grep -v -i warn | tee -a "$OUT/suite.log"

log "grid: split-cifar, permuted-cifar, cifar10 x all strategies x 3 seeds, $JOBS in parallel"
start=$(date +%s.%N)
timeout "$GRID_LIMIT" $PY bench.py --scenario split-cifar permuted-cifar cifar10 --strategy all --seeds 0 1 2 \
  --profile $PROFILE --device $DEV --data full --out results/runs/paper --quiet --no-download --jobs "$JOBS" $GRID_SETS \
  > "$OUT/grid.log" 2>&1
code=$?
end=$(date +%s.%N)
n=$(find results/runs/paper -name 'seed*.json' | wc -l)
log "grid exit $code, $n run records, $(echo "$end - $start" | bc) s"
$PY - "$start" "$end" "$code" "$n" <<'PY'
import json, sys, pathlib
start, end, code, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
p = pathlib.Path("results/speed.json")
d = json.loads(p.read_text()) if p.exists() else {}
d.update({"grid_seconds": end - start, "grid_exit_code": code, "grid_records": n,
          "grid_command": "bench.py --scenario split-cifar permuted-cifar cifar10 --strategy all --seeds 0 1 2 --profile paper --jobs N"})
tmp = p.with_suffix(".tmp"); tmp.write_text(json.dumps(d, indent=1) + "\n"); tmp.replace(p)
PY
grep -E "^== |error" "$OUT/grid.log" | tail -80 > "$OUT/grid_summary.txt"

log "report"
$PY bench.py report --runs results/runs/paper --out /tmp/report-paper 2>&1 | tail -3 | tee -a "$OUT/suite.log"
tar czf "$OUT/gpu_results.tgz" --exclude="*.ckpt" --exclude="*.tmp" results/runs/paper results/speed.json  # checkpoints would exceed the 16 MB return limit
cp results/speed.json "$OUT/" 2>/dev/null
log "done"
