"""``bench.py campaign NAME --budget SECONDS``: the runs a table needs, advanced in whatever time a job has.

A campaign (``scenarios/campaigns/NAME.yaml``, or a path to such a file) names a scenario, a
profile, the rows of a table (strategy and overrides) and the seeds; ``published`` holds the
paper's numbers that the report shows beside ours. The runner starts the runs that have no record
yet, seed by seed in the file's order, up to ``--jobs`` at a time (processes, one GPU shared), and:

- never starts a run whose expected time no longer fits the budget (expected = the longest wall
  time of the same row with another seed, as recorded in its record; a row never run is started:
  its time is unknown);
- ``--grace`` seconds before the budget ends, asks the runs still going to stop (SIGTERM): each
  saves a checkpoint at the end of its current step, which the same command resumes later, on
  this machine or on another that has the output folder;
- with ``--seed-parallel K``, starts up to K seeds of one row as one child process, a seed-parallel
  group (nlbench.training.group: one record per seed as always; a group's expected time is that of a group
  of the same size, else a one-seed run's times K);
- finished runs are ordinary run records (``OUT/PROFILE/DATA/SCENARIO/RUN/seedK.json``, a few kB each):
  what a short GPU job brings back. Checkpoints stay where they are written.

Running the same command again continues the campaign; ``--status`` only lists what is done.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from nlbench.training import config as C
from nlbench.errors import UserError
from nlbench.training.records import check_out_folder, read_record
from nlbench.registry import BENCH
from nlbench.training.runspec import RunSpec, make_spec
from nlbench.reporting.specs import campaign_names, load_campaign, row_sets
from nlbench.launchers.sweep import config_conflict


@dataclass(eq=False)  # identity: each planned run is one object
class PlannedRun:
    """A campaign's run: the run itself (a RunSpec) and what the scheduler needs to start it."""
    label: str             # the campaign row's label
    sets: list[str]        # KEY=VALUE, as on the child's command line
    out: pathlib.Path      # the --out of the run (its record: OUT/PROFILE/DATA/SCENARIO/RUN/seedK.json)
    spec: RunSpec
    tuned: str | None = None  # a row's `tuned: PROTOCOL`: the values bench.py tune chose (--tuned PROTOCOL)

    @property
    def path(self) -> pathlib.Path:
        return self.spec.path

    @property
    def seed(self) -> int:
        return self.spec.seed

    @property
    def checkpoint(self) -> pathlib.Path:
        return self.spec.checkpoint

    def key(self) -> tuple:
        return self.spec.group_key()


def plan(spec: dict, out: pathlib.Path, data_kind: str, seeds: list[int] | None = None,
         extra: list[str] = ()) -> list[PlannedRun]:
    """Every run of the campaign, seed-major, each resolved (so a bad row fails before anything runs).
    ``data_kind``: the data set they train on, part of each record's path (it also names the tuning
    studies of rows with ``tuned: PROTOCOL``)."""
    runs = []
    for seed in seeds if seeds is not None else spec["seeds"]:
        for row in spec["runs"]:
            sets = row_sets(spec, row, extra)
            run = PlannedRun(row["label"], sets, out, make_spec(out, spec["scenario"], row["strategy"], spec["profile"],
                                                                C.parse_sets(sets), seed, data_kind, row.get("tuned")),
                             row.get("tuned"))
            conflict = config_conflict(run.spec, read_record(run.path)) if run.path.exists() else ""
            if conflict:
                raise UserError(f"{run.path} holds a run with another config than campaign {spec['name']} asks "
                                f"({conflict}); use another --out, or delete that record")
            runs.append(run)
    return runs


def expected_seconds(run: PlannedRun, runs: list[PlannedRun], group_size: int = 1) -> float | None:
    """The longest recorded wall time of the same row (any seed) for a unit of ``group_size`` seeds:
    that of a group of the same size, else a one-seed run's times the size; None if it never ran."""
    times: dict[int, list[float]] = {}
    for other in runs:
        if other.key() == run.key() and other.path.exists():
            try:
                record = json.loads(other.path.read_text())
                size = (record.get("seed_parallel") or {}).get("group_size", 1)
                times.setdefault(size, []).append(record["wall_seconds"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
    if times.get(group_size):
        return max(times[group_size])
    return max(times[1]) * group_size if times.get(1) else None


def units_of(runs: list[PlannedRun], k: int) -> list[list[PlannedRun]]:
    """The runs in start order, up to ``k`` seeds of one row together: a seed-parallel group
    (nlbench.training.group) trained by one child process; k = 1: one run each. A row that cannot
    group (group.unsupported) gets one unit per seed, so that its seeds fill ``--jobs`` side by side
    instead of queueing in one child."""
    from nlbench.training.group import unsupported
    units: list[list[PlannedRun]] = []
    open_units: dict[tuple, list[PlannedRun]] = {}
    for run in runs:
        if k > 1 and unsupported(run.spec.cfg, run.spec.strategy):
            units.append([run])
            continue
        unit = open_units.get(run.key())
        if unit is not None and len(unit) < k:
            unit.append(run)
            continue
        open_units[run.key()] = [run]
        units.append(open_units[run.key()])
    return units


def unit_name(unit: list[PlannedRun]) -> str:
    seeds = ", ".join(str(r.seed) for r in unit)
    return f"{unit[0].label} seed{'s' if len(unit) > 1 else ''} {seeds}"


def child_command(unit: list[PlannedRun], args, data_kind: str) -> list[str]:
    run = unit[0]
    cmd = [*BENCH, "--scenario", run.spec.scenario, "--strategy", run.spec.strategy,
           "--profile", run.spec.profile, "--seeds", *(str(r.seed) for r in unit), "--out", str(run.out), "--quiet",
           "--device", args.device, "--data", data_kind]
    if len(unit) > 1:
        cmd += ["--seed-parallel", str(len(unit))]
    if args.data_root:
        cmd += ["--data-root", args.data_root]
    if args.no_download:
        cmd.append("--no-download")
    if run.tuned:
        cmd += ["--tuned", run.tuned]
    if run.sets:
        cmd += ["--set", *run.sets]
    return cmd


def status_lines(runs: list[PlannedRun]) -> list[str]:
    lines = []
    for r in runs:
        state = "done" if r.path.exists() else ("checkpointed" if r.checkpoint.exists() else "missing")
        lines.append(f"  {state:12s} {r.label:28s} seed {r.seed}  {r.path}")
    return lines


# Training images a class in each data set (the full CIFAR-10; the embedded mini set: nlbench/mini/README.md)
IMAGES_PER_CLASS = {"full": 5000, "mini": 500}


def data_needs(cfg: dict, data_kind: str) -> str | None:
    """Why a run's config cannot run on this data set (training plus probe images a class beyond what it
    holds), or None."""
    have = IMAGES_PER_CLASS.get(data_kind)
    probe = cfg["data"].get("probe_per_class")
    if have is None or not probe:
        return None
    train = cfg["data"]["train_per_class"]
    if train is None or train + probe > have:
        return (f"data.probe_per_class={probe} beside {train if train is not None else 'every'} training image"
                f"{'s' if train != 1 else ''} a class needs more than the {data_kind} set's {have} a class")
    return None


def check_data_needs(runs: list[PlannedRun], data_kind: str) -> None:
    """Refuse, before any run starts, a campaign whose rows cannot run on the data set found."""
    for run in runs:
        why = data_needs(run.spec.cfg, data_kind)
        if why:
            from nlbench.training.data import FULL_HOW_TO
            raise UserError(f"this campaign needs the full CIFAR-10 (row '{run.label}': {why}); for the full set "
                            f"{FULL_HOW_TO}")


def status_summary(runs: list[PlannedRun], data_kind: str) -> str:
    """The --status list's last line: how many runs are done, checkpointed and missing, and the time the
    missing ones are expected to take (from the same rows' recorded wall times)."""
    done = sum(r.path.exists() for r in runs)
    ckpt = sum(not r.path.exists() and r.checkpoint.exists() for r in runs)
    missing = [r for r in runs if not r.path.exists()]
    times = [expected_seconds(r, runs) for r in missing]
    known = [t for t in times if t is not None]
    expected = (f"; expected about {sum(known) / 3600:.1f} h of runs one at a time"
                + (f" ({len(times) - len(known)} of them never run: unknown)" if len(known) < len(times) else "")
                ) if missing else ""
    needs = next((why for r in runs if (why := data_needs(r.spec.cfg, data_kind))), None)
    return (f"summary: {done} done, {ckpt} checkpointed, {len(missing) - ckpt} missing of {len(runs)} on the "
            f"{data_kind} set{expected}" + (f"; NOTE: it cannot run on the {data_kind} set ({needs})" if needs else ""))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench.py campaign", description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="+", help=f"campaign name(s): {', '.join(campaign_names())}, or .yaml paths")
    ap.add_argument("--budget", type=float, help="seconds this job may spend (required unless --status)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time (processes sharing the device)")
    ap.add_argument("--grace", type=float, default=30.0, help="seconds before the budget's end at which "
                    "running runs are checkpointed (default 30)")
    ap.add_argument("--seeds", nargs="+", type=int, help="only these seeds (default: the campaign's)")
    ap.add_argument("--out", default="runs", help="records folder; runs go to OUT/PROFILE/DATA/SCENARIO/... (default runs/)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", default="auto", help="auto | full | mini, as for a run; with --status, auto means full")
    ap.add_argument("--data-root")
    ap.add_argument("--no-download", action="store_true")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="overrides for every run (e.g. train.cuda_graph=false); strategy.* ones rename the runs")
    ap.add_argument("--seed-parallel", type=int, default=1, metavar="K", help="train up to K seeds of a row in "
                    "one child process, as a seed-parallel group (default 1; faster on CUDA, slower on the CPU)")
    ap.add_argument("--status", action="store_true", help="list done / checkpointed / missing runs and exit")
    return ap


def main(argv: list[str]) -> int:
    from nlbench.plugins import load
    args = build_parser().parse_args(argv)
    out = pathlib.Path(args.out)
    specs = [load_campaign(n) for n in args.names]
    load((), [row["strategy"] for spec in specs for row in spec["runs"]])  # built-ins, and avalanche:NAME rows
    for item in args.set:
        if "=" not in item:
            raise UserError(f"--set expects KEY=VALUE, got '{item}'")
    if args.seeds is not None:
        C.check_seeds(args.seeds)
    check_out_folder(out)
    if args.status:  # what is recorded, read without looking for data: auto counts as the full set's records
        kind = "mini" if args.data == "mini" else "full"
        runs = [r for spec in specs for r in plan(spec, out, kind, args.seeds, args.set)]
        print(f"data set: {kind} (records under {out}/PROFILE/{kind}/...)")
        print("\n".join(status_lines(runs)))
        print(status_summary(runs, kind))
        return 0
    if args.budget is None or args.budget <= 0:
        raise UserError("campaign needs --budget SECONDS (a positive number: the time this job may spend)")
    if args.jobs < 1:
        raise UserError(f"--jobs must be a positive integer, got {args.jobs}")
    if args.seed_parallel < 1:
        raise UserError(f"--seed-parallel must be a positive integer, got {args.seed_parallel}")
    if args.grace < 0 or args.grace >= args.budget:
        raise UserError(f"--grace must be from 0 to below --budget, got {args.grace}")
    from nlbench.training.data import select_data
    data = select_data(args.data, args.data_root, not args.no_download)  # the data set is part of each record's path
    runs = [r for spec in specs for r in plan(spec, out, data.kind, args.seeds, args.set)]
    check_data_needs(runs, data.kind)
    print(data.announce())
    return Scheduler(runs, args, data.kind).run()


class Terminated(Exception):
    """The campaign itself got SIGTERM."""


class Scheduler:
    """Starts runs while they fit, stops them (with a checkpoint) when the budget ends."""

    def __init__(self, runs: list[PlannedRun], args, data_kind: str):
        self.runs, self.args, self.data_kind = runs, args, data_kind  # the children run on the set found here
        self.pending = units_of([r for r in runs if not r.path.exists()], args.seed_parallel)
        self.running: dict[subprocess.Popen, tuple[list[PlannedRun], float]] = {}
        self.finished, self.stopped, self.failed, self.skipped = [], [], [], set()
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        self.env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}

    def run(self) -> int:
        t0 = time.monotonic()
        deadline = t0 + self.args.budget
        todo = sum(len(u) for u in self.pending)
        grouped = f" in {len(self.pending)} seed-parallel units" if len(self.pending) < todo else ""
        print(f"campaign: {len(self.runs)} runs, {len(self.runs) - todo} done, {todo} to do{grouped}; "
              f"budget {self.args.budget:.0f} s, {self.args.jobs} at a time")
        # SIGTERM is how a batch system (SLURM at the time limit, `kill`) ends a job: stop the runs with
        # their checkpoints as at the deadline, rather than dying and leaving them running unwatched
        previous = signal.signal(signal.SIGTERM, self._terminated)
        try:
            while self.pending or self.running:
                self._reap()
                left = deadline - time.monotonic()
                if left <= self.args.grace:
                    self._stop_all(deadline)
                    break
                started = self._start_fitting(left - self.args.grace)
                if not started and not self.running:
                    break  # nothing fits any more
                if self.failing():
                    self._wait_all(time.monotonic() + self.args.budget)
                    print(f"campaign: its first {len(self.failed)} runs all failed and none finished: stopped (their "
                          "errors are above; the same command would fail the same way until the cause is fixed)",
                          file=sys.stderr)
                    return 1
                time.sleep(0.5)
        except KeyboardInterrupt:  # Ctrl-C: the children got the same SIGINT and checkpoint themselves
            self._wait_all(time.monotonic() + max(self.args.grace, 10))
            print("campaign interrupted; finished runs are kept, the rest checkpointed: rerun the same command",
                  file=sys.stderr)
            return 130
        except Terminated:
            self._stop_all(time.monotonic() + max(self.args.grace, 10))
            print("campaign terminated (SIGTERM); finished runs are kept, the rest checkpointed: rerun the same "
                  "command", file=sys.stderr)
            return 128 + signal.SIGTERM
        finally:
            signal.signal(signal.SIGTERM, previous)
        self._summary(time.monotonic() - t0)
        return 1 if self.failed else 0

    def failing(self) -> bool:
        """The first runs all failed (at least 3, and more than run at a time) and none finished: a cause
        every run shares (bad data, a bad row), not bad luck; starting more would repeat it."""
        return not self.finished and len(self.failed) >= max(3, self.args.jobs + 1)

    @staticmethod
    def _terminated(signum, frame):
        raise Terminated

    def _start_fitting(self, usable: float) -> bool:
        started = False
        for unit in list(self.pending):
            if len(self.running) >= self.args.jobs:
                break
            expected = expected_seconds(unit[0], self.runs, len(unit))
            resuming = any(r.checkpoint.exists() for r in unit)
            if expected is not None and expected > usable and not resuming:
                if unit[0] not in self.skipped:
                    print(f"  not started: {unit_name(unit)} (expected {expected:.0f} s, {usable:.0f} s left)")
                    self.skipped.add(unit[0])
                continue
            proc = subprocess.Popen(child_command(unit, self.args, self.data_kind), env=self.env)
            self.running[proc] = (unit, time.monotonic())
            self.pending.remove(unit)
            started = True
            print(f"  start {unit_name(unit)}" + (f" (expected {expected:.0f} s)" if expected else "")
                  + (" (resuming its checkpoint)" if resuming else ""), flush=True)
        return started

    def _reap(self) -> None:
        for proc in [p for p in self.running if p.poll() is not None]:
            unit, start = self.running.pop(proc)
            took = time.monotonic() - start
            for run in unit:
                if run.path.exists():  # complete, or diverged (exit 1): either way its record is the result
                    self.finished.append(run)
                    status = json.loads(run.path.read_text()).get("status")
                    print(f"  done {run.label} seed {run.seed} ({status}) in {took:.0f} s -> {run.path}", flush=True)
                elif proc.returncode in (128 + signal.SIGTERM, 128 + signal.SIGINT):
                    self.stopped.append(run)
                else:
                    self.failed.append(run)
                    print(f"  FAILED {run.label} seed {run.seed} (exit {proc.returncode})", flush=True)

    def _stop_all(self, deadline: float) -> None:
        for proc in self.running:
            proc.send_signal(signal.SIGTERM)  # each saves a checkpoint at the end of its step
        self._wait_all(deadline)

    def _wait_all(self, until: float) -> None:
        for proc in list(self.running):
            try:
                proc.wait(timeout=max(1.0, until - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()  # past the budget: its last checkpoint (end of its previous task) remains
                proc.wait()
        self._reap()

    def _summary(self, took: float) -> None:
        left = [r for r in self.runs if not r.path.exists()]
        print(f"campaign: {len(self.finished)} runs finished in {took:.0f} s, {len(self.stopped)} checkpointed, "
              f"{len(self.failed)} failed; {len(left)} of {len(self.runs)} left"
              + ("; rerun the same command to continue" if left else "; complete"))
