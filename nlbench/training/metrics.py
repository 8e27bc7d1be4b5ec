"""Continual-learning metrics: pure functions of the accuracy matrix.

R[i][j] (0-based here) = accuracy on task j after training task i; b[j] = accuracy before any
training. Forgetting follows Chaudhry et al. 2018 (RWalk, eq. 3): max over rows 0..T-2.
Rows may be None (joint training measures only the last row); metrics that need them are None.
"""
from __future__ import annotations

Matrix = list[list[float] | None]


def avg_acc(R: Matrix, k: int | None = None) -> float:
    """A_k = mean of R[k][0..k] (k 0-based; default the last task: mean of the whole last row)."""
    k = len(R) - 1 if k is None else k
    row = R[k]
    return sum(row[: k + 1]) / (k + 1)


def _complete(R: Matrix) -> bool:
    return all(row is not None for row in R)


def learning_acc(R: Matrix) -> float | None:
    return sum(R[j][j] for j in range(len(R))) / len(R) if _complete(R) else None


def bwt(R: Matrix) -> float | None:
    T = len(R)
    if T < 2 or not _complete(R):
        return None
    return sum(R[T - 1][j] - R[j][j] for j in range(T - 1)) / (T - 1)


def fwt(R: Matrix, b: list[float]) -> float | None:
    T = len(R)
    if T < 2 or not _complete(R):
        return None
    return sum(R[j - 1][j] - b[j] for j in range(1, T)) / (T - 1)


def forgetting(R: Matrix) -> float | None:
    T = len(R)
    if T < 2 or not _complete(R):
        return None
    return sum(max(R[l][j] for l in range(T - 1)) - R[T - 1][j] for j in range(T - 1)) / (T - 1)


def old_task_acc(R: Matrix) -> float | None:
    """Retention where it can show: the mean of R[T-1][0..T-2], the old tasks in the last row. In
    class-IL without replay it is 0 when the head predicts only the last task's classes (the floor):
    forgetting then equals the learning accuracy of the old tasks, a plasticity measurement."""
    T = len(R)
    if T < 2 or R[T - 1] is None:
        return None
    return sum(R[T - 1][: T - 1]) / (T - 1)


def old_learning_acc(R: Matrix) -> float | None:
    """What the old tasks were learnt to: the mean of R[j][j] for j = 0..T-2 (each old task right after
    learning it). Old-task accuracy is this minus what was lost since, so a lower old-task accuracy
    with no more forgetting is a row that learnt less, not one that kept less."""
    T = len(R)
    if T < 2 or any(R[j] is None or R[j][j] is None for j in range(T - 1)):
        return None
    return sum(R[j][j] for j in range(T - 1)) / (T - 1)


def chance_acc(setting: str, tasks: list[list[int]]) -> float:
    """Chance accuracy (%) in a setting: class-IL over every class of the stream; task-IL, domain-IL and
    the per-task probes over one task's classes."""
    if setting == "class_il":
        return 100.0 / len({c for t in tasks for c in t})
    return 100.0 / len(tasks[0])


FLOOR_POINTS = 1.0  # old-task accuracy below this (percentage points) in every seed: at the floor


def at_floor(old_accs) -> bool:
    """Whether a row's class-IL old-task accuracies (one per seed) are all below 1 point: next to
    nothing of the old tasks is predicted (0.01 ± 0.02 counts, not only exact zeros), so differences
    in its forgetting are differences in plasticity."""
    old_accs = [v for v in old_accs if v is not None and v == v]
    return bool(old_accs) and all(v < FLOOR_POINTS for v in old_accs)


FLOOR_MARK = " (floor)"                      # beside a class-IL old-task accuracy at the floor
PLASTICITY_MARK = " (floor: plasticity)"     # beside a class-IL forgetting whose row is at the floor


def avg_incremental_acc(R: Matrix) -> float | None:
    return sum(avg_acc(R, k) for k in range(len(R))) / len(R) if _complete(R) else None


# What each metric measures, for the column notes of results/README.md (R, b as above; T tasks).
MEANINGS = {
    "avg_acc": "final average accuracy: mean over all tasks of the accuracy after the last task (R[T-1][j])",
    "forgetting": "mean over tasks 1..T-1 of (best accuracy on the task before the last task minus accuracy after "
                  "it); Chaudhry et al. 2018; lower is better",
    "learning_acc": "plasticity: mean over tasks of the accuracy on a task right after learning it (R[j][j]); less "
                    "forgetting with a lower learning accuracy is learning less, not retention",
    "fwt": "forward transfer: mean over tasks 2..T of the accuracy on a task before training it minus the untrained "
           "network's (R[j-1][j] - b[j]); shown only for task-IL and domain-IL (in class-IL a task's classes are "
           "never predicted before it is trained, so it would be minus the untrained accuracy)",
    "old_acc": "old-task accuracy: mean over tasks 1..T-1 of the accuracy after the last task (R[T-1][j], j < T); "
               "a class-IL row where it is below 1 point in every seed is at the floor (marked): its forgetting is the old "
               "tasks' learning accuracy, so a forgetting difference there measures plasticity, not retention",
    "bwt": "backward transfer: mean of R[T-1][j] - R[j][j]; in the records, not the tables (in class-IL it equals "
           "minus forgetting, elsewhere nearly)",
}


def summarize(R: Matrix, b: list[float]) -> dict:
    return {"avg_acc": avg_acc(R), "forgetting": forgetting(R), "bwt": bwt(R), "fwt": fwt(R, b),
            "learning_acc": learning_acc(R), "avg_incremental_acc": avg_incremental_acc(R),
            "old_acc": old_task_acc(R)}
