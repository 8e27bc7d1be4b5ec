"""Plain fine-tuning with Adam: the lower bound. Also the template of a minimal plugin."""
import torch.nn.functional as F

from nlbench import Strategy, register_strategy


@register_strategy("adam")
class Adam(Strategy):
    """Plain fine-tuning with Adam (lower bound; lr from train.lr, 1e-3)."""

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters())

    def observe(self, batch):
        loss = F.cross_entropy(self.model(batch.x), batch.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()
