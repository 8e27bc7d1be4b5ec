"""The training loop, written once: for each task train, then evaluate every task. Building the scenario
and its splits (nlbench.training.splits), evaluation (nlbench.training.evaluation) and the device, its
numerics and memory (nlbench.training.device) live in their own modules.

Checkpoints: at the end of every task, and at the end of the current step when SIGINT/SIGTERM
arrives, the whole run state is saved beside the record (``seedK.ckpt``); the same command resumes
from it and, on the CPU, reproduces the uninterrupted run exactly.
"""
from __future__ import annotations

import hashlib
import inspect
import pathlib
import time
from dataclasses import dataclass
from typing import Callable

import torch
from tqdm import tqdm

from nlbench.errors import Diverged, EndOfTaskStopped
from nlbench.nested.cms import cms_backbone
from nlbench.registry import BACKBONES, STRATEGIES, lookup
from nlbench.training import memory, metrics
from nlbench.training.checkpoint import Interrupted, RunState, SignalGuard, load_checkpoint, save_checkpoint
from nlbench.training.data import Augmenter, DataChoice
from nlbench.training.device import (amp_context, device_name, numerics, peak_memory, reset_peak_memory,
                                     uses_cuda_graph)
from nlbench.training.displacement import DisplacementMeter, parameter_groups
from nlbench.training.evaluation import evaluate_all
from nlbench.training.models import with_head
from nlbench.training.records import versions
from nlbench.training.runspec import RunSpec
from nlbench.training.scenarios import Scenario, Task
from nlbench.training.splits import build_scenario
from nlbench.training.strategy import Batch, RunContext, Strategy


@dataclass
class Loop:
    """One run's moving parts, built once by ``prepare`` and handed to each loop function."""
    strategy: Strategy
    ctx: RunContext
    scenario: Scenario
    stepper: "StepRunner"
    amp: Callable
    generator: torch.Generator
    state: RunState
    stages: list[Task]
    checkpoint: pathlib.Path | None
    progress: bool
    log: Callable
    guard: SignalGuard | None = None
    on_checkpoint: Callable | None = None  # called with the path after each stage's checkpoint (Ray ships it)
    on_stage: Callable | None = None  # called with (accuracy rows so far, tasks seen) after each stage's evaluation
    meter: DisplacementMeter | None = None  # how far each level moved, per task (nlbench.training.displacement)


def run(spec: RunSpec, *, device: torch.device, data: DataChoice, checkpoint: pathlib.Path | None = None,
        progress: bool = True, log=print, on_checkpoint: Callable | None = None,
        on_stage: Callable | None = None) -> dict:
    """Run one planned run and return its record. ``on_checkpoint(path)`` runs after
    every checkpoint written at the end of a stage (nlbench.launchers.ray_launcher sends it to the driver);
    ``on_stage(acc, seen)`` after every stage's evaluation (nlbench.launchers.tuning reports and prunes there)."""
    torch.manual_seed(spec.seed)
    reset_peak_memory(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed input shapes: let cuDNN pick the fastest kernels
    loop, memory_model = prepare(spec, device, data, checkpoint, progress, log)
    loop.on_checkpoint, loop.on_stage = on_checkpoint, on_stage
    status, diverged_at = "complete", None
    try:
        with SignalGuard(immediate=loop.strategy.own_loop) as loop.guard:
            loop.ctx.stop_requested = lambda: loop.guard.signum is not None
            while loop.state.task < len(loop.stages):
                train_stage(loop, f"{spec.strategy} seed {spec.seed}")
    except Diverged as exc:
        status, diverged_at = "diverged", str(exc)
        log(f"error: {exc}")
    return build_record(loop, spec, status, diverged_at, memory_model)


def make_context(cfg: dict, scenario: Scenario, device: torch.device, generator: torch.Generator,
                 graph_capture: bool = False) -> RunContext:
    """The one factory of a run's RunContext: the config's backbone (with its CMS head, backbone.cms)
    and the augmentation, both drawing from ``generator``."""
    backbone = lookup(BACKBONES, "backbone", cfg["backbone"]["name"])
    cms = cfg["backbone"].get("cms")

    def make_backbone():
        net = with_head(backbone.obj(num_classes=10, width=cfg["backbone"]["width"]),
                        cfg["backbone"].get("head", "linear"))
        return cms_backbone(net, cms) if cms else net
    return RunContext(cfg, scenario, device, generator, make_backbone, Augmenter(generator), graph_capture=graph_capture)


def prepare(spec: RunSpec, device, data, checkpoint, progress, log):
    """Scenario, strategy (its model built once), step runner and the state to start from (fresh, or
    a checkpoint's); also the model's computed memory breakdown."""
    cfg = spec.cfg
    scenario = build_scenario(spec.scenario, spec.builder, cfg, spec.seed, device, data)
    generator = torch.Generator(device=device).manual_seed(spec.seed)
    entry = lookup(STRATEGIES, "strategy", spec.strategy)
    graphs = uses_cuda_graph(device, cfg, entry.obj)
    ctx = make_context(cfg, scenario, device, generator, graph_capture=graphs)
    strategy = entry.obj(ctx, **cfg["strategy"])
    amp = amp_context(device, cfg)
    memory_model = memory.breakdown(strategy, ctx, scenario, amp)
    if cfg["train"]["compile"]:
        strategy.model.compile(dynamic=False)  # in place: parameter names and optimizers unchanged
    if strategy.own_loop:
        checkpoint = None  # its state lives in its own loop's objects (Avalanche's), which we do not checkpoint
    state = RunState()
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint, strategy, generator, ctx, log)
    if state.acc_init is None:
        state.acc_init, state.probe_init = evaluate_all(strategy.evaluation_model(), scenario, ctx, amp)
        state.acc = {s: [] for s in scenario.settings}
        state.probe = [] if state.probe_init is not None else None
    loop = Loop(strategy, ctx, scenario, StepRunner(strategy, ctx, amp, graphs), amp, generator, state,
                strategy.stages(scenario.tasks), checkpoint, progress, log)
    loop.meter = DisplacementMeter(parameter_groups(strategy))
    if state.displacement is not None:  # a resumed run continues its sums
        loop.meter.load_state_dict(state.displacement)
    return loop, memory_model


def train_stage(loop: Loop, who: str) -> None:
    """Train the current stage, evaluate every task, log, move on, checkpoint."""
    state, stages, scenario = loop.state, loop.stages, loop.scenario
    t0 = time.perf_counter()
    task = stages[state.task]
    if loop.strategy.own_loop:  # e.g. the Avalanche bridge
        with loop.amp():
            images = loop.strategy.train_task(task)
        _finish_timing(loop.ctx, state, t0, images)
        if loop.meter is not None:  # its own loop's steps are not seen one by one: the task is one jump
            loop.meter.end_task()
        note_memory(loop)
    else:
        _train_task(loop, task, label=f"task {state.task + 1}/{len(stages)}")
    finish_stage(loop, who, t0)


def finish_stage(loop: Loop, who: str, t0: float) -> None:
    """After a stage's training: evaluate every task, log, move on, checkpoint (a seed-parallel
    group calls it for each of its seeds)."""
    state, stages, scenario = loop.state, loop.stages, loop.scenario
    row, probe_row = evaluate_all(loop.strategy.evaluation_model(), scenario, loop.ctx, loop.amp)
    for s in scenario.settings:
        state.acc[s].append(row[s])
    if state.probe is not None:
        state.probe.append(probe_row)
    seen = len({i for stage in stages[:state.task + 1] for i in stage.task_indices})
    loop.log(f"{who} | task {state.task + 1}/{len(stages)} | {time.perf_counter() - t0:.1f}s | " +
             " | ".join(f"{s} A={sum(row[s][:seen]) / seen:.1f}" for s in scenario.settings))
    if loop.on_stage is not None:
        loop.on_stage(state.acc, seen)
    state.task, state.epoch, state.step, state.order = state.task + 1, 0, 0, None
    if loop.checkpoint is not None and state.task < len(stages):
        keep_displacement(loop)
        save_checkpoint(loop.checkpoint, loop.strategy, loop.generator, state, loop.ctx)
        if loop.on_checkpoint is not None:
            loop.on_checkpoint(loop.checkpoint)


def build_record(loop: Loop, spec: RunSpec, status, diverged_at, memory_model) -> dict:
    """The run record (its schema: nlbench.training.records)."""
    scenario, state, device, cfg = loop.scenario, loop.state, loop.ctx.device, spec.cfg
    T = len(scenario.tasks)
    acc, probe = state.acc, state.probe
    if len(loop.stages) < T and status == "complete":  # merged stages (joint) measure only the last rows
        acc = {s: [None] * (T - len(rows)) + rows for s, rows in acc.items()}
        probe = None if probe is None else [None] * (T - len(probe)) + probe
    peak, peak_kind = peak_memory(device)
    return {
        "scenario": spec.scenario, "strategy": spec.strategy, "seed": spec.seed, "profile": spec.profile,
        "status": status, "diverged_at": diverged_at, "config": cfg,
        "tasks": [t.classes for t in scenario.tasks], "settings": scenario.settings,
        "acc": acc, "acc_init": state.acc_init,
        "probe": probe, "probe_init": state.probe_init,  # linear-probe accuracy matrix (nlbench.training.probe), or None
        "metrics": {s: metrics.summarize(acc[s], state.acc_init[s]) if status == "complete" else None
                    for s in scenario.settings},
        "train_seconds": state.train_seconds,
        "images_per_second": state.images / state.train_seconds if state.train_seconds else None,
        "end_of_task_seconds": state.end_of_task_seconds,  # after_task's work, outside train_seconds
        "peak_memory_mb": peak, "peak_memory_kind": peak_kind,
        "device": device_name(device), "data_set": scenario.data_set, "data_source": scenario.data_source,
        "images": {"train": len(scenario.train_y), "test": len(scenario.test_y)},
        "memory": {"measured_mb": memory.measured(device), "model_mb": memory_model},
        "numerics": numerics(device, cfg, loop.ctx, loop.stepper.graphs),
        "strategy_info": {**loop.strategy.describe(),
                          **({"memory_filled": state.memory_filled} if state.memory_filled else {})},
        # per task, how far each level (or default parameter group) moved: net and path (nlbench.training.displacement)
        "displacement": loop.meter.record() if loop.meter is not None else None,
        "optimizers": loop.strategy.optimizer_info(),
        "strategy_source": source_of(type(loop.strategy)),
        "seed_parallel": None,  # trained alone; a seed-parallel group (nlbench.training.group) says how it ran
        "tuned": None,  # set by the launchers for a tuned run (nlbench.launchers.tuning.provenance)
        "versions": versions(),
    }


def source_of(cls) -> dict:
    """The file that defines a strategy class and its sha256: which plugin, and which version of it."""
    try:
        path = pathlib.Path(inspect.getsourcefile(cls)).resolve()
    except (TypeError, OSError):
        return {"file": None, "sha256": None}
    from nlbench.registry import ROOT as root
    shown = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    return {"file": shown, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


class StepRunner:
    """One training step on a batch: ``strategy.observe`` run eagerly, or replayed from a CUDA graph.

    With graphs, the batch is copied into static buffers and the recorded step (augmentation,
    forward, backward, optimizer step, all of it) is replayed: one launch instead of hundreds,
    which is what limits ResNet-18 at small batches. Each task records its own graph after
    ``WARMUP`` eager steps on a side stream (optimizer states and cuDNN's choices exist by then);
    a batch of another size (an epoch's last) runs eagerly.
    """

    WARMUP = 3

    def __init__(self, strategy, ctx: RunContext, amp, graphs: bool):
        self.strategy, self.ctx, self.amp, self.graphs = strategy, ctx, amp, graphs
        self.graph, self.static, self.warm = None, None, 0

    def new_task(self) -> None:
        self.graph, self.warm = None, 0  # before_task may have changed what a step does

    def step(self, raw: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if not self.graphs or (self.static is not None and len(y) != len(self.static[1])):
            return self._observe(raw, y, t)
        if self.static is None:
            self.static = (torch.empty_like(raw), torch.empty_like(y), torch.empty_like(t))
        for buf, src in zip(self.static, (raw, y, t)):
            buf.copy_(src)
        if self.ctx.device.type != "cuda":  # no graphs here: the same static-buffer step, eagerly (for tests)
            return self._observe(*self.static)
        if self.graph is None and self.warm < self.WARMUP:
            self.warm += 1
            side = torch.cuda.Stream(self.ctx.device)
            side.wait_stream(torch.cuda.current_stream(self.ctx.device))
            with torch.cuda.stream(side):
                loss = self._observe(*self.static)
            torch.cuda.current_stream(self.ctx.device).wait_stream(side)
            return loss
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_loss = self._observe(*self.static)
        self.graph.replay()  # recording does not run the work: replay it for this batch too
        return self.static_loss

    def _observe(self, raw, y, t) -> torch.Tensor:
        with self.amp():
            return self.strategy.observe(Batch(self.ctx.prepare(raw, t), y, raw, t))


def lr_factor(train: dict, step: int, steps_per_epoch: int) -> float:
    """The lr multiplier before optimizer step ``step`` of a task (0-based).

    triangle: linear from 0 at step 0 to 1 at ``warmup_epochs``, then linear to 0 at the task's end
    (FFCV's CIFAR-10 schedule, examples/cifar/train_cifar.py: np.interp over iterations)."""
    if train["lr_schedule"] == "constant":
        return 1.0
    peak, end = train["warmup_epochs"] * steps_per_epoch, train["epochs"] * steps_per_epoch
    if step < peak:
        return step / peak
    return max(0.0, (end - step) / max(end - peak, 1))


def _train_task(loop: Loop, task: Task, label: str) -> None:
    """The epochs of one stage with the runner's own loop, from wherever the state says."""
    strategy, state, ctx = loop.strategy, loop.state, loop.ctx
    if state.epoch == 0 and state.step == 0:
        strategy.before_task(task)
    loop.stepper.new_task()
    idx, tid = strategy.training_samples(task)
    bs, epochs = ctx.train["batch_size"], ctx.train["epochs"]
    steps_per_epoch = -(-len(idx) // bs)
    bar = tqdm(total=epochs * steps_per_epoch, desc=label, leave=False, disable=not loop.progress or None,
               initial=state.epoch * steps_per_epoch + state.step)
    while state.epoch < epochs:
        if state.order is None:
            state.order = torch.randperm(len(idx), generator=loop.generator, device=idx.device)
        t0, images = time.perf_counter(), 0
        while state.step < steps_per_epoch:
            if ctx.train["lr_schedule"] != "constant":
                ctx.scale_lr(lr_factor(ctx.train, state.epoch * steps_per_epoch + state.step, steps_per_epoch))
            rows = state.order[state.step * bs:(state.step + 1) * bs]
            pick = idx[rows]
            loss = loop.stepper.step(loop.scenario.train_x[pick], loop.scenario.train_y[pick], tid[rows])
            if loop.meter is not None:
                loop.meter.after_step()
            state.step += 1
            images += len(pick)
            bar.update(1)
            if state.step % ctx.train["log_every"] == 0 or state.step == steps_per_epoch:
                _check_loss(loop, task, loss, bar, images / max(time.perf_counter() - t0, 1e-9))
            if loop.guard.signum is not None:
                _finish_timing(ctx, state, t0, images)
                bar.close()
                _stop(loop)
        _finish_timing(ctx, state, t0, images)
        state.epoch, state.step, state.order = state.epoch + 1, 0, None
    bar.close()
    try:
        timed_after_task(ctx, strategy, state, task)
    except EndOfTaskStopped:
        raise Interrupted(loop.guard.signum, kept_checkpoint(loop.checkpoint)) from None
    if loop.meter is not None:
        loop.meter.end_task()
    note_memory(loop)


def note_memory(loop: Loop) -> None:
    """After a task: how many images each of the strategy's memories (an attribute with filled_count, e.g.
    a ReservoirBuffer) holds, for the record, so a reader sees what "buffer 1000" held."""
    found = {name: value.filled_count() for name, value in vars(loop.strategy).items()
             if callable(getattr(value, "filled_count", None))}
    if found:
        loop.state.memory_filled.append(found)


def keep_displacement(loop: Loop) -> None:
    """Put the displacement meter's sums into the state a checkpoint saves."""
    if loop.meter is not None:
        loop.state.displacement = loop.meter.state_dict()


def kept_checkpoint(path: pathlib.Path | None) -> pathlib.Path | None:
    """The run's checkpoint already on disk, if any: a point before the current task's end (a stage's
    end, or an earlier stop), from which a resumed run continues exactly."""
    return path if path is not None and path.exists() else None


def _check_loss(loop: Loop, task: Task, loss: torch.Tensor, bar, images_per_s: float) -> None:
    value = loss.item()  # the only host sync in the loop, every log_every steps
    if not torch.isfinite(torch.tensor(value)):
        raise Diverged(f"loss is {value} in strategy '{type(loop.strategy).__name__}', "
                       f"task {task.index + 1}, epoch {loop.state.epoch + 1}, step {loop.state.step}")
    bar.set_postfix(epoch=loop.state.epoch + 1, loss=f"{value:.3f}", img_s=f"{images_per_s:.0f}")


def _stop(loop: Loop) -> None:
    """A signal arrived: save the state reached (after this step) and stop the run."""
    keep_displacement(loop)
    path = save_checkpoint(loop.checkpoint, loop.strategy, loop.generator, loop.state, loop.ctx) \
        if loop.checkpoint else None
    raise Interrupted(loop.guard.signum, path)


def timed_after_task(ctx, strategy, state: RunState, task) -> None:
    """The strategy's end-of-task work, its seconds added to ``state.end_of_task_seconds`` (training
    work the stream's steps do not show: GDumb trains its network there)."""
    t0 = time.perf_counter()
    strategy.after_task(task)
    state.end_of_task_seconds += _seconds_since(ctx, t0)


def _seconds_since(ctx, t0: float) -> float:
    """Seconds since ``t0``, once the device has finished the work queued in them."""
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    return time.perf_counter() - t0


def _finish_timing(ctx, state: RunState, t0: float, images: int) -> None:
    state.train_seconds += _seconds_since(ctx, t0)
    state.images += images
