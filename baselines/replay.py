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

The buffer (nlbench.training.buffer) works on the device, so that a step never waits for the host and can
be recorded in a CUDA graph: samples a step cannot use (an empty buffer) are masked instead of
skipped. One difference remains: on the run's very first step the masked (empty) replay half still
enters BatchNorm's batch statistics; from the second step on the buffer holds at least one batch.
"""
import torch

from nlbench import Strategy, register_strategy, require
from nlbench.training.buffer import ReservoirBuffer, check_buffer_options


@register_strategy("replay")
class Replay(Strategy):
    """Experience replay: reservoir buffer of raw uint8 images on the device, replay without replacement."""

    label, group, order = "Replay", "baseline", 40
    skip_on_one_task = True

    graph_safe = True
    defaults = {"buffer_size": 500, "replay_batch_size": None,  # None: same as the current batch
                "replay_current_task": True,  # false: draw only samples of earlier tasks (MIR)
                "replay_loss": "joint"}       # joint: one mean over stream + replay; separate: mean + mean (MIR)
    search_space = {"train.lr": ["log_scale", 10.0], "strategy.replay_batch_size": ["choice", [8, 16, 32, 64]]}  # bench.py tune

    @classmethod
    def check(cls, hp):
        check_buffer_options(hp, "replay_batch_size")
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
        self.replay_bs = min(replay_batch_size or ctx.train["batch_size"], buffer_size)
        self.buffer = ReservoirBuffer(ctx, buffer_size)

    def observe(self, batch):
        pick, valid = self.buffer.draw(self.replay_bs, None if self.hp["replay_current_task"] else batch.task[0])
        if self.hp["replay_loss"] == "separate":
            return self._observe_separate(batch, pick[0], valid[0])
        replay_x = self.buffer.inputs(pick)
        logits = self.model(torch.cat([batch.x, replay_x]))
        per_sample = self.ctx.loss(logits, torch.cat([batch.y, self.buffer.rows("labels", pick)]), reduction="none")
        weight = torch.cat([torch.ones_like(batch.y, dtype=per_sample.dtype),
                            self.ctx.batch_rows(valid).to(per_sample.dtype)])
        loss = self.ctx.weighted_mean(per_sample, weight)
        out = self.update(loss, self.optimizer)
        self.buffer.add(batch)
        return out

    def _observe_separate(self, batch, pick, valid):
        """MIR's step: the stream's mean loss, plus, once earlier-task samples exist, the replay
        batch's own forward pass and mean loss; one optimizer step on the summed gradients."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.ctx.loss(self.model(batch.x), batch.y)
        loss.backward()
        if bool(valid.any()):  # a host sync: this variant is not graph-safe (graph_safe_for)
            keep = pick[valid]
            images, labels, task_ids = (self.buffer[name] for name in ("images", "labels", "task_ids"))
            replay = self.ctx.loss(self.model(self.ctx.prepare(images[keep], task_ids[keep])), labels[keep])
            replay.backward()
            loss = loss + replay.detach()
        self.optimizer.step()
        self.buffer.add(batch)
        return loss.detach()

    def extra_state(self):
        return self.buffer.state_dict()

    def load_extra_state(self, state):
        self.buffer.load_state_dict(state)
