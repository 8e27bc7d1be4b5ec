"""Joint training on all tasks' data at once: the upper bound."""
import torch.nn.functional as F

from nlbench import Strategy, register_strategy


@register_strategy("joint")
class Joint(Strategy):
    """Trains on all tasks' data at once, then evaluates every task (upper bound)."""

    joint = True  # the runner merges every task's training data into one stage

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters())

    def observe(self, batch):
        loss = F.cross_entropy(self.model(batch.x), batch.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()
