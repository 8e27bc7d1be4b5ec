"""Evaluating a run: accuracy on every task's test split in every setting, and the linear probes."""
from __future__ import annotations

import torch

from nlbench.training.probe import evaluate_probes, probes_on
from nlbench.training.scenarios import Scenario
from nlbench.training.strategy import RunContext


def evaluate_all(model, scenario: Scenario, ctx: RunContext, amp) -> tuple[dict[str, list[float]], list[float] | None]:
    """Accuracy (%) on every task's test split in every setting, and the linear probes' accuracy
    (None without probes), from one pass over the test images."""
    probing = probes_on(model, scenario)
    acc, features = evaluate(model, scenario, ctx, amp, keep_features=probing)
    return acc, evaluate_probes(model, scenario, ctx, amp, features) if probing else None


@torch.no_grad()
def evaluate(model, scenario: Scenario, ctx: RunContext, amp, keep_features: bool = False):
    """Accuracy (%) on every task's test split, in every setting of the scenario; with
    ``keep_features`` also each task's test features (model.features, the head's input: the probes')."""
    was_training = model.training
    model.eval()
    out = {s: [] for s in scenario.settings}
    kept = []
    bs = ctx.train["eval_batch_size"]
    for task in scenario.tasks:
        correct = {s: torch.zeros((), device=ctx.device) for s in scenario.settings}
        mask = scenario.task_mask(task)
        feats = []
        for start in range(0, len(task.test_idx), bs):
            idx = task.test_idx[start:start + bs]
            tid = torch.full_like(idx, task.index)
            with amp():
                x = ctx.prepare(scenario.test_x[idx], tid, augment=False)
                if keep_features:  # forward = head(features) for every backbone (nlbench.training.models, nlbench.nested.cms)
                    feats.append(model.features(x).float())
                    logits = model.head(feats[-1]).float()
                else:
                    logits = model(x).float()
            y = scenario.test_y[idx]
            for s in scenario.settings:
                shown = logits.masked_fill(~mask, float("-inf")) if s == "task_il" else logits
                correct[s] += (shown.argmax(1) == y).sum()
        for s in scenario.settings:  # one host sync per task and setting
            out[s].append(100.0 * correct[s].item() / max(len(task.test_idx), 1))
        if keep_features:
            kept.append(torch.cat(feats) if feats else None)
    model.train(was_training)
    return out, (kept if keep_features else None)
