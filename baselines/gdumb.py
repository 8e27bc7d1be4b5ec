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

The authors' own CIFAR-10 script (drimpossible/GDumb ``scripts/replicate.sh``, ``src/main.py``)
trains once, on the first memory_size / 10 images of each class, for 256 passes with SGD 0.05 and
momentum 0.9, warm restarts and CutMix: an offline protocol this strategy does not reproduce.
Host-side sampling per sample: not graph-safe, one seed per process.
"""
import torch
import torch.nn.functional as F

from nlbench import Strategy, register_strategy, require


@register_strategy("gdumb")
class GDumb(Strategy):
    """GDumb: a class-balanced memory, and a network trained from scratch on it alone."""

    label, group, order = "GDumb", "baseline", 49
    skip_on_one_task = False
    defaults = {"buffer_size": 500, "passes": 70, "clip": 10.0}

    @classmethod
    def check(cls, hp):
        for key in ("buffer_size", "passes"):
            require(isinstance(hp[key], int) and not isinstance(hp[key], bool) and hp[key] > 0,
                    f"strategy.{key} must be a positive integer, got {hp[key]!r}")
        require(isinstance(hp["clip"], (int, float)) and hp["clip"] > 0,
                f"strategy.clip must be a positive number, got {hp['clip']!r}")

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
        self.images[slot], self.labels[slot], self.task_ids[slot] = image, label, task

    def observe(self, batch):
        for image, label, task in zip(batch.raw, batch.y.tolist(), batch.task.tolist()):
            self.offer(image, label, task)
        return torch.zeros((), device=self.ctx.device)  # no step on the stream

    # ------------------------------------------------------------------ training on it
    def after_task(self, task):
        """A network initialised afresh (from the run's generator, so a resumed run draws the same),
        trained on the memory alone."""
        seed = int(torch.randint(2 ** 62, (1,), generator=self.ctx.generator, device=self.ctx.device))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = self.ctx.make_backbone()
        self.ctx.model = self.model  # make_backbone registers the network it builds: ours stays the run's
        self.model.load_state_dict(fresh.state_dict())  # the same module: its optimizer follows
        self.optimizer.state.clear()  # a fresh optimizer too (momentum, Adam's moments and step count)
        n, bs = self.count, self.ctx.train["batch_size"]
        self.model.train()
        for _ in range(self.hp["passes"]):
            self.ctx.check_stop()  # minutes of work: a stop request gives up here (resume redoes it)
            order = torch.randperm(n, generator=self.ctx.generator, device=self.ctx.device)
            for start in range(0, n - bs + 1, bs):  # the last partial batch dropped
                rows = order[start:start + bs]
                x = self.ctx.prepare(self.images[rows], self.task_ids[rows])
                self.optimizer.zero_grad(set_to_none=True)
                F.cross_entropy(self.model(x), self.labels[rows]).backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.hp["clip"])
                self.optimizer.step()

    def extra_state(self):
        return {"images": self.images, "labels": self.labels, "task_ids": self.task_ids, "count": self.count}

    def load_extra_state(self, state):
        self.images.copy_(state["images"])
        self.labels.copy_(state["labels"])
        self.task_ids.copy_(state["task_ids"])
        self.count = int(state["count"])
