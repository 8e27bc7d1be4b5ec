#!/usr/bin/env bash
# The commands that make each record set in results/runs (records at PROFILE/DATA/SCENARIO/RUN/seedK.json).
# Every command skips the runs whose records exist with the same config, so any line may be rerun; delete a
# set's folder first to remake it. Each record names the git commit it ran at (versions.git_commit); when a
# set was made, from which clean worktree and beside what, is in the message of the commit that added it:
#   git log --stat -- results/runs/online        # e.g. the history of the MIR-protocol records
# (the dated logs this file replaces: git show 6b377dc:results/commands.sh, 6b377dc:results/gpu_commands.sh).
# Data: the offline CIFAR-10 copy (a JPEG-75 re-encode, not the official files), written with
#   python ../shared/data/cifar10/make_cifar10.py data/    -> data/cifar-10-batches-py
set -euo pipefail
DATA=${NLBENCH_DATA:-data}
R="--out results/runs --data-root $DATA --no-download"

# --- CPU, quick profile, full data (quick/full/): the per-profile tables, their ablations and studies ---
B="python bench.py --profile quick --device cpu --quiet --data full $R --seeds 0 1 2 3 4"
$B --scenario split-cifar permuted-cifar --strategy adam ewc replay nested nested-blog cms nested-cms joint
$B --scenario permuted-cifar --strategy finetune
$B --scenario cifar10 --strategy adam nested nested-blog cms nested-cms
for S in split-cifar permuted-cifar cifar10; do  # the architecture-matched twins (every period 1)
  $B --scenario $S --strategy nested cms nested-blog --set strategy.periods=1
  $B --scenario $S --strategy nested-cms --set strategy.periods=1 strategy.cms_periods=1
  $B --scenario $S --strategy nested-blog --set strategy.periods=1 strategy.lr_periods=powers_of_two
done
for s in strategy.lr_scaling=period strategy.grad_reduce=mean strategy.grad_reduce=drop strategy.reset_on_task=true; do
  $B --scenario split-cifar --strategy nested --set $s   # ablations
done
# the nested-study table (scenarios/split-cifar.yaml report.studies)
$B --scenario split-cifar --strategy m3 muon
$B --scenario split-cifar --strategy m3 --set strategy.alpha=0.0
$B --scenario split-cifar --strategy finetune --set train.optimizer=sgd train.lr=0.01
$B --scenario split-cifar --strategy nested --set strategy.level_optimizer=sgd train.lr=0.01
$B --scenario split-cifar --strategy nested --set strategy.level_optimizer=sgd strategy.periods=1 train.lr=0.01
$B --scenario split-cifar --strategy nested --set strategy.level_optimizer=sgd strategy.grad_reduce=mean train.lr=0.01
$B --scenario split-cifar --strategy nested --set strategy.level_optimizer=sgd strategy.grad_reduce=drop train.lr=0.01
$B --scenario split-cifar --strategy replay ewc --set train.levels=nested
$B --scenario split-cifar --strategy replay --set "backbone.cms=[16,4,1]"
$B --scenario split-cifar --strategy replay --set "backbone.cms=[1,1,1]"
$B --scenario split-cifar --strategy nested --set strategy.level_optimizer=nested-adam strategy.periods=1 strategy.slow_period=16
# the class-order study: 3 class orders x 3 seeds (runs named NAME@scenario.class_order_seed=K)
for o in 0 1 2; do
  $B --scenario split-cifar --strategy adam replay nested --seeds 0 1 2 --set scenario.class_order_seed=$o
done
# tuned against tuned (issue 30): 20 finished held-out trials per method (studies in results/runs/tuning/), then 5 seeds
python bench.py tune --scenario split-cifar --strategy adam ewc replay nested cms --trials 20 --data full $R
python bench.py tune --scenario split-cifar --strategy cms --trials 20 --data full $R --set strategy.periods=1
$B --scenario split-cifar --strategy adam ewc replay nested cms --tuned held-out
$B --scenario split-cifar --strategy cms --tuned held-out --set strategy.periods=1
# Avalanche parity (quick profile; both sides, paired by seed): our baselines and their Avalanche twins
python bench.py campaign avalanche-parity --budget 30000 --data full $R

# --- CPU, quick profile, the embedded mini set (quick/mini/) ---
M="python bench.py --profile quick --device cpu --quiet --data mini --out results/runs --seeds 0 1 2 3 4"
$M --scenario split-cifar --strategy adam ewc replay nested nested-blog cms nested-cms joint
$M --scenario cifar10 --strategy adam nested nested-blog cms nested-cms

# --- CPU campaigns: the Nested verdict (retention/full/) and MIR's online protocol (online/full/) ---
OMP_NUM_THREADS=1 python bench.py campaign verdict-split --budget 20000 --data full $R &
OMP_NUM_THREADS=1 python bench.py campaign verdict-permuted --budget 20000 --data full $R
# 2026-12-08: the displacement-matched controls' lr factors (scenarios/campaigns/calibration/, seeds 100 and 101;
# each file holds its own command and commit), then the rows they changed. Nested, CMS and replay + Nested levels
# were rerun (their records deleted first) so that they hold displacement; scripts/compare_records.py compares
# the reruns with the records they replaced.
python bench.py calibrate verdict-permuted --data full
python bench.py calibrate verdict-split --data full
python bench.py campaign verdict-permuted --budget 3600 --jobs 1 --data full $R
python bench.py campaign verdict-split --budget 6600 --jobs 2 --data full $R
wait
python bench.py campaign mir-online --budget 40000 --jobs 2 --data full $R   # rows in the YAML's order, seed-major
# GDumb's own protocol (gdumb/full/): the memory of 200 on the CPU, one thread a run beside another run
OMP_NUM_THREADS=1 python bench.py --scenario split-cifar --strategy gdumb --profile gdumb --seeds 0 --set strategy.buffer_size=200 --data full $R

# --- CPU speed files ---
python bench.py speed --device cpu --data full --out results/speed.json
python bench.py speed --device cpu --data full --only-seed-parallel --seed-parallel 1 2 4 8 16 --batch-sizes 10 --images 2000 --set backbone.name=resnet18 backbone.width=20 --out results/speed-seed-parallel-cpu-online.json
python bench.py speed --device cpu --data full --only-seed-parallel --seed-parallel 1 2 4 8 16 --batch-sizes 32 --images 5000 --out results/speed-seed-parallel-cpu-quick.json

# --- GPU (a machine lent through the device tool; scripts/gpu_suite.sh is the one-call version) ---
# gpu-short/full/ (an H100, 2026-11-25; the profile was called paper then) and speed-h100.json:
python bench.py --scenario split-cifar --strategy adam ewc replay nested nested-blog cms nested-cms joint --seeds 0 1 2 --profile gpu-short --device cuda --quiet --jobs 8 $R
# der/full/ and converge/full/ (an H200, 2026-11-26; logs in results/gpu-logs/) and speed-h200.json:
python bench.py campaign der-table2 cifar10-converge --seeds 0 --budget 550 --jobs 4 --device cuda --data full $R
python bench.py speed --device cuda --data full --out results/speed-h200.json
# cuda/online/full/ (an H200, 2026-11-29, one call; logs in results/gpu-logs/): mir-online on CUDA, its own
# records folder since a record's path does not name the device; groups of 15 seeds where a row can group.
# scripts/gpu_suite.sh ran it with SEEDS="$(seq 0 14)" RUNS_OUT=results/cuda GROUP=15 SPEED=0 JOBS=8 on a subset
# of mir-online's rows (Fine-tune, ER-200/500/1000, iid online, ER-ACE-200/1000, ER-MIR-200/500/1000, EWC,
# Fine-tune lr 0.03, Nested, CMS, CMS every period 1), the subset's rows in that order:
python bench.py campaign mir-online --seeds $(seq 0 14) --seed-parallel 15 --budget 450 --grace 15 --jobs 8 --device cuda --data full --out results/cuda
# 2026-11-30 (H200, two calls; the same command continues every row): EWC and CMS every period 1 (groups), then
# ER-200/500/1000 with 13 jobs, then ER-MIR-200/500/1000 with 14 (SP_SPEED=0 CUDA_TESTS=none: no speed rows, no tests)
# speed-seed-parallel-cuda.json (the same call):
python bench.py speed --device cuda --images 20000 --only-seed-parallel --seed-parallel 1 2 4 8 16 --batch-sizes 32 --data full --out results/speed-seed-parallel-cuda.json

python bench.py report
