"""Optimizers of the Nested Learning ideas that torch does not ship.

- ``NestedAdam``: the source blog's ``NestedOptimizer``, an Adam written out by hand whose first
  moment m ("fast memory") is updated on every call and whose second moment v ("slow memory") only
  on "slow" calls; both bias corrections use the optimizer's own call count t. The blog's loop
  never skips a slow update (so as published it is per-layer Adam); ``slow_period`` P makes v
  update on calls 1, 1 + P, 1 + 2P, ... (the first call always, so v is never 0 when used).
- ``M3``: the paper's multi-scale momentum Muon (Alg. 1, Eq. 75), with exponential moving
  averages where the paper writes plain sums (as community versions do; stated in docs/nested-learning.md):
  every step M1 <- b1 M1 + (1 - b1) g and V <- b2 V + (1 - b2) g^2, and the chunk's gradients are
  summed; every ``period`` steps M2 <- b3 M2 + (1 - b3) (that sum). The step is
  theta <- theta - lr (NS(M1_hat) + alpha NS(M2)) / (sqrt(V_hat) + eps), with Adam's bias
  corrections on M1 and V, NS the Newton-Schulz orthogonalisation (5 iterations, Muon's
  coefficients), conv weights reshaped to (C_out, C_in k_h k_w). Parameters with fewer than 2
  dimensions (biases, norms) have no orthogonal form: they get plain Adam, as Muon users do.
- ``Muon``: Jordan et al.'s Muon, the control M3 is compared with: the update torch.optim.Muon
  computes (momentum buffer B <- mu B + (1 - mu) g, Nesterov g + mu (B - g), Newton-Schulz, lr
  scaled by sqrt(max(1, rows / cols))), written here because torch's accepts 2-D parameters only:
  conv weights are reshaped to (C_out, C_in k_h k_w), as in the reference implementation.
"""
from __future__ import annotations

import math

import torch

try:  # torch >= 2.9 ships Muon's Newton-Schulz routine; reuse it, with Muon's own coefficients
    from torch.optim._muon import DEFAULT_A, DEFAULT_B, DEFAULT_C, EPS as NS_EPS, _zeropower_via_newtonschulz
except ImportError:  # pragma: no cover - older torch: the same quintic iteration, written out
    DEFAULT_A, DEFAULT_B, DEFAULT_C, NS_EPS = 3.4445, -4.7750, 2.0315, 1e-7

    def _zeropower_via_newtonschulz(grad, ns_coefficients, ns_steps, eps):
        a, b, c = ns_coefficients
        x = grad.bfloat16()
        if grad.size(0) > grad.size(1):
            x = x.T
        x = x / x.norm().clamp(min=eps)
        for _ in range(ns_steps):
            gram = x @ x.T
            x = a * x + (b * gram + c * gram @ gram) @ x
        return x.T if grad.size(0) > grad.size(1) else x


def newton_schulz(matrix: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """The orthogonalisation of a 2-D (or conv, reshaped) tensor, returned in its shape and dtype."""
    flat = matrix.reshape(matrix.shape[0], -1)
    out = _zeropower_via_newtonschulz(flat, (DEFAULT_A, DEFAULT_B, DEFAULT_C), steps, NS_EPS)
    return out.reshape(matrix.shape).to(matrix.dtype)


class NestedAdam(torch.optim.Optimizer):
    """The blog's NestedOptimizer (see the module docstring)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, slow_period: int = 1):
        if slow_period < 1:
            raise ValueError(f"slow_period must be a positive integer, got {slow_period}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "slow_period": slow_period})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                state["t"] += 1
                t = state["t"]
                state["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                if (t - 1) % group["slow_period"] == 0:  # a slow call: the second moment moves too
                    state["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                m_hat = state["m"] / (1 - b1 ** t)
                v_hat = state["v"] / (1 - b2 ** t)
                p.sub_(group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))
        return loss


class M3(torch.optim.Optimizer):
    """Multi-scale momentum Muon (see the module docstring)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999, 0.9), alpha: float = 1.0, period: int = 16,
                 eps: float = 1e-8, ns_steps: int = 5):
        if period < 1:
            raise ValueError(f"period must be a positive integer, got {period}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "alpha": alpha, "period": period, "eps": eps,
                                  "ns_steps": ns_steps})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2, b3 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g, state = p.grad, self.state[p]
                if not state:
                    state.update(t=0, m1=torch.zeros_like(p), v=torch.zeros_like(p))
                    if p.dim() >= 2:
                        state.update(m2=torch.zeros_like(p), chunk=torch.zeros_like(p))
                state["t"] += 1
                t = state["t"]
                state["m1"].mul_(b1).add_(g, alpha=1 - b1)
                state["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                m1_hat = state["m1"] / (1 - b1 ** t)
                denom = (state["v"] / (1 - b2 ** t)).sqrt_().add_(group["eps"])
                if p.dim() < 2:  # no orthogonal form: Adam
                    p.sub_(group["lr"] * m1_hat / denom)
                    continue
                state["chunk"].add_(g)
                if t % group["period"] == 0:  # the slow memory: once per chunk, from the chunk's summed gradients
                    state["m2"].mul_(b3).add_(state["chunk"], alpha=1 - b3)
                    state["chunk"].zero_()
                direction = newton_schulz(m1_hat, group["ns_steps"])
                if t >= group["period"]:
                    direction = direction + group["alpha"] * newton_schulz(state["m2"], group["ns_steps"])
                p.sub_(group["lr"] * direction / denom)
        return loss


class Muon(torch.optim.Optimizer):
    """Muon for parameters of 2 or more dimensions (see the module docstring); a test checks it
    against torch.optim.Muon on 2-D parameters."""

    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5):
        super().__init__(params, {"lr": lr, "momentum": momentum, "nesterov": nesterov, "ns_steps": ns_steps})
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() < 2:
                    raise ValueError("Muon needs parameters of 2 or more dimensions; give the others to Adam")

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            mu = group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))
                buf.lerp_(p.grad, 1 - mu)
                update = p.grad.lerp(buf, mu) if group["nesterov"] else buf
                rows, cols = p.shape[0], p[0].numel()
                p.sub_(newton_schulz(update, group["ns_steps"]), alpha=group["lr"] * math.sqrt(max(1.0, rows / cols)))
        return loss
