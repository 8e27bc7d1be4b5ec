"""``nested-blog``: the source blog post's recipe, a named preset of ``nested``.

Every top-level block (stem, stage1..K, head) is its own level; level i (in forward order) is
updated every 2^i steps with learning rate lr / 2^i, Adam per level, and the gradients of the
steps in between are dropped (its training loop zeroes them). A different claim from the
paper's Eq. 71, kept as its own row.
"""
from nlbench.registry import register_strategy
from nlbench.strategies.nested import Nested

register_strategy("nested-blog", description="The source blog's recipe: block i every 2^i steps, lr/2^i, "
                  "in-between gradients dropped", label="Nested (blog recipe)", order=20, levels="blocks", periods="powers_of_two",
                  grad_reduce="drop", lr_scaling="period")(Nested)
