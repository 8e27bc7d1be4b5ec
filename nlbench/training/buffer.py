"""The reservoir buffer that rehearsal strategies share (replay, DER, DER++, ER-ACE): unaugmented
uint8 images with their labels and task ids (and, for DER, the logits the model gave them), chosen
by reservoir sampling, drawn from without replacement.

As mammoth's ``utils/buffer.py`` and MIR's ``buffer.py`` do it: sample n of the stream (0-based)
takes slot n while the buffer is not full, else a uniform slot in [0, n], kept if that slot is a
real one; a draw picks distinct filled slots uniformly at random (np.random.choice without
replacement). Everything happens on the device (slot choices included), so that a step never waits
for the host and can be recorded in a CUDA graph: shapes never change, and the draws a step cannot
use (an empty buffer, fewer filled slots than asked) are returned with ``valid`` False instead of
left out. Per model: in a seed-parallel group (nlbench.training.group) every table has the group's models
first and every model draws with its own seed's generator; ``seen`` is the same for all.
"""
from __future__ import annotations

import torch

from nlbench.errors import require


def check_buffer_options(hp: dict, draw_key: str) -> None:
    """The rehearsal strategies' shared hyperparameters: ``buffer_size`` and the size of a draw
    (``draw_key``: null = the stream's batch size)."""
    require(isinstance(hp["buffer_size"], int) and hp["buffer_size"] > 0,
            f"strategy.buffer_size must be a positive integer, got {hp['buffer_size']!r}")
    n = hp[draw_key]
    require(n is None or (isinstance(n, int) and n > 0),
            f"strategy.{draw_key} must be a positive integer or null, got {n!r}")


class ReservoirBuffer:
    def __init__(self, ctx, size: int, extras: dict[str, tuple[tuple, torch.dtype]] | None = None):
        """``extras``: more per-sample fields, name -> (shape of one sample's value, dtype)."""
        self.ctx, self.size = ctx, size
        # One spare row at index `size`: the write target of samples that do not enter the buffer.
        fields = {"images": ((3, 32, 32), torch.uint8), "labels": ((), torch.long), "task_ids": ((), torch.long),
                  **(extras or {})}
        self.tables = {name: ctx.model_state(size + 1, *shape, dtype=dtype) for name, (shape, dtype) in fields.items()}
        self.seen = torch.zeros((), dtype=torch.long, device=ctx.device)  # on the device: no host sync
        self.slots = torch.arange(size, device=ctx.device)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tables[name]

    def _per_model(self, t: torch.Tensor) -> torch.Tensor:
        """A table with the models first: (K, ...) in a group, (1, ...) for one seed."""
        return t if self.ctx.group_size > 1 else t.unsqueeze(0)

    def filled(self) -> torch.Tensor:
        """(models, size): which slots hold a sample."""
        full = self.slots < torch.clamp(self.seen, max=self.size)
        return full.expand(len(self._per_model(self.tables["labels"])), -1)

    def filled_count(self) -> int:
        """How many slots hold an image now (a host sync: for records, not for the step)."""
        return int(torch.clamp(self.seen, max=self.size).max().item())

    def draw(self, n: int, exclude_task: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per model, ``n`` distinct filled slots (of tasks other than ``exclude_task``, if given),
        uniformly at random; ``valid`` is False for the draws beyond the eligible count. Both
        (models, n); the eligible slots come first."""
        eligible = self.filled()
        if exclude_task is not None:
            eligible = eligible & (self._per_model(self.tables["task_ids"])[:, :self.size] != exclude_task.reshape(-1, 1))
        scores = self._per_model(self.ctx.per_model(
            lambda ctx: torch.rand(self.size, generator=ctx.step_generator, device=self.seen.device)))
        scores = torch.where(eligible, scores, torch.full_like(scores, 2.0))
        pick = scores.topk(n, largest=False).indices   # sorted: eligible slots come first
        valid = torch.arange(n, device=pick.device) < eligible.sum(1, keepdim=True)
        return pick, valid

    def rows(self, name: str, pick: torch.Tensor) -> torch.Tensor:
        """The drawn samples' values of one field, in a batch's layout: (n, ...) or (n, K, ...)."""
        models = torch.arange(len(pick), device=pick.device)[:, None]
        return self.ctx.batch_rows(self._per_model(self.tables[name])[models, pick])

    def inputs(self, pick: torch.Tensor) -> torch.Tensor:
        """The drawn images as network input (augmented, as the stream's are), in a batch's layout."""
        return self.ctx.prepare(self.rows("images", pick), self.rows("task_ids", pick))

    def add(self, batch, **extras: torch.Tensor) -> None:
        """Reservoir sampling of the stream batch (Vitter's algorithm R); within a batch the later of
        two samples drawn to one slot wins, as in a sequential loop. ``extras``: the batch's values
        of the extra fields, in its layout. Each model of a group draws its own slots."""
        b = len(batch.y)
        order = torch.arange(b, device=batch.y.device)
        n = self.seen + order
        draw = self._per_model(self.ctx.per_model(lambda ctx: torch.rand(b, generator=ctx.step_generator,
                                                                         device=n.device)))
        draw = torch.minimum((draw * (n + 1).float()).long(), n)  # float rounding at the top end
        slot = torch.where(n < self.size, n, draw)                 # (models, b)
        keep = slot < self.size
        later_same = (slot[:, :, None] == slot[:, None, :]) & keep[:, None, :] & (order[None, None, :] > order[None, :, None])
        dest = torch.where(keep & ~later_same.any(2), slot, torch.full_like(slot, self.size))
        rows = (dest + torch.arange(len(dest), device=dest.device)[:, None] * (self.size + 1)).flatten()
        grouped = self.ctx.group_size > 1
        values = {"images": batch.raw, "labels": batch.y, "task_ids": batch.task, **extras}
        for name, new in values.items():
            table = self.tables[name]
            per_model = new if grouped else new.unsqueeze(1)   # a batch's (b, K, ...)
            sample_shape = table.shape[2 if grouped else 1:]
            table.view(-1, *sample_shape).index_copy_(0, rows, per_model.transpose(0, 1).reshape(-1, *sample_shape))
        self.seen += b

    def state_dict(self) -> dict:
        return {**self.tables, "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        for name, table in self.tables.items():
            table.copy_(state[name])
        self.seen.copy_(torch.as_tensor(state["seen"]))
