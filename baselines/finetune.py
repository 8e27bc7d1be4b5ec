"""Plain fine-tuning with the protocol's own optimizer (train.optimizer, lr, momentum, ...)."""
from nlbench import Strategy, register_strategy


@register_strategy("finetune")
class Finetune(Strategy):
    """Plain fine-tuning with train.optimizer (lower bound; the DER protocol's 'SGD' row)."""

    graph_safe = True

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters())

    def observe(self, batch):
        return self.update(self.ctx.loss(self.model(batch.x), batch.y), self.optimizer)
