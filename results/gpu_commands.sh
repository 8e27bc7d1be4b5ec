#!/usr/bin/env bash
# The GPU records in results/runs/paper and results/speed-h100.json, as produced on one lent
# NVIDIA H100 80GB (torch 2.11.0+cu130) on 2026-11-25, through the device tool:
#
# 1) the whole suite, one call (its speed.json is results/speed-h100.json; its grid ran into the
#    330 s limit with 42 of 63 records, which were lost on the machine: see the closing note):
#      GRID_LIMIT=330 JOBS=6 bash gpu_suite.sh
# 2) the split-cifar paper-profile grid again, whose 24 records are results/runs/paper:
python3 ../shared/data/cifar10/make_cifar10.py /tmp/d   # on the GPU machine: .dev/make_cifar10.py
NLBENCH_DATA=/tmp/d python3 bench.py --scenario split-cifar --strategy all --seeds 0 1 2 --profile paper \
  --device cuda --out results/runs/paper --quiet --no-download --jobs 8
