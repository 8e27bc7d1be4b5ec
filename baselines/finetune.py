"""Plain fine-tuning with the protocol's own optimizer (train.optimizer, lr, momentum, ...)."""
from nlbench import PlainStrategy, register_strategy


@register_strategy("finetune")
class Finetune(PlainStrategy):
    """Plain fine-tuning with train.optimizer (lower bound; the DER protocol's 'SGD' row)."""

    label, group, order = "Fine-tune (profile's optimizer)", "baseline", 20
    skip_on_one_task = True  # the quick profile's optimizer is Adam: the same run as adam
