"""The public strategy interface: what a plugin file subclasses and what the runner calls.

A strategy owns its model and its training step. The runner calls, per stage of
``stages(tasks)`` (by default one per task), ``before_task(task)``, then ``observe(batch)`` once per
mini-batch (or, with ``own_loop``, ``train_task(task)`` once), then ``after_task(task)``, and
evaluates ``strategy.evaluation_model()`` (by default ``strategy.model``) on every task.
``observe`` must do the whole update (forward, backward, optimizer step) and return the detached loss.

Seed-parallel groups (nlbench.training.group): a strategy that sets ``seed_parallel = True`` promises that
``observe`` also trains K models of K seeds at once, stacked. Then a batch's tensors carry the model
as their second dimension (x: (B, K, 3, 32, 32), y: (B, K)), the model maps (B, K, ...) to
(B, K, classes), state tensors (parameters, optimizer and strategy state) carry it as their first,
and ``ctx.loss``, ``ctx.prepare`` and ``ctx.per_model`` keep the models apart; with one model
(``ctx.group_size == 1``) they are the plain one-seed operations. ``before_task``, ``after_task``
and ``state_dict`` always run on one seed's strategy: the group stacks and splits the states.

CUDA graphs: a strategy that sets ``graph_safe = True`` promises that ``observe`` launches the
same device work on every step of a task (no host syncs, no Python branches on step-dependent
values, randomness from ``ctx.step_generator``, optimizers from ``ctx.make_optimizer``). The runner
then records one step per task in a CUDA graph and replays it (``train.cuda_graph``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlbench.errors import EndOfTaskStopped, UserError, require  # noqa: F401  (require: part of the plugin interface)
from nlbench.nested.levels import schedule_optimizer


@dataclass
class Batch:
    x: torch.Tensor      # (B, 3, 32, 32) float: augmented, permuted, normalised
    y: torch.Tensor      # (B,) int64 labels
    raw: torch.Tensor    # (B, 3, 32, 32) uint8, before augmentation (what replay stores)
    task: torch.Tensor   # (B,) int64 task index of each sample


class RunContext:
    """What a strategy may use: device, backbone factory, optimizer factory, data preparation."""

    def __init__(self, cfg: dict, scenario, device: torch.device, generator: torch.Generator,
                 make_backbone, augmenter, graph_capture: bool = False):
        self.cfg, self.scenario, self.device, self.generator = cfg, scenario, device, generator
        self._make_backbone, self.augmenter = make_backbone, augmenter
        self.train = cfg["train"]
        self.num_classes = 10
        self.channels_last = device.type == "cuda" and self.train["channels_last"] in ("auto", True)
        self.graph_capture = graph_capture
        self.optimizers: list[tuple[torch.optim.Optimizer, list[float]]] = []  # for the lr schedule
        self.model: torch.nn.Module | None = None  # the last backbone built (train.levels partitions it)
        self.stop_requested = lambda: False  # the runner's: whether SIGINT/SIGTERM asked the run to stop

    def check_stop(self) -> None:
        """Call it inside long end-of-task work (GDumb trains a whole network in ``after_task``): at a
        stop request it gives up at once, and the run stops with its last checkpoint, which is from
        before this task's end, so a resumed run redoes the work exactly. Without it a stop waits for
        the work to end (a campaign's grace period may run out first)."""
        if self.stop_requested():
            raise EndOfTaskStopped

    group_size = 1  # models trained at once (nlbench.training.group.GroupContext: K seeds)

    def per_model(self, draw):
        """``draw(ctx)`` once per model of the group, each with that seed's context (its generator,
        scenario), stacked on a new first dimension; with one model, the draw itself."""
        return draw(self)

    def model_state(self, *shape, dtype=torch.float32) -> torch.Tensor:
        """Zeros for a strategy's per-model state: ``shape``, with the group's models first in a group."""
        return torch.zeros(*shape, dtype=dtype, device=self.device)

    def batch_rows(self, state_rows: torch.Tensor) -> torch.Tensor:
        """Rows gathered from per-model state, (models, n, ...) -> a batch's layout (n, ...) or (n, K, ...)."""
        return state_rows[0]

    @staticmethod
    def weighted_mean(per_sample: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Each model's own weighted mean over the batch, summed over a group's models (0 for a model
        whose weights are all 0): per-sample values of a batch, (n,) or (n, K)."""
        return ((per_sample * weight).sum(0) / weight.sum(0).clamp(min=1e-12)).sum()

    @property
    def step_generator(self) -> torch.Generator | None:
        """The generator for randomness inside ``observe``. Under CUDA-graph capture it is the
        device's default generator (seeded by the run's seed), whose state graphs advance on every
        replay; a private generator would replay the same numbers."""
        return None if self.graph_capture else self.generator

    def loss(self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Cross-entropy with the protocol's label smoothing (train.label_smoothing)."""
        return F.cross_entropy(logits, y, label_smoothing=self.train["label_smoothing"], reduction=reduction)

    def make_backbone(self) -> torch.nn.Module:
        model = self._make_backbone().to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        return model

    def make_optimizer(self, params, lr: float | None = None, kind: str | None = None,
                       momentum: float | None = None, schedule: bool = True) -> torch.optim.Optimizer:
        """The suite's optimizer (train.optimizer, lr, momentum, nesterov, weight_decay) unless told
        otherwise. Multi-tensor (foreach) steps; under CUDA graphs SGD is fused, Adam capturable, and
        a scheduled lr lives in a device tensor, so that a replayed step reads the current value.
        With ``train.levels`` or ``backbone.cms`` set (and ``schedule``), a level schedule over the
        model instead: every level an optimizer of this kind (nlbench.nested.levels.schedule_optimizer)."""
        t = self.train
        if schedule and uses_levels(self.cfg):
            return schedule_optimizer(self, self.model, list(params), kind)
        lr = t["lr"] if lr is None else lr
        kind = kind or t["optimizer"]
        momentum = t["momentum"] if momentum is None else momentum
        params = list(params)
        on_device = self.graph_capture and t["lr_schedule"] != "constant"
        lr_value = torch.tensor(lr, device=self.device) if on_device else lr
        if kind == "adam":
            opt = torch.optim.Adam(params, lr=lr_value, weight_decay=t["weight_decay"], foreach=True,
                                   capturable=self.graph_capture and self.device.type == "cuda")
        elif kind == "sgd":  # fused under graphs: the foreach step reads a tensor lr on the host (a sync)
            fused = self.graph_capture and self.device.type == "cuda"
            opt = torch.optim.SGD(params, lr=lr_value, momentum=momentum, weight_decay=t["weight_decay"],
                                  nesterov=t["nesterov"] and momentum > 0, foreach=not fused, fused=fused)
        else:
            raise UserError(f"unknown optimizer '{kind}'; valid: adam, sgd")
        return self.register_optimizer(opt)

    def register_optimizer(self, opt: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Let the lr schedule and the record's optimizer list see an optimizer made elsewhere."""
        self.optimizers.append((opt, [g["lr"] if not torch.is_tensor(g["lr"]) else float(g["lr"])
                                      for g in opt.param_groups]))
        return opt

    def scale_lr(self, factor: float) -> None:
        """Set every optimizer made here to its base lr times ``factor`` (the lr schedule)."""
        for opt, base in self.optimizers:
            for group, lr in zip(opt.param_groups, base):
                if torch.is_tensor(group["lr"]):
                    group["lr"].fill_(lr * factor)  # in place: a captured graph reads this tensor
                else:
                    group["lr"] = lr * factor

    def prepare(self, raw: torch.Tensor, task: torch.Tensor, augment: bool = True) -> torch.Tensor:
        """uint8 images -> network input; training augmentation unless ``augment`` or
        ``train.augment`` is false."""
        use = augment and self.train["augment"]
        x = self.scenario.prepare(raw, task, self.augmenter.with_generator(self.step_generator) if use else None)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class Strategy:
    """Base class with no-op hooks. Subclasses set ``defaults`` and implement ``observe``."""

    defaults: dict = {}
    # bench.py tune's search space (nlbench.launchers.tuning: KEY -> [log|float|int, low, high], [choice, options] or
    # [log_scale, f] around the resolved value); a strategy adds its own knobs to the learning rate
    search_space: dict = {"train.lr": ["log_scale", 10.0]}
    graph_safe = False  # True: observe() may be captured in a CUDA graph (see the module docstring)
    seed_parallel = False  # True: observe() can train a seed-parallel group (see the module docstring)
    own_loop = False    # True: train_task() trains a whole stage with the strategy's own loop
    # How reports show it (register_strategy's arguments of the same names win; see nlbench.registry):
    label: str | None = None           # row label; None: the registered name
    group: str = "plugin"              # table section: baseline | nested | plugin | avalanche | upper bound
    order: int = 100                   # place within the group
    standard_label: str | None = None  # row name in the one-task comparison; None: the label
    # True: with a single task it trains exactly like fine-tuning, so `--strategy all` leaves it out there
    skip_on_one_task = False

    def __init__(self, ctx: RunContext, **hp):
        self.ctx, self.hp = ctx, hp
        self.model = ctx.make_backbone()

    @classmethod
    def check(cls, hp: dict) -> None:
        """Raise UserError for hyperparameter values out of range."""

    @classmethod
    def graph_safe_for(cls, hp: dict) -> bool:
        """Whether ``observe`` may be recorded in a CUDA graph with these hyperparameters."""
        return bool(cls.graph_safe)

    @classmethod
    def seed_parallel_for(cls, hp: dict) -> str | None:
        """None when these hyperparameters let K seeds train as one group, else why not (one line)."""
        return None if cls.seed_parallel else f"{cls.__name__} does not declare seed_parallel"

    @classmethod
    def matched_controls(cls, hp: dict) -> dict[str, dict]:
        """Controls the report pairs a run with besides fine-tuning, for hyperparameters ``hp``:
        description -> strategy overrides (the run they name, e.g. nested@periods=1, with the same seeds)."""
        return {}

    def stages(self, tasks: list) -> list:
        """The training stages in order, by default one per task; a stage may merge tasks
        (``nlbench.training.scenarios.merge_tasks``: joint training). Every task is evaluated after each stage."""
        return list(tasks)

    def train_task(self, task) -> int:
        """With ``own_loop``: train on one stage with your own loop; return the training images seen.
        The runner then neither calls ``observe`` nor checkpoints within the stage."""
        raise NotImplementedError(f"{type(self).__name__} sets own_loop but has no train_task")

    def before_task(self, task) -> None:
        pass

    def training_samples(self, task) -> tuple[torch.Tensor, torch.Tensor]:
        """What the runner's loop shuffles and batches in a stage: indices into ``scenario.train_x`` and
        each one's task. By default the stage's own images; a strategy that mixes its memory into the
        data (iCaRL) adds it here. Called after ``before_task``, and again when a run resumes mid-stage,
        so it must depend only on the strategy's saved state."""
        idx = task.train_idx
        return idx, (task.sample_tasks if task.sample_tasks is not None else torch.full_like(idx, task.index))

    def observe(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def after_task(self, task) -> None:
        pass

    @staticmethod
    def update(loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """One plain optimizer step on ``loss``; returns the detached loss (what observe returns)."""
        optimizer.zero_grad(set_to_none=True)  # None, not zeros: under graph capture backward then
        loss.backward()                        # allocates the gradients from the graph's own pool
        optimizer.step()
        return loss.detach()

    def evaluation_model(self) -> torch.nn.Module:
        """The network the runner evaluates (and probes) after each stage: the trained model, unless a
        strategy predicts with another (CLS-ER: its stable EMA model)."""
        return self.model

    def describe(self) -> dict:
        """Extra facts for the run record (e.g. the levels that ran; those of train.levels by default)."""
        scheduled = [v for v in vars(self).values() if hasattr(v, "schedule") and isinstance(v, torch.optim.Optimizer)]
        return {"levels": scheduled[0].schedule.describe(self.ctx.train["batch_size"])} if scheduled else {}

    def optimizer_info(self) -> list[dict]:
        """What the record says about the optimizers that trained the model: every optimizer made
        through ``ctx.make_optimizer`` or held as an attribute, its class and hyperparameters.
        Override it if yours live elsewhere."""
        found = {id(o): (o, None) for o, _ in self.ctx.optimizers}
        found.update({id(v): (v, k) for k, v in vars(self).items() if isinstance(v, torch.optim.Optimizer)})
        return [describe_optimizer(opt, attr) for opt, attr in found.values()]

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


def describe_optimizer(opt: torch.optim.Optimizer, attr: str | None = None) -> dict:
    """Class and first parameter group's hyperparameters (JSON-able ones), and the parameter count."""
    group = opt.param_groups[0]
    hyper = {k: (float(v) if torch.is_tensor(v) and v.numel() == 1 else v) for k, v in group.items() if k != "params"}
    hyper = {k: (list(v) if isinstance(v, tuple) else v) for k, v in hyper.items()
             if isinstance(v, (bool, int, float, str, tuple, type(None))) or isinstance(v, list)}
    n = sum(p.numel() for g in opt.param_groups for p in g["params"])
    return {"type": type(opt).__name__, **({"attribute": attr} if attr else {}), "parameters": n, **hyper}


class PlainStrategy(Strategy):
    """One optimizer over the whole model and one plain step per batch: fine-tuning and the
    strategies that differ from it only in what data they see (joint) or which optimizer they use."""

    graph_safe = True
    seed_parallel = True  # elementwise optimizers on stacked parameters: each model steps as alone
    optimizer_kind: str | None = None  # None: train.optimizer

    def __init__(self, ctx: RunContext, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters(), kind=self.optimizer_kind)

    def observe(self, batch: Batch) -> torch.Tensor:
        return self.update(self.ctx.loss(self.model(batch.x), batch.y), self.optimizer)


def uses_levels(cfg: dict) -> bool:
    """Whether the run's optimizer is a level schedule: ``train.levels`` or a ``backbone.cms`` head."""
    return cfg["train"].get("levels") is not None or bool(cfg["backbone"].get("cms"))
