"""``bench.py ... --launcher ray [--address ADDR]``: every run of a sweep is a Ray task, scheduled on any
node of a Ray cluster (a local one when no address is given); with ``--seed-parallel K``, up to K seeds
of one configuration are one task, trained as a seed-parallel group (nlbench.training.group) on one run's share.

What travels where:
- the driver (the machine running bench.py) plans the sweep, skips runs whose record exists, and is
  the only writer of records: each finished run's record comes back as the task's result and is
  written once, atomically, under ``--out`` on the driver; workers need no shared filesystem;
- the code travels with the sweep: Ray uploads the driver's project folder (its ``working_dir``,
  without results, data, .git or the virtual environment) to every node, so workers run exactly
  the driver's code (its commit goes into the records); each node needs Python with the
  dependencies installed, and the CIFAR-10 under the same ``--data-root`` / ``$NLBENCH_DATA``
  (or it uses the embedded mini set with ``--data mini``);
- after every stage the worker sends its checkpoint to a small store actor pinned to the driver's
  node. A run whose worker or node dies is retried by Ray (``--ray-retries``) and resumes from that
  checkpoint; Ctrl-C on the driver writes the stopped runs' checkpoints beside their records (as a
  local run does), cancels them, and the same command later resumes and finishes the sweep.

Ray is an optional extra (``pip install -e ".[ray]"``): only this module imports it, and only when
``--launcher ray`` is given.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import sys
import tempfile
import time
from dataclasses import dataclass

from nlbench.errors import UserError
from nlbench.training.records import atomic_write_bytes
from nlbench.training.runspec import RunSpec
from nlbench.launchers.sweep import check_existing, finish_record


@dataclass
class RayRun:
    """One planned run: what the worker needs (``job``: the RunSpec and how to run it, picklable)."""
    job: dict

    @property
    def spec(self) -> RunSpec:
        return self.job["spec"]

    @property
    def path(self) -> pathlib.Path:  # its record, on the driver
        return self.spec.path

    @property
    def key(self) -> str:
        return self.job["key"]

    @property
    def checkpoint(self) -> pathlib.Path:
        return self.path.with_suffix(".ckpt")


class CheckpointStore:
    """Latest checkpoint bytes per run, kept on the driver's node (a Ray actor)."""

    def __init__(self):
        self.blobs: dict[str, bytes] = {}

    def put(self, key: str, blob: bytes) -> None:
        self.blobs[key] = blob

    def get(self, key: str) -> bytes | None:
        return self.blobs.get(key)

    def drop(self, key: str) -> None:
        self.blobs.pop(key, None)


def import_ray():
    try:
        import ray
    except ImportError:
        raise UserError('--launcher ray needs Ray: pip install -e ".[ray]" (or pip install "ray>=2.9")') from None
    return ray


def _worker_setup(job: dict):
    """In a Ray worker: the job's plugins and thread count; its data set."""
    import torch

    from nlbench.training.data import select_data
    from nlbench.plugins import load
    load(job["plugins"], [job["spec"].strategy])
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    return select_data(job["data_kind"], job["data_root"], download=False)


def _restore_checkpoint(job: dict, store) -> pathlib.Path:
    """The worker's checkpoint file for a run: the store's copy when an earlier attempt left one."""
    import ray
    ckpt = pathlib.Path(tempfile.gettempdir()) / "nlbench-ray" / job["key"] / "run.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    ckpt.unlink(missing_ok=True)  # only the store's copy counts (another sweep may have left one here)
    (ckpt.parent / "worker.pid").write_text(str(os.getpid()))  # which process runs it (to watch or stop it)
    blob = ray.get(store.get.remote(job["key"]))
    if blob is not None:
        atomic_write_bytes(ckpt, blob)
        print(f"{job['spec'].label()}: resuming from the checkpoint of an earlier attempt")
    return ckpt


def execute(job: dict, store) -> dict:
    """In a Ray worker: one run, resumed from the store's checkpoint if an earlier attempt left one.
    Returns the record; the driver writes it."""
    import ray

    from nlbench.training.runner import run
    from nlbench.training.device import resolve_device
    data = _worker_setup(job)
    ckpt = _restore_checkpoint(job, store)
    t0 = time.perf_counter()
    record = run(job["spec"], device=resolve_device(job["device"]), data=data,
                 checkpoint=ckpt, progress=False,
                 on_checkpoint=lambda path: ray.get(store.put.remote(job["key"], path.read_bytes())))
    record["wall_seconds"] = time.perf_counter() - t0  # as a local run measures it: around the run
    ckpt.unlink(missing_ok=True)
    return record


def execute_unit(jobs: list[dict], store) -> list[dict]:
    """In a Ray worker: one run, or the seeds of one configuration as a seed-parallel group (one task,
    one device share; each seed's checkpoint goes to the store under its own key, so a retried group
    resumes every seed). Seeds that cannot group (checkpoints at different points) run one by one."""
    if len(jobs) == 1:
        return [execute(jobs[0], store)]
    import ray

    from nlbench.training.group import GroupMismatch, run_group
    from nlbench.training.device import resolve_device
    lead, seeds = jobs[0], [job["spec"].seed for job in jobs]
    data = _worker_setup(lead)
    ckpts = [_restore_checkpoint(job, store) for job in jobs]
    key_of = {str(path): job["key"] for path, job in zip(ckpts, jobs)}
    t0 = time.perf_counter()
    try:
        records = run_group([job["spec"] for job in jobs], device=resolve_device(lead["device"]), data=data,
                            checkpoints=ckpts, progress=False,
                            on_checkpoint=lambda path: ray.get(store.put.remote(key_of[str(path)], path.read_bytes())))
    except GroupMismatch as exc:
        print(f"seed-parallel: {lead['spec'].name} seeds {', '.join(map(str, seeds))} run one seed per process ({exc})")
        return [execute(job, store) for job in jobs]
    wall = time.perf_counter() - t0  # each seed's wall time is the group's, as in a local group
    for record, ckpt in zip(records, ckpts):
        record["wall_seconds"] = wall
        ckpt.unlink(missing_ok=True)
    return records


# Not shipped to workers: records, data, history and environments (Ray also skips what .gitignore names).
UPLOAD_EXCLUDES = ["results/", "data/", "runs/", ".git/", ".venv/", ".whl/", ".dev/", "*.ckpt", "*.egg-info/"]


def code_env() -> dict:
    """The driver's project folder as every worker's working_dir (see the module docstring)."""
    from nlbench.registry import IN_CHECKOUT, ROOT
    if not IN_CHECKOUT:  # an installed suite: each node runs its own installed copy
        return {}
    return {"working_dir": str(ROOT), "excludes": UPLOAD_EXCLUDES}


def plan_jobs(plan: list[RunSpec], args, data) -> list[RayRun]:
    """The runs that have no record yet, as jobs for the workers."""
    jobs = []
    for spec in plan:
        if check_existing(spec, data, args.force):
            continue
        key = hashlib.sha256(str(spec.path.resolve()).encode()).hexdigest()[:16]
        job = {"key": key, "spec": spec, "device": args.device, "data_kind": data.kind,
               "plugins": [str(pathlib.Path(p).resolve()) for p in args.plugin], "threads": args.ray_cpus,
               # absolute: a worker's working folder is its copy of the project, not the driver's
               "data_root": str(pathlib.Path(args.data_root).resolve()) if args.data_root else None}
        jobs.append(RayRun(job))
    return jobs


def plan_units(jobs: list[RayRun], k: int) -> list[list[RayRun]]:
    """The jobs in Ray tasks: up to ``k`` seeds of one (scenario, run name, profile) together where the
    strategy can train them as a seed-parallel group (cli.group_plan's rule), else one per task."""
    from nlbench.training.group import unsupported
    units: list[list[RayRun]] = []
    said = set()
    for r in jobs:
        same = bool(units) and units[-1][0].spec.group_key() == r.spec.group_key()
        if same and len(units[-1]) < k:
            units[-1].append(r)
        else:
            units.append([r])
    grouped = []
    for unit in units:
        lead = unit[0].spec
        reason = unsupported(lead.cfg, lead.strategy) if len(unit) > 1 else None
        if reason and lead.name not in said:
            said.add(lead.name)
            print(f"seed-parallel: {lead.name} runs one seed per Ray task ({reason})")
        grouped.extend([[r] for r in unit] if reason else [unit])
    return grouped


def gpus_per_run(args, cluster_gpus: float) -> float:
    """GPUs a run asks Ray for: --ray-gpus, else 1 on a cluster with GPUs (0 with --device cpu). A
    request the cluster can never meet would wait forever: it is a one-line error instead."""
    if args.ray_gpus is not None:
        wanted = args.ray_gpus
    elif args.device == "cpu" or (args.device == "auto" and cluster_gpus == 0):
        wanted = 0.0  # auto on a CPU-only cluster: each run resolves its device to the CPU
    else:
        wanted = 1.0
    if wanted > cluster_gpus:
        raise UserError(f"each run asks {wanted:g} GPU but the Ray cluster has {cluster_gpus:g}; use --device cpu "
                        "(or auto), or --ray-gpus with a share the cluster has")
    return wanted


def quiet_ray_environment(environ: dict, terminal: bool) -> dict:
    """What Ray reads from the environment to stay quiet, unless the user set it: no colour codes around
    the workers' lines when the output is not a terminal (a log file, CI), and no usage-statistics notice
    (Ray prints it when a local cluster starts and the choice was never made; we make none for the user)."""
    quiet = {"RAY_USAGE_STATS_PROMPT_ENABLED": "0"}
    if not terminal:
        quiet["RAY_COLOR_PREFIX"] = "0"
    return {k: v for k, v in quiet.items() if k not in environ}


def connect(ray, args) -> None:
    """Join ``--address``'s cluster (or start a local one), shipping the project as the workers' code."""
    os.environ.update(quiet_ray_environment(os.environ, sys.stdout.isatty()))
    try:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=not getattr(args, "quiet", False),
                 configure_logging=False, ignore_reinit_error=True, runtime_env=code_env())
    except ConnectionError as exc:  # --address auto (or an address) with no cluster running there
        raise UserError(f"no Ray cluster at --address {args.address} ({str(exc).split('.')[0]}); start one with "
                        "`ray start --head` (or on the cluster's head node), or leave --address out for a local "
                        "one") from exc


def run_on_ray(plan, args, data) -> int:
    """Run the sweep's runs as Ray tasks; the exit code is the worst of the runs' (0 done, 1 a run
    diverged or failed, 2 a run's bad input, 130 interrupted)."""
    ray = import_ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    jobs = plan_jobs(plan, args, data)
    if not jobs:
        return 0
    connect(ray, args)
    gpus = gpus_per_run(args, ray.cluster_resources().get("GPU", 0))
    here = ray.get_runtime_context().get_node_id()  # the store lives and dies with the driver's node
    store = ray.remote(num_cpus=0)(CheckpointStore).options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=here, soft=False)).remote()
    for r in jobs:  # a sweep stopped earlier left checkpoints beside the records: resume from them
        if r.checkpoint.exists():
            ray.get(store.put.remote(r.key, r.checkpoint.read_bytes()))
    # a seed-parallel group is one task with one run's share of the machine: that is its point
    task = ray.remote(execute_unit).options(num_cpus=args.ray_cpus, num_gpus=gpus, max_retries=args.ray_retries,
                                            retry_exceptions=False)
    units = plan_units(jobs, args.seed_parallel)
    pending = {task.remote([r.job for r in unit], store): unit for unit in units}
    grouped = f" in {len(units)} seed-parallel tasks" if len(units) < len(jobs) else ""
    print(f"ray: {len(jobs)} runs{grouped} on {ray.cluster_resources().get('CPU', 0):.0f} CPUs / "
          f"{ray.cluster_resources().get('GPU', 0):.0f} GPUs; each task {args.ray_cpus} CPU, {gpus:g} GPU")
    worst = 0
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            unit = pending.pop(done[0])
            worst = max(worst, collect(ray, done[0], unit))
            for r in unit:
                ray.get(store.drop.remote(r.key))
    except KeyboardInterrupt:
        return stop(ray, store, pending)
    return worst


def collect(ray, ref, unit: list[RayRun]) -> int:
    """Write a finished task's records (one run's, or a group's), or say why they are missing."""
    try:
        records = ray.get(ref)
    except ray.exceptions.RayTaskError as exc:  # the run itself raised: its own message, no retry
        cause = getattr(exc, "cause", None) or exc
        for r in unit:
            print(f"error: {r.spec.label()}: {cause}")
        return 2 if isinstance(cause, UserError) else 1
    except ray.exceptions.RayError as exc:  # its worker or node died more often than --ray-retries allows
        for r in unit:
            print(f"error: {r.spec.label()}: lost ({type(exc).__name__}: its worker died more often than "
                  "--ray-retries allows); rerun the same command to resume it from its last checkpoint")
        return 1
    from nlbench.training.records import versions  # the worker's copy has no .git: it ran the driver's tree
    git = {k: v for k, v in versions().items() if k.startswith("git_")}
    worst = 0
    for record, r in zip(records, unit):
        record["versions"] = {**record["versions"], **git}
        worst = max(worst, finish_record(record, r.spec.name, record.pop("wall_seconds"), r.path))
    return worst


def stop(ray, store, pending: dict) -> int:
    """Ctrl-C: keep each stopped run's last checkpoint beside its record, cancel it, exit 130."""
    kept = stopped = 0
    for ref, unit in pending.items():
        for r in unit:
            blob = ray.get(store.get.remote(r.key))
            if blob is not None:
                atomic_write_bytes(r.checkpoint, blob)
                kept += 1
        stopped += len(unit)
        ray.cancel(ref, force=True)
    print(f"\ninterrupted: {stopped} runs stopped ({kept} with a checkpoint beside its record); rerun the "
          "same command to finish the sweep")
    return 130
