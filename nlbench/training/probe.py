"""Representation retention: a linear probe per task on the frozen penultimate features
(Davari et al., "Probing Representation Forgetting in Supervised and Unsupervised Continual
Learning", CVPR 2022).

After each stage (and once before any training) every task gets its own probe: a multinomial
logistic regression on ``model.features`` (the input of the classifier), fit on that task's
held-out probe images (training images the run never trains on: ``data.probe_per_class`` per
class, see nlbench.training.splits.build_scenario) and scored on the task's test images. The probe matrix
P[i][j] (probe accuracy on task j after stage i) answers what the head's accuracy cannot: whether
the features still separate an old task's classes after the head has forgotten them.

The solver is torch's L-BFGS on the full batch (a library solver; deterministic on the CPU), on
standardised features with a small L2 penalty, so a probe costs a few milliseconds: the cost of
the probe is the forward passes over its images (``probe_per_class`` x 10 per stage for split,
x 10 x T for permuted).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

L2 = 1e-2        # penalty on the probe's weights (standardised features): keeps separable data finite, converges fast
MAX_ITER = 100   # L-BFGS iterations (a few tens suffice on 2-10 classes and <= 512 features)


def fit_probe(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> tuple:
    """(mean, std, weight, bias) of a multinomial logistic regression fit on ``features``."""
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    weight = torch.zeros(n_classes, z.shape[1], device=z.device, requires_grad=True)
    bias = torch.zeros(n_classes, device=z.device, requires_grad=True)
    solver = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=MAX_ITER, line_search_fn="strong_wolfe")

    def closure():
        solver.zero_grad()
        loss = F.cross_entropy(z @ weight.T + bias, labels) + L2 * weight.pow(2).sum()
        loss.backward()
        return loss
    with torch.enable_grad():
        solver.step(closure)
    return mean, std, weight.detach(), bias.detach()


def probe_accuracy(fit: tuple, features: torch.Tensor, labels: torch.Tensor) -> float:
    mean, std, weight, bias = fit
    pred = (((features - mean) / std) @ weight.T + bias).argmax(1)
    return 100.0 * (pred == labels).sum().item() / max(len(labels), 1)


@torch.no_grad()
def _features(model, scenario, ctx, amp, x: torch.Tensor, task_index: int) -> torch.Tensor:
    bs = ctx.train["eval_batch_size"]
    out = []
    for start in range(0, len(x), bs):
        chunk = x[start:start + bs]
        tid = torch.full((len(chunk),), task_index, dtype=torch.long, device=chunk.device)
        with amp():
            out.append(model.features(ctx.prepare(chunk, tid, augment=False)).float())
    return torch.cat(out)


def probes_on(model, scenario) -> bool:
    """Whether this run probes: the scenario holds probe images and the model exposes ``features``
    and ``head`` (every backbone of nlbench.training.models and nlbench.nested.cms does)."""
    return scenario.probe_x is not None and hasattr(model, "features") and hasattr(model, "head")


@torch.no_grad()
def evaluate_probes(model, scenario, ctx, amp, test_features: list[torch.Tensor]) -> list[float]:
    """Probe accuracy (%) on every task's test images (``test_features``: per task, the features of
    its test images, from the same evaluation pass as the accuracies)."""
    was_training = model.training
    model.eval()
    row = []
    for task, test_feats in zip(scenario.tasks, test_features):
        classes = torch.tensor(task.classes, device=scenario.probe_y.device)
        fit_idx = torch.isin(scenario.probe_y, classes).nonzero().flatten()
        # labels as positions in the task's class list: a 2-way probe for a split task, 10-way for permuted
        remap = torch.full((10,), -1, dtype=torch.long, device=classes.device)
        remap[classes] = torch.arange(len(classes), device=classes.device)
        fit = fit_probe(_features(model, scenario, ctx, amp, scenario.probe_x[fit_idx], task.index),
                        remap[scenario.probe_y[fit_idx]], len(classes))
        row.append(probe_accuracy(fit, test_feats, remap[scenario.test_y[task.test_idx]]))
    model.train(was_training)
    return row
