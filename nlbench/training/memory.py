"""Memory a run needs, computed from its model and optimizers, beside what CUDA measured.

The blog this suite tests claims that Nested Learning needs less memory than standard training.
A breakdown says where memory goes: parameters, their gradients, optimizer states (Adam keeps two
tensors per parameter, SGD with momentum one, plain SGD none), the level accumulators of
multi-timescale strategies (one tensor per parameter of every level with a period > 1), the
strategy's own state (a replay buffer, say) and the activations autograd saves for the backward
pass of one training batch (counted with saved-tensor hooks on a copy of the model, so that the
run itself is untouched). Measured peaks include what the breakdown does not: cuDNN workspaces,
the evaluation batches, the caching allocator's slack (reserved minus allocated).
"""
from __future__ import annotations

import copy

import torch

MB = 2 ** 20


def _bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def optimizer_state_bytes(opt: torch.optim.Optimizer) -> int:
    """State an optimizer will hold once it has stepped (states are created lazily)."""
    params = [p for g in opt.param_groups for p in g["params"]]
    per_param = 0
    if isinstance(opt, torch.optim.Adam):
        per_param = 2  # exp_avg, exp_avg_sq
    elif isinstance(opt, torch.optim.SGD):
        per_param = 1 if any(g["momentum"] > 0 for g in opt.param_groups) else 0
    return per_param * _bytes(params)


def activation_bytes(model: torch.nn.Module, x: torch.Tensor, amp) -> int:
    """Bytes of the tensors autograd saves in one forward pass of ``x`` (unique storages)."""
    storages: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t

    clone = copy.deepcopy(model)  # train mode would move the run's BatchNorm statistics
    clone.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), amp():
        clone(x)
    return sum(storages.values())


def breakdown(strategy, ctx, scenario, amp) -> dict:
    """Megabytes by kind, computed before the first step (sizes, not measurements)."""
    model = strategy.model
    params = list(model.parameters())
    optimizers = [opt for opt, _ in ctx.optimizers]
    schedules = [getattr(strategy, "levels", None), *(getattr(v, "schedule", None) for v in vars(strategy).values())]
    accum = [a for s in schedules for lv in getattr(s, "levels", []) if lv.accum is not None for a in lv.accum]
    extra = [v for v in strategy.extra_state().values() if torch.is_tensor(v)]
    g = torch.Generator().manual_seed(0)
    raw = torch.randint(0, 256, (ctx.train["batch_size"], 3, 32, 32), generator=g, dtype=torch.uint8).to(ctx.device)
    x = ctx.prepare(raw, torch.zeros(len(raw), dtype=torch.long, device=ctx.device), augment=False)
    parts = {
        "parameters": _bytes(params),
        "gradients": _bytes(p for p in params if p.requires_grad),
        "optimizer_states": sum(optimizer_state_bytes(o) for o in optimizers),
        "level_accumulators": _bytes(accum),
        "model_buffers": _bytes(model.buffers()),
        "strategy_state": _bytes(extra),
        "activations_one_batch": activation_bytes(model, x, amp),
        "data_on_device": _bytes([scenario.train_x, scenario.test_x]) if scenario.train_x.device.type == "cuda" else 0,
    }
    out = {k: v / MB for k, v in parts.items()}
    out["total"] = sum(out.values())
    return out


def measured(device: torch.device) -> dict | None:
    """CUDA's peaks since the run started (None on the CPU, where peak_memory_mb holds the RSS)."""
    if device.type != "cuda":
        return None
    return {"cuda_max_allocated": torch.cuda.max_memory_allocated(device) / MB,
            "cuda_max_reserved": torch.cuda.max_memory_reserved(device) / MB}
