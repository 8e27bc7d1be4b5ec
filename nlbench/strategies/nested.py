"""``nested``: the standard backbone, unchanged, trained with multi-timescale level updates (Eq. 71)."""
from nlbench.errors import require
from nlbench.nested.levels import (LEVEL_DEFAULTS, backbone_groups, check_level_options, check_levels_option,
                                   expand_periods)
from nlbench.registry import register_strategy
from nlbench.strategies.levelled import LevelledStrategy


@register_strategy("nested")
class Nested(LevelledStrategy):
    """Nested Learning: backbone levels updated every C steps with summed gradients (Eq. 71)."""

    label, group, order = "Nested", "nested", 10

    # Default levels (resnet18): slow = stem+stage1+stage2, middle = stage3+stage4, fast = head.
    defaults = {"levels": None, "periods": [16, 4, 1], **LEVEL_DEFAULTS}
    search_space = {"train.lr": ["log_scale", 10.0], "strategy.periods": ["choice", [[4, 2, 1], [8, 2, 1], [16, 4, 1], [32, 8, 1], [64, 16, 1]]],
                    "strategy.lr_scaling": ["choice", ["none", "period"]]}  # the levels' clocks and lr ratios  # bench.py tune

    @classmethod
    def check(cls, hp):
        check_level_options(hp)
        check_levels_option(hp["levels"])
        if hp["levels"] is None:
            expand_periods(hp["periods"], 3)

    def level_plan(self):
        groups = backbone_groups(self.model, self.hp["levels"])
        return groups, expand_periods(self.hp["periods"], len(groups))
