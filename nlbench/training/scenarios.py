"""Scenario builders: a scenario is a list of tasks over CIFAR-10 held as uint8 tensors.

Each YAML file in ``scenarios/`` names one builder registered here and its parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nlbench.training.data import Augmenter, normalize
from nlbench.errors import UserError
from nlbench.registry import register_builder


@dataclass
class Task:
    index: int
    classes: list[int]
    train_idx: torch.Tensor  # indices into Scenario.train_x
    test_idx: torch.Tensor   # indices into Scenario.test_x
    sample_tasks: torch.Tensor | None = None  # a merged stage: each training sample's own task index
    covers: list[int] | None = None           # a merged stage: the tasks it holds

    @property
    def task_indices(self) -> list[int]:
        return self.covers if self.covers is not None else [self.index]


def merge_tasks(tasks: list[Task]) -> Task:
    """All tasks' training data as one stage; each sample keeps its own task (its permutation)."""
    return Task(-1, sorted({c for t in tasks for c in t.classes}), torch.cat([t.train_idx for t in tasks]),
                torch.empty(0, dtype=torch.long),
                torch.cat([torch.full_like(t.train_idx, t.index) for t in tasks]), [t.index for t in tasks])


@dataclass
class Scenario:
    """Tasks plus the images they index, all on the run's device."""
    name: str
    settings: list[str]            # evaluation settings this scenario reports
    tasks: list[Task]
    train_x: torch.Tensor          # (N, 3, 32, 32) uint8
    train_y: torch.Tensor          # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    perms: torch.Tensor | None = None   # per task: (T, 1024) pixel or (T, 3072) value permutation, or None
    data_set: str = "full"              # full or mini (see nlbench.training.data.select_data)
    data_source: str = ""
    standardize: str = "dataset"        # dataset | per_image | symmetric: see standardize_input
    probe_x: torch.Tensor | None = None  # held-out training images of the linear probes (nlbench.training.probe), or None
    probe_y: torch.Tensor | None = None

    def prepare(self, x: torch.Tensor, task_ids: torch.Tensor, augment: Augmenter | None,
                dtype=torch.float32) -> torch.Tensor:
        """uint8 images of (possibly mixed) tasks -> normalised network input.

        Augmentation comes first, then the task's pixel permutation, as in permuted-MNIST practice.
        """
        if augment is not None:
            x = augment(x)
        if self.perms is not None and self.perms.shape[1] == x[0].numel():  # every value moves (permute: values)
            x = x.flatten(1).gather(1, self.perms[task_ids]).view_as(x)
        elif self.perms is not None:  # pixels move, each keeping its 3 channels (permute: pixels)
            b, c = x.shape[:2]
            index = self.perms[task_ids][:, None, :].expand(b, c, -1)        # (B, C, 1024)
            x = x.flatten(2).gather(2, index).view_as(x)
        return standardize_input(x, self.standardize, dtype)

    def task_mask(self, task: Task) -> torch.Tensor:
        """Boolean (10,) mask of the task's classes, for task-IL evaluation."""
        mask = torch.zeros(10, dtype=torch.bool, device=self.train_x.device)
        mask[task.classes] = True
        return mask


STANDARDIZE = ("dataset", "per_image", "symmetric")


def standardize_input(x: torch.Tensor, how: str, dtype=torch.float32) -> torch.Tensor:
    """uint8 images -> network input: ``dataset`` per-channel CIFAR statistics (the default
    everywhere), ``per_image`` (standardize_per_image), ``symmetric`` x / 255 scaled to [-1, 1]
    (MIR's data.py: (x - 0.5) * 2)."""
    if how == "per_image":
        return standardize_per_image(x, dtype)
    if how == "symmetric":
        return x.to(dtype) / 127.5 - 1.0
    return normalize(x, dtype)


def check_standardize(builder: str, how) -> str:
    how = "dataset" if how is None else how
    if how not in STANDARDIZE:
        raise UserError(f"{builder}: standardize must be one of {', '.join(STANDARDIZE)}, got {how!r}")
    return how


def standardize_per_image(x: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """uint8 images -> float, each minus its own mean, over its own std: brightness and contrast,
    which no permutation changes, are no longer in the input."""
    x = x.to(dtype)
    flat = x.flatten(1)
    mean, std = flat.mean(1), flat.std(1).clamp_min(1.0)  # a flat image (std 0) stays finite
    return (x - mean.view(-1, 1, 1, 1)) / std.view(-1, 1, 1, 1)


def _indices_of(labels: torch.Tensor, classes: list[int], pool: torch.Tensor) -> torch.Tensor:
    return pool[torch.isin(labels[pool], torch.tensor(classes, device=labels.device))]


def positive_int(builder: str, **values) -> None:
    """Counts a scenario takes (tasks, classes a task) must be positive integers: one line otherwise."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{builder}: scenario.{key} must be a positive integer, got {value!r}")


@register_builder("split")
def build_split(data, seed: int, n_tasks: int = 5, classes_per_task: int = 2,
                class_order: list[int] | None = None, shuffle_classes: bool = False,
                class_order_seed: int | None = None, standardize: str | None = None):
    """Class-incremental split: disjoint groups of classes, one shared 10-way head.

    The class order: ``class_order`` (default 0..9), shuffled by ``class_order_seed`` if given
    (its own axis, independent of the training seed), else by the run's seed if ``shuffle_classes``.
    ``standardize``: the input scaling (standardize_input; null = dataset)."""
    how = check_standardize("split", standardize)
    positive_int("split", n_tasks=n_tasks, classes_per_task=classes_per_task)
    if n_tasks * classes_per_task > 10:
        raise UserError(f"split: n_tasks * classes_per_task = {n_tasks * classes_per_task} exceeds 10 classes")
    if class_order is not None and not isinstance(class_order, list):
        raise UserError(f"split: class_order must be null or a list (a permutation of 0..9), got {class_order!r}")
    order = list(class_order) if class_order else list(range(10))
    if sorted(order) != list(range(10)):
        raise UserError(f"split: class_order must be a permutation of 0..9, got {order}")
    if class_order_seed is not None or shuffle_classes:
        g = torch.Generator().manual_seed(seed if class_order_seed is None else class_order_seed)
        order = [order[i] for i in torch.randperm(10, generator=g).tolist()]
    tasks = []
    for t in range(n_tasks):
        classes = sorted(order[t * classes_per_task:(t + 1) * classes_per_task])
        tasks.append(Task(t, classes, _indices_of(data.train_y, classes, data.train_pool),
                          _indices_of(data.test_y, classes, data.test_pool)))
    return tasks, ["class_il", "task_il"], None, {"standardize": how}


@register_builder("permuted")
def build_permuted(data, seed: int, n_tasks: int = 5, identity_first: bool = False, permute: str = "pixels",
                   standardize: str = "dataset"):
    """Domain-incremental: every task has all 10 classes under its own fixed permutation of the
    input: of the 1024 pixels (each keeps its colour: colour statistics survive every task), or of
    all 3072 values (``permute: values``, permuted MNIST's rule for a flattened input).
    ``standardize``: dataset (per-channel CIFAR statistics, as everywhere) or per_image (each image
    by its own mean and std, so that its brightness and contrast, the statistics every permutation
    keeps, do not make the tasks share what they can be told apart by)."""
    if permute not in ("pixels", "values"):
        raise UserError(f"permuted: permute must be pixels or values, got {permute!r}")
    how = check_standardize("permuted", standardize)
    positive_int("permuted", n_tasks=n_tasks)
    size = 1024 if permute == "pixels" else 3 * 1024
    g = torch.Generator().manual_seed(10_000 + seed)
    perms = torch.stack([torch.randperm(size, generator=g) for _ in range(n_tasks)])
    if identity_first:
        perms[0] = torch.arange(size)
    tasks = [Task(t, list(range(10)), data.train_pool, data.test_pool) for t in range(n_tasks)]
    return tasks, ["domain_il"], perms, {"standardize": how}


@register_builder("standard")
def build_standard(data, seed: int):
    """The ordinary single-task CIFAR-10 (the non-continual comparison)."""
    return [Task(0, list(range(10)), data.train_pool, data.test_pool)], ["standard"], None
