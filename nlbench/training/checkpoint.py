"""A run's checkpoint: where it is (RunState), how SIGINT/SIGTERM become a safe stop (SignalGuard),
and saving / loading the whole run state atomically beside its record."""
from __future__ import annotations

import os
import pathlib
import signal
import tempfile
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from nlbench.errors import UserError

if TYPE_CHECKING:
    from nlbench.training.strategy import RunContext


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; a checkpoint has been written (None: the run could not keep one)."""

    def __init__(self, signum: int, checkpoint: pathlib.Path | None):
        self.signum, self.checkpoint = signum, checkpoint


class SignalGuard:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step (a safe point).

    ``immediate``: for a strategy with its own loop (the Avalanche bridge), which never looks at the
    flag and whose state we cannot checkpoint: the first signal stops the run at once."""

    def __init__(self, immediate: bool = False):
        self.signum, self.immediate = None, immediate

    def __enter__(self):
        # Only the main thread may set handlers; a run in another thread (a Ray worker's task thread)
        # is stopped by its launcher, which keeps the last stage's checkpoint.
        main = threading.current_thread() is threading.main_thread()
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        return self

    def _handle(self, signum, frame):
        if self.immediate:
            raise Interrupted(signum, None)
        if self.signum is not None:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


@dataclass
class RunState:
    """Position in the run: what a checkpoint restores."""
    task: int = 0
    epoch: int = 0
    step: int = 0
    order: torch.Tensor | None = None      # this epoch's sample order
    acc: dict = field(default_factory=dict)
    acc_init: dict | None = None
    probe: list | None = None              # the probe matrix's rows so far (None: no probe)
    probe_init: list | None = None
    train_seconds: float = 0.0
    images: int = 0
    # the strategy's after_task work (GDumb's training on its memory, EWC's Fisher, iCaRL's herding), timed
    # apart so that images_per_second stays the stream's rate; a checkpoint from before it counts 0
    end_of_task_seconds: float = 0.0
    displacement: dict | None = None       # the displacement meter's sums (nlbench.training.displacement)
    memory_filled: list = field(default_factory=list)  # per task: images each memory held at its end


def save_checkpoint(path: pathlib.Path, strategy, generator, state: RunState, ctx: RunContext) -> pathlib.Path:
    payload = {"config": ctx.cfg, "data_source": ctx.scenario.data_source, "state": vars(state), "strategy": strategy.state_dict(),
               "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
               # under CUDA graphs a step's randomness comes from the device's default generator
               "cuda_rng": torch.cuda.get_rng_state(ctx.device) if ctx.device.type == "cuda" else None}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
        os.replace(tmp, path)  # atomic: a reader (or a killed writer) never leaves half a checkpoint
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: pathlib.Path, strategy, generator, ctx: RunContext, log) -> RunState:
    try:
        payload = torch.load(path, map_location=generator.device, weights_only=False)
    except Exception as exc:
        raise UserError(f"corrupt checkpoint {path} ({type(exc).__name__}); delete it to start the run afresh") from exc
    if payload["config"] != ctx.cfg:
        raise UserError(f"checkpoint {path} was written with another config; delete it or rerun the same command")
    if payload.get("data_source") != ctx.scenario.data_source:  # e.g. --data auto found the full set meanwhile
        raise UserError(f"checkpoint {path} was written on other data ({payload.get('data_source')}); "
                        "rerun with the same --data, or delete it to start afresh")
    strategy.load_state_dict(payload["strategy"])
    generator.set_state(payload["generator"].cpu())
    torch.set_rng_state(payload["torch_rng"].cpu())
    if payload.get("cuda_rng") is not None and ctx.device.type == "cuda":
        torch.cuda.set_rng_state(payload["cuda_rng"].cpu(), ctx.device)
    state = RunState(**payload["state"])
    log(f"resuming from {path}: task {state.task + 1}, epoch {state.epoch + 1}, step {state.step}")
    return state
