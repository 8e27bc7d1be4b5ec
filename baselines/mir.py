"""ER-MIR (Aljundi et al., "Online Continual Learning with Maximally Interfered Retrieval", NeurIPS
2019), as its authors' code runs it (optimass/Maximally_Interfered_Retrieval ``mir.py``,
``retrieve_replay_update`` with ``--method mir_replay``; ``utils.py`` ``get_future_step_parameters``;
CIFAR-10 settings in ``Scripts/ER_experiments.sh``: --subsample 50, lr 0.1):

- the stream batch's mean cross-entropy, backward;
- from the second task on (replay excludes the current task's samples): ``subsample`` candidates
  drawn from the reservoir buffer; a virtual SGD step theta' = theta - lr g with the stream's
  gradient g; each candidate's loss before (the model, in training mode, as the authors call it)
  and after that step (theta'); the ``replay_batch_size`` candidates whose loss rises most;
- their cross-entropy (their own forward pass), backward; one optimizer step on the summed gradients;
- the stream's images enter the buffer (reservoir).

The virtual model is the model's own forward with theta' (torch.func.functional_call) and copies of
its BatchNorm buffers, so that, as with the authors' deep copy, only the real model's statistics
move. The CIFAR script leaves --compare_to_old_logits off: not implemented here.
"""
import torch
from torch.func import functional_call

from nlbench import Strategy, register_strategy, require
from nlbench.training.buffer import ReservoirBuffer, check_buffer_options


@register_strategy("mir")
class MIR(Strategy):
    """ER-MIR: replay of the buffer samples whose loss a virtual step on the stream would raise most."""

    label, group, order = "ER-MIR", "baseline", 44
    skip_on_one_task = True
    defaults = {"buffer_size": 500, "replay_batch_size": None, "subsample": 50}  # None: the stream's batch (10)

    @classmethod
    def check(cls, hp):
        check_buffer_options(hp, "replay_batch_size")
        require(isinstance(hp["subsample"], int) and hp["subsample"] > 0,
                f"strategy.subsample must be a positive integer, got {hp['subsample']!r}")

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters())
        self.buffer = ReservoirBuffer(ctx, hp["buffer_size"])
        self.subsample = min(hp["subsample"], hp["buffer_size"])
        self.replay_bs = min(hp["replay_batch_size"] or ctx.train["batch_size"], self.subsample)

    def retrieve(self, candidates_x, candidates_y, valid) -> torch.Tensor:
        """Positions (among the valid candidates) of the ``replay_bs`` whose loss the virtual step raises most."""
        lr = self.ctx.train["lr"]
        virtual = {n: p - lr * p.grad if p.grad is not None else p for n, p in self.model.named_parameters()}
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        with torch.no_grad():
            pre = self.ctx.loss(self.model(candidates_x), candidates_y, reduction="none")
            post = self.ctx.loss(functional_call(self.model, (virtual, buffers), (candidates_x,)), candidates_y,
                                 reduction="none")
        scores = (post - pre).masked_fill(~valid, float("-inf"))
        return scores.sort(descending=True).indices[:min(self.replay_bs, int(valid.sum()))]

    def observe(self, batch):
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.ctx.loss(self.model(batch.x), batch.y)
        loss.backward()
        pick, valid = self.buffer.draw(self.subsample, exclude_task=batch.task[0])
        pick, valid = pick[0], valid[0]
        if bool(valid.any()):  # a host sync: not graph-safe
            images, labels, task_ids = (self.buffer[name] for name in ("images", "labels", "task_ids"))
            x = self.ctx.prepare(images[pick], task_ids[pick])
            chosen = self.retrieve(x, labels[pick], valid)
            replay = self.ctx.loss(self.model(x[chosen]), labels[pick][chosen])
            replay.backward()
            loss = loss + replay.detach()
        self.optimizer.step()
        self.buffer.add(batch)
        return loss.detach()

    def extra_state(self):
        return self.buffer.state_dict()

    def load_extra_state(self, state):
        self.buffer.load_state_dict(state)
