"""Command line: ``bench.py [run options]``, ``bench.py report ...``, ``bench.py speed ...``.

Exit codes: 0 done, 1 a run diverged, 2 bad input (one-line message), 130/143 interrupted
(a checkpoint is saved; the same command resumes).
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time

from nlbench.training import config as C
from nlbench.errors import UserError
from nlbench.plugins import load
from nlbench.training.records import check_out_folder
from nlbench.registry import BACKBONES, BENCH, STRATEGIES
from nlbench.training.runspec import RunSpec, expand_strategies, ordered_strategies, plan_sweep
from nlbench.launchers.sweep import check_existing, finish_record, run_lock


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py", description="nlbench: continual-learning benchmarks on CIFAR-10. "
                                "Subcommands: 'report' (tables and figures), 'speed' (throughput comparison), 'campaign' (the runs of a table within a time budget), "
                                "'tune' (hyperparameters chosen on a validation stream).")
    p.add_argument("--scenario", nargs="+", help="scenario name(s); see --list")
    p.add_argument("--strategy", nargs="+", help="strategy name(s), or 'all'")
    p.add_argument("--seeds", nargs="+", type=seed_value, default=[0], help="seeds (integers, space-separated: "
                   "--seeds 0 1 2), default 0")
    p.add_argument("--profile", help="quick (CPU), gpu-short, or a protocol the scenario names (der or online for "
                   "split-cifar, converge for cifar10; see --list); default: quick on the CPU, the scenario's "
                   "cuda_profile on CUDA (split-cifar: der)")
    p.add_argument("--epochs", type=int, help="epochs per task (overrides the profile)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--data", default="auto", help="auto (default): the full CIFAR-10 if found or downloadable, "
                   "else the embedded mini set | full: never fall back | mini: the embedded subset")
    p.add_argument("--data-root", help="folder holding cifar-10-batches-py/ (else $NLBENCH_DATA, else ~/.cache/nlbench)")
    p.add_argument("--out", default="runs", help="run records folder: OUT/PROFILE/DATA/SCENARIO/RUN/seedK.json "
                   "(default runs/; the committed reference records live in results/runs)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="config overrides, e.g. strategy.lam=400")
    p.add_argument("--plugin", nargs="+", default=[], metavar="FILE", help="extra strategy files to load")
    p.add_argument("--no-download", action="store_true", help="never download CIFAR-10")
    p.add_argument("--force", action="store_true", help="rerun runs whose record already exists")
    p.add_argument("--list", action="store_true", help="list scenarios, strategies and backbones")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--jobs", type=int, default=1, help="runs of the sweep in parallel (processes; on one GPU too)")
    p.add_argument("--launcher", choices=("local", "ray"), default="local", help="local (default: this machine, "
                   "--jobs processes) or ray (every run a Ray task on a Ray cluster; pip install -e \".[ray]\")")
    p.add_argument("--address", help="with --launcher ray: the cluster to join (e.g. auto, or ray://HOST:10001); "
                   "default: start a local one")
    p.add_argument("--ray-cpus", type=int, default=1, help="with --launcher ray: CPUs (and torch threads) per run (default 1)")
    p.add_argument("--ray-gpus", type=float, help="with --launcher ray: GPUs per run, a fraction lets runs share "
                   "one (e.g. 0.25); default 0 with --device cpu, else 1")
    p.add_argument("--ray-retries", type=int, default=3, help="with --launcher ray: times a run whose worker died is "
                   "retried from its last checkpoint (default 3)")
    p.add_argument("--seed-parallel", type=int, default=1, metavar="K", help="train up to K seeds of one "
                   "configuration at once in one process, stacked (nlbench.training.group; each still writes its own record); "
                   "default 1. Faster on CUDA; on the CPU one seed at a time is faster (bench.py speed --seed-parallel)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (recorded in the run record)")
    p.add_argument("--tuned", metavar="PROTOCOL", help="use the values bench.py tune chose under this protocol "
                   "(held-out or first-tasks; read from OUT/tuning/); the runs are named NAME@tuned=PROTOCOL")
    p.add_argument("--shard", help=argparse.SUPPRESS)  # i/N: internal, set by --jobs
    return p


def print_list() -> None:
    print("scenarios:")
    for name in C.scenario_names():
        try:
            spec = C.load_scenario_file(name)
        except UserError as exc:  # one broken file (e.g. in $NLBENCH_SCENARIOS) must not hide the others
            print(f"  {name:16s} UNUSABLE: {exc}")
            continue
        print(f"  {name:16s} {spec.get('description', '')} (profiles: {', '.join(spec['profiles'] or {})})")
    print("strategies:")
    for name in ordered_strategies():
        print(f"  {name:16s} {STRATEGIES[name].description}")
    from nlbench.bridges.avalanche import KNOWN_WORKING, avalanche_problem
    problem = avalanche_problem()
    if problem:
        print(f"  avalanche:NAME   UNAVAILABLE here: {problem}")
    else:
        print("  avalanche:NAME   any Avalanche strategy class (avalanche-lib); checked to work: " +
              ", ".join(KNOWN_WORKING))
    print("backbones:")
    for name, e in sorted(BACKBONES.items()):
        print(f"  {name:16s} {e.description}")


def seed_value(text: str) -> int:
    """One --seeds value; '0,1' gets the hint that seeds are space-separated."""
    if "," in text:
        raise UserError(f"--seeds takes space-separated integers: --seeds {' '.join(text.split(','))} (got '{text}')")
    try:
        return int(text)
    except ValueError:
        raise UserError(f"--seeds takes integers, got '{text}'") from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["report"]:
            from nlbench.reporting.report import main as report_main
            return report_main(argv[1:])
        if argv[:1] == ["campaign"]:
            from nlbench.launchers.campaign import main as campaign_main
            return campaign_main(argv[1:])
        if argv[:1] == ["tune"]:
            from nlbench.launchers.tuning import main as tune_main
            return tune_main(argv[1:])
        if argv[:1] == ["calibrate"]:
            from nlbench.launchers.calibrate import main as calibrate_main
            return calibrate_main(argv[1:])
        if argv[:1] == ["speed"]:
            from nlbench.launchers.speed import main as speed_main
            return speed_main(argv[1:])
        return run_main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # outside a run's training loop: nothing half-written to keep
        what = ("every table and figure is written whole or not at all;" if argv[:1] == ["report"]
                else "no record was written for the run in progress:")
        print(f"\ninterrupted; {what} rerun the same command", file=sys.stderr)
        return 130


def run_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    load(args.plugin, args.strategy or ())
    if args.list:
        print_list()
        return 0
    if not args.scenario or not args.strategy:
        raise UserError("--scenario and --strategy are required (or --list); e.g. "
                        "python bench.py --scenario split-cifar --strategy ewc")
    C.check_seeds(args.seeds)
    check_out_folder(args.out)
    from nlbench.training.data import select_data
    from nlbench.training.device import resolve_device  # torch-heavy imports only once we run
    device = resolve_device(args.device)
    sets = C.parse_sets(args.set)
    if args.compile:  # --compile and --epochs are sugar for --set train.compile=true / train.epochs=N
        sets.setdefault("train", {})["compile"] = True
    if args.epochs is not None:
        sets.setdefault("train", {})["epochs"] = args.epochs
    for scenario in args.scenario:  # names first: a misspelt one fails before any search for data
        C.load_scenario_file(scenario)
        expand_strategies(args.strategy, scenario)
    if args.jobs < 1:
        raise UserError(f"--jobs must be a positive integer, got {args.jobs}")
    data = select_data(args.data, args.data_root, not args.no_download)  # part of each record's path
    plan = plan_sweep(args.out, args.scenario, args.strategy, args.seeds, sets, args.profile, device.type, data.kind,
                      args.tuned, say=print if not args.shard else (lambda _: None))
    if not args.shard:
        print(data.announce())
    if args.seed_parallel < 1:
        raise UserError(f"--seed-parallel must be a positive integer, got {args.seed_parallel}")
    if args.launcher == "ray":
        if args.jobs > 1:
            raise UserError("--jobs is the local launcher's process count; with --launcher ray, Ray schedules the "
                            "runs (set --ray-cpus / --ray-gpus per run)")
        if args.ray_cpus < 1 or args.ray_retries < 0 or (args.ray_gpus is not None and args.ray_gpus < 0):
            raise UserError("--ray-cpus must be a positive integer, --ray-retries and --ray-gpus not negative")
        from nlbench.launchers.ray_launcher import run_on_ray
        return run_on_ray(plan, args, data)
    if args.address or args.launcher != "local":
        raise UserError("--address needs --launcher ray")
    units = group_plan(plan, args.seed_parallel)
    if args.jobs > 1 and len(units) > 1 and not args.shard:
        return run_sharded([*argv, "--data", data.kind], min(args.jobs, len(units)))  # children skip auto's search
    if args.shard:
        i, n = (int(v) for v in args.shard.split("/"))
        units = units[i::n]
    worst = 0
    for unit in units:
        worst = max(worst, run_unit(args, unit, device, data))
    return worst


def group_plan(plan: list[RunSpec], k: int) -> list[list[RunSpec]]:
    """The plan's runs in units: up to ``k`` neighbouring seeds of one configuration together."""
    units: list[list[RunSpec]] = []
    for spec in plan:
        last = units[-1] if units else None
        if last and len(last) < k and last[0].group_key() == spec.group_key():
            last.append(spec)
        else:
            units.append([spec])
    return units


def run_unit(args, unit: list[RunSpec], device, data) -> int:
    """One run, or a seed-parallel group of runs (one seed per process where it cannot group)."""
    if len(unit) > 1:
        code = run_group_unit(args, unit, device, data)
        if code is not None:
            return code
    return max(run_one(args, spec, device, data) for spec in unit)


def run_group_unit(args, unit: list[RunSpec], device, data) -> int | None:
    """Train the unit's seeds that have no record yet as one group; None: run them one by one."""
    from nlbench.training.group import unsupported
    reason = unsupported(unit[0].cfg, unit[0].strategy)
    if reason:
        print(f"seed-parallel: {unit[0].name} runs one seed per process ({reason})")
        return None
    todo = [spec for spec in unit if not check_existing(spec, data, args.force)]
    if len(todo) < 2:
        return None
    with contextlib.ExitStack() as locks:
        for spec in todo:
            locks.enter_context(run_lock(spec.path))
        todo = [spec for spec in todo if not check_existing(spec, data, args.force)]
        if len(todo) >= 2:
            return _train_and_record_group(args, todo, device, data)
    return None  # the locks are released: run_one takes them again


def _train_and_record_group(args, specs: list[RunSpec], device, data) -> int | None:
    from nlbench.training.checkpoint import Interrupted
    from nlbench.training.group import GroupMismatch, run_group
    lead, seeds = specs[0], [spec.seed for spec in specs]
    t0 = time.perf_counter()
    try:
        records = run_group(specs, device=device, data=data, checkpoints=[spec.checkpoint for spec in specs],
                            progress=not args.quiet)
    except GroupMismatch as exc:
        print(f"seed-parallel: {lead.name} seeds {', '.join(map(str, seeds))} run one seed per process ({exc})")
        return None
    except Interrupted as exc:
        print(f"\n{signal.Signals(exc.signum).name}: checkpoints saved for {lead.name} seeds "
              f"{', '.join(map(str, seeds))} (beside their records); rerun the same command to resume", file=sys.stderr)
        raise SystemExit(128 + exc.signum)
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise UserError(f"out of memory in {lead.scenario}/{lead.name} seeds {seeds} trained together; try a "
                            "smaller --seed-parallel") from exc
        raise
    wall = time.perf_counter() - t0
    return max(finish_record(record, spec.name, wall, spec.path) for record, spec in zip(records, specs))


def run_sharded(argv: list[str], jobs: int) -> int:
    """Split the sweep into ``jobs`` processes, each running every jobs-th run of the plan."""
    import os
    import subprocess
    # Each child would otherwise start one thread per core: on 2 cores, 2 jobs ran 30x slower than 1.
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))}
    procs = [subprocess.Popen([*BENCH, *argv, "--shard", f"{i}/{jobs}"], env=env) for i in range(jobs)]
    codes = []
    try:
        codes = [p.wait() for p in procs]
    except KeyboardInterrupt:  # the children got the same SIGINT: let them checkpoint
        codes = [p.wait() for p in procs]
    bad = [c for c in codes if c != 0]
    return max(bad, key=lambda c: (c != 2, c)) if bad else 0


def run_one(args, spec: RunSpec, device, data) -> int:
    if check_existing(spec, data, args.force):
        return 0
    with run_lock(spec.path):
        if check_existing(spec, data, args.force):
            return 0  # the process that held the lock finished this run meanwhile
        return _train_and_record(args, spec, device, data)


def _train_and_record(args, spec: RunSpec, device, data) -> int:
    from nlbench.training.checkpoint import Interrupted
    from nlbench.training.runner import run
    t0 = time.perf_counter()
    try:
        record = run(spec, device=device, data=data, checkpoint=spec.checkpoint, progress=not args.quiet)
    except Interrupted as exc:
        code = 128 + exc.signum
        name_ = signal.Signals(exc.signum).name
        if exc.checkpoint is None:  # a strategy with its own loop (Avalanche): nothing to resume from
            print(f"\n{name_}: stopped; an Avalanche strategy's state lives in Avalanche's objects and is not "
                  "checkpointed, so no record was written for this run: rerun the same command to start it again",
                  file=sys.stderr)
        else:
            print(f"\n{name_}: checkpoint saved to {exc.checkpoint}; rerun the same command to resume", file=sys.stderr)
        raise SystemExit(code)
    except RuntimeError as exc:
        if "out of memory" in str(exc).lower():
            raise UserError(f"out of memory in {spec.scenario}/{spec.name} seed {spec.seed}; try a smaller batch, "
                            "e.g. --set train.batch_size=64 train.eval_batch_size=256") from exc
        raise
    return finish_record(record, spec.name, time.perf_counter() - t0, spec.path)
