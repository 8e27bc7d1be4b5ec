"""iCaRL (Rebuffi, Kolesnikov, Sperl & Lampert, "iCaRL: Incremental Classifier and Representation
Learning", CVPR 2017), as the DER protocol's code runs it (aimagelab/mammoth ``models/icarl.py`` and
``utils/buffer.py`` ``icarl_replay`` / ``fill_buffer``; settings: ``utils/best_args.py`` seq-cifar10):

- training data: from the second task on, the memory's images join the task's training images (one
  shuffled set: each memory image is seen once per epoch, like any other);
- each step: binary cross-entropy with logits over every class output, averaged over samples and
  classes. Targets: one-hot labels, except that the previous tasks' classes take the sigmoid of the
  previous network's outputs on the same (augmented) input (distillation). Plus ``wd_reg`` x the sum
  of the squared parameters (mammoth's own weight decay, 1e-5; the optimizer's is switched off);
- after each task: the previous network = a frozen copy; the memory keeps buffer_size // (classes
  seen) images a class: the old classes keep the first ones of their herding order, each new class
  is chosen by herding (greedy: the image that brings the mean of the chosen, L2-normalised features
  closest to the class mean; evaluation-mode features of the unaugmented training images);
- prediction: nearest mean of exemplars. A class's mean = the normalised average of the normalised
  features of its memory images, averaged with those of their horizontal flips, renormalised; a test
  image goes to the class whose mean is nearest to its normalised features.

Class sets come from the scenario's tasks, so any class order works (mammoth assumes 0, 1 | 2, 3 ...).
The memory holds indices into the training images. Not graph-safe (host-side memory), one seed per
process.
"""
import copy

import torch
import torch.nn.functional as F

from nlbench import Strategy, register_strategy, require

# Squared distance between unit vectors is at most 4: classes without a mean score below every seen one.
UNSEEN_CLASS_LOGIT = -5.0


def herding_order(features: torch.Tensor, count: int) -> torch.Tensor:
    """Rows of L2-normalised ``features`` chosen greedily, one at a time, so that the running mean of
    the chosen stays closest to the mean of all (mammoth utils/buffer.py fill_buffer, use_herding)."""
    feats = features.clone()
    mean = feats.mean(0, keepdim=True)
    running = torch.zeros_like(mean)
    chosen = []
    for i in range(min(count, len(feats))):
        pick = int((mean - (feats + running) / (i + 1)).norm(dim=1).argmin())
        chosen.append(pick)
        running += feats[pick]
        feats[pick] += 1e6  # mammoth's exclusion of a chosen row
    return torch.tensor(chosen, dtype=torch.long, device=features.device)


def normalized(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


class NearestMeanHead(torch.nn.Module):
    """Logits = minus the squared distance of the normalised features to each class mean."""

    def __init__(self, classes: torch.Tensor, means: torch.Tensor, num_classes: int):
        super().__init__()
        self.classes, self.means, self.num_classes = classes, means, num_classes

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        distance = (self.means[None] - normalized(features.float())[:, None]).pow(2).sum(2)
        logits = torch.full((len(features), self.num_classes), UNSEEN_CLASS_LOGIT, device=features.device)
        logits[:, self.classes] = -distance
        return logits


class NearestMeanClassifier(torch.nn.Module):
    """The trained network's features with the nearest-mean-of-exemplars head (what is evaluated)."""

    def __init__(self, network: torch.nn.Module, head: NearestMeanHead):
        super().__init__()
        self.network, self.head = network, head
        self.train(network.training)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_strategy("icarl")
class ICaRL(Strategy):
    """iCaRL: herding memory, sigmoid distillation of the previous network, nearest-mean-of-exemplars."""

    label, group, order = "iCaRL", "baseline", 47
    skip_on_one_task = False
    defaults = {"buffer_size": 500, "wd_reg": 1e-5}  # mammoth models/icarl.py --opt_wd default 1e-5

    @classmethod
    def check(cls, hp):
        require(isinstance(hp["buffer_size"], int) and not isinstance(hp["buffer_size"], bool) and hp["buffer_size"] > 0,
                f"strategy.buffer_size must be a positive integer, got {hp['buffer_size']!r}")
        require(isinstance(hp["wd_reg"], (int, float)) and hp["wd_reg"] >= 0,
                f"strategy.wd_reg must be a number >= 0, got {hp['wd_reg']!r}")

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        self.optimizer = ctx.make_optimizer(self.model.parameters())
        for group in self.optimizer.param_groups:  # mammoth: iCaRL's own penalty replaces the optimizer's
            group["weight_decay"] = 0.0
        empty = torch.empty(0, dtype=torch.long, device=ctx.device)
        self.memory, self.memory_tasks = empty, empty.clone()  # training-image indices, grouped by class
        self.old = None
        self.previous = empty.clone()  # the previous tasks' classes
        self.task_index = -1
        self.head = None  # the nearest-mean head, made after each task

    # ------------------------------------------------------------------ training
    def before_task(self, task):
        self.set_task(task.index)

    def set_task(self, index: int) -> None:
        tasks = self.ctx.scenario.tasks
        self.task_index = index
        self.previous = torch.tensor(sorted({c for t in tasks[:index] for c in t.classes}), dtype=torch.long,
                                     device=self.ctx.device)

    def training_samples(self, task):
        idx, tid = super().training_samples(task)
        return torch.cat([idx, self.memory]), torch.cat([tid, self.memory_tasks])

    def observe(self, batch):
        outputs = self.model(batch.x)
        targets = F.one_hot(batch.y, self.ctx.num_classes).float()
        if self.old is not None:
            with torch.no_grad():
                targets[:, self.previous] = torch.sigmoid(self.old(batch.x).float())[:, self.previous]
        loss = F.binary_cross_entropy_with_logits(outputs.float(), targets)
        loss = loss + self.hp["wd_reg"] * sum(p.pow(2).sum() for p in self.model.parameters())
        return self.update(loss, self.optimizer)

    # ------------------------------------------------------------------ memory and classifier
    @torch.no_grad()
    def unit_features(self, rows: torch.Tensor, tasks: torch.Tensor, flip: bool = False) -> torch.Tensor:
        """Evaluation-mode, L2-normalised features of training images, unaugmented (optionally flipped)."""
        bs, out = self.ctx.train["eval_batch_size"], []
        for start in range(0, len(rows), bs):
            x = self.ctx.prepare(self.ctx.scenario.train_x[rows[start:start + bs]], tasks[start:start + bs],
                                 augment=False)
            out.append(normalized(self.model.features(x.flip(-1) if flip else x).float()))
        return torch.cat(out) if out else torch.empty(0, device=self.ctx.device)

    def after_task(self, task):
        was_training = self.model.training
        self.model.eval()
        self.old = copy.deepcopy(self.model).requires_grad_(False)
        self.fill_memory(task)
        self.head = self.nearest_mean_head()
        self.model.train(was_training)

    def fill_memory(self, task) -> None:
        sc = self.ctx.scenario
        labels = sc.train_y[self.memory]
        old_classes = list(dict.fromkeys(labels.tolist()))  # in memory order
        per_class = self.hp["buffer_size"] // (len(old_classes) + len(task.classes))
        keep = [(labels == c).nonzero().flatten()[:per_class] for c in old_classes]
        rows, tasks = [self.memory[k] for k in keep], [self.memory_tasks[k] for k in keep]
        for c in sorted(task.classes):
            mine = task.train_idx[sc.train_y[task.train_idx] == c]
            mine_tasks = torch.full_like(mine, task.index)
            chosen = herding_order(self.unit_features(mine, mine_tasks), per_class)
            rows.append(mine[chosen])
            tasks.append(mine_tasks[chosen])
        self.memory, self.memory_tasks = torch.cat(rows), torch.cat(tasks)

    def nearest_mean_head(self) -> NearestMeanHead | None:
        labels = self.ctx.scenario.train_y[self.memory]
        classes = list(dict.fromkeys(labels.tolist()))
        if not classes:  # a memory smaller than the classes seen holds none
            return None
        means = []
        for c in classes:
            rows, tasks = self.memory[labels == c], self.memory_tasks[labels == c]
            plain = self.unit_features(rows, tasks).mean(0)
            flipped = self.unit_features(rows, tasks, flip=True).mean(0)
            means.append(normalized((plain + flipped) / 2))
        return NearestMeanHead(torch.tensor(classes, dtype=torch.long, device=self.ctx.device), torch.stack(means),
                               self.ctx.num_classes)

    def evaluation_model(self):
        # before the first task ends there are no exemplars: the network's own outputs
        return self.model if self.head is None else NearestMeanClassifier(self.model, self.head)

    # ------------------------------------------------------------------ resume
    def extra_state(self):
        return {"memory": self.memory, "memory_tasks": self.memory_tasks, "task_index": self.task_index,
                "old": None if self.old is None else self.old.state_dict()}

    def load_extra_state(self, state):
        self.memory = state["memory"].to(self.ctx.device)
        self.memory_tasks = state["memory_tasks"].to(self.ctx.device)
        if state["task_index"] >= 0:  # resumed inside a task: before_task is not called again
            self.set_task(state["task_index"])
        if state["old"] is not None:
            self.old = copy.deepcopy(self.model).eval().requires_grad_(False)
            self.old.load_state_dict(state["old"])
