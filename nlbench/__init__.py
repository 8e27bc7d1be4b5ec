"""nlbench: a continual-learning benchmark suite for Nested Learning on CIFAR-10."""
__version__ = "0.1.0"

from nlbench.errors import UserError, require  # noqa: E402
from nlbench.registry import register_backbone, register_builder, register_strategy  # noqa: E402
from nlbench.training.strategy import Batch, PlainStrategy, RunContext, Strategy  # noqa: E402

__all__ = ["Batch", "PlainStrategy", "RunContext", "Strategy", "UserError", "register_backbone", "register_builder",
           "register_strategy", "require"]
