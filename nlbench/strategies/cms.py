"""``cms``: backbone -> pooled features -> Continuum Memory System -> linear classifier.

CMS (section 7.1, Eq. 70): a chain of residual MLP blocks x + W1 act(W2 norm(x)), slowest first,
every block used in every forward pass; block l is a level with period C_l (Eq. 71).
"""
from nlbench.nested.cms import CMS_DEFAULTS, build_cms_model, check_cms_periods, cms_groups
from nlbench.errors import require
from nlbench.nested.levels import LEVEL_DEFAULTS, check_level_options, expand_periods
from nlbench.registry import register_strategy
from nlbench.strategies.levelled import LevelledStrategy


@register_strategy("cms")
class CMS(LevelledStrategy):
    """Continuum Memory System head (chain of residual MLPs, periods 16/4/1) on a period-1 backbone."""

    label, group, order = "CMS", "nested", 30

    defaults = {"periods": [16, 4, 1], "backbone_period": 1, "head_period": 1, **CMS_DEFAULTS, **LEVEL_DEFAULTS}
    search_space = {"train.lr": ["log_scale", 10.0], "strategy.periods": ["choice", [[4, 2, 1], [8, 2, 1], [16, 4, 1], [32, 8, 1], [64, 16, 1]]],
                    "strategy.lr_scaling": ["choice", ["none", "period"]]}  # the blocks' clocks and lr ratios  # bench.py tune

    @classmethod
    def check(cls, hp):
        check_level_options(hp)
        if not isinstance(hp["periods"], int):
            check_cms_periods(hp["periods"], "strategy.periods")
        for key in ("backbone_period", "head_period", "hidden_mult"):
            require(isinstance(hp[key], int) and hp[key] > 0, f"strategy.{key} must be a positive integer, got {hp[key]!r}")

    def build_model(self, ctx):
        n = 3 if isinstance(self.hp["periods"], int) else len(self.hp["periods"])
        return build_cms_model(ctx, self.model, n, self.hp["hidden_mult"])

    def level_plan(self):
        n = len(self.model.cms)
        body = [f"backbone.{b}" for b in self.model.backbone.block_names() if b != "head"]
        groups = [("backbone", body), *cms_groups(n), ("head", ["backbone.head"])]
        periods = [self.hp["backbone_period"], *expand_periods(self.hp["periods"], n), self.hp["head_period"]]
        return groups, periods
