"""Learning without Forgetting (Li & Hoiem, TPAMI 2017), as the DER protocol's code runs it
(aimagelab/mammoth ``models/lwf.py``; settings: ``utils/best_args.py``, seq-cifar10):

- at the start of every task after the first: the classifier alone is trained for the profile's
  epochs on the new task (features of the frozen network in evaluation mode, cross-entropy over
  the new task's classes only, plain SGD at the run's lr; the other classes' rows get no gradient);
  the network as it is then, in evaluation mode, gives the targets of the old classes;
- each step: cross-entropy over the classes of the tasks seen so far (the current one included),
  plus alpha x the "modified KL" -mean_n sum_c q_c log p_c over the previous tasks' classes, where
  q and p are the old network's and the current network's softmax over those classes, each raised
  to 1/2 and renormalised (mammoth's ``smooth(..., 2)``: the temperature 2 is fixed there).

mammoth computes the old network's logits once per task for the unaugmented training images;
here the frozen copy computes them for each batch's unaugmented images (the same values: a
deterministic evaluation-mode forward). Class sets come from the scenario's tasks, so any class
order works (mammoth assumes 0, 1 | 2, 3 | ...).
"""
import copy

import torch
import torch.nn.functional as F

from nlbench import Strategy, register_strategy, require


def sharpen(prob: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """mammoth's smooth(): probabilities raised to 1/T and renormalised over the last dimension."""
    p = prob ** (1 / temperature)
    return p / p.sum(-1, keepdim=True)


def modified_kl(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """mammoth's modified_kl_div: -mean over samples of sum_c old_c log new_c."""
    return -(old * torch.log(new)).sum(-1).mean()


@register_strategy("lwf")
class LwF(Strategy):
    """Learning without Forgetting: distillation of the previous network's outputs on the old classes."""

    label, group, order = "LwF", "baseline", 35
    skip_on_one_task = True
    defaults = {"alpha": 3.0}  # mammoth utils/best_args.py seq-cifar10: alpha 3 (lr 0.01, weight decay 5e-4)

    @classmethod
    def check(cls, hp):
        require(isinstance(hp["alpha"], (int, float)) and hp["alpha"] >= 0,
                f"strategy.alpha must be a number >= 0, got {hp['alpha']!r}")

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters())
        self.old = None          # the frozen network of the previous tasks
        self.task_index = -1

    def class_index(self, tasks) -> torch.Tensor:
        return torch.tensor(sorted({c for t in tasks for c in t.classes}), device=self.ctx.device)

    def before_task(self, task):
        self.set_task(task.index)
        if task.index > 0:
            self.warm_up_classifier(task)
            self.old = copy.deepcopy(self.model).eval().requires_grad_(False)

    def set_task(self, index: int) -> None:
        """The classes of the tasks so far (the stream's loss) and of the previous ones (distillation)."""
        tasks = self.ctx.scenario.tasks
        self.task_index = index
        self.seen = self.class_index(tasks[:index + 1])
        self.previous = self.class_index(tasks[:index]) if index > 0 else None
        # label -> its position among the seen classes (the stream's loss is over those logits only)
        self.seen_position = torch.full((self.ctx.num_classes,), -1, dtype=torch.long, device=self.ctx.device)
        self.seen_position[self.seen] = torch.arange(len(self.seen), device=self.ctx.device)

    def warm_up_classifier(self, task):
        """The classifier alone, on the new task's classes, over the frozen network's features."""
        new = self.class_index([task])
        remap = torch.full((self.ctx.num_classes,), -1, dtype=torch.long, device=self.ctx.device)
        remap[new] = torch.arange(len(new), device=self.ctx.device)
        head = self.model.head
        opt = torch.optim.SGD(head.parameters(), lr=self.ctx.train["lr"])
        was_training = self.model.training
        self.model.eval()
        bs, idx, sc = self.ctx.train["batch_size"], task.train_idx, self.ctx.scenario
        for _ in range(self.ctx.train["epochs"]):
            order = torch.randperm(len(idx), generator=self.ctx.generator, device=idx.device)
            for start in range(0, len(idx), bs):
                pick = idx[order[start:start + bs]]
                x = self.ctx.prepare(sc.train_x[pick], torch.full_like(pick, task.index))
                with torch.no_grad():
                    features = self.model.features(x)
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(head(features)[:, new], remap[sc.train_y[pick]]).backward()
                opt.step()
        self.model.train(was_training)

    def observe(self, batch):
        outputs = self.model(batch.x)
        loss = self.ctx.loss(outputs[:, self.seen], self.seen_position[batch.y])
        if self.old is not None:
            with torch.no_grad():
                targets = self.old(self.ctx.prepare(batch.raw, batch.task, augment=False))[:, self.previous]
            loss = loss + self.hp["alpha"] * modified_kl(sharpen(F.softmax(targets.float(), -1)),
                                                         sharpen(F.softmax(outputs[:, self.previous].float(), -1)))
        return self.update(loss, self.optimizer)

    def extra_state(self):
        return {"old": None if self.old is None else self.old.state_dict(), "task_index": self.task_index}

    def load_extra_state(self, state):
        if state["task_index"] >= 0:  # resumed inside a task: before_task is not called again
            self.set_task(state["task_index"])
        if state["old"] is not None:
            self.old = copy.deepcopy(self.model).eval().requires_grad_(False)
            self.old.load_state_dict(state["old"])
