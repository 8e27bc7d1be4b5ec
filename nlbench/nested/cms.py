"""The Continuum Memory System (section 7.1, Eq. 70): a chain of residual MLP blocks
x + W1 act(W2 norm(x)) between a backbone's pooled features and its classifier, slowest first, every
block used in every forward pass; block l is a level with period C_l (Eq. 71).

Used by the ``cms`` / ``nested-cms`` strategies and by ``backbone.cms`` (a CMS head for any strategy,
whose optimizer then runs the blocks' periods through a level schedule: nlbench.nested.levels).
"""
import torch
from torch import nn

from nlbench.nested.levels import expand_periods
from nlbench.errors import require


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
    """backbone.features -> cms blocks (slowest first) -> backbone.head.

    ``level_periods``: the blocks' periods when the head comes from ``backbone.cms`` (the run's
    optimizer then schedules them: nlbench.nested.levels.schedule_optimizer); None when a cms strategy
    schedules them itself."""

    def __init__(self, backbone: nn.Module, n_blocks: int, hidden_mult: int, level_periods: list[int] | None = None):
        super().__init__()
        self.backbone = backbone
        self.cms = nn.Sequential(*[CMSBlock(backbone.feature_dim, hidden_mult) for _ in range(n_blocks)])
        self.level_periods = level_periods
        self.feature_dim = backbone.feature_dim

    @property
    def head(self) -> nn.Module:
        return self.backbone.head

    def features(self, x):  # what the classifier sees: the backbone's pooled features through the CMS
        return self.cms(self.backbone.features(x))

    def forward(self, x):
        return self.backbone.head(self.features(x))


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


def cms_backbone(backbone: nn.Module, periods: list[int]) -> CMSModel:
    """``backbone.cms``: a CMS head (the cms strategy's blocks, hidden width x2) with these periods,
    built right after the backbone from the same generator, as the cms strategy builds it."""
    return CMSModel(backbone, len(periods), CMS_DEFAULTS["hidden_mult"], level_periods=list(periods))
