"""nlbench: a continual-learning benchmark suite for Nested Learning on CIFAR-10."""
__version__ = "0.1.0"

from .errors import UserError, require  # noqa: E402
from .registry import register_backbone, register_builder, register_strategy  # noqa: E402
from .strategy import Batch, PlainStrategy, RunContext, Strategy  # noqa: E402

__all__ = ["Batch", "PlainStrategy", "RunContext", "Strategy", "UserError", "register_backbone", "register_builder",
           "register_strategy", "require"]
