"""Joint training on all tasks' data at once: the upper bound."""
from nlbench import Strategy, register_strategy


@register_strategy("joint")
class Joint(Strategy):
    """Trains on all tasks' data at once, then evaluates every task (upper bound)."""

    joint = True  # the runner merges every task's training data into one stage
    graph_safe = True

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters())

    def observe(self, batch):
        return self.update(self.ctx.loss(self.model(batch.x), batch.y), self.optimizer)
