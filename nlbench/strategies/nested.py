"""``nested``: the standard backbone, unchanged, trained with multi-timescale level updates (Eq. 71)."""
from ..levels import LEVEL_DEFAULTS, LevelledStrategy, block_groups, check_level_options, default_backbone_groups, expand_periods
from ..registry import register_strategy
from ..strategy import require


def backbone_groups(model, levels, prefix=""):
    """levels: null (slow/middle/fast default), 'blocks' (one level per block) or a list of
    module-prefix lists, slowest level first."""
    if levels is None:
        return default_backbone_groups(model, prefix)
    if levels == "blocks":
        return block_groups(model, prefix)
    return [(f"level{i + 1}", [prefix + m for m in group]) for i, group in enumerate(levels)]


def check_levels_option(levels) -> None:
    ok = levels is None or levels == "blocks" or (
        isinstance(levels, list) and levels and all(isinstance(g, list) and g and all(isinstance(m, str) for m in g)
                                                    for g in levels))
    require(ok, f"strategy.levels must be null, 'blocks' or a list of lists of module names, got {levels!r}")


@register_strategy("nested")
class Nested(LevelledStrategy):
    """Nested Learning: backbone levels updated every C steps with summed gradients (Eq. 71)."""

    label, group, order = "Nested", "nested", 10

    # Default levels (resnet18): slow = stem+stage1+stage2, middle = stage3+stage4, fast = head.
    defaults = {"levels": None, "periods": [16, 4, 1], **LEVEL_DEFAULTS}

    @classmethod
    def check(cls, hp):
        check_level_options(hp)
        check_levels_option(hp["levels"])
        if hp["levels"] is None:
            expand_periods(hp["periods"], 3)

    def level_plan(self):
        groups = backbone_groups(self.model, self.hp["levels"])
        return groups, expand_periods(self.hp["periods"], len(groups))
