"""GDumb (Prabhu, Torr & Dokania, "GDumb: A Simple Approach that Questions Our Progress in
Continual Learning", ECCV 2020), as the online continual-learning code of SCR and ASER runs it
(RaptorMai/online-continual-learning ``agents/gdumb.py``, defaults in ``general_main.py``), the code
behind the online GDumb rows that MIR-protocol tables print:

- the stream only fills a memory of ``buffer_size`` images with the greedy class-balancing sampler:
  a sample enters when its class is new to the memory or holds fewer than buffer_size // (classes
  in the memory) images; when the memory is full, a random image of the class holding the most
  (the first such class on ties) leaves first. No gradient step is taken on the stream;
- after every task, a network initialised afresh is trained on the memory alone: ``passes``
  shuffled passes (``mem_epoch``, 70 there) in batches of the run's batch size, the last partial
  batch dropped, cross-entropy over all classes, the run's optimizer and lr, gradients clipped to
  norm ``clip`` (10 there and in the authors' ``opts.py``); that network is evaluated.

The authors' own CIFAR-10 protocol (drimpossible/GDumb ``scripts/replicate.sh``, ``src/main.py``,
``src/dataloader.py``, ``src/opts.py``; profile ``gdumb`` of split-cifar) needs four options, all off
by default: ``class_cap: all`` (a fixed budget of buffer_size // classes images a class from the start,
so the memory keeps the first images of each class, as their dataloader does), ``train_after: last``
(one training, after the last task), ``lr_schedule: warm_restarts`` (their main.py: the first pass at
lr / 10, the second at lr, then cosine warm restarts with T_0 = 1, T_mult = 2 down to ``min_lr``,
stepped once a pass) and ``cutmix_prob`` / ``cutmix_alpha`` (CutMix on a batch with that probability).
Host-side sampling per sample: not graph-safe, one seed per process.
"""
import math

import torch
import torch.nn.functional as F
from scipy.stats import beta as beta_distribution

from nlbench import Strategy, register_strategy, require


@register_strategy("gdumb")
class GDumb(Strategy):
    """GDumb: a class-balanced memory, and a network trained from scratch on it alone."""

    label, group, order = "GDumb", "baseline", 49
    skip_on_one_task = False
    defaults = {"buffer_size": 500, "passes": 70, "clip": 10.0,
                "class_cap": "seen",         # seen: buffer_size // classes in the memory (SCR); all: // every class
                "train_after": "every",      # every task, or only the last (the authors' main.py)
                "lr_schedule": "constant",   # constant, or warm_restarts (the authors' main.py)
                "min_lr": 0.0005,            # warm_restarts' eta_min (the authors' opts.py minlr)
                "cutmix_prob": 0.0, "cutmix_alpha": 1.0}  # the authors' opts.py: 0.5 and 1.0 with cutmix
    option_values = {"class_cap": ("seen", "all"), "train_after": ("every", "last"),
                     "lr_schedule": ("constant", "warm_restarts")}

    @classmethod
    def check(cls, hp):
        for key in ("buffer_size", "passes"):
            require(isinstance(hp[key], int) and not isinstance(hp[key], bool) and hp[key] > 0,
                    f"strategy.{key} must be a positive integer, got {hp[key]!r}")
        for key in ("clip", "cutmix_alpha"):
            require(isinstance(hp[key], (int, float)) and not isinstance(hp[key], bool) and hp[key] > 0,
                    f"strategy.{key} must be a positive number, got {hp[key]!r}")
        for key in ("min_lr", "cutmix_prob"):
            require(isinstance(hp[key], (int, float)) and not isinstance(hp[key], bool) and hp[key] >= 0,
                    f"strategy.{key} must be a number >= 0, got {hp[key]!r}")
        require(hp["cutmix_prob"] <= 1, f"strategy.cutmix_prob is a probability (0 to 1), got {hp['cutmix_prob']!r}")
        for key, valid in cls.option_values.items():
            require(hp[key] in valid, f"strategy.{key} must be one of {', '.join(valid)}, got {hp[key]!r}")

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        size, device = hp["buffer_size"], ctx.device
        self.images = torch.zeros(size, 3, 32, 32, dtype=torch.uint8, device=device)
        self.labels = torch.full((size,), -1, dtype=torch.long, device=device)
        self.task_ids = torch.zeros(size, dtype=torch.long, device=device)
        self.count = 0
        self.optimizer = ctx.make_optimizer(self.model.parameters())

    # ------------------------------------------------------------------ the memory
    def offer(self, image: torch.Tensor, label: int, task: int) -> None:
        """One stream sample through the greedy class-balancing sampler."""
        size = len(self.labels)
        counts = torch.bincount(self.labels[:self.count], minlength=self.ctx.num_classes)
        if self.hp["class_cap"] == "all":  # a fixed share a class: the first images of each class stay
            if counts[label] < size // self.ctx.num_classes:
                self._store(self.count, image, label, task)
                self.count += 1
            return
        classes = int((counts > 0).sum())
        if counts[label] > 0 and counts[label] >= size // max(1, classes):
            return
        slot = self.count
        if self.count >= size:  # full: a random image of the largest class leaves
            largest = int(torch.argmax(counts))  # the first of the largest on ties
            members = (self.labels == largest).nonzero().flatten()
            pick = int(torch.randint(len(members), (1,), generator=self.ctx.generator, device=self.ctx.device))
            slot = int(members[pick])
        else:
            self.count += 1
        self._store(slot, image, label, task)

    def _store(self, slot: int, image: torch.Tensor, label: int, task: int) -> None:
        self.images[slot], self.labels[slot], self.task_ids[slot] = image, label, task

    def observe(self, batch):
        for image, label, task in zip(batch.raw, batch.y.tolist(), batch.task.tolist()):
            self.offer(image, label, task)
        return torch.zeros((), device=self.ctx.device)  # no step on the stream

    # ------------------------------------------------------------------ training on it
    def after_task(self, task):
        """A network initialised afresh (from the run's generator, so a resumed run draws the same),
        trained on the memory alone (with ``train_after: last``, only after the last task)."""
        if self.hp["train_after"] == "last" and max(task.task_indices) < len(self.ctx.scenario.tasks) - 1:
            return
        seed = int(torch.randint(2 ** 62, (1,), generator=self.ctx.generator, device=self.ctx.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = self.ctx.make_backbone()
        self.ctx.model = self.model  # make_backbone registers the network it builds: ours stays the run's
        self.model.load_state_dict(fresh.state_dict())  # the same module: its optimizer follows
        self.optimizer.state.clear()  # a fresh optimizer too (momentum, Adam's moments and step count)
        n, bs = self.count, self.ctx.train["batch_size"]
        self.model.train()
        schedule = self._pass_schedule()
        for index in range(self.hp["passes"]):
            self.ctx.check_stop()  # minutes of work: a stop request gives up here (resume redoes it)
            schedule(index)
            order = torch.randperm(n, generator=self.ctx.generator, device=self.ctx.device)
            for start in range(0, n - bs + 1, bs):  # the last partial batch dropped
                rows = order[start:start + bs]
                x, y = self.ctx.prepare(self.images[rows], self.task_ids[rows]), self.labels[rows]
                self.optimizer.zero_grad(set_to_none=True)
                self._loss(x, y).backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.hp["clip"])
                self.optimizer.step()

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy, on a CutMix batch with probability ``cutmix_prob`` (the authors' main.py train)."""
        g = self.ctx.generator
        if self.hp["cutmix_prob"] > 0 and float(torch.rand((), generator=g, device=g.device)) < self.hp["cutmix_prob"]:
            x, y_pasted, lam = cutmix(x, y, self.hp["cutmix_alpha"], g)
            logits = self.model(x)
            return lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y_pasted)
        return F.cross_entropy(self.model(x), y)

    def _pass_schedule(self):
        """A function of the pass index that sets the lr of that pass. warm_restarts, as the authors'
        main.py: pass 0 at lr / 10 (a warm start), pass 1 at lr, then torch's CosineAnnealingWarmRestarts
        (T_0 = 1, T_mult = 2, eta_min = min_lr), made at lr before the first pass and stepped once a pass
        from pass 2 on."""
        if self.hp["lr_schedule"] == "constant":
            return lambda index: None
        base = self.ctx.train["lr"]
        for group in self.optimizer.param_groups:
            group["lr"] = base
            group.pop("initial_lr", None)  # the scheduler's base is this training's lr
        restarts = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(self.optimizer, T_0=1, T_mult=2,
                                                                        eta_min=self.hp["min_lr"])

        def at_pass(index: int) -> None:
            if index < 2:
                for group in self.optimizer.param_groups:
                    group["lr"] = base * (0.1 if index == 0 else 1.0)
            else:
                restarts.step()
        return at_pass

    def extra_state(self):
        return {"images": self.images, "labels": self.labels, "task_ids": self.task_ids, "count": self.count}

    def load_extra_state(self, state):
        self.images.copy_(state["images"])
        self.labels.copy_(state["labels"])
        self.task_ids.copy_(state["task_ids"])
        self.count = int(state["count"])


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator):
    """CutMix (Yun et al., ICCV 2019) as the authors' utils.py cutmix_data: lam ~ Beta(alpha, alpha); a box
    of area (1 - lam) centred uniformly (clipped to the image) is pasted from a permutation of the batch,
    and lam becomes the share of the image left unpasted. Returns (images, pasted labels, lam).
    Hand-written rather than torchvision's v2.CutMix: that one draws from torch's global generator,
    which a resumed run does not restore; here every draw comes from the run's generator (lam by the
    inverse of Beta's CDF, scipy)."""
    device = generator.device
    lam = float(beta_distribution.ppf(float(torch.rand((), generator=generator, device=device)), alpha, alpha))
    perm = torch.randperm(len(x), generator=generator, device=device)
    width, height = x.shape[2], x.shape[3]  # the authors' rand_bbox names dims 2 and 3 W and H
    cut = math.sqrt(1.0 - lam)
    cut_w, cut_h = int(width * cut), int(height * cut)
    cx = int(torch.randint(width, (1,), generator=generator, device=device))
    cy = int(torch.randint(height, (1,), generator=generator, device=device))
    x1, x2 = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    y1, y2 = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    mixed = x.clone()
    mixed[:, :, x1:x2, y1:y2] = x[perm, :, x1:x2, y1:y2]
    lam = 1.0 - (x2 - x1) * (y2 - y1) / (width * height)
    return mixed, y[perm], lam
