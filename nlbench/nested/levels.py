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

from nlbench.errors import UserError, require

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
    updates: int = 0                    # optimizer steps taken (flushes included)


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
                self._update(lv)
            for p in lv.params:  # every level's gradient is consumed now: in its accumulator or its step
                p.grad = None

    def _update(self, lv: Level) -> None:
        """One optimizer step of a level with what it holds: the sum (or mean) of its accumulated
        gradients, or, without an accumulator, the current one."""
        if lv.accum is not None:
            scale = 1.0 / lv.count if self.grad_reduce == "mean" else 1.0
            for p, a in zip(lv.params, lv.accum):
                p.grad = a * scale if scale != 1.0 else a  # zeroed only after the step
        lv.optimizer.step()
        if lv.accum is not None:
            torch._foreach_zero_(lv.accum)
        lv.count = 0
        lv.updates += 1

    def pending(self) -> dict[str, int]:
        """Mini-batch gradients each level holds but has not applied yet."""
        return {lv.name: lv.count if lv.accum is not None else 0 for lv in self.levels}

    def flush(self) -> None:
        """Apply every level's pending gradients now (``strategy.flush``), then clear them; the
        clock keeps running, so a flushed level's next update comes at its usual multiple."""
        for lv in self.levels:
            if lv.accum is not None and lv.count > 0:
                self._update(lv)
            for p in lv.params:
                p.grad = None

    def reset_optimizers(self) -> None:
        """Forget every level's optimizer state (the 'optimizer state is memory' ablation)."""
        for lv in self.levels:
            lv.optimizer = self.make_optimizer(lv.params, lv.lr)

    def state_dict(self) -> dict:
        return {"step_count": self.step_count,
                "levels": [{"optimizer": lv.optimizer.state_dict(), "accum": lv.accum, "count": lv.count,
                            "updates": lv.updates} for lv in self.levels]}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = state["step_count"]
        for lv, s in zip(self.levels, state["levels"]):
            lv.optimizer.load_state_dict(s["optimizer"])
            if lv.accum is not None:
                if [a.shape for a in lv.accum] != [a.shape for a in s["accum"]]:  # a seed-parallel group's stack
                    lv.accum = [torch.empty_like(a, device=p.device) for a, p in zip(s["accum"], lv.params)]
                torch._foreach_copy_(lv.accum, s["accum"])
            lv.count = s["count"]
            lv.updates = s.get("updates", 0)  # checkpoints before the counter: unknown, counted from here

    def describe(self, batch_size: int) -> list[dict]:
        """Per level, for the record: what it is, how it was updated and what was left unapplied."""
        pending = self.pending()
        return [{"name": lv.name, "modules": lv.modules, "n_params": sum(p.numel() for p in lv.params),
                 "period": lv.period, "lr": lv.lr, "optimizer": type(lv.optimizer).__name__,
                 "updates": lv.updates, "samples_per_update": lv.period * batch_size,
                 "pending_at_end": pending[lv.name], "parameters": lv.param_names} for lv in self.levels]


class LevelOptimizer(torch.optim.Optimizer):
    """A torch optimizer whose ``step()`` is a level schedule: each level accumulates its gradients
    and steps with its own optimizer every C calls. ``zero_grad``/``backward``/``step`` loops fit
    (Strategy.update, Avalanche's templates); checkpoints hold the schedule's whole state."""

    def __init__(self, schedule: LevelSchedule):
        params = [p for lv in schedule.levels for p in lv.params]
        super().__init__(params, {"lr": 0.0})
        self.schedule = schedule

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        with torch.enable_grad():
            self.schedule.step()
        return loss

    def state_dict(self):
        return {"schedule": self.schedule.state_dict()}

    def load_state_dict(self, state_dict):
        self.schedule.load_state_dict(state_dict["schedule"])


def level_spec(value) -> dict | None:
    """``train.levels`` -> the level hyperparameters: null (no levels), the name of a levelled
    strategy whose defaults it takes (nested, nested-blog), or a mapping of level keys with an
    optional ``preset`` (default nested), e.g. ``{preset: nested, periods: 1}``."""
    from nlbench.registry import STRATEGIES  # the registry is a leaf: no cycle
    if value is None:
        return None
    given = {"preset": value} if isinstance(value, str) else dict(value) if isinstance(value, dict) else None
    if given is None:
        raise UserError(f"train.levels must be null, a preset name or a mapping, got {value!r}")
    preset = given.pop("preset", "nested")
    entry = STRATEGIES.get(preset)
    if entry is None or not hasattr(entry.obj, "level_plan") or "levels" not in entry.defaults:  # a levelled one
        raise UserError(f"train.levels: '{preset}' is not a level preset; use nested or nested-blog")
    unknown = sorted(set(given) - set(entry.defaults))
    if unknown:
        raise UserError(f"train.levels has no key {', '.join(unknown)}; its keys: {', '.join(sorted(entry.defaults))}")
    hp = {**entry.defaults, **given}
    entry.obj.check(hp)
    return hp


def schedule_optimizer(ctx, model, params, kind: str | None) -> LevelOptimizer:
    """The optimizer a strategy gets from ctx.make_optimizer when ``train.levels`` or ``backbone.cms``
    is set: the backbone's levels (as ``nested`` partitions them; without train.levels one period-1
    level) each with the strategy's optimizer kind, then the CMS head's blocks at their periods."""
    spec = level_spec(ctx.train["levels"])
    if {id(p) for p in params} != {id(p) for p in model.parameters()}:
        raise UserError("train.levels and backbone.cms need the strategy's optimizer to hold the whole model's "
                        "parameters")
    cms_periods = getattr(model, "level_periods", None)  # a backbone.cms head (nlbench.nested.cms.CMSModel)
    body, prefix = (model.backbone, "backbone.") if cms_periods else (model, "")
    if spec is None:  # a CMS head on a plain strategy: the body is one level with the run's own optimizer
        hp = {**LEVEL_DEFAULTS, "level_optimizer": kind or ctx.train["optimizer"], "momentum": ctx.train["momentum"]}
        groups, periods, lr_periods, slow = [("backbone", ["backbone"])], [1], None, None
    else:
        hp = {**spec, "level_optimizer": spec["level_optimizer"] if kind is None else kind}
        groups = backbone_groups(body, hp["levels"], prefix)
        periods = expand_periods(hp["periods"], len(groups))
        slow = None if hp.get("budget_of") is None else expand_periods(hp["budget_of"], len(groups))
        lr_periods = slow if hp.get("lr_periods") is None else expand_periods(hp["lr_periods"], len(groups))
    factors = None if spec is None else level_lr_factors(hp, slow, len(groups))
    if cms_periods:
        groups = groups + [(f"cms{i + 1}", [f"cms.{i}"]) for i in range(len(cms_periods))]
        lr_periods = None if lr_periods is None else lr_periods + cms_periods
        factors = None if factors is None else factors + [1.0] * len(cms_periods)
        periods = periods + list(cms_periods)
    make_opt = lambda ps, lr: level_optimizer(ctx, ps, lr, hp)  # noqa: E731
    schedule = build_levels(model, groups, periods, ctx.train["lr"], hp["lr_scaling"], hp["grad_reduce"], make_opt,
                            lr_periods, factors)
    check_clock(periods, [lv.name for lv in schedule.levels], ctx)
    return LevelOptimizer(schedule)


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


def level_lr_factors(hp: dict, slow: list[int] | None, n_levels: int) -> list[float] | None:
    """The levels' lr factors: the calibrated ones (``lr_factors``), else the formula's from the slow
    version's periods (``budget_of``: budget_lr_factor), else None (every factor 1)."""
    if hp.get("lr_factors") is not None:
        if len(hp["lr_factors"]) != n_levels:
            raise UserError(f"strategy.lr_factors has {len(hp['lr_factors'])} values but the model has {n_levels} "
                            "levels: give one per level, slowest first")
        return [float(v) for v in hp["lr_factors"]]
    if slow is None:
        return None
    return [budget_lr_factor(c, hp["grad_reduce"], hp["level_optimizer"]) for c in slow]


def budget_lr_factor(slow_period: int, grad_reduce: str, level_optimizer: str) -> float:
    """The lr factor that makes a period-1 level move, per step, as far as a level of period C with
    this grad_reduce and optimizer moves on average (docs/verdict.md: "the formula control, per-layer lr η/C"; it holds under a constant gradient only).

    Under a constant gradient g, a level of period C and lr eta takes one step every C steps:
    - SGD, sum (Eq. 71): the step applies C g, so it moves eta g per step on average: factor 1;
    - SGD, mean or drop: the step applies g, eta g / C per step: factor 1/C (with momentum mu both
      sides gain the same 1/(1-mu) in the steady state);
    - Adam, NestedAdam, M3 (normalised steps): a step moves about eta per coordinate whatever the
      gradient's scale, so eta / C per step: factor 1/C, whatever grad_reduce."""
    if level_optimizer == "sgd" and grad_reduce == "sum":
        return 1.0
    return 1.0 / slow_period


def build_levels(model: torch.nn.Module, groups: list[tuple[str, list[str]]], periods: list[int],
                 base_lr: float, lr_scaling: str, grad_reduce: str, make_optimizer,
                 lr_periods: list[int] | None = None, lr_factors: list[float] | None = None) -> LevelSchedule:
    """Partition ``model``'s parameters by module-name prefixes; every parameter in exactly one level.

    ``lr_scaling=period`` divides a level's lr by its entry of ``lr_periods`` (default: its update
    period): with every period 1 and lr_periods the slow version's periods, the lr-matched control.
    ``lr_factors`` multiply the levels' lrs (the formula control: budget_lr_factor; or the calibrated lr_factors)."""
    named = dict(model.named_parameters())
    owner: dict[str, str] = {}
    levels = []
    factors = lr_factors or [1.0] * len(groups)
    for (name, prefixes), period, lr_period, factor in zip(groups, periods, lr_periods or periods, factors):
        names = [n for n in named if any(n == p or n.startswith(p + ".") for p in prefixes)]
        if not names:
            raise UserError(f"level '{name}' ({', '.join(prefixes)}) matches no parameter of the model")
        for n in names:
            if n in owner:
                raise UserError(f"parameter {n} is in two levels: {owner[n]} and {name}")
            owner[n] = name
        lr = (base_lr / lr_period if lr_scaling == "period" else base_lr) * factor
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


def backbone_groups(model, levels, prefix=""):
    """levels: null (slow/middle/fast default), 'blocks' (one level per block) or a list of
    module-prefix lists, slowest level first."""
    if levels is None:
        return default_backbone_groups(model, prefix)
    if levels == "blocks":
        return block_groups(model, prefix)
    return [(f"level{i + 1}", [prefix + m for m in group]) for i, group in enumerate(levels)]


def check_levels_option(levels) -> None:
    ok = levels is None or levels == "blocks" or (
        isinstance(levels, list) and levels and all(isinstance(g, list) and g and all(isinstance(m, str) for m in g)
                                                    for g in levels))
    require(ok, f"strategy.levels must be null, 'blocks' or a list of lists of module names, got {levels!r}")


def block_groups(model, prefix: str = "") -> list[tuple[str, list[str]]]:
    """Every top-level block its own level, in forward order (the blog recipe's 'layers')."""
    return [(b, [prefix + b]) for b in model.block_names()]


# New keys default to null = the behaviour before them, so older records keep their identity.
LEVEL_DEFAULTS = {"grad_reduce": "sum", "lr_scaling": "none", "reset_on_task": False,
                  "level_optimizer": "adam", "momentum": 0.9,
                  "lr_periods": None,  # lr_scaling=period divides by these (int, list, powers_of_two); null: periods
                  "flush": None,       # pending gradients: null = the paper's running clock; task | run = apply at
                                       # the end of every task / of the last task
                  "slow_period": None,  # level_optimizer nested-adam: v every this many steps; m3: M2's chunk (null: 1)
                  "budget_of": None,    # the periods of a slow version whose movement per step this run matches
                                        # by formula (run at periods 1: 'per-layer lr eta/C'; budget_lr_factor)
                  "lr_factors": None}   # per level (slowest first), the lr factors measured by calibration so that
                                        # a period-1 control moves as far per task as the slow version's levels
                                        # (the displacement-matched control; nlbench.launchers.calibrate)
LEVEL_OPTIMIZERS = ("adam", "sgd", "nested-adam", "m3")
# The formula control's keys, and the period key whose slow value each one holds.
BUDGET_KEYS = {"budget_of": "periods", "cms_budget_of": "cms_periods"}
FLUSH = (None, "task", "run")


def check_level_options(hp: dict) -> None:
    require(hp["grad_reduce"] in GRAD_REDUCE, f"strategy.grad_reduce must be one of {', '.join(GRAD_REDUCE)}, "
            f"got {hp['grad_reduce']!r}")
    require(hp["lr_scaling"] in LR_SCALING, f"strategy.lr_scaling must be one of {', '.join(LR_SCALING)}, "
            f"got {hp['lr_scaling']!r}")
    require(isinstance(hp["reset_on_task"], bool), f"strategy.reset_on_task must be true or false, "
            f"got {hp['reset_on_task']!r}")
    require(hp["level_optimizer"] in LEVEL_OPTIMIZERS, f"strategy.level_optimizer must be one of "
            f"{', '.join(LEVEL_OPTIMIZERS)}, got {hp['level_optimizer']!r}")
    slow = hp.get("slow_period")
    require(slow is None or (isinstance(slow, int) and not isinstance(slow, bool) and slow > 0),
            f"strategy.slow_period must be null or a positive integer, got {slow!r}")
    require(hp.get("flush") in FLUSH, f"strategy.flush must be null, task or run, got {hp.get('flush')!r}")
    for key in BUDGET_KEYS:
        budget = hp.get(key)
        require(budget is None or budget == "powers_of_two" or (isinstance(budget, int) and not isinstance(budget, bool)
                                                                and budget > 0)
                or (isinstance(budget, list) and budget and all(isinstance(v, int) and v > 0 for v in budget)),
                f"strategy.{key} must be null or the slow version's {BUDGET_KEYS[key]} (a positive integer, a list "
                f"of them or powers_of_two), got {budget!r}")
    factors = hp.get("lr_factors")
    require(factors is None or (isinstance(factors, list) and factors and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in factors)),
            f"strategy.lr_factors must be null or a list of positive numbers, one per level (slowest first), "
            f"got {factors!r}")
    require(factors is None or all(hp.get(key) is None for key in BUDGET_KEYS),
            "strategy.lr_factors and budget_of are two ways to set the control's lrs: give one")
    require(isinstance(hp["momentum"], (int, float)) and 0 <= hp["momentum"] < 1,
            f"strategy.momentum must be in [0, 1), got {hp['momentum']!r}")


def level_optimizer(ctx, params, lr: float, hp: dict) -> torch.optim.Optimizer:
    """A level's optimizer: the suite's Adam or SGD (ctx.make_optimizer), or the blog's NestedAdam,
    or M3 (nlbench.nested.optimizers), registered with the run so the lr schedule and the record see it."""
    kind = hp["level_optimizer"]
    if kind in ("adam", "sgd"):
        return ctx.make_optimizer(params, lr=lr, kind=kind, momentum=hp["momentum"], schedule=False)
    from nlbench.nested.optimizers import M3, NestedAdam
    slow = hp.get("slow_period") or 1
    opt = NestedAdam(params, lr=lr, slow_period=slow) if kind == "nested-adam" else M3(params, lr=lr, period=slow)
    return ctx.register_optimizer(opt)


def task_steps(ctx) -> list[int]:
    """Optimizer steps of each task of the run (its epochs times its batches)."""
    bs, epochs = ctx.train["batch_size"], ctx.train["epochs"]
    return [epochs * -(-len(t.train_idx) // bs) for t in ctx.scenario.tasks]


def check_clock(periods: list[int], names: list[str], ctx) -> list[str]:
    """A period longer than the whole run never updates its level: an error. Longer than one task:
    the level's gradients of a task are applied in a later one, after the task was scored: allowed
    by the paper's running clock, but said (log and record)."""
    if ctx.scenario is None:  # a model built for Avalanche's own loop: the run's length is unknown here
        return []
    steps = task_steps(ctx)
    warnings = []
    for name, period in zip(names, periods):
        if period > sum(steps):
            raise UserError(f"level '{name}' has period {period} but the whole run takes {sum(steps)} steps, so it "
                            "would never update; use a smaller strategy.periods or more epochs")
        if period > min(steps):
            warnings.append(f"level '{name}': period {period} exceeds a task's {min(steps)} steps, so gradients of "
                            "one task are applied during a later one (strategy.flush=task applies them at task end)")
    return warnings
