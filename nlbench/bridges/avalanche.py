"""Avalanche in both directions (avalanche-lib, imported lazily: only when this module is used).

- ``--strategy avalanche:NAME`` runs any class of ``avalanche.training.supervised`` on our
  scenarios: same backbone, optimizer, batch size, epochs and augmentation as our strategies, and
  evaluation by our evaluator, so records and metrics are directly comparable with ours.
- ``to_avalanche_benchmark(scenario)`` turns one of our scenarios into an Avalanche benchmark, and
  ``levelled_model_and_optimizer("nested" | "cms" | "nested-cms")`` gives a model and an optimizer
  that Avalanche's ``SupervisedTemplate`` (e.g. ``Naive``) accepts, with our level machinery inside.

How our augmentation reaches Avalanche's loop: Avalanche datasets hold our raw uint8 images with
one extra channel carrying the task index, (N, 4, 32, 32); the model Avalanche sees
(``PreparedInput``) splits it off and applies our batched augmentation, the task's pixel
permutation and normalisation on the device. Replayed samples therefore keep their own task's
permutation. A batch is prepared once: a copy of the model that Avalanche keeps (LwF's and iCaRL's
previous model) sees the same augmented images as the model in training, as it does in Avalanche,
where the dataset's transforms augment. Avalanche's own checkpointing is not used (it is broken on
current torch) and its plugins' state (memories, previous models) is not ours to save, so the runner
keeps no checkpoint of an Avalanche run: an interrupted one starts again from the beginning.
"""
from __future__ import annotations

import inspect
import json
import warnings

import torch
from torch import nn

from nlbench.errors import UserError
from nlbench.nested.levels import LevelOptimizer
from nlbench.registry import AVALANCHE_PREFIX, BACKBONES, STRATEGIES, Entry, lookup, register_strategy
from nlbench.training.strategy import RunContext, Strategy

# Avalanche's strategies that have a twin among ours: scenarios/campaigns/avalanche-parity.yaml pairs them.
# Set by us from our config: never constructor arguments a user passes with --set.
RESERVED = {"model", "optimizer", "criterion", "train_mb_size", "train_epochs", "eval_mb_size", "device",
            "plugins", "evaluator", "eval_every", "peval_mode", "kwargs", "base_kwargs", "self"}
# Checked on the synthetic data by tests/test_avalanche.py; `bench.py --list` shows these.
KNOWN_WORKING = ["Naive", "EWC", "SynapticIntelligence", "LwF", "Replay", "GDumb", "AGEM", "MAS", "ER_ACE", "DER",
                 "Cumulative", "ICaRL"]
NEEDS = {"GEM": "the 'quadprog' package (pip install quadprog), which avalanche-lib does not install",
         "PNNStrategy": "its own multi-head progressive network, not our backbone",
         "AR1": "its own MobileNet with latent replay layers", "StreamingLDA": "a fixed feature extractor",
         "JointTraining": "the whole stream at once: use our 'joint'", "GenerativeReplay": "a generator model",
         "VAETraining": "a VAE", "AETraining": "an autoencoder", "ExpertGateStrategy": "an expert model per task",
         "LearningToPrompt": "a vision transformer", "PackNet": "a PackNet-wrapped model",
         "FeatureReplay": "a model split into feature extractor and head", "OnlineNaive": "an online stream"}


# Avalanche's own chatter, harmless here: qpsolvers (pulled in for GEM) warns at import that it has
# no solver, and every EvaluationPlugin without loggers warns that metrics will not be logged
# (we evaluate with our own loop). Silenced once here instead of printed on every run.
QUIET = [("no QP solver found", UserWarning), ("No loggers specified", UserWarning)]


def silence_avalanche_warnings():
    for message, category in QUIET:
        warnings.filterwarnings("ignore", message=message, category=category)


def _avalanche():
    silence_avalanche_warnings()
    try:
        import avalanche.training.supervised as supervised
        from avalanche.training.plugins import EvaluationPlugin
    except Exception as exc:  # not installed (ImportError), or torchvision broken beneath it (RuntimeError)
        raise UserError(avalanche_unavailable(exc)) from exc
    return supervised, EvaluationPlugin


def avalanche_unavailable(exc: BaseException) -> str:
    """One line: why avalanche-lib cannot be used here, and what to do."""
    if isinstance(exc, ImportError) and "avalanche" in str(exc):
        return f"avalanche-lib is not importable ({exc}): install it with pip install avalanche-lib"
    from nlbench.training.data import torchvision_problem
    broken = torchvision_problem()
    if broken:
        return f"avalanche-lib cannot import because {broken}"
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"avalanche-lib does not import ({type(exc).__name__}: {first}): reinstall it with pip install avalanche-lib"


def avalanche_problem() -> str | None:
    """None when Avalanche's strategies can be used, else the one-line reason (tests skip with it,
    --list shows it)."""
    try:
        _avalanche()
    except UserError as exc:
        return str(exc)
    return None


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError):
        return False


def constructor_defaults(cls, reserved=frozenset()) -> dict:
    """The Avalanche strategy's own constructor arguments, with their defaults (None = required);
    ``reserved``: more arguments that the adapter sets itself."""
    out = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name in RESERVED | reserved or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is inspect.Parameter.empty:
            out[name] = None
        elif _jsonable(p.default):
            out[name] = p.default
    return out


def required_args(cls, reserved=frozenset()) -> list[str]:
    return [n for n, p in inspect.signature(cls.__init__).parameters.items()
            if n not in RESERVED | reserved and p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]


def register(name: str) -> Entry:
    """Create and register the entry for ``avalanche:NAME`` on first use."""
    cls_name = name[len(AVALANCHE_PREFIX):]
    supervised, _ = _avalanche()
    cls = getattr(supervised, cls_name, None)
    if cls is None or not inspect.isclass(cls):
        valid = ", ".join(AVALANCHE_PREFIX + n for n in KNOWN_WORKING)
        raise UserError(f"unknown Avalanche strategy '{cls_name}'; working ones: {valid}")
    if cls_name in NEEDS:
        raise UserError(f"avalanche:{cls_name} needs {NEEDS[cls_name]}; it cannot run on our scenarios as is")
    base = ADAPTERS.get(cls_name, AvalancheStrategy)
    adapter = type(f"Avalanche{cls_name}", (base,), {
        "avalanche_class": cls, "defaults": {**constructor_defaults(cls, base.set_here), **base.own_defaults},
        "__doc__": f"Avalanche's {cls_name} strategy, run through the bridge."})
    register_strategy(name, f"Avalanche's {cls_name} (avalanche-lib), our data, backbone and evaluation")(adapter)
    return STRATEGIES[name]


class BatchPreparation:
    """Our preparation of Avalanche's raw batches, once per batch: the same batch object handed to the
    model again (by a copy Avalanche keeps of it, e.g. LwF's or iCaRL's previous model, whatever its
    mode) gets the images prepared the first time. In Avalanche the dataset's transforms augment, so
    both models see one augmented batch; preparing it anew would draw a second augmentation (equal to
    the first only while a copied generator happens to stay in step). Shared, not copied, when
    Avalanche deep-copies the model (and with it the run's data)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.last: tuple[torch.Tensor, torch.Tensor] | None = None

    def __deepcopy__(self, memo):
        return self

    def __call__(self, raw: torch.Tensor, augment: bool) -> torch.Tensor:
        if self.last is not None and self.last[0] is raw:
            return self.last[1]
        x = self.ctx.prepare(raw[:, :3], raw[:, 3, 0, 0].long(), augment=augment)
        self.last = (raw, x)
        return x


class PreparedInput(nn.Module):
    """What Avalanche calls: (B, 4, 32, 32) uint8 (image + task-index channel) -> our prepared input
    -> ``model``. Augmentation only in training mode, as in our own loop."""

    def __init__(self, model: nn.Module, ctx):
        super().__init__()
        self.model = model
        self.preparation = BatchPreparation(ctx)

    def forward(self, x):
        if x.dtype == torch.uint8 and x.shape[1] == 4:
            x = self.preparation(x, augment=self.training)
        return self.model(x)


def _task_dataset(scenario, task_index: int, idx: torch.Tensor, train: bool):
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
    x = (scenario.train_x if train else scenario.test_x)[idx].cpu()
    y = (scenario.train_y if train else scenario.test_y)[idx].cpu()
    channel = torch.full((len(idx), 1, 32, 32), task_index, dtype=torch.uint8)
    return _make_taskaware_tensor_classification_dataset(torch.cat([x, channel], 1), y)


def to_avalanche_benchmark(scenario):
    """One Avalanche experience per task of our scenario (inputs: uint8 image + task channel;
    wrap the model in ``PreparedInput`` to train on them). A class-incremental scenario's benchmark
    also tells what Avalanche's own class-incremental ones (``nc_benchmark``) do, and its iCaRL reads:
    the number of classes of each experience and the classes in the order they arrive."""
    from avalanche.benchmarks import dataset_benchmark
    train = [_task_dataset(scenario, t.index, t.train_idx, True) for t in scenario.tasks]
    test = [_task_dataset(scenario, t.index, t.test_idx, False) for t in scenario.tasks]
    benchmark = dataset_benchmark(train, test)
    if "class_il" in scenario.settings:
        benchmark.n_classes_per_exp = [len(t.classes) for t in scenario.tasks]
        benchmark.classes_order = [c for t in scenario.tasks for c in t.classes]
    return benchmark


class AvalancheStrategy(Strategy):
    """Adapter: our runner calls ``train_task``; Avalanche's own loop does the epochs."""

    avalanche_class = None
    group = "avalanche"
    own_loop = True  # Avalanche's loop does the epochs
    set_here: frozenset = frozenset()  # constructor arguments, besides RESERVED, that the adapter sets
    own_defaults: dict = {}            # the adapter's defaults for arguments Avalanche requires

    @classmethod
    def check(cls, hp):
        missing = [n for n in required_args(cls.avalanche_class, cls.set_here) if hp.get(n) is None]
        if missing:
            name = cls.avalanche_class.__name__
            raise UserError(f"avalanche:{name} needs {', '.join('strategy.' + m for m in missing)}; "
                            f"e.g. --set strategy.{missing[0]}=VALUE")

    def __init__(self, ctx, **hp):
        super().__init__(ctx, **hp)
        _, EvaluationPlugin = _avalanche()
        self.optimizer = ctx.make_optimizer(self.model.parameters())
        t = ctx.train
        self.avalanche = self.avalanche_class(
            optimizer=self.optimizer, train_mb_size=t["batch_size"], train_epochs=t["epochs"],
            eval_mb_size=t["eval_batch_size"], device=ctx.device, evaluator=EvaluationPlugin(loggers=[]),
            **self.model_arguments(), **{k: v for k, v in hp.items() if v is not None})
        self.benchmark = None

    def model_arguments(self) -> dict:
        """The network (and loss) Avalanche's constructor takes: our backbone behind ``PreparedInput``."""
        return {"model": PreparedInput(self.model, self.ctx), "criterion": nn.CrossEntropyLoss()}

    def train_task(self, task) -> int:
        """Train on one task with Avalanche's loop; returns the number of images seen."""
        if self.benchmark is None:
            self.benchmark = to_avalanche_benchmark(self.ctx.scenario)
        if len(task.task_indices) > 1:  # a merged stage: not meaningful for Avalanche strategies
            raise UserError("Avalanche strategies train task by task; use our 'joint' for joint training")
        experience = self.benchmark.train_stream[task.index]
        self.avalanche.train(experience, num_workers=0)
        return len(experience.dataset) * self.ctx.train["epochs"]

    def observe(self, batch):
        raise NotImplementedError("Avalanche strategies train through train_task")

    def evaluation_model(self) -> nn.Module:
        """The network Avalanche trains now: some strategies replace ``strategy.model`` (GDumb starts
        each experience from a copy of the initial network), so ours may no longer be the one trained."""
        trained = self.avalanche.model
        return trained.model if isinstance(trained, PreparedInput) else trained


class FeaturesOf(nn.Module):
    """A backbone's ``features`` as a module of its own (Avalanche's iCaRL takes the feature extractor
    and the classifier apart)."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.network = network

    def forward(self, x):
        return self.network.features(x)


# Below any minus-distance between unit vectors (at least -2): the score of a class Avalanche has no mean for.
UNSEEN_CLASS_SCORE = -3.0


class NearestMeanOfExemplars(nn.Module):
    """Avalanche's iCaRL as our evaluator reads it: our prepared input -> the backbone's features ->
    Avalanche's NCM classifier (minus the distance to each class mean it holds), widened to the
    scenario's classes if it holds fewer. Kept as Avalanche has it: from the first task on, its iCaRL
    gives every class of the benchmark a mean, zeros for the classes not seen yet, which score -1
    against the unit-length features and so beat a seen class whose mean is further than 1."""

    def __init__(self, network: nn.Module, ncm: nn.Module, num_classes: int):
        super().__init__()
        self.features, self.ncm, self.num_classes = FeaturesOf(network), ncm, num_classes

    def forward(self, x):
        scores = self.ncm(self.features(x))
        out = scores.new_full((len(x), self.num_classes), UNSEEN_CLASS_SCORE)
        out[:, :scores.shape[1]] = scores
        return out


class AvalancheICaRLAdapter(AvalancheStrategy):
    """Avalanche's ICaRL on our backbone: its ``features`` as the feature extractor, its ``head`` as the
    classifier trained with iCaRL's loss; evaluated by nearest mean of exemplars once Avalanche has
    class means (after the first task), by the network's own head before (what our ``icarl`` does).
    ``fixed_memory`` defaults to True: one memory of ``memory_size`` images shared by the classes seen,
    as in the iCaRL paper and our ``icarl`` (Avalanche gives each class ceil(memory_size / classes), we
    floor). Avalanche stores the exemplars as raw images, so replayed ones are augmented like ours."""

    set_here = frozenset({"feature_extractor", "classifier", "buffer_transform"})
    own_defaults = {"fixed_memory": True}

    def model_arguments(self) -> dict:
        if "class_il" not in self.ctx.scenario.settings:
            raise UserError("avalanche:ICaRL needs a class-incremental scenario (each class in one task), "
                            "e.g. --scenario split-cifar")
        return {"feature_extractor": PreparedInput(FeaturesOf(self.model), self.ctx),
                "classifier": self.model.head, "buffer_transform": None}

    def evaluation_model(self) -> nn.Module:
        ncm = self.avalanche.model.eval_classifier
        if not ncm.class_means_dict:
            return self.model
        return NearestMeanOfExemplars(self.model, ncm, self.ctx.num_classes)


# Avalanche strategies whose constructor takes more than one network, or other things we must build.
ADAPTERS = {"ICaRL": AvalancheICaRLAdapter}


def levelled_model_and_optimizer(name: str = "nested", backbone: str = "cnn", width: int = 32, lr: float = 1e-3,
                                 batch_size: int = 32, device="cpu", **hp):
    """Our ``nested`` / ``cms`` / ``nested-cms`` for plain Avalanche code: returns ``(model, optimizer)``
    for ``SupervisedTemplate``/``Naive``. The optimizer's ``step()`` runs our level schedule (Eq. 71)."""
    from nlbench.training.config import merge
    from nlbench.training import models  # noqa: F401  (registers the backbones)
    from nlbench.strategies import nested, cms, nested_cms, nested_blog  # noqa: F401  (register the level strategies)
    entry = lookup(STRATEGIES, "strategy", name)
    params = merge(entry.defaults, hp, "strategy")
    entry.obj.check(params)
    device = torch.device(device)
    make = BACKBONES[backbone].obj
    from nlbench.training.config import DEFAULTS
    train = {**DEFAULTS["train"], "lr": lr, "batch_size": batch_size, "optimizer": "adam", "channels_last": False}
    ctx = RunContext({"train": train}, None, device, torch.Generator(device=device),
                     lambda: make(num_classes=10, width=width), None)
    strategy = entry.obj(ctx, **params)
    return strategy.model, LevelOptimizer(strategy.levels)
