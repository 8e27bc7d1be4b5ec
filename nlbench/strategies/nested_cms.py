"""``nested-cms``: multi-timescale backbone (as ``nested``) plus a CMS head (as ``cms``)."""
from nlbench.nested.levels import (LEVEL_DEFAULTS, backbone_groups, check_level_options, check_levels_option,
                                   expand_periods)
from nlbench.errors import require
from nlbench.registry import register_strategy
from nlbench.strategies.levelled import LevelledStrategy
from nlbench.strategies.cms import CMS_DEFAULTS, build_cms_model, check_cms_periods, cms_groups


@register_strategy("nested-cms")
class NestedCMS(LevelledStrategy):
    """Nested + CMS: backbone levels (16/4/1, classifier last) and a CMS head (16/4/1)."""

    label, group, order = "Nested + CMS", "nested", 40
    period_keys = ("periods", "cms_periods")

    defaults = {"levels": None, "periods": [16, 4, 1], "cms_periods": [16, 4, 1], **CMS_DEFAULTS,
                **LEVEL_DEFAULTS, "cms_budget_of": None}  # the formula control (per-layer lr η/C): the slow cms_periods

    @classmethod
    def check(cls, hp):
        check_level_options(hp)
        check_levels_option(hp["levels"])
        if hp["levels"] is None:
            expand_periods(hp["periods"], 3)
        if not isinstance(hp["cms_periods"], int):
            check_cms_periods(hp["cms_periods"], "strategy.cms_periods")
        require(isinstance(hp["hidden_mult"], int) and not isinstance(hp["hidden_mult"], bool) and hp["hidden_mult"] > 0,
                f"strategy.hidden_mult must be a positive integer, got {hp['hidden_mult']!r}")

    def build_model(self, ctx):
        n = 3 if isinstance(self.hp["cms_periods"], int) else len(self.hp["cms_periods"])
        return build_cms_model(ctx, self.model, n, self.hp["hidden_mult"])

    def level_plan(self):
        # Backbone levels (the classifier is the last of them, as in ``nested``), then the CMS blocks.
        groups = backbone_groups(self.model.backbone, self.hp["levels"], prefix="backbone.")
        periods = expand_periods(self.hp["periods"], len(groups))
        n = len(self.model.cms)
        return groups + cms_groups(n), periods + expand_periods(self.hp["cms_periods"], n, "strategy.cms_periods")
