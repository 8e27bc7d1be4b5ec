"""EWC's Fisher and penalty against a hand computation on a tiny model."""
import importlib.util

import pytest
import torch
from torch import nn

from nlbench.plugins import BASELINES_DIR


def ewc_module():
    spec = importlib.util.spec_from_file_location("ewc_under_test", BASELINES_DIR / "ewc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fisher_is_mean_of_squared_per_sample_log_likelihood_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(7, 3), torch.randint(0, 3, (7,))
    fisher = ewc_module().empirical_fisher(model, x, y, chunk=3)  # chunks of 3, 3, 1
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(7):  # one sample at a time, by hand
        model.zero_grad()
        torch.log_softmax(model(x[i:i + 1]), -1)[0, y[i]].backward()
        for n, p in model.named_parameters():
            expected[n] += p.grad ** 2 / 7
    for n in expected:
        assert torch.allclose(fisher[n], expected[n], atol=1e-6), n


def test_confidence_weighted_fisher_weights_each_squared_gradient_by_the_true_label_probability():
    """mammoth's models/ewc_on.py: fish += p(y|x) * grad(log p(y|x))^2, averaged over the samples."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3))
    x, y = torch.randn(5, 3), torch.randint(0, 3, (5,))
    ewc = ewc_module()
    weighted = ewc.empirical_fisher(model, x, y, chunk=2, weighting="confidence-weighted")
    expected = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(5):
        model.zero_grad()
        log_p = torch.log_softmax(model(x[i:i + 1]), -1)[0, y[i]]
        log_p.backward()
        for n, p in model.named_parameters():
            expected[n] += log_p.exp().item() * p.grad ** 2 / 5
    plain = ewc.empirical_fisher(model, x, y, chunk=2)
    for n in expected:
        assert torch.allclose(weighted[n], expected[n], atol=1e-6), n
        assert (weighted[n] <= plain[n] + 1e-7).all() and weighted[n].sum() < plain[n].sum()


def test_penalty_is_half_fisher_weighted_squared_distance_summed_over_tasks():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 2.0]]))
    fishers = [{"weight": torch.tensor([[0.5, 2.0]])}, {"weight": torch.tensor([[1.0, 0.0]])}]
    anchors = [{"weight": torch.tensor([[0.0, 1.0]])}, {"weight": torch.tensor([[3.0, 2.0]])}]
    got = ewc_module().ewc_penalty(model, fishers, anchors)
    # task 1: 0.5*1^2 + 2*1^2 = 2.5 ; task 2: 1*(-2)^2 + 0 = 4 ; times 1/2
    assert got.item() == pytest.approx(0.5 * (2.5 + 4.0))
