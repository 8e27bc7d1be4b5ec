"""``bench.py speed``: training throughput side by side, same backbone, batch size and data.

1. native: this suite's step (uint8 data on the device, batched augmentation there, no host sync
   per step; bf16 autocast and channels_last on CUDA), eager and, on CUDA, replayed from a CUDA
   graph (``native_graph``); ``--parallel N`` also times N such runs at once on one device;
2. dataloader: a plain PyTorch loop over a torchvision-style Dataset and DataLoader with the usual
   per-sample PIL transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor,
   Normalize), same model, optimizer and numerics as native;
3. avalanche: Avalanche's ``Naive`` strategy (its own loop, fp32) on the same Dataset;
4. ``--seed-parallel K ...``: a seed-parallel group of K models (nlbench.training.group, strategy adam)
   against K separate runs one after another (whose images/s in sum is one run's), in sum and per model.
Each is timed over the same number of training images after a short warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nlbench.training import config as C
from nlbench.training.data import DATA_CHOICES, MEAN, STD, load_data, select_data, torchvision_module
from nlbench.errors import UserError
from nlbench.training.records import atomic_write_text, versions
from nlbench.plugins import load_builtins
from nlbench.registry import BACKBONES, STRATEGIES
from nlbench.training.runner import StepRunner, make_context
from nlbench.training.device import amp_context, resolve_device, uses_cuda_graph
from nlbench.training.splits import build_scenario

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
    T = torchvision_module("transforms")
    return T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_native(cfg, device, data, n_images, graphs: bool, start_at: float | None = None) -> tuple[float, float | None]:
    """Images/s of this suite's training step (strategy adam), timed over ``n_images`` after warm-up.

    ``start_at`` (time.time()): wait until then before timing, so that parallel processes time
    the same interval."""
    torch.manual_seed(0)
    cfg = {**cfg, "train": {**cfg["train"], "cuda_graph": graphs}}
    scenario = build_scenario("cifar10", "standard", cfg, 0, device, data)
    g = torch.Generator(device=device).manual_seed(0)
    entry = STRATEGIES["adam"]
    use_graphs = uses_cuda_graph(device, cfg, entry.obj)
    ctx = make_context(cfg, scenario, device, g, graph_capture=use_graphs)
    stepper = StepRunner(entry.obj(ctx), ctx, amp_context(device, cfg), use_graphs)
    bs = cfg["train"]["batch_size"]
    pool = scenario.tasks[0].train_idx
    zeros = torch.zeros(bs, dtype=torch.long, device=device)

    def steps(n):
        for _ in range(n):
            pick = pool[torch.randint(0, len(pool), (bs,), generator=g, device=device)]
            stepper.step(scenario.train_x[pick], scenario.train_y[pick], zeros)

    steps(StepRunner.WARMUP + 5)  # warm-up: cuDNN autotuning, allocator, the graph's recording
    _sync(device)
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    n_steps = max(1, n_images // bs)
    t0 = time.perf_counter()
    steps(n_steps)
    _sync(device)
    took = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return n_steps * bs / took, peak


def time_parallel(n_procs: int, batch_size: int, n_images: int, args, profile: str, data_kind: str) -> float:
    """Aggregate images/s of ``n_procs`` processes training at once on one device (graphs where possible)."""
    import subprocess
    import sys
    start_at = time.time() + 20 + 2 * n_procs  # every process imports, loads and warms up before then
    code = ("import sys, json; from nlbench.launchers.speed import worker; "
            "print('RESULT', json.dumps(worker(sys.argv[1:])))")
    cmd = [sys.executable, "-c", code, args.device, profile, str(batch_size), str(n_images),
           str(start_at), data_kind, args.data_root or ""]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n_procs)]
    results = []
    for p in procs:
        out, _ = p.communicate()
        line = next((x for x in out.splitlines() if x.startswith("RESULT ")), None)
        if p.returncode != 0 or line is None:
            raise UserError(f"a parallel speed worker failed (exit {p.returncode})")
        results.append(json.loads(line[7:]))
    return sum(r["images"] for r in results) / (max(r["end"] for r in results) - start_at)


def worker(argv: list[str]) -> dict:
    """One process of time_parallel: time the native step from ``start_at`` on."""
    device_name, profile, bs, n_images, start_at, data_kind, data_root = argv
    load_builtins()
    device = resolve_device(device_name)
    sets = {"data": {"train_per_class": max(1, -(-int(n_images) // 10))}, "train": {"batch_size": int(bs)}}
    cfg = C.resolve("cifar10", "adam", profile, sets)
    data = select_data(data_kind, data_root or None, False)
    time_native(cfg, device, data, int(n_images), graphs=device.type == "cuda", start_at=float(start_at))
    # a worker that was late to start ends late: the aggregate then counts its delay against it
    return {"images": max(1, int(n_images) // int(bs)) * int(bs), "end": time.time()}


def time_seed_parallel(cfg, device, data, k: int, n_images: int) -> float:
    """Images/s in sum of a seed-parallel group of ``k`` models (strategy adam, seeds 0..k-1), timed
    over about ``n_images`` images in all after warm-up; eager, as groups run."""
    from types import SimpleNamespace

    from nlbench.training.group import build_group
    scenario = build_scenario("cifar10", "standard", cfg, 0, device, data)
    members = []
    for seed in range(k):
        torch.manual_seed(seed)
        g = torch.Generator(device=device).manual_seed(seed)
        ctx = make_context(cfg, scenario, device, g)
        members.append(SimpleNamespace(strategy=STRATEGIES["adam"].obj(ctx), ctx=ctx, amp=amp_context(device, cfg)))
    group = build_group(members, list(range(k)))
    bs, pool = cfg["train"]["batch_size"], scenario.tasks[0].train_idx
    g = torch.Generator(device=device).manual_seed(0)
    zeros = torch.zeros(bs, k, dtype=torch.long, device=device)

    def steps(n):
        for _ in range(n):
            pick = pool[torch.randint(0, len(pool), (bs, k), generator=g, device=device)]
            group.stepper.step(scenario.train_x[pick], scenario.train_y[pick], zeros)

    steps(3)
    _sync(device)
    n_steps = max(3, n_images // (bs * k))
    t0 = time.perf_counter()
    steps(n_steps)
    _sync(device)
    return n_steps * bs * k / (time.perf_counter() - t0)


def measure_seed_parallel(cfg, device, data, ks: list[int], n_images: int) -> dict:
    """A group of each size K against K separate runs one after another (one run's images/s)."""
    bs = cfg["train"]["batch_size"]
    one, _ = time_native(cfg, device, data, n_images, graphs=device.type == "cuda")
    print(f"  batch {bs:4d}  one run{' (CUDA graph)' if device.type == 'cuda' else ''}: {one:10.0f} images/s "
          "(K separate runs one after another: the same in sum)", flush=True)
    rows = []
    for k in ks:
        total = time_seed_parallel(cfg, device, data, k, n_images)
        rows.append({"k": k, "images_per_s": total, "images_per_s_per_model": total / k,
                     "over_separate_runs": total / one})
        print(f"  batch {bs:4d}  group of {k:2d}: {total:10.0f} images/s in sum, {total / k:8.0f} per model, "
              f"{total / one:5.2f}x K separate runs", flush=True)
    return {"batch_size": bs, "backbone": cfg["backbone"]["name"], "width": cfg["backbone"]["width"],
            "one_run_images_per_s": one, "groups": rows}


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
    from nlbench.bridges.avalanche import silence_avalanche_warnings
    silence_avalanche_warnings()
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


@dataclass(frozen=True)
class Bench:
    """What every measurement of one `bench.py speed` call shares."""
    device: torch.device
    data: object          # nlbench.training.data.DataChoice
    x: torch.Tensor       # the images and labels timed
    y: torch.Tensor
    n_images: int
    workers: int          # DataLoader workers
    skip_avalanche: bool
    eager_only: bool
    flops: float | None   # per training image (CUDA), for the achieved TFLOP/s
    peak_tflops: float | None


def measure_batch(cfg, bench: Bench) -> dict:
    """Every loop at one batch size."""
    device, data, n_images, workers, flops, peak_tflops = (bench.device, bench.data, bench.n_images, bench.workers,
                                                           bench.flops, bench.peak_tflops)
    bs = cfg["train"]["batch_size"]
    row = {"batch_size": bs}
    row["native_images_per_s"], row["native_peak_memory_mb"] = time_native(cfg, device, data, n_images, graphs=False)
    print(f"  batch {bs:4d}  native (eager)        {row['native_images_per_s']:10.0f} images/s", flush=True)
    if device.type == "cuda" and not bench.eager_only:
        row["native_graph_images_per_s"], row["native_graph_peak_memory_mb"] = time_native(
            cfg, device, data, n_images, graphs=True)
        print(f"  batch {bs:4d}  native (CUDA graph)   {row['native_graph_images_per_s']:10.0f} images/s", flush=True)
    dataset = UInt8Cifar(bench.x, bench.y, standard_transform())
    row["dataloader_images_per_s"] = time_dataloader(cfg, device, dataset, workers, n_images)
    print(f"  batch {bs:4d}  dataloader            {row['dataloader_images_per_s']:10.0f} images/s", flush=True)
    row["avalanche_images_per_s"] = None if bench.skip_avalanche else time_avalanche(cfg, device, dataset, workers)
    if row["avalanche_images_per_s"]:
        print(f"  batch {bs:4d}  avalanche Naive       {row['avalanche_images_per_s']:10.0f} images/s", flush=True)
    best = row.get("native_graph_images_per_s") or row["native_images_per_s"]
    row["best_native_images_per_s"] = best
    row["best_over_dataloader"] = best / row["dataloader_images_per_s"]
    row["best_over_avalanche"] = best / row["avalanche_images_per_s"] if row["avalanche_images_per_s"] else None
    if flops:
        row["achieved_tflops"] = flops * best / 1e12
        row["fraction_of_bf16_peak"] = row["achieved_tflops"] / peak_tflops if peak_tflops else None
        print(f"  batch {bs:4d}  best native: {row['achieved_tflops']:.1f} TFLOP/s" +
              (f" = {100 * row['fraction_of_bf16_peak']:.1f}% of the bf16 peak" if peak_tflops else ""), flush=True)
    return row


def speed_path(out: str) -> pathlib.Path:
    """``--out`` as a file, or a folder to write speed.json into; checked before anything is measured."""
    path = pathlib.Path(out)
    if path.is_dir() or out.endswith(("/", "\\")):
        path = path / "speed.json"
    parent = next((p for p in [path.parent, *path.parent.parents] if p.exists()), pathlib.Path("."))
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UserError(f"cannot write {path} ({parent} is not a writable folder); pass --out FILE or --out FOLDER")
    return path


def batch_sizes(args, device: torch.device, base: dict, n_images: int) -> list[int]:
    sizes = args.batch_sizes or ([32, 128, 512] if device.type == "cuda" else [base["train"]["batch_size"]])
    if any(b <= 0 for b in sizes):
        raise UserError(f"--batch-sizes must be positive integers, got {sizes}")
    if n_images < 4 * max(sizes):  # 3 warm-up batches of the DataLoader loop, then at least one timed
        raise UserError(f"--images {n_images} is too few to time batch size {max(sizes)}: "
                        f"use at least {4 * max(sizes)} (4 batches)")
    return sizes


def result_header(device, profile, base, images, workers, data_set, data_source, flops, peak_tflops) -> dict:
    """What the speed file says about the setup; the measurements are appended to it."""
    return {"device": (f"cuda:{torch.cuda.get_device_name(device)}" if device.type == "cuda"
                       else f"cpu:{os.cpu_count()} cores"),
            "profile": profile, "backbone": base["backbone"]["name"], "width": base["backbone"]["width"],
            "images": images, "dataloader_workers": workers, "data_set": data_set, "data_source": data_source,
            "batches": [], "parallel_images_per_s": None, "parallel_batch_size": None,
            "train_flops_per_image": flops, "bf16_peak_tflops": peak_tflops,
            "numerics": {"native": "bf16 autocast + channels_last" if device.type == "cuda" else "fp32",
                         "native_graph": "native, each step replayed from a CUDA graph",
                         "dataloader": "same model, optimizer and numerics as native (eager)",
                         "avalanche": "fp32 (its default loop)", "optimizer": "Adam lr 1e-3, foreach",
                         "mps_daemon": os.environ.get("NLBENCH_MPS") == "1"},
            "torch_threads": torch.get_num_threads(), "versions": versions()}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench.py speed", description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--profile", help="cifar10 profile giving backbone and numerics (default: gpu-short on CUDA, quick on the CPU)")
    ap.add_argument("--batch-sizes", nargs="+", type=int, help="default: 32 128 512 on CUDA, the profile's on the CPU")
    ap.add_argument("--images", type=int, help="training images timed per loop (default 5000 CPU, 50000 CUDA)")
    ap.add_argument("--parallel", nargs="+", type=int, default=[], metavar="N",
                    help="also time N runs at once on the device at the first batch size (aggregate images/s)")
    ap.add_argument("--seed-parallel", nargs="+", type=int, default=[], metavar="K",
                    help="also time seed-parallel groups of K models against K separate runs, at every batch size")
    ap.add_argument("--only-seed-parallel", action="store_true", help="time only the seed-parallel groups")
    ap.add_argument("--workers", type=int, help="DataLoader workers (default: the number of CPU cores, at most 8)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides (train.lr=...)")
    ap.add_argument("--data", default="auto", choices=DATA_CHOICES, help="as for a run (default auto)")
    ap.add_argument("--data-root")
    ap.add_argument("--no-download", action="store_true")
    ap.add_argument("--skip-avalanche", action="store_true")
    ap.add_argument("--eager-only", action="store_true", help="no CUDA-graph measurement")
    ap.add_argument("--out", default="runs/speed.json", help="a file, or a folder to write speed.json into "
                    "(default runs/speed.json; the committed reference figures are results/speed*.json)")
    args = ap.parse_args(argv)
    load_builtins()
    device = resolve_device(args.device)
    profile = args.profile or ("gpu-short" if device.type == "cuda" else "quick")  # cifar10's short GPU protocol
    n_images = args.images or (50000 if device.type == "cuda" else 5000)
    if n_images <= 0:
        raise UserError(f"--images must be positive, got {n_images}")
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    sets = C.parse_sets(args.set)
    sets.setdefault("data", {})["train_per_class"] = max(1, -(-n_images // 10))
    base = C.resolve("cifar10", "adam", profile, sets)
    sizes = batch_sizes(args, device, base, n_images)
    out = speed_path(args.out)
    data = select_data(args.data, args.data_root, not args.no_download)
    print(data.announce())
    arrays = load_data(data)
    x, y = arrays.train_x[:n_images], arrays.train_y[:n_images]
    print(f"speed: {base['backbone']['name']} (width {base['backbone']['width']}), batches {sizes}, "
          f"{len(y)} images, device {device}, {workers} DataLoader workers", flush=True)
    flops = flops_per_image(base, device) if device.type == "cuda" else None
    peak_tflops = bf16_peak(device) if device.type == "cuda" else None
    result = result_header(device, profile, base, len(y), workers, data.kind, arrays.source, flops, peak_tflops)
    if any(k < 1 for k in args.seed_parallel):
        raise UserError(f"--seed-parallel takes positive group sizes, got {args.seed_parallel}")
    result["seed_parallel"] = []
    for bs in sizes:  # the file is rewritten after each measurement: a job cut short keeps what it measured
        cfg = C.resolve("cifar10", "adam", profile, {**sets, "train": {**sets.get("train", {}), "batch_size": bs}})
        if not args.only_seed_parallel:
            result["batches"].append(measure_batch(cfg, Bench(device, data, x, y, n_images, workers, args.skip_avalanche,
                                                              args.eager_only, flops, peak_tflops)))
            atomic_write_text(out, json.dumps(result, indent=1) + "\n")
        if args.seed_parallel:
            result["seed_parallel"].append(measure_seed_parallel(cfg, device, data, args.seed_parallel, n_images))
            atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    for n in args.parallel:
        result["parallel_batch_size"] = sizes[0]
        result["parallel_images_per_s"] = {**(result["parallel_images_per_s"] or {}),
                                           str(n): time_parallel(n, sizes[0], n_images, args, profile, data.kind)}
        print(f"  batch {sizes[0]:4d}  {n} runs at once: {result['parallel_images_per_s'][str(n)]:10.0f} images/s in all",
              flush=True)
        atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0
