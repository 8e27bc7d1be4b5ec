"""``derpp``: DER++ (Buzzega et al. 2020), a named preset of ``der`` (baselines/der.py, which the
suite loads first: baselines load in name order) with its labelled replay term (beta > 0); alpha
and beta from mammoth's utils/best_args.py, seq-cifar10, buffer 200 (buffer 500: alpha 0.2)."""
from nlbench import register_strategy
from nlbench.registry import STRATEGIES, lookup

register_strategy("derpp", description="DER++: DER plus beta x cross-entropy on a second replay draw with the "
                  "stored labels", label="DER++", order=46, alpha=0.1, beta=0.5)(lookup(STRATEGIES, "strategy", "der").obj)
