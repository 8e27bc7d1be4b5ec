"""Plain fine-tuning with Adam: the lower bound of the quick and paper profiles."""
from nlbench import PlainStrategy, register_strategy


@register_strategy("adam")
class Adam(PlainStrategy):
    """Plain fine-tuning with Adam (lower bound; lr from train.lr, 1e-3)."""

    optimizer_kind = "adam"  # Adam whatever train.optimizer says
    label, group, order, standard_label = "Adam (fine-tune)", "baseline", 10, "Standard"
