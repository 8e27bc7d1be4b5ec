"""Joint training on all tasks' data at once: the upper bound."""
from nlbench import PlainStrategy, register_strategy
from nlbench.training.scenarios import merge_tasks


@register_strategy("joint")
class Joint(PlainStrategy):
    """Trains on all tasks' data at once, then evaluates every task (upper bound)."""

    label, group = "Joint (upper bound)", "upper bound"
    skip_on_one_task = True

    def stages(self, tasks):
        return [merge_tasks(tasks)]  # one stage: every task's training data at once
