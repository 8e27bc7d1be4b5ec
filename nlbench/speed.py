"""``bench.py speed``: training throughput side by side, same backbone, batch size and data.

1. native: this suite's loop (uint8 data on the device, batched augmentation there, no host sync
   per step; bf16 autocast and channels_last on CUDA);
2. dataloader: a plain PyTorch loop over a torchvision-style Dataset and DataLoader with the usual
   per-sample PIL transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
   Normalize), same model, optimizer and numerics as native;
3. avalanche: Avalanche's ``Naive`` strategy (its own loop, fp32) on the same Dataset.
Each is timed over the same number of training images after a short warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import time

import torch
import torch.nn.functional as F

from . import config as C
from .data import DATA_CHOICES, MEAN, STD, load_data, select_data
from .errors import UserError
from .records import atomic_write_text, versions
from .registry import BACKBONES, load_builtins
from .runner import RunState, _train_task, amp_context, build_scenario, resolve_device
from .strategy import RunContext

# Dense bf16 tensor-core peak (TFLOP/s) by device name, from the vendors' data sheets.
BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "4090": 165.0}


class UInt8Cifar(torch.utils.data.Dataset):
    """The same uint8 images as a classic per-sample Dataset (what DataLoader pipelines use)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x = x.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, C) for PIL
        self.targets = y.tolist()
        self.transform = transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), self.targets[i]


def standard_transform():
    from torchvision import transforms as T
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_native(cfg, device, data, n_images, warmup_steps=10) -> tuple[float, float]:
    torch.manual_seed(0)
    scenario = build_scenario("cifar10", "standard", cfg, 0, device, data)
    task = scenario.tasks[0]
    task.train_idx = task.train_idx[:n_images]
    g = torch.Generator(device=device).manual_seed(0)
    backbone = BACKBONES[cfg["backbone"]["name"]].obj
    from .data import Augmenter
    ctx = RunContext(cfg, scenario, device, g, lambda: backbone(num_classes=10, width=cfg["backbone"]["width"]),
                     Augmenter(g))
    from .registry import STRATEGIES
    strategy = STRATEGIES["adam"].obj(ctx)
    amp = amp_context(device, cfg)
    for _ in range(warmup_steps):  # warm-up: cuDNN autotuning, allocator
        idx = task.train_idx[: cfg["train"]["batch_size"]]
        with amp():
            strategy.observe(_batch(ctx, scenario, idx))
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    state = RunState()
    guard = type("NoSignal", (), {"signum": None})()
    _train_task(strategy, task, scenario, ctx, state, amp, guard, None, g, "native", progress=False)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return state.images / state.train_seconds, peak


def _batch(ctx, scenario, idx):
    from .strategy import Batch
    t = torch.zeros_like(idx)
    raw = scenario.train_x[idx]
    return Batch(ctx.prepare(raw, t), scenario.train_y[idx], raw, t)


def _model(cfg, device):
    torch.manual_seed(0)
    model = BACKBONES[cfg["backbone"]["name"]].obj(num_classes=10, width=cfg["backbone"]["width"]).to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def time_dataloader(cfg, device, dataset, workers, n_images) -> float:
    model = _model(cfg, device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["train"]["lr"])
    bs = cfg["train"]["batch_size"]
    loader = torch.utils.data.DataLoader(dataset, batch_size=bs, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", drop_last=False,
                                         persistent_workers=False)
    amp = amp_context(device, cfg)
    seen, t0 = 0, None
    for i, (x, y) in enumerate(loader):
        if i == 3:  # warm-up (workers started, cuDNN tuned), then time the rest
            _sync(device)
            t0, seen = time.perf_counter(), 0
        x = x.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with amp():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        seen += len(y)
    _sync(device)
    return seen / (time.perf_counter() - t0)


def time_avalanche(cfg, device, dataset, workers) -> float:
    try:
        from avalanche.benchmarks import nc_benchmark
        from avalanche.training.plugins import EvaluationPlugin
        from avalanche.training.supervised import Naive
    except ImportError as exc:
        raise UserError(f"avalanche-lib is not importable ({exc}); install it (pip install avalanche-lib) "
                        "or pass --skip-avalanche") from exc
    bench = nc_benchmark(dataset, dataset, n_experiences=1, task_labels=False, seed=0)
    model = _model(cfg, device).to(memory_format=torch.contiguous_format)
    bs = cfg["train"]["batch_size"]
    strategy = Naive(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=cfg["train"]["lr"]),
                     train_mb_size=bs, train_epochs=1, eval_mb_size=bs, device=device,
                     evaluator=EvaluationPlugin(loggers=[]))
    _sync(device)
    t0 = time.perf_counter()
    strategy.train(bench.train_stream[0], num_workers=workers)
    _sync(device)
    return len(dataset) / (time.perf_counter() - t0)


def flops_per_image(cfg, device) -> float:
    """Training FLOPs (forward + backward) per image, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode
    model = _model(cfg, device)
    x = torch.randn(8, 3, 32, 32, device=device)
    y = torch.zeros(8, dtype=torch.long, device=device)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), y).backward()
    return counter.get_total_flops() / 8


def bf16_peak(device) -> float | None:
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench.py speed", description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--profile", choices=C.PROFILES, help="default: paper on CUDA, quick on the CPU")
    ap.add_argument("--images", type=int, help="training images timed per loop (default 5000 CPU, 50000 CUDA)")
    ap.add_argument("--workers", type=int, help="DataLoader workers (default: the number of CPU cores, at most 8)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides (train.batch_size=...)")
    ap.add_argument("--data", default="auto", choices=DATA_CHOICES, help="as for a run (default auto)")
    ap.add_argument("--data-root")
    ap.add_argument("--no-download", action="store_true")
    ap.add_argument("--skip-avalanche", action="store_true")
    ap.add_argument("--out", default="results/speed.json")
    args = ap.parse_args(argv)
    load_builtins()
    device = resolve_device(args.device)
    profile = args.profile or ("paper" if device.type == "cuda" else "quick")
    n_images = args.images or (50000 if device.type == "cuda" else 5000)
    if n_images <= 0:
        raise UserError(f"--images must be positive, got {n_images}")
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    sets = C.parse_sets(args.set)
    sets.setdefault("data", {})["train_per_class"] = max(1, -(-n_images // 10))
    cfg = C.resolve("cifar10", "adam", profile, sets)
    data = select_data(args.data, args.data_root, not args.no_download)
    print(data.announce())
    arrays = load_data(data)
    x, y = arrays.train_x[:n_images], arrays.train_y[:n_images]
    dataset = UInt8Cifar(x, y, standard_transform())
    print(f"speed: {cfg['backbone']['name']} (width {cfg['backbone']['width']}), batch {cfg['train']['batch_size']}, "
          f"{len(y)} images, device {device}, {workers} DataLoader workers")
    native, peak = time_native(cfg, device, data, n_images)
    print(f"  native      {native:10.0f} images/s")
    loader = time_dataloader(cfg, device, dataset, workers, n_images)
    print(f"  dataloader  {loader:10.0f} images/s")
    aval = None
    if not args.skip_avalanche:
        aval = time_avalanche(cfg, device, dataset, workers)
        print(f"  avalanche   {aval:10.0f} images/s")
    result = {"device": (f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda"
                         else f"cpu:{os.cpu_count()} cores"),
              "profile": profile, "backbone": cfg["backbone"]["name"], "width": cfg["backbone"]["width"],
              "batch_size": cfg["train"]["batch_size"], "images": len(y), "dataloader_workers": workers,
              "data_set": data.kind, "data_source": arrays.source,
              "native_images_per_s": native, "dataloader_images_per_s": loader, "avalanche_images_per_s": aval,
              "native_over_dataloader": native / loader,
              "native_over_avalanche": native / aval if aval else None,
              "numerics": {"native": "bf16 autocast + channels_last" if device.type == "cuda" else "fp32",
                           "dataloader": "same as native", "avalanche": "fp32 (its default loop)"},
              "torch_threads": torch.get_num_threads(), "versions": versions()}
    if device.type == "cuda":
        flops = flops_per_image(cfg, device)
        peak_tflops = bf16_peak(device)
        achieved = flops * native / 1e12
        result.update({"train_flops_per_image": flops, "achieved_tflops": achieved, "bf16_peak_tflops": peak_tflops,
                       "fraction_of_bf16_peak": achieved / peak_tflops if peak_tflops else None,
                       "peak_memory_mb": peak})
        print(f"  achieved {achieved:.1f} TFLOP/s" + (f" = {100 * achieved / peak_tflops:.1f}% of bf16 peak "
              f"{peak_tflops:.0f}" if peak_tflops else "") + f"; peak memory {peak:.0f} MB")
    print(f"  ratios: native/dataloader {result['native_over_dataloader']:.2f}x" +
          (f", native/avalanche {result['native_over_avalanche']:.2f}x" if aval else ""))
    out = pathlib.Path(args.out)
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0
