"""Plain fine-tuning with Adam: the lower bound. Also the template of a minimal plugin."""
from nlbench import Strategy, register_strategy


@register_strategy("adam")
class Adam(Strategy):
    """Plain fine-tuning with Adam (lower bound; lr from train.lr, 1e-3)."""

    graph_safe = True  # the same work every step: the runner may record it in a CUDA graph

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters(), kind="adam")

    def observe(self, batch):
        return self.update(self.ctx.loss(self.model(batch.x), batch.y), self.optimizer)
