"""CLS-ER (Arani et al., "Learning Fast, Learning Slow: A General Continual Learning Method based
on Complementary Learning System", ICLR 2022), as the authors' code runs it (NeurAI-Lab/CLS-ER
``models/clser.py``, ``utils/training.py``, ``utils/best_args.py``): the fast/slow-weights method
that any multi-timescale (Nested, CMS) claim has to beat.

- Two semantic memories, copies of the working model made at the start: a plastic and a stable
  one, each an exponential moving average of the working model's parameters, updated after a
  step with probability ``plastic_update_freq`` / ``stable_update_freq``, with rate
  alpha = min(1 - 1 / (step + 1), ``*_alpha``) (step counted from 1). Their BatchNorm statistics
  move only with their own forward passes (they stay in training mode, as in the authors' code).
- Each step: a replay draw from the reservoir buffer; for each replayed sample the memory whose
  softmax gives its label the higher probability (the stable one if strictly higher) supplies
  target logits; consistency loss reg_weight * MSE(working model's logits, those targets) (its
  own forward pass); plus the cross-entropy of the stream and the replayed samples in one forward
  pass; one step; the stream's images enter the buffer.
- The stable model is what is evaluated (``evaluation_model``).

While the buffer is empty (the first step) the replay draws are masked (weight 0) instead of
skipped. The memory updates' coin flips use the run's generator (the authors': torch's global one).
"""
import copy

import torch
import torch.nn.functional as F

from nlbench import Strategy, register_strategy, require
from nlbench.training.buffer import ReservoirBuffer, check_buffer_options


@register_strategy("clser")
class CLSER(Strategy):
    """CLS-ER: replay plus consistency with a plastic and a stable EMA model; the stable one predicts."""

    label, group, order = "CLS-ER", "baseline", 48
    skip_on_one_task = True
    # NeurAI-Lab/CLS-ER utils/best_args.py, seq-cifar10, buffer 500 (buffer 200: plastic_update_freq 0.3)
    defaults = {"buffer_size": 500, "minibatch_size": None, "reg_weight": 0.15, "stable_update_freq": 0.1,
                "stable_alpha": 0.999, "plastic_update_freq": 0.9, "plastic_alpha": 0.999}

    @classmethod
    def check(cls, hp):
        check_buffer_options(hp, "minibatch_size")
        require(isinstance(hp["reg_weight"], (int, float)) and hp["reg_weight"] >= 0,
                f"strategy.reg_weight must be a number >= 0, got {hp['reg_weight']!r}")
        for key in ("stable_update_freq", "stable_alpha", "plastic_update_freq", "plastic_alpha"):
            require(isinstance(hp[key], (int, float)) and 0 <= hp[key] <= 1,
                    f"strategy.{key} must be in [0, 1], got {hp[key]!r}")

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters())
        self.minibatch = min(hp["minibatch_size"] or ctx.train["batch_size"], hp["buffer_size"])
        self.buffer = ReservoirBuffer(ctx, hp["buffer_size"])
        self.plastic, self.stable = copy.deepcopy(self.model), copy.deepcopy(self.model)
        for memory in (self.plastic, self.stable):
            memory.requires_grad_(False)
        self.global_step = 0

    def evaluation_model(self):
        return self.stable

    def memory_targets(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per sample, the logits of the memory (stable or plastic) that gives its label the higher probability."""
        with torch.no_grad():
            stable, plastic = self.stable(x), self.plastic(x)
        prob_stable = F.softmax(stable, -1).gather(-1, y.unsqueeze(-1))
        prob_plastic = F.softmax(plastic, -1).gather(-1, y.unsqueeze(-1))
        return torch.where(prob_stable > prob_plastic, stable, plastic)

    def observe(self, batch):
        pick, valid = self.buffer.draw(self.minibatch)
        replay_x = self.buffer.inputs(pick)
        replay_y = self.buffer.rows("labels", pick)
        weight = self.ctx.batch_rows(valid).float()
        targets = self.memory_targets(replay_x, replay_y)
        consistency = (self.model(replay_x).float() - targets.float()).pow(2).mean(-1)
        loss = self.hp["reg_weight"] * self.ctx.weighted_mean(consistency, weight)
        per_sample = self.ctx.loss(self.model(torch.cat([batch.x, replay_x])), torch.cat([batch.y, replay_y]),
                                   reduction="none")
        loss = loss + self.ctx.weighted_mean(per_sample, torch.cat([torch.ones_like(batch.y, dtype=weight.dtype),
                                                                    weight]))
        out = self.update(loss, self.optimizer)
        self.buffer.add(batch)
        self.global_step += 1
        for memory, freq, alpha in ((self.plastic, "plastic_update_freq", "plastic_alpha"),
                                    (self.stable, "stable_update_freq", "stable_alpha")):
            if torch.rand(1, generator=self.ctx.step_generator, device=self.ctx.device).item() < self.hp[freq]:
                self.update_memory(memory, min(1 - 1 / (self.global_step + 1), self.hp[alpha]))
        return out

    @torch.no_grad()
    def update_memory(self, memory: torch.nn.Module, alpha: float) -> None:
        """theta_memory <- alpha theta_memory + (1 - alpha) theta (parameters only, as the authors')."""
        for kept, current in zip(memory.parameters(), self.model.parameters()):
            kept.mul_(alpha).add_(current, alpha=1 - alpha)

    def extra_state(self):
        return {**self.buffer.state_dict(), "plastic": self.plastic.state_dict(), "stable": self.stable.state_dict(),
                "global_step": self.global_step}

    def load_extra_state(self, state):
        self.buffer.load_state_dict(state)
        self.plastic.load_state_dict(state["plastic"])
        self.stable.load_state_dict(state["stable"])
        self.global_step = state["global_step"]


# --- the EMA rates for a profile much shorter than the authors' (docs/verdict.md, "CLS-ER's rates") ---

def initial_weight_share(steps: int, update_freq: float, alpha: float) -> float:
    """The expected share of its random initial weights that a memory still holds after ``steps`` steps:
    each step it is updated with probability ``update_freq`` at rate min(1 - 1/(k+1), alpha) (step k
    counted from 1), which multiplies that share by the rate; the product's expectation over the
    independent coin flips is the product of (1 - freq (1 - rate))."""
    share = 1.0
    for k in range(1, steps + 1):
        share *= 1 - update_freq * (1 - min(1 - 1 / (k + 1), alpha))
    return share


def ema_rates_for(first_task_steps: int, stable_update_freq: float = 0.1, plastic_update_freq: float = 0.9,
                  share: float = 0.01) -> dict:
    """stable_alpha and plastic_alpha for a profile whose first task takes ``first_task_steps`` steps:
    the largest stable rate (two decimals, rounded down) at which the stable model's expected share of
    its initial weights at the end of the first task is below ``share``; the plastic rate keeps the
    authors' ratio of per-step EMA rates, plastic f (1 - alpha) = 9 x stable f (1 - alpha) (their 0.9
    and 0.1 update frequencies at one alpha, 0.999), so at the authors' frequencies both alphas are equal.
    With the authors' 0.999 a 96-step task leaves the stable model 66% random (56% after 480 steps)."""
    lo, hi = 0.0, 0.999
    for _ in range(60):  # bisection: the share grows with alpha
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if initial_weight_share(first_task_steps, stable_update_freq, mid) < share else (lo, mid)
    stable = int(lo * 100) / 100
    plastic_rate = 9 * stable_update_freq * (1 - stable)  # per step: the authors' 9 : 1
    return {"stable_alpha": stable, "plastic_alpha": round(1 - plastic_rate / plastic_update_freq, 6)}
