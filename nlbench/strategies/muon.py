"""``muon``: Muon (Jordan et al. 2024) on the hidden weights, the suite's optimizer on the rest: the
control that M3 (``m3``) is compared with, set up as Muon's authors advise (Muon for the hidden
layers' weight matrices, conv weights reshaped; the classifier, biases and norms with Adam)."""
from nlbench.nested.optimizers import Muon as MuonOptimizer
from nlbench.registry import register_strategy
from nlbench.errors import require
from nlbench.training.strategy import PlainStrategy


@register_strategy("muon")
class Muon(PlainStrategy):
    """Muon on hidden weight matrices (lr 0.02, momentum 0.95, Nesterov), Adam/SGD on the rest."""

    label, group, order = "Muon", "nested", 55
    graph_safe = False  # two optimizers, one of them ours (not captured)
    seed_parallel = False

    @classmethod
    def seed_parallel_for(cls, hp):
        return "Muon's Newton-Schulz step orthogonalises whole matrices, which a stacked group would mix"
    # KellerJordan/Muon, muon.py: the reference implementation's defaults
    defaults = {"muon_lr": 0.02, "muon_momentum": 0.95, "nesterov": True}

    @classmethod
    def check(cls, hp):
        require(isinstance(hp["muon_lr"], (int, float)) and not isinstance(hp["muon_lr"], bool) and hp["muon_lr"] > 0,
                f"strategy.muon_lr must be a positive number, got {hp['muon_lr']!r}")
        require(isinstance(hp["muon_momentum"], (int, float)) and 0 <= hp["muon_momentum"] < 1,
                f"strategy.muon_momentum must be in [0, 1), got {hp['muon_momentum']!r}")
        require(isinstance(hp["nesterov"], bool), f"strategy.nesterov must be true or false, got {hp['nesterov']!r}")

    def __init__(self, ctx, **hp):
        super(PlainStrategy, self).__init__(ctx, **hp)  # the model only: two optimizers below
        head = {id(p) for p in self.model.head.parameters()}
        hidden = [p for p in self.model.parameters() if p.dim() >= 2 and id(p) not in head]
        rest = [p for p in self.model.parameters() if p.dim() < 2 or id(p) in head]
        self.muon = ctx.register_optimizer(MuonOptimizer(hidden, lr=hp["muon_lr"], momentum=hp["muon_momentum"],
                                                         nesterov=hp["nesterov"]))
        self.optimizer = ctx.make_optimizer(rest, schedule=False)

    def observe(self, batch):
        loss = self.ctx.loss(self.model(batch.x), batch.y)
        self.muon.zero_grad(set_to_none=True)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.muon.step()
        self.optimizer.step()
        return loss.detach()
