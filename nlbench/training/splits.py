"""Building a run's scenario from the data: its training subset, validation split, probe images and
task spans (what the loop then trains on and evaluates)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from nlbench.errors import UserError
from nlbench.registry import BUILDERS, lookup
from nlbench.training.data import DataChoice, fraction_per_class, load_data, subset_per_class
from nlbench.training.scenarios import Scenario, Task


@dataclass
class _Pools:
    train_y: torch.Tensor
    test_y: torch.Tensor
    train_pool: torch.Tensor
    test_pool: torch.Tensor


def build_scenario(name: str, spec_builder: str, cfg: dict, seed: int, device: torch.device,
                   data: DataChoice) -> Scenario:
    arrays = load_data(data)
    tr = subset_per_class(arrays.train_y, cfg["data"]["train_per_class"])  # on the mini set: at most what it has
    if cfg["data"]["train_fraction"] is not None:  # a seeded random fraction of each class (MIR keeps 95%)
        tr = tr[fraction_per_class(arrays.train_y[tr], cfg["data"]["train_fraction"], seed)]
    probe = probe_images(arrays.train_y, tr, cfg["data"]["probe_per_class"])
    if cfg["data"]["validation_fraction"] is not None:  # tuning: held-out training images stand in for the test set
        tr, held = split_validation(arrays.train_y, tr, cfg["data"]["validation_fraction"])
        eval_x, eval_y = arrays.train_x[held], arrays.train_y[held]  # the test set is never read
    else:
        te = subset_per_class(arrays.test_y, cfg["data"]["test_per_class"])
        eval_x, eval_y = arrays.test_x[te], arrays.test_y[te]
    train_x, train_y, test_x, test_y = (t.to(device) for t in (arrays.train_x[tr], arrays.train_y[tr], eval_x, eval_y))
    probes = {} if probe is None else {"probe_x": arrays.train_x[probe].to(device),
                                       "probe_y": arrays.train_y[probe].to(device)}
    pools = _Pools(train_y, test_y, torch.arange(len(train_y), device=device), torch.arange(len(test_y), device=device))
    builder = lookup(BUILDERS, "scenario builder", spec_builder)
    try:
        tasks, settings, perms, *extra = builder.obj(pools, seed, **cfg["scenario"])
    except TypeError as exc:  # an unknown parameter in the YAML or --set scenario.*
        raise UserError(f"scenario '{name}': {exc}") from exc
    if cfg["data"]["tasks"] is not None:
        tasks, perms = task_span(tasks, perms, cfg["data"]["tasks"])
    return Scenario(name, settings, tasks, train_x, train_y, test_x, test_y,
                    None if perms is None else perms.to(device), data_set=data.kind, data_source=arrays.source,
                    **probes, **(extra[0] if extra else {}))  # a builder may set more Scenario fields (standardize)


VALIDATION_SEED = 3  # one held-out split for every seed and trial of a study (the trials compare on the same images)


def split_validation(labels: torch.Tensor, trained: torch.Tensor, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's training images split into (kept for training, held out for validation): a fixed
    random ``fraction`` of each class, rounded down (MIR's make_valid_from_train holds out 5%)."""
    held = fraction_per_class(labels[trained], fraction, seed=VALIDATION_SEED)
    keep = torch.ones(len(trained), dtype=torch.bool)
    keep[held] = False
    return trained[keep], trained[held]


def task_span(tasks: list[Task], perms, span: list[int]):
    """``data.tasks = [first, stop]``: only those tasks, renumbered from 0 (their permutations follow)."""
    first, stop = span
    if stop > len(tasks):
        raise UserError(f"data.tasks {span} asks for tasks up to {stop} but the scenario has {len(tasks)}")
    kept = [Task(i, t.classes, t.train_idx, t.test_idx) for i, t in enumerate(tasks[first:stop])]
    return kept, None if perms is None else perms[first:stop]


def probe_images(labels: torch.Tensor, trained: torch.Tensor, per_class: int | None) -> torch.Tensor | None:
    """The linear probes' images: ``per_class`` training images of each class that the run never
    trains on (outside its subset or its train_fraction), drawn once with a fixed generator, so
    every seed and strategy probes the same images; None when the probe is off."""
    if per_class is None:
        return None
    spare = torch.ones(len(labels), dtype=torch.bool)
    spare[trained] = False
    found = torch.bincount(labels[spare], minlength=10)
    if int(found.min()) < per_class:
        raise UserError(f"data.probe_per_class={per_class} needs that many training images per class outside the "
                        f"run's training set, but only {int(found.min())} are left; lower data.train_per_class "
                        "or data.probe_per_class, or set data.probe_per_class=null (no probe)")
    chosen = subset_per_class(labels[spare], per_class, seed=1)  # positions among the spare images
    return spare.nonzero().flatten()[chosen]
