"""Joint training on all tasks' data at once: the upper bound."""
from nlbench import PlainStrategy, register_strategy


@register_strategy("joint")
class Joint(PlainStrategy):
    """Trains on all tasks' data at once, then evaluates every task (upper bound)."""

    joint = True  # the runner merges every task's training data into one stage
