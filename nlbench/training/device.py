"""The device a run uses, its numerics (bf16 autocast, CUDA graphs, threads) and its peak memory."""
from __future__ import annotations

import contextlib
import os
import resource

import torch

from nlbench.errors import UserError
from nlbench.training.strategy import RunContext, uses_levels


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA device is available; use --device cpu or auto")
    if choice not in ("cpu", "cuda"):
        raise UserError(f"unknown device '{choice}'; valid: auto, cpu, cuda")
    return torch.device(choice)


def reset_peak_memory(device: torch.device) -> None:
    """Start each run's peak from now: a sweep runs many runs in one process."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 to clear_refs resets the process's peak RSS (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    try:
        with open("/proc/self/status") as f:
            hwm = next(line for line in f if line.startswith("VmHWM:"))
        return int(hwm.split()[1]) / 1024, "process_peak_rss"
    except (OSError, StopIteration):  # not Linux: lifetime peak of the process
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss_lifetime"


def uses_cuda_graph(device: torch.device, cfg: dict, strategy_cls) -> bool:
    """auto: on for CUDA when the strategy declares its step graph-safe; true insists."""
    choice = cfg["train"]["cuda_graph"]
    graph_safe_for = getattr(strategy_cls, "graph_safe_for", None)
    safe = graph_safe_for(cfg["strategy"]) if graph_safe_for else bool(getattr(strategy_cls, "graph_safe", False))
    if choice is True and (device.type != "cuda" or not safe):
        raise UserError("train.cuda_graph=true needs --device cuda and a strategy whose step is graph-safe "
                        f"({strategy_cls.__name__} is{'' if safe else ' not'}); use train.cuda_graph=auto")
    if choice is True and uses_levels(cfg):
        raise UserError("train.cuda_graph=true cannot record a level schedule (train.levels, backbone.cms): use "
                        "train.cuda_graph=auto")
    return (choice in ("auto", True) and device.type == "cuda" and safe and not cfg["train"]["compile"]
            and not uses_levels(cfg))  # a level schedule branches on its step count in Python


def numerics(device: torch.device, cfg: dict, ctx: RunContext, graphs: bool) -> dict:
    """Every choice that changes the arithmetic or its speed, for the record."""
    t = cfg["train"]
    return {"bf16_autocast": uses_bf16(device, cfg), "channels_last": ctx.channels_last, "compile": t["compile"],
            "cuda_graph": graphs,
            "optimizer_impl": "SGD fused, Adam foreach capturable" if graphs else "foreach",
            "cudnn_benchmark": device.type == "cuda",
            "cpu_threads": torch.get_num_threads()}  # CPU sums round differently per thread count


def uses_bf16(device: torch.device, cfg: dict) -> bool:
    return device.type == "cuda" and cfg["train"]["amp"] in ("auto", True)


def amp_context(device: torch.device, cfg: dict):
    """A factory of the context the forward passes run in: bf16 autocast on CUDA, nothing on the CPU."""
    if uses_bf16(device, cfg):  # no weight-cast cache: a CUDA graph must not capture a stale cast
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    return contextlib.nullcontext


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{os.cpu_count()} cores"
