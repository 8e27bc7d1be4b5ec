"""``cms``: backbone -> pooled features -> Continuum Memory System -> linear classifier.

CMS (section 7.1, Eq. 70): a chain of residual MLP blocks x + W1 act(W2 norm(x)), slowest first,
every block used in every forward pass; block l is a level with period C_l (Eq. 71).
"""
import torch
from torch import nn

from ..levels import LEVEL_DEFAULTS, LevelledStrategy, check_level_options, expand_periods
from ..registry import register_strategy
from ..strategy import require


class CMSBlock(nn.Module):
    def __init__(self, dim: int, hidden_mult: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.w2 = nn.Linear(dim, hidden_mult * dim)
        self.act = nn.GELU()
        self.w1 = nn.Linear(hidden_mult * dim, dim)
        nn.init.zeros_(self.w1.weight)  # the block starts as the identity
        nn.init.zeros_(self.w1.bias)

    def forward(self, x):  # (B, D) -> (B, D)
        return x + self.w1(self.act(self.w2(self.norm(x))))


class CMSModel(nn.Module):
    """backbone.features -> cms blocks (slowest first) -> backbone.head."""

    def __init__(self, backbone: nn.Module, n_blocks: int, hidden_mult: int):
        super().__init__()
        self.backbone = backbone
        self.cms = nn.Sequential(*[CMSBlock(backbone.feature_dim, hidden_mult) for _ in range(n_blocks)])

    def forward(self, x):
        return self.backbone.head(self.cms(self.backbone.features(x)))


def build_cms_model(ctx, backbone: nn.Module, n_blocks: int, hidden_mult: int) -> CMSModel:
    """The CMS head around the backbone the strategy already built: one backbone per run, drawn from
    the seed exactly as every other strategy's (the head starts as the identity, so the untrained
    network scores as the bare backbone does)."""
    model = CMSModel(backbone, n_blocks, hidden_mult).to(ctx.device)
    return model.to(memory_format=torch.channels_last) if ctx.channels_last else model


def cms_groups(n_blocks: int) -> list:
    return [(f"cms{i + 1}", [f"cms.{i}"]) for i in range(n_blocks)]


def check_cms_periods(periods, what):
    require(isinstance(periods, list) and periods, f"{what} must be a non-empty list of positive integers "
            f"(slowest block first), got {periods!r}")
    expand_periods(periods, len(periods), what)


CMS_DEFAULTS = {"hidden_mult": 2}


@register_strategy("cms")
class CMS(LevelledStrategy):
    """Continuum Memory System head (chain of residual MLPs, periods 16/4/1) on a period-1 backbone."""

    label, group, order = "CMS", "nested", 30

    defaults = {"periods": [16, 4, 1], "backbone_period": 1, "head_period": 1, **CMS_DEFAULTS, **LEVEL_DEFAULTS}

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
