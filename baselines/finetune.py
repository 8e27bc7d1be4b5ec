"""Plain fine-tuning with the protocol's own optimizer (train.optimizer, lr, momentum, ...)."""
from nlbench import PlainStrategy, register_strategy


@register_strategy("finetune")
class Finetune(PlainStrategy):
    """Plain fine-tuning with train.optimizer (lower bound; the DER protocol's 'SGD' row)."""
