"""Experience replay with a reservoir buffer (Chaudhry et al. 2019, "On Tiny Episodic Memories"),
as the DER protocol runs it (aimagelab/mammoth ``models/er.py``, ``utils/buffer.py``): the buffer
holds unaugmented images chosen by reservoir sampling; each step draws a replay mini-batch from
it WITHOUT replacement (fewer when the buffer holds fewer), augments it, and trains on the
concatenation of stream and replay samples with one mean cross-entropy.

MIR's variant (optimass/Maximally_Interfered_Retrieval ``mir.py``, ``retrieve_replay_update``;
``buffer.py``, ``sample(exclude_task=...)``): ``replay_current_task=false`` draws only samples of
earlier tasks (so replay starts at task 2), and ``replay_loss=separate`` runs the replay batch
through its own forward pass and adds its mean loss to the stream's (two backward passes, one
step), skipping it while no earlier-task sample exists, so that no empty batch enters BatchNorm.

Everything happens on the device (slot choices included), so that a step never waits for the
host and can be recorded in a CUDA graph: the shapes never change, and samples a step cannot use
(an empty buffer, a slot taken twice in one batch) are masked instead of skipped. One difference
remains: on the run's very first step the masked (empty) replay half still enters BatchNorm's
batch statistics; from the second step on the buffer holds at least one batch.
"""
import torch

from nlbench import Strategy, register_strategy, require


@register_strategy("replay")
class Replay(Strategy):
    """Experience replay: reservoir buffer of raw uint8 images on the device, replay without replacement."""

    label, group, order = "Replay", "baseline", 40
    skip_on_one_task = True

    graph_safe = True
    defaults = {"buffer_size": 500, "replay_batch_size": None,  # None: same as the current batch
                "replay_current_task": True,  # false: draw only samples of earlier tasks (MIR)
                "replay_loss": "joint"}       # joint: one mean over stream + replay; separate: mean + mean (MIR)

    @classmethod
    def check(cls, hp):
        require(isinstance(hp["buffer_size"], int) and hp["buffer_size"] > 0,
                f"strategy.buffer_size must be a positive integer, got {hp['buffer_size']!r}")
        rbs = hp["replay_batch_size"]
        require(rbs is None or (isinstance(rbs, int) and rbs > 0),
                f"strategy.replay_batch_size must be a positive integer or null, got {rbs!r}")
        require(isinstance(hp["replay_current_task"], bool),
                f"strategy.replay_current_task must be true or false, got {hp['replay_current_task']!r}")
        require(hp["replay_loss"] in ("joint", "separate"),
                f"strategy.replay_loss must be joint or separate, got {hp['replay_loss']!r}")

    @classmethod
    def graph_safe_for(cls, hp):
        return hp.get("replay_loss", "joint") == "joint"  # separate skips the replay pass on a host-side test

    @classmethod
    def seed_parallel_for(cls, hp):
        if hp.get("replay_loss", "joint") != "joint":
            return "replay_loss separate skips the replay pass per model on a host-side test"
        return None

    def __init__(self, ctx, buffer_size, replay_batch_size, replay_current_task=True, replay_loss="joint"):
        super().__init__(ctx, buffer_size=buffer_size, replay_batch_size=replay_batch_size,
                         replay_current_task=replay_current_task, replay_loss=replay_loss)
        self.optimizer = ctx.make_optimizer(self.model.parameters())
        self.size = buffer_size
        self.replay_bs = min(replay_batch_size or ctx.train["batch_size"], buffer_size)
        # One spare row at index `size`: the write target of samples that do not enter the buffer.
        # Per-model state (nlbench.strategy: a seed-parallel group stacks K of them in front).
        self.images = ctx.model_state(buffer_size + 1, 3, 32, 32, dtype=torch.uint8)
        self.labels = ctx.model_state(buffer_size + 1, dtype=torch.long)
        self.task_ids = ctx.model_state(buffer_size + 1, dtype=torch.long)
        self.seen = torch.zeros((), dtype=torch.long, device=ctx.device)  # on the device: no host sync; the
        self.slots = torch.arange(buffer_size, device=ctx.device)        # same count for every model of a group

    def _per_model(self, t):
        """A state tensor with the models first: (K, ...) in a group, (1, ...) for one seed."""
        return t if self.ctx.group_size > 1 else t.unsqueeze(0)

    def observe(self, batch):
        pick, valid = self._draw(None if self.hp["replay_current_task"] else batch.task[0])
        if self.hp["replay_loss"] == "separate":
            return self._observe_separate(batch, pick[0], valid[0])
        models = torch.arange(len(pick), device=pick.device)[:, None]
        replay_x = self.ctx.prepare(self.ctx.batch_rows(self._per_model(self.images)[models, pick]),
                                    self.ctx.batch_rows(self._per_model(self.task_ids)[models, pick]))
        logits = self.model(torch.cat([batch.x, replay_x]))
        replay_y = self.ctx.batch_rows(self._per_model(self.labels)[models, pick])
        per_sample = self.ctx.loss(logits, torch.cat([batch.y, replay_y]), reduction="none")
        weight = torch.cat([torch.ones_like(batch.y, dtype=per_sample.dtype),
                            self.ctx.batch_rows(valid).to(per_sample.dtype)])
        loss = ((per_sample * weight).sum(0) / weight.sum(0)).sum()  # each model's own weighted mean
        out = self.update(loss, self.optimizer)
        self._reservoir_add(batch)
        return out

    def _observe_separate(self, batch, pick, valid):
        """MIR's step: the stream's mean loss, plus, once earlier-task samples exist, the replay
        batch's own forward pass and mean loss; one optimizer step on the summed gradients."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.ctx.loss(self.model(batch.x), batch.y)
        loss.backward()
        if bool(valid.any()):  # a host sync: this variant is not graph-safe (graph_safe_for)
            keep = pick[valid]
            replay = self.ctx.loss(self.model(self.ctx.prepare(self.images[keep], self.task_ids[keep])), self.labels[keep])
            replay.backward()
            loss = loss + replay.detach()
        self.optimizer.step()
        self._reservoir_add(batch)
        return loss.detach()

    def _draw(self, exclude_task=None):
        """Per model, replay_bs distinct filled slots (of tasks other than ``exclude_task``, if
        given), uniformly at random (mammoth's and MIR's np.random.choice without replacement);
        ``valid`` is False for the draws beyond the eligible count. Both (models, replay_bs)."""
        eligible = (self.slots < torch.clamp(self.seen, max=self.size)).expand(len(self._per_model(self.labels)), -1)
        if exclude_task is not None:
            eligible = eligible & (self._per_model(self.task_ids)[:, :self.size] != exclude_task.reshape(-1, 1))
        scores = self._per_model(self.ctx.per_model(
            lambda ctx: torch.rand(self.size, generator=ctx.step_generator, device=self.seen.device)))
        scores = torch.where(eligible, scores, torch.full_like(scores, 2.0))
        pick = scores.topk(self.replay_bs, largest=False).indices   # sorted: eligible slots come first
        valid = torch.arange(self.replay_bs, device=pick.device) < eligible.sum(1, keepdim=True)
        return pick, valid

    def _reservoir_add(self, batch):
        """Reservoir sampling (Vitter's algorithm R): sample n of the stream (0-based) takes slot n
        while the buffer is not full, else a uniform slot in [0, n], kept if that slot < size.
        Within a batch the later of two samples drawn to one slot wins, as in a sequential loop.
        Each model of a group draws its own slots."""
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
        for table, new in ((self.images, batch.raw), (self.labels, batch.y), (self.task_ids, batch.task)):
            per_model = new.unsqueeze(1) if self.ctx.group_size == 1 else new   # a batch's (b, K, ...)
            table.view(-1, *table.shape[2 if self.ctx.group_size > 1 else 1:]).index_copy_(
                0, rows, per_model.transpose(0, 1).reshape(-1, *new.shape[2 if self.ctx.group_size > 1 else 1:]))
        self.seen += b

    def extra_state(self):
        return {"images": self.images, "labels": self.labels, "task_ids": self.task_ids, "seen": self.seen}

    def load_extra_state(self, state):
        self.images.copy_(state["images"])
        self.labels.copy_(state["labels"])
        self.task_ids.copy_(state["task_ids"])
        self.seen.copy_(torch.as_tensor(state["seen"]))
