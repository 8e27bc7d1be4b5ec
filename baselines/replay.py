"""Experience replay with a reservoir buffer (Chaudhry et al. 2019, "On Tiny Episodic Memories")."""
import random

import torch
import torch.nn.functional as F

from nlbench import Strategy, register_strategy, require


@register_strategy("replay")
class Replay(Strategy):
    """Experience replay, reservoir buffer of raw uint8 images on the run's device."""

    defaults = {"buffer_size": 500, "replay_batch_size": None}  # None: same as the current batch

    @classmethod
    def check(cls, hp):
        require(isinstance(hp["buffer_size"], int) and hp["buffer_size"] > 0,
                f"strategy.buffer_size must be a positive integer, got {hp['buffer_size']!r}")
        rbs = hp["replay_batch_size"]
        require(rbs is None or (isinstance(rbs, int) and rbs > 0),
                f"strategy.replay_batch_size must be a positive integer or null, got {rbs!r}")

    def __init__(self, ctx, buffer_size, replay_batch_size):
        super().__init__(ctx, buffer_size=buffer_size, replay_batch_size=replay_batch_size)
        self.optimizer = ctx.make_optimizer(self.model.parameters())
        self.size, self.replay_bs = buffer_size, replay_batch_size or ctx.train["batch_size"]
        dev = ctx.device
        self.images = torch.zeros(buffer_size, 3, 32, 32, dtype=torch.uint8, device=dev)
        self.labels = torch.zeros(buffer_size, dtype=torch.long, device=dev)
        self.task_ids = torch.zeros(buffer_size, dtype=torch.long, device=dev)
        self.seen = 0
        # Slot choices are made on the host with their own seeded RNG: no device->host sync per step.
        self.rng = random.Random(ctx.generator.initial_seed())

    def observe(self, batch):
        x, y = batch.x, batch.y
        filled = min(self.seen, self.size)
        if filled:
            pick = torch.randint(0, filled, (self.replay_bs,), generator=self.ctx.generator, device=y.device)
            x = torch.cat([x, self.ctx.prepare(self.images[pick], self.task_ids[pick])])
            y = torch.cat([y, self.labels[pick]])
        loss = F.cross_entropy(self.model(x), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self._reservoir_add(batch)
        return loss.detach()

    def _reservoir_add(self, batch):
        """Reservoir sampling (Vitter's algorithm R): every sample seen so far is in the buffer
        with probability size / seen."""
        src, dst = [], []
        for i in range(len(batch.y)):
            slot = self.seen if self.seen < self.size else self.rng.randrange(self.seen + 1)
            if slot < self.size:
                if slot in dst:  # a later sample of the same batch overwrites the same slot
                    j = dst.index(slot)
                    del src[j], dst[j]
                src.append(i), dst.append(slot)
            self.seen += 1
        if dst:
            s = torch.tensor(src, device=batch.y.device)
            d = torch.tensor(dst, device=batch.y.device)
            self.images[d], self.labels[d], self.task_ids[d] = batch.raw[s], batch.y[s], batch.task[s]

    def extra_state(self):
        return {"images": self.images, "labels": self.labels, "task_ids": self.task_ids,
                "seen": self.seen, "rng": self.rng.getstate()}

    def load_extra_state(self, state):
        self.images.copy_(state["images"])
        self.labels.copy_(state["labels"])
        self.task_ids.copy_(state["task_ids"])
        self.seen = state["seen"]
        self.rng.setstate(state["rng"])
