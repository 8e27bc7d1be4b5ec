"""``m3``: the whole model trained with M3, the paper's multi-scale momentum Muon (Alg. 1, Eq. 75;
``nlbench.nested.optimizers.M3``), one optimizer step per mini-batch."""
from nlbench.nested.optimizers import M3 as M3Optimizer
from nlbench.registry import register_strategy
from nlbench.errors import require
from nlbench.training.strategy import PlainStrategy


@register_strategy("m3")
class M3(PlainStrategy):
    """M3 optimizer (Adam + Muon + a slow momentum every `period` steps) on the whole model."""

    label, group, order = "M3", "nested", 50
    graph_safe = False  # its slow memory branches on the step count in Python
    seed_parallel = False

    @classmethod
    def seed_parallel_for(cls, hp):
        return "M3's Newton-Schulz step orthogonalises whole matrices, which a stacked group would mix"
    defaults = {"period": 16, "alpha": 1.0, "beta3": 0.9}
    search_space = {"train.lr": ["log_scale", 10.0], "strategy.alpha": ["float", 0.0, 2.0], "strategy.period": ["choice", [4, 8, 16, 32]]}  # bench.py tune

    @classmethod
    def check(cls, hp):
        require(isinstance(hp["period"], int) and not isinstance(hp["period"], bool) and hp["period"] > 0,
                f"strategy.period must be a positive integer, got {hp['period']!r}")
        require(isinstance(hp["alpha"], (int, float)) and hp["alpha"] >= 0, f"strategy.alpha must be >= 0, got {hp['alpha']!r}")
        require(isinstance(hp["beta3"], (int, float)) and 0 <= hp["beta3"] < 1,
                f"strategy.beta3 must be in [0, 1), got {hp['beta3']!r}")

    @classmethod
    def matched_controls(cls, hp):
        return {"no slow memory (alpha 0)": {"alpha": 0.0}}

    def __init__(self, ctx, **hp):
        super(PlainStrategy, self).__init__(ctx, **hp)  # the model only: the optimizer is M3, not train.optimizer
        self.optimizer = ctx.register_optimizer(M3Optimizer(
            self.model.parameters(), lr=ctx.train["lr"], betas=(0.9, 0.999, hp["beta3"]), alpha=hp["alpha"],
            period=hp["period"]))
