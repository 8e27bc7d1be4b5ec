#!/usr/bin/env bash
# The exact commands that produced the committed quick-profile CPU records in results/runs.
# Data: the offline CIFAR-10 copy (JPEG re-encoded), written with
#   python ../shared/data/cifar10/make_cifar10.py data/    -> data/cifar-10-batches-py
set -euo pipefail
DATA=${NLBENCH_DATA:-data}
B="python bench.py --profile quick --device cpu --quiet --data-root $DATA --out results/runs --seeds 0 1 2"
$B --scenario split-cifar permuted-cifar --strategy all
$B --scenario cifar10 --strategy all
# Ablations of the Nested/CMS knobs on split-cifar (runs named by their overrides)
$B --scenario split-cifar --strategy nested --set strategy.periods=1
$B --scenario split-cifar --strategy nested --set strategy.lr_scaling=period
$B --scenario split-cifar --strategy nested --set strategy.grad_reduce=mean
$B --scenario split-cifar --strategy nested --set strategy.grad_reduce=drop
$B --scenario split-cifar --strategy nested --set strategy.reset_on_task=true
$B --scenario split-cifar --strategy cms --set strategy.periods=1
# Avalanche parity on the real quick profile (same backbone, optimizer, batch, epochs, augmentation)
$B --scenario split-cifar --strategy avalanche:Naive
$B --scenario split-cifar --strategy avalanche:EWC --set strategy.ewc_lambda=100
$B --scenario split-cifar --strategy avalanche:Replay --set strategy.mem_size=500
python bench.py speed --device cpu --out results/speed.json
# The embedded mini CIFAR-10 (what `--data auto` falls back to without the full set): every built-in
# strategy, quick profile, one run at a time; its runtime table measures the one-minute target.
M="python bench.py --profile quick --device cpu --quiet --data mini --out results/runs/mini --seeds 0 1 2"
$M --scenario split-cifar permuted-cifar --strategy all
$M --scenario cifar10 --strategy all
python bench.py report
# 2026-11-26 (issue 12: cms and nested-cms built their backbone twice, so their untrained network
# differed from the other strategies'; replay now decides its reservoir on the device and draws its
# replay batch without replacement): those records rerun with the fixed code, replacing the old ones.
$B --scenario split-cifar permuted-cifar cifar10 --strategy cms nested-cms --force
$B --scenario split-cifar permuted-cifar --strategy replay --force
$B --scenario split-cifar --strategy cms --set strategy.periods=1 --force
$M --scenario split-cifar permuted-cifar cifar10 --strategy cms nested-cms --force
$M --scenario split-cifar permuted-cifar --strategy replay --force
python bench.py report
# 2026-11-26, issue 13: permuted-cifar now runs on the MLP (every input value permuted, per-image
# standardisation, no crop/flip); the conv-net permuted records were removed and these replace them.
# Run from a clean worktree of a0d4da5 (git worktree add /tmp/nlb-run a0d4da5), records copied back.
$B --scenario permuted-cifar --strategy all --seeds 0 1 2 3 4
# Issue 13/14 (from a clean worktree of the commit that added them, records copied back): seeds 3 and 4
# of the split table, the architecture- and learning-rate-matched controls of the Nested strategies,
# seeds 3 and 4 of the standard comparison, and the class-order study (3 class orders x 3 seeds).
ALL="adam ewc replay nested nested-blog cms nested-cms joint"
$B --scenario split-cifar --strategy $ALL --seeds 3 4
$B --scenario split-cifar --strategy nested cms --seeds 3 4 --set strategy.periods=1
$B --scenario split-cifar --strategy nested-blog --seeds 0 1 2 3 4 --set strategy.periods=1
$B --scenario split-cifar --strategy nested-blog --seeds 0 1 2 3 4 --set strategy.periods=1 strategy.lr_periods=powers_of_two
$B --scenario cifar10 --strategy adam nested nested-blog cms nested-cms --seeds 3 4
for o in 0 1 2; do
  python bench.py --profile quick --device cpu --quiet --data-root $DATA --scenario split-cifar --strategy adam replay nested \
    --seeds 0 1 2 --set scenario.class_order_seed=$o --out results/runs/class-order/order$o
done
$B --scenario split-cifar --strategy nested-cms --seeds 0 1 2 3 4 --set strategy.periods=1 strategy.cms_periods=1
python bench.py report
# 2026-11-26, second session (issue 13): seeds 3-4 of the permuted table, the Nested/CMS twins of the
# permuted and standard tables (5 seeds), seeds 3-4 of the split ablations. From a clean worktree of
# 8e18543, two runs at a time (--jobs 2: one torch thread each), records copied back.
J="$B --jobs 2"
$J --scenario permuted-cifar --strategy replay nested nested-blog cms nested-cms joint ewc --seeds 3 4
for S in permuted-cifar cifar10; do
  $J --scenario $S --strategy nested cms nested-blog --seeds 0 1 2 3 4 --set strategy.periods=1
  $J --scenario $S --strategy nested-cms --seeds 0 1 2 3 4 --set strategy.periods=1 strategy.cms_periods=1
  $J --scenario $S --strategy nested-blog --seeds 0 1 2 3 4 --set strategy.periods=1 strategy.lr_periods=powers_of_two
done
for s in strategy.grad_reduce=mean strategy.grad_reduce=drop strategy.lr_scaling=period strategy.reset_on_task=true; do
  $J --scenario split-cifar --strategy nested --seeds 3 4 --set $s
done
# Issue 14, the nested-study table (scenarios/split-cifar.yaml report.studies), 5 seeds, from a clean
# worktree of 1d5ebc6: M3 and its controls, SGD inside the levels, levels and a CMS head on replay/EWC,
# the blog's NestedAdam.
N="$J --scenario split-cifar --seeds 0 1 2 3 4"
$N --strategy m3 muon
$N --strategy m3 --set strategy.alpha=0.0
$N --strategy finetune --set train.optimizer=sgd train.lr=0.01
$N --strategy nested --set strategy.level_optimizer=sgd train.lr=0.01
$N --strategy nested --set strategy.level_optimizer=sgd strategy.periods=1 train.lr=0.01
$N --strategy nested --set strategy.level_optimizer=sgd strategy.grad_reduce=mean train.lr=0.01
$N --strategy nested --set strategy.level_optimizer=sgd strategy.grad_reduce=drop train.lr=0.01
$N --strategy replay ewc --set train.levels=nested
$N --strategy replay --set "backbone.cms=[16,4,1]"
$N --strategy replay --set "backbone.cms=[1,1,1]"
$N --strategy nested --set strategy.level_optimizer=nested-adam strategy.periods=1 strategy.slow_period=16
# The mini-set tables to 5 seeds, from a clean worktree of bb64fcd (the permuted mini table, removed with the
# conv-net records, was not rerun: its runs cost as much as the full-data ones, 500 images per class).
MJ="$M --jobs 2"
$MJ --scenario split-cifar --strategy adam ewc replay nested nested-blog cms nested-cms joint --seeds 3 4
$MJ --scenario cifar10 --strategy adam nested nested-blog cms nested-cms --seeds 3 4
# Issue 15: MIR's online protocol, campaign mir-online, seeds 0-2, from a clean worktree of bb64fcd. Run as two
# copies of scenarios/campaigns/mir-online.yaml holding its first 5 rows (the published ones) and its last 4,
# so that the published rows of every seed ran first; the same runs as:
python bench.py campaign mir-online --out results/runs --seeds 0 1 2 --jobs 2 --budget 20000 --data-root $DATA
# Third session: seeds 1-2 of the published rows from a clean worktree of daedccf, then (after the online
# profile gave EWC mammoth's plain-SGD online-EWC settings, c3d69c5) ER-1000 seed 2 and the EWC / Nested /
# CMS rows from a clean worktree of c3d69c5; the same command as above continues it (it skips what exists).
# Fourth session: the third seed of both CMS rows from a clean worktree of 14dac86; then EWC (all 3 seeds
# again: the online profile's EWC now uses mammoth's p(y|x)-weighted Fisher, 74f6705) and seeds 3-4 of the
# published rows, from a clean worktree of 74f6705, as two copies of mir-online.yaml holding those rows
# (EWC first); the same runs as the command below makes first (it goes on to seeds 3-4 of the other rows):
python bench.py campaign mir-online --out results/runs --seeds 0 1 2 3 4 --jobs 2 --budget 20000 --data-root $DATA
python bench.py report
# Seeds 3-4 of the Avalanche rows (one torch thread, beside the mini runs), from a clean worktree of bb64fcd.
$B --scenario split-cifar --strategy avalanche:Naive --seeds 3 4
$B --scenario split-cifar --strategy avalanche:EWC --set strategy.ewc_lambda=100 --seeds 3 4
$B --scenario split-cifar --strategy avalanche:Replay --set strategy.mem_size=500 --seeds 3 4
# Issue 25: the Nested verdict's campaigns (profile retention = quick + linear probes; 10 seeds), from a clean
# worktree of 29f441c, the two campaigns side by side with one torch thread each:
OMP_NUM_THREADS=1 python bench.py campaign verdict-split --budget 9500 --out results/runs --data-root $DATA &
OMP_NUM_THREADS=1 python bench.py campaign verdict-permuted --budget 9500 --out results/runs --data-root $DATA
python bench.py report
# Issue 25, the same session, on the core the permuted campaign freed (one torch thread, beside verdict-split), from
# the same clean worktree of 29f441c: MIR's ER rows at seed 4 (the published rows' fifth seed), then EWC's control
# (fine-tune at EWC's lr 0.03), as two copies of scenarios/campaigns/mir-online.yaml holding those rows (seeds [4]
# and [0, 1, 2]); these commands make them too, with the seeds of the other rows (they skip what exists):
python bench.py campaign mir-online --out results/runs --seeds 4 --budget 5000 --data-root $DATA
python bench.py campaign mir-online --out results/runs --seeds 0 1 2 --budget 5000 --data-root $DATA
# Seed-parallel groups against separate runs on the CPU (issue 27; results/speed-seed-parallel-cpu-*.json):
python bench.py speed --device cpu --data full --only-seed-parallel --seed-parallel 1 2 4 8 16 --batch-sizes 10 --images 2000 --set backbone.name=resnet18 backbone.width=20 --out results/speed-seed-parallel-cpu-online.json
python bench.py speed --device cpu --data full --only-seed-parallel --seed-parallel 1 2 4 8 16 --batch-sizes 32 --images 5000 --out results/speed-seed-parallel-cpu-quick.json
# 2026-11-29. verdict-split's M3 pair (a clean worktree of d7e5f07), then its DER++ and ER-ACE rows (a clean
# worktree of 1a1c274), each from /work/wt with OMP_NUM_THREADS=1; the campaign skips every row that has its records:
python bench.py campaign verdict-split --budget 5400 --jobs 1 --out results/runs --data-root $DATA
python bench.py campaign verdict-split --budget 3000 --jobs 2 --out results/runs --data-root $DATA
# The replay rows of verdict-split rerun at 1a1c274, so that every primary pair comes from one commit: a copy of
# verdict-split.yaml holding only Replay, Replay + Nested levels (and its budget-matched twin), Replay + CMS head (and
# its period-1 twin), into a fresh folder, then the records moved over the 29f441c ones (their matrices compared first):
python bench.py campaign verdict-replay-rerun.yaml --budget 4200 --jobs 1 --out /tmp/replayrerun --data-root $DATA
# mir-online's EWC and its control (fine-tune at lr 0.03) rerun at 1a1c274, seeds 0-4, likewise into a fresh folder
# (a copy of mir-online.yaml holding those two rows) and moved over the records of 74f6705 / 29f441c:
python bench.py campaign mir-ewc-control.yaml --budget 6000 --grace 60 --jobs 2 --out /tmp/ewc --data-root $DATA
# 2026-11-29, second session. Issue 30: split-cifar (quick profile, full data) tuned on the held-out protocol with the
# same budget for every method (20 finished trials each; studies and chosen values in results/runs/tuning/), then the
# tuned rows at 5 seeds; from a clean worktree of 086288d with OMP_NUM_THREADS=1:
python bench.py tune --scenario split-cifar --strategy adam ewc replay nested cms --trials 20 --out results/runs --data-root $DATA
python bench.py tune --scenario split-cifar --strategy cms --trials 20 --out results/runs --data-root $DATA --set strategy.periods=1
python bench.py --scenario split-cifar --strategy adam ewc replay nested cms --tuned held-out --seeds 0 1 2 3 4 --out results/runs --data-root $DATA
python bench.py --scenario split-cifar --strategy cms --tuned held-out --seeds 0 1 2 3 4 --out results/runs --data-root $DATA --set strategy.periods=1
# Issue 26: mir-online's ER-ACE rows (a clean worktree of d446516; a copy of mir-online.yaml holding ER-200/1000 and
# ER-ACE-200/1000, so only the ER-ACE runs were missing), one torch thread, beside the tuning above:
python bench.py campaign mir-online --budget 9000 --jobs 1 --out results/runs --data-root $DATA
# Issue 26: mir-online's GDumb-200 (a clean worktree of bddaf48; a copy of mir-online.yaml holding ER-200 and GDumb-200),
# one torch thread, beside the ER-ACE campaign; stopped with SIGTERM at the session's end (seeds 0 and 2 checkpointed):
python bench.py campaign mir-online --budget 5000 --jobs 1 --out results/runs --data-root $DATA
# 2026-11-29, issue 26: mir-online's ER-ACE-200 seed 4, ER-ACE-1000 seeds 3-4 and GDumb-200 seeds 3-4 (a clean worktree
# of 88ab617, moved to ac6973d while the first two ran: their records name ac6973d, whose only change on their path is the
# training_samples hook; a copy of mir-online.yaml holding ER-200/500/1000, ER-ACE-200/1000 and GDumb-200), two runs at a
# time at one torch thread each; then, for the time left, LwF, iCaRL-200 and A-GEM-200 (a copy holding them with Fine-tune
# and ER-200), seeds in order:
OMP_NUM_THREADS=1 python bench.py campaign mir-online --seeds 3 4 --budget 5400 --grace 60 --jobs 2 --out results/runs --data full --data-root $DATA --no-download
OMP_NUM_THREADS=1 python bench.py campaign mir-online --budget $LEFT --grace 60 --jobs 2 --out results/runs --data full --data-root $DATA --no-download
# 2026-11-29, issue 26: the Avalanche parity campaign (a clean worktree of 16ef4f9), beside the above at one thread; its
# --out is a folder whose quick/ links to results/runs, so that the quick profile's records sit with the existing ones:
mkdir -p /tmp/par && ln -sfn "$PWD/results/runs" /tmp/par/quick
OMP_NUM_THREADS=1 python bench.py campaign avalanche-parity --budget 6600 --grace 60 --jobs 1 --out /tmp/par --data full --data-root $DATA --no-download
python bench.py report
# 2026-11-29: avalanche:GDumb rerun after the bridge fix (037ae3c: evaluate the network Avalanche trains; its GDumb
# replaces the model at each experience), a clean worktree of 037ae3c, replacing the parity campaign's five records:
OMP_NUM_THREADS=1 python bench.py --scenario split-cifar --strategy avalanche:GDumb --set strategy.mem_size=500 --seeds 0 1 2 3 4 --force --profile quick --device cpu --quiet --data full --data-root $DATA --no-download --out results/runs
