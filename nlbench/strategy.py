"""The public strategy interface: what a plugin file subclasses and what the runner calls.

A strategy owns its model and its training step. The runner calls, per task,
``before_task(task)``, then ``observe(batch)`` once per mini-batch, then ``after_task(task)``,
and evaluates ``strategy.model``. ``observe`` must do the whole update (forward, backward,
optimizer step) and return the detached loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import UserError


@dataclass
class Batch:
    x: torch.Tensor      # (B, 3, 32, 32) float: augmented, permuted, normalised
    y: torch.Tensor      # (B,) int64 labels
    raw: torch.Tensor    # (B, 3, 32, 32) uint8, before augmentation (what replay stores)
    task: torch.Tensor   # (B,) int64 task index of each sample


class RunContext:
    """What a strategy may use: device, backbone factory, optimizer factory, data preparation."""

    def __init__(self, cfg: dict, scenario, device: torch.device, generator: torch.Generator,
                 make_backbone, augmenter):
        self.cfg, self.scenario, self.device, self.generator = cfg, scenario, device, generator
        self._make_backbone, self.augmenter = make_backbone, augmenter
        self.train = cfg["train"]
        self.num_classes = 10
        self.channels_last = device.type == "cuda" and self.train["channels_last"] in ("auto", True)

    def make_backbone(self) -> torch.nn.Module:
        model = self._make_backbone().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def make_optimizer(self, params, lr: float | None = None, kind: str | None = None,
                       momentum: float = 0.9) -> torch.optim.Optimizer:
        """The suite's plain optimizer (train.optimizer, train.lr) unless told otherwise."""
        lr = self.train["lr"] if lr is None else lr
        kind = kind or self.train["optimizer"]
        if kind == "adam":
            return torch.optim.Adam(params, lr=lr)
        if kind == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=momentum)
        raise UserError(f"unknown optimizer '{kind}'; valid: adam, sgd")

    def prepare(self, raw: torch.Tensor, task: torch.Tensor, augment: bool = True) -> torch.Tensor:
        x = self.scenario.prepare(raw, task, self.augmenter if augment else None)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class Strategy:
    """Base class with no-op hooks. Subclasses set ``defaults`` and implement ``observe``."""

    defaults: dict = {}
    joint = False  # True: the runner trains once on all tasks' data together

    def __init__(self, ctx: RunContext, **hp):
        self.ctx, self.hp = ctx, hp
        self.model = ctx.make_backbone()

    @classmethod
    def check(cls, hp: dict) -> None:
        """Raise UserError for hyperparameter values out of range."""

    def before_task(self, task) -> None:
        pass

    def observe(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def after_task(self, task) -> None:
        pass

    def describe(self) -> dict:
        """Extra facts for the run record (e.g. the levels that ran)."""
        return {}

    def state_dict(self) -> dict:
        """Everything needed to resume: model, every optimizer, and ``extra_state``."""
        optims = {k: v.state_dict() for k, v in vars(self).items() if isinstance(v, torch.optim.Optimizer)}
        return {"model": self.model.state_dict(), "optimizers": optims, "extra": self.extra_state()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        for k, v in state["optimizers"].items():
            getattr(self, k).load_state_dict(v)
        self.load_extra_state(state["extra"])

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


def require(cond: bool, message: str) -> None:
    """For ``check``: one-line UserError when a hyperparameter is out of range."""
    if not cond:
        raise UserError(message)
