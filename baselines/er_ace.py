"""ER-ACE (Caccia et al., "New Insights on Reducing Abrupt Representation Change in Online
Continual Learning", ICLR 2022), as the authors' code runs it (pclucas14/AML ``methods/er_ace.py``
on ``methods/er.py``; the same in aimagelab/mammoth ``models/er_ace.py``):

- the incoming batch's cross-entropy with asymmetric logits: only the classes present in the batch
  and every class at or above the largest class index seen so far (those not yet seen) keep their
  logits, the others are set to -1e9 (on every step: the authors run ER-ACE task-free);
- a replay batch drawn from the whole reservoir buffer (no task excluded), through its own forward
  pass, plain cross-entropy over all classes, from the first step the buffer holds a sample;
- one optimizer step on the sum; then the stream's images enter the buffer (reservoir).

The classes seen so far are per-model state on the device (no host sync: graph-safe). While the
buffer is empty the replay draws are masked (weight 0); on the very first step those empty rows
still pass through BatchNorm in their own forward pass (its running statistics move once).
"""
import torch

from nlbench import Strategy, register_strategy
from nlbench.training.buffer import ReservoirBuffer, check_buffer_options


@register_strategy("er-ace")
class ERACE(Strategy):
    """ER-ACE: replay, with the incoming batch's loss over its own (and not yet seen) classes only."""

    label, group, order = "ER-ACE", "baseline", 47
    skip_on_one_task = True
    graph_safe = True
    seed_parallel = True
    defaults = {"buffer_size": 500, "replay_batch_size": None}  # None: the stream's batch size (the authors' 10 / 10)

    @classmethod
    def check(cls, hp):
        check_buffer_options(hp, "replay_batch_size")

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters())
        self.replay_bs = min(hp["replay_batch_size"] or ctx.train["batch_size"], hp["buffer_size"])
        self.buffer = ReservoirBuffer(ctx, hp["buffer_size"])
        self.seen_classes = ctx.model_state(ctx.num_classes, dtype=torch.bool)
        self.class_index = torch.arange(ctx.num_classes, device=ctx.device)

    def incoming_mask(self, y: torch.Tensor) -> torch.Tensor:
        """The classes whose logits the incoming batch's loss keeps: present in the batch, or at or
        above the largest class index seen so far. Updates the seen classes. (classes,) or (K, classes)."""
        present = torch.nn.functional.one_hot(y, len(self.class_index)).bool().any(0)
        self.seen_classes |= present
        largest = (self.class_index * self.seen_classes).amax(-1, keepdim=True)
        return present | (self.class_index >= largest)

    def observe(self, batch):
        keep = self.incoming_mask(batch.y)
        logits = self.model(batch.x)
        loss = self.ctx.loss(logits.masked_fill(~keep, -1e9), batch.y)
        pick, valid = self.buffer.draw(self.replay_bs)
        replayed = self.model(self.buffer.inputs(pick))
        per_sample = self.ctx.loss(replayed, self.buffer.rows("labels", pick), reduction="none")
        loss = loss + self.ctx.weighted_mean(per_sample, self.ctx.batch_rows(valid).to(per_sample.dtype))
        out = self.update(loss, self.optimizer)
        self.buffer.add(batch)
        return out

    def extra_state(self):
        return {**self.buffer.state_dict(), "seen_classes": self.seen_classes}

    def load_extra_state(self, state):
        self.buffer.load_state_dict(state)
        self.seen_classes.copy_(state["seen_classes"])
