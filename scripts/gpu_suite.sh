#!/usr/bin/env bash
# One GPU job of at most END_S seconds (default 520) on a lent machine (no internet, torch there):
#   1. unpack CIFAR-10, start the MPS daemon if the machine has one (several runs share the GPU);
#   2. graph capture checked against eager steps (if that fails, graphs are switched off); the other
#      CUDA tests run beside the campaign;
#   3. `bench.py speed` at batch 32 / 128 / 512 (ours eager and graph-replayed, DataLoader, Avalanche)
#      and 1 vs PARALLEL runs at once at batch 32 -> results/speed.json; seed-parallel groups of
#      SEED_PARALLEL models (ResNet-18, batch 32 each) against separate runs -> results/speed-seed-parallel-cuda.json;
#   4. the campaigns (cifar10-converge, der-table2; seed 0 first) for whatever time is left, JOBS at a
#      time; runs that cannot finish are checkpointed on the machine and reported, never half-written.
# Brings back (to $OUT) only small files: logs, speed.json and a tarball of the run records (no checkpoints).
#
#   bash scripts/gpu_suite.sh            # expects .dev/cifar10_jpeg.npz + .dev/make_cifar10.py, optional .whl/
#   DRY_RUN=1 bash scripts/gpu_suite.sh  # CPU dry run with tiny settings (checks the plumbing only)
set -u
cd "$(dirname "$0")/.."  # the project root
T0=$(date +%s)
END_S=${END_S:-550}
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
JOBS=${JOBS:-4}
PARALLEL=${PARALLEL:-3}
CAMPAIGNS=${CAMPAIGNS:-"cifar10-converge der-table2"}
SEEDS=${SEEDS:-0}                        # the campaigns' seeds, e.g. "$(seq 0 14)" for MIR's 15
RUNS_OUT=${RUNS_OUT:-results/runs}       # e.g. results/cuda: GPU rows of a campaign whose CPU rows are in results/runs
GROUP=${GROUP:-1}                        # --seed-parallel K for the campaigns
SPEED=${SPEED:-1}                        # 0: skip the plain speed table (seed-parallel rows only)
DATA=${NLBENCH_DATA:-/tmp/nlbench-data}
log() { echo "[$(date +%T) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/suite.log"; }
left() { echo $(( END_S - ($(date +%s) - T0) )); }

log "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo no GPU)"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$OUT/suite.log"

# Avalanche for the speed comparison: carried wheels. wandb is too large to carry and avalanche
# imports it only for its W&B logger, never used here: an empty stand-in.
if ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl 2>&1 | tail -2
  mkdir -p /tmp/site/wandb && touch /tmp/site/wandb/__init__.py && export PYTHONPATH=/tmp/site
fi
AVALANCHE_FLAG=""
$PY -c "from avalanche.training.supervised import Naive" >/dev/null 2>&1 || { AVALANCHE_FLAG="--skip-avalanche"; log "avalanche not importable: speed runs without it"; }
if [ ! -d "$DATA/cifar-10-batches-py" ]; then
  log "unpacking CIFAR-10"
  $PY .dev/make_cifar10.py "$DATA" >/dev/null || { log "data unpack failed"; exit 2; }
fi
export NLBENCH_DATA="$DATA"

SETS=""
if [ -n "${DRY_RUN:-}" ]; then
  DEV=cpu
  SETS="backbone.name=cnn backbone.width=8 train.epochs=1 data.train_per_class=20 data.test_per_class=10 train.batch_size=16 train.warmup_epochs=0"
  SPEED_ARGS="--device cpu --images 400 --workers 0"; PARALLEL_ARGS=""
else
  DEV=cuda
  if [ "${MPS:-1}" = 1 ] && command -v nvidia-cuda-mps-control >/dev/null; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
    nvidia-cuda-mps-control -d 2>&1 | tee -a "$OUT/suite.log"
    if timeout 40 $PY -c "import torch; torch.ones(1, device='cuda').sum().item()" >/dev/null 2>&1; then
      export NLBENCH_MPS=1; log "MPS daemon on"
    else
      echo quit | nvidia-cuda-mps-control; unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY; log "MPS failed: off"
    fi
  fi
  GRAPH_TESTS=""
  if [ "${GRAPH_CHECK:-1}" = 0 ]; then  # no serial check: the graph tests run with the other CUDA tests, beside
    GRAPH_TESTS=1; echo "1 passed (graph check deferred: it runs beside the campaign)" > "$OUT/pytest_graph.log"
  else
  log "graph check (captured steps against eager steps)"
  timeout 90 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py -k graph_replayed > "$OUT/pytest_graph.log" 2>&1
  fi
  tail -2 "$OUT/pytest_graph.log" | tee -a "$OUT/suite.log"
  SPEED_ARGS="--device cuda --images 20000"; PARALLEL_ARGS="--parallel $PARALLEL"
  if ! grep -q " passed" "$OUT/pytest_graph.log" || grep -q "failed" "$OUT/pytest_graph.log"; then
    log "graph capture not confirmed: CUDA graphs OFF for this job"
    SETS="train.cuda_graph=false"; SPEED_ARGS="$SPEED_ARGS --eager-only"; PARALLEL_ARGS=""
  fi
fi

if [ "$SPEED" = 1 ]; then
log "speed"
timeout 150 $PY bench.py speed $SPEED_ARGS $PARALLEL_ARGS --data full --no-download $AVALANCHE_FLAG \
  --out results/speed.json > "$OUT/speed.log" 2>&1
grep -v -i warn "$OUT/speed.log" | tail -20 | tee -a "$OUT/suite.log"
fi
if [ "${SP_SPEED:-1}" = 1 ]; then  # 0: skip the seed-parallel speed rows (already measured)
log "seed-parallel speed (K = ${SEED_PARALLEL:=1 2 4 8 16})"
timeout ${SP_TIMEOUT:-150} $PY bench.py speed $SPEED_ARGS --only-seed-parallel --seed-parallel $SEED_PARALLEL --batch-sizes 32 \
  --data full --no-download ${DRY_RUN:+--set backbone.name=cnn backbone.width=8} \
  --out results/speed-seed-parallel-$DEV.json > "$OUT/speed-seed-parallel.log" 2>&1
grep -v -i warn "$OUT/speed-seed-parallel.log" | tail -8 | tee -a "$OUT/suite.log"

fi

BUDGET=$(( $(left) - 25 ))
log "campaigns: $CAMPAIGNS, seeds $(echo $SEEDS), budget ${BUDGET}s, $JOBS at a time, seed-parallel $GROUP"
if [ -z "${DRY_RUN:-}" ] && [ "${CUDA_TESTS:-all}" != none ]; then  # the other CUDA tests, beside the campaign (small: they barely slow it)
  if [ -n "$GRAPH_TESTS" ]; then PICK=(); else PICK=(-k "not graph_replayed"); fi
  if [ "${CUDA_TESTS:-all}" != all ]; then PICK=(-k "$CUDA_TESTS"); fi  # a -k expression: only those tests
  timeout 200 $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py "${PICK[@]}" > "$OUT/pytest_cuda.log" 2>&1 &
fi
if [ "$BUDGET" -gt 60 ]; then
  $PY bench.py campaign $CAMPAIGNS --seeds $SEEDS --budget "$BUDGET" --grace 15 --jobs "$JOBS" --out "$RUNS_OUT" --seed-parallel "$GROUP" \
    --device $DEV --data full --no-download ${SETS:+--set $SETS} > "$OUT/campaign.log" 2>&1
  log "campaign exit $?"
  grep -E "^campaign|start|done|FAILED|not started|error" "$OUT/campaign.log" | tail -40 | tee -a "$OUT/suite.log"
fi
wait
tail -3 "$OUT/pytest_cuda.log" 2>/dev/null | tee -a "$OUT/suite.log"
$PY bench.py campaign $CAMPAIGNS --status --seeds $SEEDS --out "$RUNS_OUT" 2>&1 | tee -a "$OUT/suite.log"
if [ "$RUNS_OUT" = results/runs ]; then RECORDS="results/runs/converge results/runs/der results/runs/gdumb"; else RECORDS="$RUNS_OUT"; fi
tar czf "$OUT/records.tgz" --exclude="*.ckpt" --exclude="*.tmp" $RECORDS results/speed.json 2>/dev/null
cp results/speed.json results/speed-seed-parallel-$DEV.json "$OUT/" 2>/dev/null
log "done"
