"""Multi-timescale level machinery (Nested Learning, Behrouz et al. 2025, section 7.1, Eq. 71).

The model's parameters are partitioned into levels. Level l has a period C_l (in optimizer
steps), a learning rate and its own optimizer, whose state is that level's memory. After every
backward pass each level adds its gradients to its own accumulator; a level steps only when the
global step counter i is a multiple of C_l, with the SUM of the gradients since its last update
(Eq. 71: theta_l <- theta_l - sum_{t=i-C_l}^{i} eta_l grad_t), then clears its accumulator.
The forward pass always uses every parameter. Counter, accumulators and optimizer states carry
across task boundaries unless ``reset_on_task`` asks otherwise.

``grad_reduce``: ``sum`` (faithful), ``mean`` (sum / C), ``drop`` (only the last mini-batch's
gradient is kept: the shortcut other reproductions took, and the source blog's recipe).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import UserError
from .strategy import Strategy, require

GRAD_REDUCE = ("sum", "mean", "drop")
LR_SCALING = ("none", "period")


@dataclass
class Level:
    name: str
    modules: list[str]
    param_names: list[str]
    params: list[torch.nn.Parameter]
    period: int
    lr: float
    optimizer: torch.optim.Optimizer
    accum: list[torch.Tensor] | None   # None when period 1 or grad_reduce drop: nothing to keep
    count: int = 0                      # mini-batches accumulated since the last update


class LevelSchedule:
    """Owns the levels; ``step()`` replaces ``optimizer.step()`` after each backward pass."""

    def __init__(self, levels: list[Level], grad_reduce: str, make_optimizer):
        self.levels, self.grad_reduce, self.make_optimizer = levels, grad_reduce, make_optimizer
        self.step_count = 0

    def step(self) -> None:
        self.step_count += 1
        for lv in self.levels:
            due = self.step_count % lv.period == 0
            if lv.accum is not None:
                torch._foreach_add_(lv.accum, [p.grad if p.grad is not None else torch.zeros_like(p)
                                               for p in lv.params])
            lv.count += 1
            if due:
                if lv.accum is not None:
                    scale = 1.0 / lv.count if self.grad_reduce == "mean" else 1.0
                    for p, a in zip(lv.params, lv.accum):
                        p.grad = a * scale if scale != 1.0 else a  # zeroed only after the step
                lv.optimizer.step()
                if lv.accum is not None:
                    torch._foreach_zero_(lv.accum)
                lv.count = 0
            for p in lv.params:  # every level's gradient is consumed now: in its accumulator or its step
                p.grad = None

    def reset_optimizers(self) -> None:
        """Forget every level's optimizer state (the 'optimizer state is memory' ablation)."""
        for lv in self.levels:
            lv.optimizer = self.make_optimizer(lv.params, lv.lr)

    def state_dict(self) -> dict:
        return {"step_count": self.step_count,
                "levels": [{"optimizer": lv.optimizer.state_dict(), "accum": lv.accum, "count": lv.count}
                           for lv in self.levels]}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        for lv, s in zip(self.levels, state["levels"]):
            lv.optimizer.load_state_dict(s["optimizer"])
            if lv.accum is not None:
                torch._foreach_copy_(lv.accum, s["accum"])
            lv.count = s["count"]

    def describe(self, batch_size: int) -> list[dict]:
        return [{"name": lv.name, "modules": lv.modules, "n_params": sum(p.numel() for p in lv.params),
                 "period": lv.period, "lr": lv.lr, "samples_per_update": lv.period * batch_size,
                 "parameters": lv.param_names} for lv in self.levels]


def expand_periods(periods, n_levels: int, what: str = "strategy.periods") -> list[int]:
    """int -> that period for every level; 'powers_of_two' -> 1, 2, 4, ...; list -> checked."""
    if periods == "powers_of_two":
        return [2 ** i for i in range(n_levels)]
    if isinstance(periods, int) and not isinstance(periods, bool):
        periods = [periods] * n_levels
    if not isinstance(periods, list) or len(periods) != n_levels:
        raise UserError(f"{what} must be a positive integer or a list of {n_levels} positive integers "
                        f"(slowest level first), got {periods!r}")
    for p in periods:
        if not isinstance(p, int) or isinstance(p, bool) or p <= 0:
            raise UserError(f"{what} must hold positive integers, got {periods!r}")
    return periods


def build_levels(model: torch.nn.Module, groups: list[tuple[str, list[str]]], periods: list[int],
                 base_lr: float, lr_scaling: str, grad_reduce: str, make_optimizer) -> LevelSchedule:
    """Partition ``model``'s parameters by module-name prefixes; every parameter in exactly one level."""
    named = dict(model.named_parameters())
    owner: dict[str, str] = {}
    levels = []
    for (name, prefixes), period in zip(groups, periods):
        names = [n for n in named if any(n == p or n.startswith(p + ".") for p in prefixes)]
        if not names:
            raise UserError(f"level '{name}' ({', '.join(prefixes)}) matches no parameter of the model")
        for n in names:
            if n in owner:
                raise UserError(f"parameter {n} is in two levels: {owner[n]} and {name}")
            owner[n] = name
        lr = base_lr / period if lr_scaling == "period" else base_lr
        params = [named[n] for n in names]
        keep = period > 1 and grad_reduce != "drop"
        accum = [torch.zeros_like(p) for p in params] if keep else None
        levels.append(Level(name, list(prefixes), names, params, period, lr, make_optimizer(params, lr), accum))
    orphans = [n for n in named if n not in owner]
    if orphans:
        raise UserError(f"parameters in no level: {', '.join(orphans[:5])}{' ...' if len(orphans) > 5 else ''}")
    return LevelSchedule(levels, grad_reduce, make_optimizer)


def default_backbone_groups(model, prefix: str = "") -> list[tuple[str, list[str]]]:
    """slow = stem + first half of the stages, middle = the other stages, fast = classifier."""
    n = model.n_stages
    half = (n + 1) // 2
    stages = [f"stage{i}" for i in range(1, n + 1)]
    p = prefix
    return [("slow", [p + "stem", *(p + s for s in stages[:half])]),
            ("middle", [p + s for s in stages[half:]]),
            ("fast", [p + "head"])]


def block_groups(model, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Every top-level block its own level, in forward order (the blog recipe's 'layers')."""
    return [(b, [prefix + b]) for b in model.block_names()]


LEVEL_DEFAULTS = {"grad_reduce": "sum", "lr_scaling": "none", "reset_on_task": False,
                  "level_optimizer": "adam", "momentum": 0.9}


def check_level_options(hp: dict) -> None:
    require(hp["grad_reduce"] in GRAD_REDUCE, f"strategy.grad_reduce must be one of {', '.join(GRAD_REDUCE)}, "
            f"got {hp['grad_reduce']!r}")
    require(hp["lr_scaling"] in LR_SCALING, f"strategy.lr_scaling must be one of {', '.join(LR_SCALING)}, "
            f"got {hp['lr_scaling']!r}")
    require(isinstance(hp["reset_on_task"], bool), f"strategy.reset_on_task must be true or false, "
            f"got {hp['reset_on_task']!r}")
    require(hp["level_optimizer"] in ("adam", "sgd"), f"strategy.level_optimizer must be adam or sgd, "
            f"got {hp['level_optimizer']!r}")
    require(isinstance(hp["momentum"], (int, float)) and 0 <= hp["momentum"] < 1,
            f"strategy.momentum must be in [0, 1), got {hp['momentum']!r}")


class LevelledStrategy(Strategy):
    """Shared training step of nested, cms and nested-cms: loss, backward, levels step.

    Subclasses build ``self.model`` and return the level groups and periods from ``level_plan``.
    """

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.model = self.build_model(ctx)
        groups, periods = self.level_plan()
        make_opt = lambda params, lr: ctx.make_optimizer(  # noqa: E731
            params, lr=lr, kind=hp["level_optimizer"], momentum=hp["momentum"])
        self.levels = build_levels(self.model, groups, periods, ctx.train["lr"], hp["lr_scaling"],
                                   hp["grad_reduce"], make_opt)

    def build_model(self, ctx):
        return self.model

    def level_plan(self):
        raise NotImplementedError

    def observe(self, batch):
        loss = self.ctx.loss(self.model(batch.x), batch.y)
        loss.backward()
        self.levels.step()
        return loss.detach()

    def before_task(self, task):
        if self.hp["reset_on_task"] and self.levels.step_count > 0:
            self.levels.reset_optimizers()

    def describe(self):
        return {"levels": self.levels.describe(self.ctx.train["batch_size"]),
                "grad_reduce": self.hp["grad_reduce"], "lr_scaling": self.hp["lr_scaling"]}

    def extra_state(self):
        return {"levels": self.levels.state_dict()}

    def load_extra_state(self, state):
        self.levels.load_state_dict(state["levels"])
