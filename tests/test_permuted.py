"""Permuted CIFAR-10 can forget: sanity checks on the real mini set, quick profile (the MLP).

Seed 0 on our CPU: after task 1 the network scores 41.8% on it and 8.9-10.3% on the four
permutations it has not seen (chance 10%); by the last task fine-tuning keeps 19.9% of task 1;
joint training ends at 41.1% against fine-tuning's 27.6%.
"""
from conftest import load_record
from nlbench.cli import main

CHANCE = 10.0


def run(tmp_path, strategy):
    code = main(["--scenario", "permuted-cifar", "--strategy", strategy, "--data", "mini", "--profile", "quick",
                 "--device", "cpu", "--quiet", "--out", str(tmp_path / "runs")])
    assert code == 0
    return load_record(tmp_path / "runs", "permuted-cifar", strategy, data="mini")


def test_permuted_tasks_are_different_tasks_and_fine_tuning_forgets_them(tmp_path):
    adam, joint = run(tmp_path, "adam"), run(tmp_path, "joint")
    R = adam["acc"]["domain_il"]
    unseen = sum(R[0][1:]) / len(R[0][1:])
    assert abs(unseen - CHANCE) < 3, R[0]          # what task 1 taught does not transfer to other permutations
    assert R[0][0] > CHANCE + 20, R[0]             # while task 1 itself is learned well above chance
    assert R[-1][0] < R[0][0] - 5, [row[0] for row in R]  # fine-tuning forgets it
    assert joint["metrics"]["domain_il"]["avg_acc"] > adam["metrics"]["domain_il"]["avg_acc"]
