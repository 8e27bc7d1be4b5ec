#!/usr/bin/env bash
# The GPU records and speed files in results/, as produced on machines lent through the device tool.
#
# A) results/runs/gpu-short (moved from results/runs/paper on 2026-11-26, when the profile `paper` was
#    renamed gpu-short: it is no paper's protocol) and results/speed-h100.json: one NVIDIA H100 80GB (torch 2.11.0+cu130),
#    2026-11-25, code 08b4f08 and before:
#      GRID_LIMIT=330 JOBS=6 bash gpu_suite.sh        # (the suite of that commit) -> speed-h100.json
python3 ../shared/data/cifar10/make_cifar10.py /tmp/d   # on the GPU machine: .dev/make_cifar10.py
NLBENCH_DATA=/tmp/d python3 bench.py --scenario split-cifar --strategy all --seeds 0 1 2 --profile paper \
  --device cuda --out results/runs/paper --quiet --no-download --jobs 8
#
# B) results/speed-h200.json, results/runs/converge and results/runs/der: one NVIDIA H200 (torch
#    2.11.0+cu130, MPS daemon on), 2026-11-26, code b73e92d. The device tool copied a tree whose .git
#    pointed at 08b4f08 with b73e92d's files as uncommitted changes, so these records and the speed
#    file say git_commit 08b4f08, git_dirty true. Logs: results/gpu-logs/*-2026-11-26.log.
#    1) one call (550 s): speed, cifar10-converge seed 0 (6 runs) and der-table2 seed 0 started
OUT=/tmp/out END_S=550 JOBS=4 PARALLEL=3 bash gpu_suite.sh   # speed.json there = results/speed-h200.json
#    2) right after, on the same machine, the four DER runs it had checkpointed, resumed (JOINT was
#       checkpointed again at the end of this budget and lost with the machine):
NLBENCH_DATA=/tmp/nlbench-data python3 bench.py campaign der-table2 --seeds 0 --budget 250 --grace 12 \
  --jobs 4 --out results/runs --device cuda --data full --no-download
