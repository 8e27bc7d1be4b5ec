"""A-GEM (Chaudhry et al., "Efficient Lifelong Learning with A-GEM", ICLR 2019), as the DER protocol's
code runs it (aimagelab/mammoth ``models/agem.py``, ``models/gem.py``): the stream's gradient g;
once the episodic memory holds samples, the gradient g_ref of the loss on a memory draw; where
g . g_ref < 0, g is projected to g - (g . g_ref / g_ref . g_ref) g_ref (over all parameters as one
vector); one optimizer step.

How the memory is filled (``strategy.memory``), the one part the versions of its code disagree on:
- ``per_task`` (the DER paper's numbers, mammoth's 2020 code, commit 7ab9db9 ``models/agem.py`` as
  issue 44 read it): at the end of each task ``buffer_size // n_tasks`` shuffled, unaugmented training
  images of that task enter the memory, so the buffer size sets what it holds;
- ``batch`` (mammoth since 2022, the ``null`` default: what this file did before the option existed):
  at the end of each task ONE training batch of that task (``train.batch_size`` unaugmented images;
  mammoth computes buffer_size // n_tasks and does not use it), so the buffer size does nothing until
  ``n_tasks x batch`` exceeds it;
- ``reservoir`` (online A-GEM as the SCR code runs it, RaptorMai/online-continual-learning
  ``agents/agem.py``): every stream batch enters a reservoir memory after its step.
The record says how many images the memory held at the end of each task (``strategy_info``).
Whether the memory holds anything is known on the host and changes only between tasks for
``per_task`` and ``batch``, so their step stays graph-safe (a new graph per task); ``reservoir``
fills within a task and is not recorded in a graph.
"""
import torch

from nlbench import Strategy, register_strategy, require
from nlbench.training.buffer import ReservoirBuffer, check_buffer_options
from nlbench.training.strategy import Batch


@register_strategy("agem")
class AGEM(Strategy):
    """A-GEM: the stream's gradient projected where it conflicts with a memory draw's gradient."""

    label, group, order = "A-GEM", "baseline", 49
    skip_on_one_task = True
    graph_safe = True
    defaults = {"buffer_size": 500, "minibatch_size": None,  # mammoth best_args seq-cifar10: minibatch 32 (= batch)
                "memory": None}  # null = batch (mammoth 2022); per_task (DER's 2020 code); reservoir (online)
    MEMORY = (None, "batch", "per_task", "reservoir")

    @classmethod
    def check(cls, hp):
        check_buffer_options(hp, "minibatch_size")
        require(hp["memory"] in cls.MEMORY, f"strategy.memory must be null, batch, per_task or reservoir, got "
                f"{hp['memory']!r}")

    @classmethod
    def graph_safe_for(cls, hp):
        return hp.get("memory") != "reservoir"  # the memory fills within a task: its first step changes the step

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters())
        self.minibatch = min(hp["minibatch_size"] or ctx.train["batch_size"], hp["buffer_size"])
        self.buffer = ReservoirBuffer(ctx, hp["buffer_size"])
        self.has_memory = False  # host-side: set between tasks

    def observe(self, batch):
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.ctx.loss(self.model(batch.x), batch.y)
        loss.backward()
        if self.has_memory:
            g = [p.grad.clone() for p in params]
            self.optimizer.zero_grad(set_to_none=True)
            pick, valid = self.buffer.draw(self.minibatch)
            out = self.model(self.buffer.inputs(pick))
            per_sample = self.ctx.loss(out, self.buffer.rows("labels", pick), reduction="none")
            self.ctx.weighted_mean(per_sample, self.ctx.batch_rows(valid).to(per_sample.dtype)).backward()
            g_ref = [p.grad for p in params]
            for p, projected in zip(params, project(g, g_ref)):
                p.grad = projected
        self.optimizer.step()
        if self.hp["memory"] == "reservoir":
            self.buffer.add(batch)
            self.has_memory = True
        return loss.detach()

    def per_task(self) -> int:
        """Images a task puts in the memory at its end: buffer_size // n_tasks, or one training batch."""
        if self.hp["memory"] == "per_task":
            return self.hp["buffer_size"] // len(self.ctx.scenario.tasks)
        return self.ctx.train["batch_size"]

    def after_task(self, task):
        """Shuffled, unaugmented training images of the task into the memory (mammoth's end_task)."""
        if self.hp["memory"] == "reservoir":
            return
        idx = task.train_idx
        rows = torch.randperm(len(idx), generator=self.ctx.generator, device=idx.device)[:self.per_task()]
        pick, sc = idx[rows], self.ctx.scenario
        task_ids = task.sample_tasks[rows] if task.sample_tasks is not None else torch.full_like(pick, task.index)
        self.buffer.add(Batch(None, sc.train_y[pick], sc.train_x[pick], task_ids))
        self.has_memory = True

    def extra_state(self):
        return {**self.buffer.state_dict(), "has_memory": self.has_memory}

    def load_extra_state(self, state):
        self.buffer.load_state_dict(state)
        self.has_memory = state["has_memory"]


def project(g: list[torch.Tensor], g_ref: list[torch.Tensor]) -> list[torch.Tensor]:
    """A-GEM's projection of g (a list of tensors, one vector) where it conflicts with g_ref."""
    dot = sum((a * b).sum() for a, b in zip(g, g_ref))
    ref_norm = sum((b * b).sum() for b in g_ref)
    scale = torch.where(dot < 0, dot / ref_norm.clamp(min=1e-30), torch.zeros_like(dot))  # device-side: no sync
    return [a - scale * b for a, b in zip(g, g_ref)]
