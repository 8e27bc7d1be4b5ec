"""Seed-parallel training: K seeds of one resolved configuration trained at once, as one stacked
computation, each still an ordinary run with its ordinary record.

How a group works:
- **Members.** Each seed is prepared exactly as a one-seed run (``runner.prepare`` under its own
  ``torch.manual_seed``): its scenario (class order, permutations), generator, model initialisation,
  strategy state and checkpoint. Members do everything that is per seed and not a training step:
  ``before_task`` / ``after_task`` (an EWC Fisher, a level flush), evaluation, probes, checkpoints
  and records, with the one-seed code.
- **The group's strategy.** One more instance of the strategy, built on a ``GroupContext``, whose
  model's every parameter and buffer is the members' stacked on a first dimension and whose forward
  is ``torch.func.vmap`` of the one-model forward over that dimension (grouped convolutions, batched
  matrix products; BatchNorm statistics over each model's own batch). Its optimizers are the
  suite's elementwise ones (SGD, Adam, NestedAdam, level schedules) over the stacked parameters, so
  each model steps as it would alone; the loss is the sum of the models' own losses, so gradients
  never mix. Strategies whose update couples entries of a tensor (M3's and Muon's Newton-Schulz)
  declare that they cannot group (``Strategy.seed_parallel_for``).
- **Randomness.** Every random draw of a step (data order, augmentation, replay slots) is made once
  per model with that seed's own generator, in the same order as in its one-seed run.
- Member states are stacked into the group before a stage's training and split back after it (and
  before a checkpoint), by the rule of ``stack_states``.

Why vmap over ``functional_call`` (torch.func) rather than hand-written grouped layers: it stacks
any backbone (CMS heads, plugins' modules) without a grouped twin of every layer type.
"""
from __future__ import annotations

import contextlib
import copy
import io
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap
from tqdm import tqdm

from nlbench.training.checkpoint import Interrupted, SignalGuard, save_checkpoint
from nlbench.training.records import GROUP_NUMERICS
from nlbench.errors import EndOfTaskStopped, UserError
from nlbench.nested.levels import level_spec
from nlbench.registry import STRATEGIES, lookup
from nlbench.training.runner import (Loop, StepRunner, build_record, finish_stage, kept_checkpoint, lr_factor,
                                     note_memory, prepare, timed_after_task)
from nlbench.training.device import reset_peak_memory
from nlbench.training.strategy import RunContext, Strategy


class GroupContext(RunContext):
    """The group strategy's context: the members' contexts (one per seed) behind the same optimizer
    factory and lr schedule. Batches carry the model as their second dimension, state as its first."""

    def __init__(self, members: list[RunContext]):
        lead = members[0]
        super().__init__(lead.cfg, lead.scenario, lead.device, lead.generator, lead._make_backbone, lead.augmenter,
                         graph_capture=False)
        self.members = members

    @property
    def group_size(self) -> int:
        return len(self.members)

    def per_model(self, draw):
        return torch.stack([draw(member) for member in self.members])

    def model_state(self, *shape, dtype=torch.float32) -> torch.Tensor:
        return torch.zeros(self.group_size, *shape, dtype=dtype, device=self.device)

    def batch_rows(self, state_rows: torch.Tensor) -> torch.Tensor:
        return state_rows.transpose(0, 1)

    def loss(self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """(B, K, classes), (B, K) -> per sample (B, K), or each model's own mean (sum), summed over
        the models: the gradient of model k is that of its one-seed loss."""
        per_sample = F.cross_entropy(logits.movedim(-1, 1), y, label_smoothing=self.train["label_smoothing"],
                                     reduction="none")
        if reduction == "none":
            return per_sample
        return per_sample.sum() if reduction == "sum" else per_sample.mean(0).sum()

    def prepare(self, raw: torch.Tensor, task: torch.Tensor, augment: bool = True) -> torch.Tensor:
        """(B, K, 3, 32, 32) uint8 -> network input, each model's images through its own seed's
        augmentation and scenario (e.g. its permutation)."""
        x = torch.stack([m.prepare(raw[:, k], task[:, k], augment) for k, m in enumerate(self.members)], 1)
        # contiguous: the augmentation's output has channels-last strides, which the convolutions pass on,
        # and vmap has no batching rule for the pooling of such a tensor (a per-model loop instead)
        return x.contiguous()


def stack_models(model: torch.nn.Module, members: list[torch.nn.Module]) -> None:
    """Make ``model`` (a module of the members' architecture) the group's model, in place: every
    parameter and buffer becomes the members' stacked (the Parameter objects stay, so optimizers
    built on them keep working) and its forward maps (B, K, ...) to (B, K, classes) with vmap."""
    base = copy.deepcopy(model).to("meta")  # the architecture, called once per model; its own tensors unused
    params, buffers = stack_module_state(members)
    # contiguous: stacked channels-last members give strided tensors, and cuDNN's convolution asks
    # their memory format inside vmap, which vmap cannot answer (NYI) -- seen on CUDA in fp32 (2026-11-30)
    for name, p in model.named_parameters():
        p.data = params[name].detach().contiguous()
    for name, _ in list(model.named_buffers()):
        owner, _, attr = name.rpartition(".")
        model.get_submodule(owner)._buffers[attr] = buffers[name].detach().contiguous()
    one_model = vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), in_dims=(0, 0, 1), out_dims=1)

    def forward(x: torch.Tensor) -> torch.Tensor:
        base.train(model.training)  # BatchNorm: batch statistics in training, running ones in evaluation
        return one_model(dict(model.named_parameters()), dict(model.named_buffers()), x)
    model.forward = forward


def stack_states(states: list, always: bool = False):
    """The members' state dicts -> the group's: tensors stacked on a new first dimension, except
    0-dim tensors equal in every member (step counters: Adam's step, a replay buffer's count),
    which stay shared; other values must be equal. ``always``: stack every tensor (a model's)."""
    first = states[0]
    if isinstance(first, dict):
        return {k: stack_states([s[k] for s in states], always) for k in first}
    if isinstance(first, (list, tuple)):
        return type(first)(stack_states(list(v), always) for v in zip(*states))
    if torch.is_tensor(first):
        if not always and first.dim() == 0 and all(torch.equal(first, s) for s in states[1:]):
            return first.clone()
        return torch.stack(states)
    if any(s != first for s in states[1:]):
        raise UserError(f"seed-parallel: the seeds' states differ in a value that cannot be stacked ({states!r}); "
                        "run them one seed per process (--seed-parallel 1)")
    return first


def unstack_state(state, k: int):
    """Model k's state from the group's (the inverse of stack_states), as copies."""
    if isinstance(state, dict):
        return {key: unstack_state(v, k) for key, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(unstack_state(v, k) for v in state)
    if torch.is_tensor(state):
        return (state[k] if state.dim() else state).clone()
    return state


def unsupported(cfg: dict, strategy_name: str) -> str | None:
    """Why a configuration cannot train as a seed-parallel group (one line), or None."""
    cls = lookup(STRATEGIES, "strategy", strategy_name).obj
    if getattr(cls, "own_loop", False) or not issubclass(cls, Strategy):
        return f"{strategy_name} trains with its own loop"
    reason = cls.seed_parallel_for(cfg["strategy"])
    if reason:
        return reason
    if cfg["train"]["compile"]:
        return "train.compile compiles one model"
    if cfg["train"]["cuda_graph"] is True:
        return "train.cuda_graph=true records one model's step (use auto)"
    spec = level_spec(cfg["train"]["levels"])
    if spec is not None and spec["level_optimizer"] == "m3":
        return "train.levels with level_optimizer m3 orthogonalises whole matrices, which a group would mix"
    return None


class GroupMismatch(Exception):
    """The seeds cannot train as one group (e.g. checkpoints at different points): run them one by one."""


class GroupDiverged(Exception):
    """Some models of the group diverged (their positions in the group, and the message)."""

    def __init__(self, which: list[int], message: str):
        super().__init__(message)
        self.which, self.message = which, message


@dataclass
class Group:
    members: list[Loop]
    seeds: list[int]
    strategy: Strategy
    ctx: GroupContext
    stepper: StepRunner
    guard: SignalGuard | None = None

    def gather(self) -> None:
        """The members' states -> the group's strategy."""
        states = [m.strategy.state_dict() for m in self.members]
        self.strategy.load_state_dict({"model": stack_states([s["model"] for s in states], always=True),
                                       "optimizers": stack_states([s["optimizers"] for s in states]),
                                       "extra": stack_states([s["extra"] for s in states])})

    def scatter(self) -> None:
        """The group's strategy state -> each member."""
        state = self.strategy.state_dict()
        for k, m in enumerate(self.members):
            m.strategy.load_state_dict(unstack_state(state, k))


def build_group(members: list[Loop], seeds: list[int]) -> Group:
    lead = members[0]
    ctx = GroupContext([m.ctx for m in members])
    # A throwaway initialisation (the members' parameters replace it): keep the global RNG as it was,
    # and the warnings the members already printed unprinted.
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        strategy = type(lead.strategy)(ctx, **lead.ctx.cfg["strategy"])
    stack_models(strategy.model, [m.strategy.model for m in members])
    group = Group(members, seeds, strategy, ctx, StepRunner(strategy, ctx, lead.amp, graphs=False))
    group.gather()
    return group


def _check_positions(members: list[Loop]) -> None:
    where = {(m.state.task, m.state.epoch, m.state.step) for m in members}
    if len(where) > 1:
        raise GroupMismatch(f"their checkpoints are at different points {sorted(where)}")
    sizes = {tuple(len(s.train_idx) for s in m.stages) for m in members}
    if len(sizes) > 1:
        raise GroupMismatch("their tasks hold different numbers of training images")


def train_group_stage(group: Group, who: str) -> None:
    """The current stage for every model of the group, then each seed's evaluation and checkpoint."""
    lead = group.members[0]
    t0 = time.perf_counter()
    tasks = [m.stages[m.state.task] for m in group.members]
    if lead.state.epoch == 0 and lead.state.step == 0:
        for m, task in zip(group.members, tasks):
            m.strategy.before_task(task)
        group.gather()
    _train_group_task(group, tasks, f"task {lead.state.task + 1}/{len(lead.stages)}")
    group.scatter()
    try:
        for m, task in zip(group.members, tasks):
            timed_after_task(m.ctx, m.strategy, m.state, task)
    except EndOfTaskStopped:  # every seed keeps the checkpoint it has (from before this task's end)
        kept = [kept_checkpoint(m.checkpoint) for m in group.members]
        raise Interrupted(group.guard.signum, next((p for p in kept if p is not None), None)) from None
    for m in group.members:  # each seed's memory, scattered back to it: what it held after this task
        note_memory(m)
    group.gather()
    for m, seed in zip(group.members, group.seeds):
        finish_stage(m, f"{who} seed {seed}", t0)


def _train_group_task(group: Group, tasks, label: str) -> None:
    """The epochs of one stage, every model a step at a time (runner._train_task, K seeds wide)."""
    members, ctx, lead = group.members, group.ctx, group.members[0]
    idxs, tids = zip(*(m.strategy.training_samples(t) for m, t in zip(members, tasks)))
    bs, epochs = ctx.train["batch_size"], ctx.train["epochs"]
    steps_per_epoch = -(-len(idxs[0]) // bs)
    bar = tqdm(total=epochs * steps_per_epoch, desc=label, leave=False, disable=not lead.progress or None,
               initial=lead.state.epoch * steps_per_epoch + lead.state.step)
    group.stepper.new_task()
    while lead.state.epoch < epochs:
        for m, idx in zip(members, idxs):
            if m.state.order is None:
                m.state.order = torch.randperm(len(idx), generator=m.generator, device=idx.device)
        t0, images = time.perf_counter(), 0
        while lead.state.step < steps_per_epoch:
            step = lead.state.step
            if ctx.train["lr_schedule"] != "constant":
                ctx.scale_lr(lr_factor(ctx.train, lead.state.epoch * steps_per_epoch + step, steps_per_epoch))
            rows = [m.state.order[step * bs:(step + 1) * bs] for m in members]
            picks = [idx[r] for idx, r in zip(idxs, rows)]
            raw = torch.stack([m.scenario.train_x[p] for m, p in zip(members, picks)], 1)
            y = torch.stack([m.scenario.train_y[p] for m, p in zip(members, picks)], 1)
            t = torch.stack([tid[r] for tid, r in zip(tids, rows)], 1)
            loss = group.stepper.step(raw, y, t)
            for m in members:
                m.state.step += 1
            images += len(picks[0])
            bar.update(1)
            if lead.state.step % ctx.train["log_every"] == 0 or lead.state.step == steps_per_epoch:
                _check_group_loss(group, tasks[0], loss, bar, len(members) * images / max(time.perf_counter() - t0, 1e-9))
            if group.guard.signum is not None:
                _finish_group_timing(group, t0, images)
                bar.close()
                _stop_group(group)
        _finish_group_timing(group, t0, images)
        for m in members:
            m.state.epoch, m.state.step, m.state.order = m.state.epoch + 1, 0, None
    bar.close()


def _finish_group_timing(group: Group, t0: float, images: int) -> None:
    """Each seed gets the group's wall time (its models trained side by side) and its own images."""
    if group.ctx.device.type == "cuda":
        torch.cuda.synchronize(group.ctx.device)
    elapsed = time.perf_counter() - t0
    for m in group.members:
        m.state.train_seconds += elapsed
        m.state.images += images


def _check_group_loss(group: Group, task, loss: torch.Tensor, bar, images_per_s: float) -> None:
    value = loss.item()  # the sum of the models' losses: non-finite when any model's is
    if torch.isfinite(torch.tensor(value)):
        bar.set_postfix(epoch=group.members[0].state.epoch + 1, loss=f"{value / len(group.members):.3f}",
                        img_s=f"{images_per_s:.0f}")
        return
    bad = torch.zeros(len(group.members), dtype=torch.bool, device=group.ctx.device)
    for p in group.strategy.model.parameters():
        bad |= ~torch.isfinite(p.detach()).flatten(1).all(1)
    which = bad.nonzero().flatten().tolist() or list(range(len(group.members)))  # none found: all of them
    state = group.members[0].state
    group.scatter()
    raise GroupDiverged(which, f"loss is {value} in strategy '{type(group.strategy).__name__}', task {task.index + 1}, "
                               f"epoch {state.epoch + 1}, step {state.step} (seed-parallel group: this model's "
                               "parameters are not finite)")


def _stop_group(group: Group) -> None:
    """A signal arrived: every seed saves the state reached (after this step), then the group stops."""
    group.scatter()
    paths = [save_checkpoint(m.checkpoint, m.strategy, m.generator, m.state, m.ctx)
             for m in group.members if m.checkpoint is not None]
    raise Interrupted(group.guard.signum, paths[0] if paths else None)


def run_group(specs: list, *, device: torch.device, data, checkpoints: list, progress: bool = True, log=print,
              on_checkpoint=None) -> list[dict]:
    """Run planned runs (RunSpecs) that differ only by seed as one seed-parallel group; their records,
    in their order.
    Raises GroupMismatch (before any training) when they cannot share a group. ``on_checkpoint(path)``
    runs after each seed's end-of-stage checkpoint, as in runner.run (the Ray launcher ships it)."""
    cfg, strategy_name, seeds = specs[0].cfg, specs[0].strategy, [spec.seed for spec in specs]
    reason = unsupported(cfg, strategy_name)
    if reason:
        raise GroupMismatch(reason)
    reset_peak_memory(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    members, memory_models = [], []
    for spec, ckpt in zip(specs, checkpoints):
        torch.manual_seed(spec.seed)  # what runner.run does first: each seed's initialisation as in its own run
        loop, memory_model = prepare(spec, device, data, ckpt, progress, log)
        loop.on_checkpoint = on_checkpoint
        loop.meter = None  # a group steps stacked parameters: the members' displacement is not measured
        members.append(loop)
        memory_models.append(memory_model)
    _check_positions(members)
    diverged: dict[int, str] = {}
    active = list(range(len(members)))
    started = time.perf_counter()
    while active:
        group = build_group([members[i] for i in active], [seeds[i] for i in active])
        who = f"{strategy_name} (group of {len(active)})"
        try:
            with SignalGuard() as group.guard:
                for m in members:
                    m.ctx.stop_requested = lambda: group.guard.signum is not None
                while members[active[0]].state.task < len(members[active[0]].stages):
                    train_group_stage(group, who)
            break
        except GroupDiverged as exc:
            for j in exc.which:
                diverged[active[j]] = exc.message
                log(f"error: seed {seeds[active[j]]}: {exc.message}")
            active = [i for j, i in enumerate(active) if j not in exc.which]
    wall = time.perf_counter() - started
    records = []
    for i, (loop, memory_model) in enumerate(zip(members, memory_models)):
        status = "diverged" if i in diverged else "complete"
        record = build_record(loop, specs[i], status, diverged.get(i), memory_model)
        record["seed_parallel"] = {  # how it was run; train_seconds and peak memory are the whole group's
            "group_size": len(seeds), "seeds": list(seeds), "group_wall_seconds": wall,
            "group_images_per_second": sum(m.state.images for m in members) / max(loop.state.train_seconds, 1e-9)}
        record["numerics"].update(GROUP_NUMERICS)
        records.append(record)
    return records
