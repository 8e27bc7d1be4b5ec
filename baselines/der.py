"""Dark Experience Replay (Buzzega et al., "Dark Experience for General Continual Learning",
NeurIPS 2020), as the authors' code runs it (aimagelab/mammoth ``models/der.py``,
``models/derpp.py``, ``utils/buffer.py``):

- the stream batch's cross-entropy;
- a replay mini-batch drawn from the reservoir buffer, augmented, through its own forward pass,
  its logits pulled toward the logits stored with those images: alpha * MSE (mean over samples and
  classes);
- DER++ (``beta`` > 0, registered as ``derpp``): a second, independent draw, its own forward pass,
  beta * cross-entropy with the stored labels;
- one optimizer step on the summed gradients; then the stream's unaugmented images enter the buffer
  (reservoir sampling) with their labels and the logits the model just gave them (of the augmented
  images, before the step: mammoth's ``outputs.data``).

mammoth skips the replay terms while the buffer is empty and draws min(minibatch, seen) samples;
here the draws a step cannot use are masked (weight 0), so the step is graph-safe: on the very
first step the empty rows still pass through BatchNorm in their own forward pass (its running
statistics move once), with no gradient. Settings per protocol: scenarios/split-cifar.yaml (der
profile: mammoth's utils/best_args.py, seq-cifar10).
"""
import torch

from nlbench import Strategy, register_strategy, require
from nlbench.training.buffer import ReservoirBuffer, check_buffer_options


@register_strategy("der")
class DER(Strategy):
    """Dark Experience Replay: reservoir buffer of images and their logits, alpha * MSE on replayed logits."""

    label, group, order = "DER", "baseline", 45
    skip_on_one_task = True
    graph_safe = True
    seed_parallel = True
    # mammoth utils/best_args.py, seq-cifar10, buffer 200 and 500: alpha 0.3, minibatch 32 (= the batch)
    defaults = {"buffer_size": 500, "minibatch_size": None, "alpha": 0.3, "beta": 0.0}
    search_space = {"train.lr": ["log_scale", 10.0], "strategy.alpha": ["log", 0.05, 1.0]}  # DER: the logit-matching weight  # bench.py tune

    @classmethod
    def check(cls, hp):
        check_buffer_options(hp, "minibatch_size")
        for key in ("alpha", "beta"):
            require(isinstance(hp[key], (int, float)) and not isinstance(hp[key], bool) and hp[key] >= 0,
                    f"strategy.{key} must be a number >= 0, got {hp[key]!r}")

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters())
        self.minibatch = min(hp["minibatch_size"] or ctx.train["batch_size"], hp["buffer_size"])
        self.buffer = ReservoirBuffer(ctx, hp["buffer_size"], {"logits": ((ctx.num_classes,), torch.float32)})

    def observe(self, batch):
        self.optimizer.zero_grad(set_to_none=True)
        outputs = self.model(batch.x)
        loss = self.ctx.loss(outputs, batch.y)
        loss.backward()
        total = loss.detach()
        dark = self.hp["alpha"] * self._replayed(lambda out, pick: (out.float() - self.buffer.rows("logits", pick))
                                                 .pow(2).mean(-1))
        dark.backward()
        total = total + dark.detach()
        if self.hp["beta"] > 0:  # DER++: a second draw with the stored labels (a constant branch: graph-safe)
            labelled = self.hp["beta"] * self._replayed(
                lambda out, pick: self.ctx.loss(out, self.buffer.rows("labels", pick), reduction="none"))
            labelled.backward()
            total = total + labelled.detach()
        self.optimizer.step()
        self.buffer.add(batch, logits=outputs.detach().float())
        return total

    def _replayed(self, per_sample_loss):
        """A fresh draw from the buffer through its own forward pass: the mean of ``per_sample_loss``
        over the draws that hold a sample (0 while none does)."""
        pick, valid = self.buffer.draw(self.minibatch)
        out = self.model(self.buffer.inputs(pick))
        per_sample = per_sample_loss(out, pick)
        return self.ctx.weighted_mean(per_sample, self.ctx.batch_rows(valid).to(per_sample.dtype))

    def extra_state(self):
        return self.buffer.state_dict()

    def load_extra_state(self, state):
        self.buffer.load_state_dict(state)
