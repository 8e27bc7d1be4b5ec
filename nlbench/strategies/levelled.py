"""The base class of the strategies with levels of their own (nested, cms, nested-cms): the level
schedule (nlbench.nested.levels) built from a subclass's ``level_plan``, its controls (every period 1), and
the training step: loss, backward, the levels' step."""
from __future__ import annotations

from nlbench.errors import UserError
from nlbench.nested.levels import (BUDGET_KEYS, build_levels, check_clock, expand_periods, level_lr_factors,
                                   level_optimizer)
from nlbench.training.strategy import Strategy


class LevelledStrategy(Strategy):
    """Shared training step of nested, cms and nested-cms: loss, backward, levels step.

    Subclasses build ``self.model`` and return the level groups and periods from ``level_plan``.
    """

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        if getattr(self.model, "level_periods", None):
            raise UserError("backbone.cms is for strategies without levels of their own; the nested and cms "
                            "strategies place theirs (use nested-cms, or e.g. --strategy adam --set "
                            "train.levels=nested backbone.cms=[16,4,1])")
        self.model = self.build_model(ctx)
        groups, periods = self.level_plan()
        make_opt = lambda params, lr: level_optimizer(ctx, params, lr, hp)  # noqa: E731
        slow = self.slow_periods()
        lr_periods = slow if hp.get("lr_periods") is None else \
            expand_periods(hp["lr_periods"], len(groups), "strategy.lr_periods")
        factors = level_lr_factors(hp, slow, len(groups))
        self.levels = build_levels(self.model, groups, periods, ctx.train["lr"], hp["lr_scaling"],
                                   hp["grad_reduce"], make_opt, lr_periods, factors)
        self.clock_warnings = check_clock(periods, [lv.name for lv in self.levels.levels], ctx)
        for warning in self.clock_warnings:
            print(f"warning: {warning}")

    seed_parallel = True

    @classmethod
    def seed_parallel_for(cls, hp):
        if hp.get("level_optimizer") == "m3":  # Newton-Schulz of a stacked tensor would mix the models
            return "level_optimizer m3 orthogonalises whole matrices, which a stacked group would mix"
        return None

    period_keys = ("periods",)  # the keys that set update periods (all 1 in the matched controls)

    def slow_periods(self) -> list[int] | None:
        """Per level, the period of the slow version whose movement this run matches
        (``strategy.budget_of``, ``cms_budget_of``): the level plan with those periods; None without them."""
        slow = {period: self.hp[key] for key, period in BUDGET_KEYS.items() if self.hp.get(key) is not None}
        if not slow:
            return None
        own = self.hp
        self.hp = {**own, **slow}
        try:
            return self.level_plan()[1]
        finally:
            self.hp = own

    @classmethod
    def matched_controls(cls, hp):
        """The controls of a levelled run, each with every period 1 (description -> overrides):
        architecture-matched (the same levels and optimizers; with lr_scaling none also lr-matched);
        lr-matched where the lr depends on the period (each level at its slow per-step lr); and
        the formula control (each level's lr scaled by budget_lr_factor, 1/C for Adam: it matches the slow
        level's movement under a constant gradient only; the displacement-matched control, calibrated by
        measurement, is a campaign row: nlbench.launchers.calibrate), left out where it equals the first
        (SGD, sum)."""
        every_step = {key: 1 for key in cls.period_keys}
        slow = {key: hp[key] for key in cls.period_keys}
        if all(v == 1 for v in slow.values()):
            return {}
        sgd_sum = hp["level_optimizer"] == "sgd" and hp["grad_reduce"] == "sum"  # budget factor 1: lr-matched
        budget = ", budget-matched" if sgd_sum else ""
        if hp.get("lr_scaling") == "period":
            out = {"every period 1 (architecture-matched)": every_step,
                   f"every period 1, slow lrs (lr-matched{budget})": {
                       **every_step, "lr_periods": hp.get("lr_periods") or hp["periods"]}}
        else:
            out = {f"every period 1 (architecture-matched, lr-matched{budget})": every_step}
        if not sgd_sum:
            budget_keys = {period: key for key, period in BUDGET_KEYS.items()}
            out["every period 1, per-layer lr η/C (the formula control)"] = {**every_step,
                                                            **{budget_keys[k]: v for k, v in slow.items()}}
        return out

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

    def after_task(self, task):
        last = max(task.task_indices) == len(self.ctx.scenario.tasks) - 1
        if self.hp.get("flush") == "task" or (self.hp.get("flush") == "run" and last):
            self.levels.flush()

    def describe(self):
        return {"levels": self.levels.describe(self.ctx.train["batch_size"]),
                "grad_reduce": self.hp["grad_reduce"], "lr_scaling": self.hp["lr_scaling"],
                "flush": self.hp.get("flush"), "clock_warnings": self.clock_warnings}

    def extra_state(self):
        return {"levels": self.levels.state_dict()}

    def load_extra_state(self, state):
        self.levels.load_state_dict(state["levels"])
