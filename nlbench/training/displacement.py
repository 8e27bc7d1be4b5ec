"""How far each group of parameters moved, per task: the net displacement ||theta_end - theta_start||
and the path length (the sum over the task's steps of ||theta_after - theta_before||).

Why both: a level that steps every C mini-batches and a period-1 control can end a task equally far
from where they began while one of them wandered much more; the displacement-matched control is calibrated
on the net displacement (nlbench.launchers.calibrate) and the path says how much each one moved to
get there. The groups are the run's levels where it has a level schedule, else the backbone's
default slow / middle / fast partition (nlbench.nested.levels.default_backbone_groups), so a levelled
run and its plain control are measured on the same parameters.

Measured outside the strategy, after each step of the runner's loop and once more at the task's
end (an end-of-task flush, GDumb's retraining), so it sees every change whatever the optimizer;
reading parameters changes nothing in the arithmetic of the run.
"""
from __future__ import annotations

import torch


class DisplacementMeter:
    def __init__(self, groups: list[tuple[str, list[torch.nn.Parameter]]]):
        self.names = [name for name, _ in groups]
        self.params = [list(ps) for _, ps in groups]
        self.prev = [[p.detach().clone() for p in ps] for ps in self.params]
        self.start = [[p.detach().clone() for p in ps] for ps in self.params]
        device = self.params[0][0].device
        self.path = torch.zeros(len(groups), dtype=torch.float64, device=device)
        self.moves = torch.zeros(len(groups), dtype=torch.int64, device=device)
        self.tasks: list[dict] = []

    @staticmethod
    def _distance(now: list[torch.Tensor], then: list[torch.Tensor]) -> torch.Tensor:
        diffs = torch._foreach_sub([p.detach().float() for p in now], [t.float() for t in then])
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(diffs)).double())

    @torch.no_grad()
    def after_step(self) -> None:
        """Add each group's step length to its path (no host sync: the sums stay on the device)."""
        for i, (ps, prev) in enumerate(zip(self.params, self.prev)):
            step = self._distance(ps, prev)
            self.path[i] += step
            self.moves[i] += (step > 0).long()
            torch._foreach_copy_(prev, [p.detach() for p in ps])

    @torch.no_grad()
    def end_task(self) -> None:
        """Close a task: each group's net displacement, path length and steps that moved it."""
        self.after_step()  # what the task's end did (a flush of pending gradients, a retraining)
        row = {}
        for i, (name, ps, start) in enumerate(zip(self.names, self.params, self.start)):
            row[name] = {"net": float(self._distance(ps, start)), "path": float(self.path[i]),
                         "moves": int(self.moves[i])}
            torch._foreach_copy_(start, [p.detach() for p in ps])
        self.path.zero_()
        self.moves.zero_()
        self.tasks.append(row)

    def state_dict(self) -> dict:
        return {"prev": self.prev, "start": self.start, "path": self.path, "moves": self.moves, "tasks": self.tasks}

    def load_state_dict(self, state: dict) -> None:
        for mine, saved in ((self.prev, state["prev"]), (self.start, state["start"])):
            for group, kept in zip(mine, saved):  # per group: its tensors
                torch._foreach_copy_(group, [t.to(m.device) for t, m in zip(kept, group)])
        self.path.copy_(state["path"])
        self.moves.copy_(state["moves"])
        self.tasks = list(state["tasks"])

    def record(self) -> dict:
        """For the run record: the groups (in level order) and, per task, each one's net, path, moves."""
        return {"groups": self.names, "tasks": self.tasks}


def parameter_groups(strategy) -> list[tuple[str, list[torch.nn.Parameter]]]:
    """The groups a run's displacement is measured on: its level schedule's levels (a levelled
    strategy, or train.levels / backbone.cms), else the backbone's default slow / middle / fast
    partition, else the whole model as one group."""
    from nlbench.nested.levels import default_backbone_groups  # nested is above training: imported here
    schedule = getattr(strategy, "levels", None)
    if schedule is None or not hasattr(schedule, "levels"):
        scheduled = [v for v in vars(strategy).values() if hasattr(v, "schedule") and isinstance(v, torch.optim.Optimizer)]
        schedule = scheduled[0].schedule if scheduled else None
    if schedule is not None:
        return [(lv.name, list(lv.params)) for lv in schedule.levels]
    model = strategy.model
    named = dict(model.named_parameters())
    if getattr(model, "n_stages", None):
        groups = []
        for name, prefixes in default_backbone_groups(model):
            ps = [p for n, p in named.items() if any(n == q or n.startswith(q + ".") for q in prefixes)]
            if ps:
                groups.append((name, ps))
        if sum(len(ps) for _, ps in groups) == len(named):
            return groups
    return [("all", list(named.values()))]
