"""``bench.py tune --scenario S --strategy X --trials N``: hyperparameters chosen on a validation
stream, with a declared budget that is the same for every method, the test set never read.

- **Search space**: each strategy declares its own next to its defaults (``Strategy.search_space``:
  ``train.lr`` for all, plus the method's knobs); a scenario YAML may replace a strategy's under
  ``search_spaces: {NAME: {KEY: SPEC}}``. A SPEC is ``[log, low, high]``, ``[float, low, high]``,
  ``[int, low, high]``, ``[choice, [options]]`` or ``[log_scale, f]`` (the resolved value / f to x f,
  on a log scale: an lr range that follows the profile's optimizer). ``--space`` prints it.
- **Protocols** (PROTOCOLS): ``held-out``, a fraction of each class's training images held out and
  evaluated in place of the test set (``data.validation_fraction``; MIR's make_valid_from_train
  holds out 5%); ``first-tasks`` (Chaudhry et al. 2019, A-GEM, Section 5: hyperparameters are
  chosen on the first tasks of the stream, then the method is trained and evaluated on the rest),
  the trials run on tasks ``[0, k)`` with their held-out images, the tuned runs on tasks ``[k, T)``.
  In both, a trial's run builds its evaluation set from training images only (nlbench.training.splits.build_scenario),
  so no test image or label enters the study (tested with shuffled test labels).
- **The study is an Optuna study in a database**: SQLite under ``OUT/tuning/`` by default, any
  SQLAlchemy URL with ``--storage``. TPE with a fixed seed (reseeded per trial number, so that a
  resumed study samples as an uninterrupted one would from the same history); the median pruner
  on the average validation accuracy reported after each task. Trials record a heartbeat: a trial
  whose process was killed is failed when the study restarts and its parameters are tried again,
  so a resumed study loses and repeats no finished trial. ``--jobs J`` runs J worker processes on
  the same study (then the order of trials, and so the sampling, depends on timing).
- **The budget** is the number of finished trials (complete, pruned or diverged), the same ``N`` for
  every method of a comparison; the chosen values and the study's provenance go to
  ``OUT/tuning/<study>.yaml``, which ``bench.py ... --tuned PROTOCOL`` applies (run name
  ``NAME@tuned=PROTOCOL``; its records carry ``tuned``: study, budget, protocol, values).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import yaml

from nlbench.training import config as C
from nlbench.errors import UserError
from nlbench.training.records import atomic_write_text
from nlbench.registry import BENCH
from nlbench.reporting.studies import best_or_none, finished, fmt_value, quiet_optuna
from nlbench.training.tuned import TUNED_MARK, as_sets, merge_sets, study_name, tuned_file  # noqa: F401 (re-exported)

PROTOCOLS = {
    "held-out": "a held-out fraction of each task's training images (data.validation_fraction) stands in for the "
                "test set; the tuned runs train and test on the whole stream",
    "first-tasks": "Chaudhry et al. 2019 (A-GEM), Section 5: tuned on the first k tasks (their held-out images), then "
                   "trained and evaluated on tasks k+1..T (data.tasks)",
}
SPEC_KINDS = ("log", "float", "int", "choice", "log_scale")
HEARTBEAT_SECONDS = 5


# ---------------------------------------------------------------------------------------- search spaces

def search_space(scenario: str, strategy: str) -> dict[str, list]:
    """The strategy's declared space, or the scenario YAML's replacement for it; checked."""
    from nlbench.registry import STRATEGIES, lookup
    entry = lookup(STRATEGIES, "strategy", strategy)
    space = dict(getattr(entry.obj, "search_space", None) or {})
    spaces = C.load_scenario_file(scenario).get("search_spaces") or {}
    if strategy in spaces:
        space = dict(spaces[strategy] or {})
    for key, spec in space.items():
        check_spec(key, spec, f"search space of {strategy}")
    if not space:
        raise UserError(f"strategy '{strategy}' declares no search space; give it one (search_space = {{KEY: SPEC}} in "
                        f"its class, or search_spaces: {{{strategy}: ...}} in the scenario YAML)")
    return space


def check_spec(key: str, spec, where: str) -> None:
    section = key.split(".")[0]
    ok = section in C.SECTIONS and "." in key and isinstance(spec, list) and spec and spec[0] in SPEC_KINDS
    if ok and spec[0] in ("log", "float", "int"):
        ok = len(spec) == 3 and all(isinstance(v, (int, float)) for v in spec[1:]) and spec[1] < spec[2]
        ok = ok and (spec[0] != "log" or spec[1] > 0)
    elif ok and spec[0] == "choice":
        ok = len(spec) == 2 and isinstance(spec[1], list) and len(spec[1]) >= 2
    elif ok:
        ok = len(spec) == 2 and isinstance(spec[1], (int, float)) and spec[1] > 1
    if not ok:
        raise UserError(f"{where}: {key}: {spec!r} is not a search spec; write [log, low, high], [float, low, high], "
                        "[int, low, high], [choice, [a, b, ...]] or [log_scale, factor]")


def _get(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise UserError(f"search space key {key} is not in the resolved config; keys start with one of "
                            f"{', '.join(C.SECTIONS)} and name an existing setting")
        node = node[part]
    return node


def suggest(trial, space: dict, cfg: dict) -> dict:
    """One trial's values for the space (``cfg``: the resolved config without them, for log_scale)."""
    values = {}
    for key, spec in space.items():
        kind = spec[0]
        if kind == "log_scale":
            base = _get(cfg, key)
            values[key] = trial.suggest_float(key, base / spec[1], base * spec[1], log=True)
        elif kind in ("log", "float"):
            values[key] = trial.suggest_float(key, float(spec[1]), float(spec[2]), log=kind == "log")
        elif kind == "int":
            values[key] = trial.suggest_int(key, int(spec[1]), int(spec[2]))
        else:  # options may be lists (periods): Optuna stores categorical values as JSON text here
            values[key] = json.loads(trial.suggest_categorical(key, [json.dumps(o) for o in spec[1]]))
    return values


def _is_set(sets: dict, key: str, strategy: str) -> bool:
    section, *rest = key.split(".")
    node = sets.get(section) or {}
    if section == "strategy":
        node = {**{k: v for k, v in node.items() if not isinstance(v, dict)}, **(node.get(strategy) or {})}
    for part in rest[:-1]:
        node = node.get(part) or {}
    return rest[-1] in node


# ---------------------------------------------------------------------------------------- protocols

def n_tasks_of(cfg: dict) -> int:
    n = cfg["scenario"].get("n_tasks")
    if not isinstance(n, int):
        raise UserError("--protocol first-tasks needs a scenario with n_tasks (split-cifar, permuted-cifar)")
    return n


def protocol_sets(protocol: str, cfg: dict, args) -> tuple[dict, dict]:
    """(what every trial adds, what the tuned runs add) for a protocol."""
    held = {"data": {"validation_fraction": args.validation_fraction}}
    if protocol == "held-out":
        return held, {}
    k, n = args.first_tasks, n_tasks_of(cfg)
    if not 1 <= k < n:
        raise UserError(f"--first-tasks must be from 1 to {n - 1} (the scenario has {n} tasks), got {k}")
    return merge_sets(held, {"data": {"tasks": [0, k]}}), {"data": {"tasks": [k, n]}}


# ---------------------------------------------------------------------------------------- the study

def storage_url(args, name: str) -> str:
    if args.storage:
        return args.storage
    folder = pathlib.Path(args.out) / "tuning"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(folder / name).resolve()}.sqlite3"


def shown(url: str, out) -> str:
    """The default SQLite file as a path inside the records folder (``tuning/NAME.sqlite3``: records
    and tuned files stay valid wherever the folder is copied); any other storage as its URL."""
    prefix, folder = "sqlite:///", pathlib.Path(out).resolve()
    path = pathlib.Path(url[len(prefix):]).resolve() if url.startswith(prefix) else None
    return str(path.relative_to(folder)) if path is not None and path.is_relative_to(folder) else url


def open_study(name: str, url: str, attrs: dict):
    """The study (created, or loaded to resume); a study of another space or protocol under the same
    name is an error, never continued."""
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    storage = RDBStorage(url, heartbeat_interval=HEARTBEAT_SECONDS, grace_period=4 * HEARTBEAT_SECONDS,
                         heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=None),
                         engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1))
    old = {k: study.user_attrs.get(k) for k in attrs}
    if not study.user_attrs:
        for key, value in attrs.items():
            study.set_user_attr(key, value)
    elif old != attrs:
        changed = [k for k in attrs if old[k] != attrs[k]]
        raise UserError(f"study {name} in {url} was made with another {', '.join(changed)}; use another --storage "
                        "(or --out), or delete that study to start over")
    return study


def requeue_interrupted(study) -> int:
    """Run by the command that owns the study (one ``tune`` at a time; its --jobs workers share it):
    trials left running by a killed earlier command, and trials stopped by Ctrl-C or SIGTERM, are
    failed and their parameters queued to be tried again (once), so nothing finished is lost or
    repeated and nothing unfinished counts."""
    from optuna.trial import TrialState
    storage = study._storage  # Optuna has no public call to fail another process's trial
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    again = 0
    for t in trials:
        if t.state == TrialState.RUNNING:
            storage.set_trial_user_attr(t._trial_id, "interrupted", True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        elif not (t.state == TrialState.FAIL and not t.user_attrs.get("diverged") and t.number not in retried):
            continue  # (a diverged trial is finished: it counts, and is not tried again)
        if not t.params:  # stopped before it drew its values: nothing to try again
            continue
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        again += 1
    return again


class Objective:
    """One trial = one run of the strategy on the validation stream, at the study's seed."""

    def __init__(self, scenario, strategy, profile, user_sets, trial_sets, space, metric, seed, device, data):
        self.scenario, self.strategy, self.profile = scenario, strategy, profile
        self.user_sets, self.trial_sets, self.space = user_sets, trial_sets, space
        self.metric, self.seed, self.device, self.data = metric, seed, device, data
        self.base = C.resolve(scenario, strategy, profile, merge_sets(user_sets, trial_sets))

    def __call__(self, trial) -> float:
        import optuna

        from nlbench.training.runner import run
        values = suggest(trial, self.space, self.base)
        cfg = C.resolve(self.scenario, self.strategy, self.profile,
                        merge_sets(self.user_sets, self.trial_sets, as_sets(values, self.strategy)))
        setting, metric = self.metric

        def report(acc, seen):  # the average validation accuracy so far, after each task: what the pruner sees
            row = acc[setting][-1]
            trial.report(sum(row[:seen]) / seen, seen)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after task {seen}")
        from nlbench.training.checkpoint import Interrupted
        from nlbench.training.runspec import RunSpec
        spec = RunSpec(self.scenario, self.strategy, self.strategy, self.profile, self.seed, cfg,
                       C.load_scenario_file(self.scenario)["builder"], self.data.kind)  # a trial: no record
        try:
            record = run(spec, device=self.device, data=self.data, progress=False, log=lambda *_: None,
                         on_stage=report)
        except Interrupted:  # Ctrl-C / SIGTERM: this trial is failed, tried again when the study resumes
            trial.set_user_attr("interrupted", True)
            raise
        trial.set_user_attr("acc", record["acc"][setting])
        trial.set_user_attr("train_seconds", record["train_seconds"])
        if record["status"] == "diverged":  # a failed trial that counts against the budget (finished)
            trial.set_user_attr("diverged", record["diverged_at"])
            return float("nan")
        return float(record["metrics"][setting][metric])


def headline_metric(scenario: str, given: str | None) -> tuple[str, str]:
    """``--metric SETTING.METRIC``; default: the scenario's first report column (split: class_il.avg_acc)."""
    if given:
        setting, _, metric = given.partition(".")
        if not metric:
            raise UserError(f"--metric is SETTING.METRIC (e.g. class_il.avg_acc), got {given!r}")
        return setting, metric
    _, setting, metric = C.load_scenario_file(scenario)["report"]["columns"][0]
    return setting, metric


def describe_trial(t, done: int, budget: int, best) -> str:
    from optuna.trial import TrialState
    params = " ".join(f"{k}={fmt_value(v)}" for k, v in t.params.items())  # choices are JSON text (see suggest)
    if t.state == TrialState.COMPLETE:
        what = f"value {t.value:.2f}"
    elif t.state == TrialState.PRUNED:
        what = f"pruned after task {t.last_step}"
    else:
        what = "diverged" if t.user_attrs.get("diverged") else "failed"
    best_s = f" (best {best.value:.2f}, trial {best.number})" if best is not None else ""
    return f"trial {done}/{budget} (#{t.number}): {what}{best_s} | {params}"


def work(study, objective: Objective, quota: int, budget: int, base_seed: int, bar=None) -> None:
    """Run ``quota`` trials (a worker's share of what the budget still needs: the shares add up to the
    budget exactly, so parallel workers never overshoot it)."""
    import optuna
    from optuna.storages import fail_stale_trials
    fail_stale_trials(study)  # a dead worker's trial (no heartbeat): failed, its parameters queued again
    for _ in range(quota):
        # reseeded per trial number: a resumed or a parallel study samples trial n from the history it has
        study.sampler = optuna.samplers.TPESampler(seed=base_seed + len(study.get_trials(deepcopy=False)),
                                                   n_startup_trials=5)
        before = {t.number for t in study.get_trials(deepcopy=False)}
        study.optimize(objective, n_trials=1, gc_after_trial=False, show_progress_bar=False)
        now = finished(study)
        for t in (t for t in now if t.number not in before):
            print(describe_trial(t, len(now), budget, best_or_none(study)), flush=True)
        if bar is not None:
            bar.n = min(len(now), budget)
            bar.refresh()


def shares(todo: int, jobs: int) -> list[int]:
    """``todo`` trials split over ``jobs`` workers as evenly as they go (none gets zero)."""
    jobs = max(1, min(jobs, todo))
    return [todo // jobs + (i < todo % jobs) for i in range(jobs)] if todo > 0 else []


def write_tuned(path: pathlib.Path, study, attrs: dict, run_sets: dict, space: dict) -> dict:
    """The chosen values (the best complete trial) and the study's provenance, as a --tuned file."""
    best = best_or_none(study)
    if best is None:
        raise UserError(f"study {study.study_name}: no trial completed (all pruned or diverged); widen the search "
                        "space or raise --trials")
    values = {k: best.params[k] if space[k][0] != "choice" else json.loads(best.params[k]) for k in space}
    doc = {"study": study.study_name, **attrs, "trials_finished": len(finished(study)),
           "best_trial": best.number, "best_value": round(best.value, 4), "values": values,
           "run_sets": run_sets}  # what the tuned runs add besides the values (first-tasks: their tasks)
    atomic_write_text(path, "# written by bench.py tune; bench.py ... --tuned PROTOCOL applies it\n"
                      + yaml.safe_dump(doc, sort_keys=False))
    return doc


# ---------------------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench.py tune", description="Choose a strategy's hyperparameters on a "
                                "validation stream (Optuna TPE, median pruning), the test set never read.")
    p.add_argument("--scenario", required=True)
    p.add_argument("--strategy", nargs="+", required=True, help="strategy name(s): one study each, the same budget")
    p.add_argument("--profile", help="default: quick on the CPU, the scenario's cuda_profile on CUDA")
    p.add_argument("--trials", type=int, default=20, help="the budget: finished trials per study (default 20)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="held-out", help="; ".join(
        f"{k}: {v}" for k, v in PROTOCOLS.items()))
    p.add_argument("--validation-fraction", type=float, default=0.1, help="held-out share of each class's training "
                   "images (default 0.1)")
    p.add_argument("--first-tasks", type=int, default=2, help="first-tasks protocol: tune on this many tasks (default 2)")
    p.add_argument("--metric", help="SETTING.METRIC to maximise (default: the scenario's first table column, "
                   "split-cifar: class_il.avg_acc)")
    p.add_argument("--seed", type=int, default=0, help="the trials' run seed and the sampler's seed (default 0)")
    p.add_argument("--storage", help="SQLAlchemy URL of the study database (default: SQLite under OUT/tuning/)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes on the same study (default 1)")
    p.add_argument("--out", default="runs", help="where tuning/ goes (default runs/)")
    p.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every trial")
    p.add_argument("--device", default="auto")
    p.add_argument("--data", default="auto")
    p.add_argument("--data-root")
    p.add_argument("--no-download", action="store_true")
    p.add_argument("--plugin", action="append", default=[], help="a strategy plugin file (as for a run)")
    p.add_argument("--space", action="store_true", help="print each strategy's search space and exit")
    p.add_argument("--launcher", choices=("local", "ray"), default="local", help="local (default: --jobs processes "
                   "here) or ray: --jobs Ray tasks on a cluster, each a worker on the one study (docs/tuning.md)")
    p.add_argument("--address", help="with --launcher ray: the cluster to join (e.g. auto); default: a local one")
    p.add_argument("--ray-cpus", type=int, default=1, help="with --launcher ray: CPUs (and torch threads) per worker")
    p.add_argument("--ray-gpus", type=float, help="with --launcher ray: GPUs per worker (default 0 with --device "
                   "cpu, else 1)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one of --jobs' processes
    p.add_argument("--quota", type=int, default=0, help=argparse.SUPPRESS)  # its share of the trials
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from nlbench.plugins import load
    load(args.plugin, args.strategy)
    for strategy in args.strategy:
        search_space(args.scenario, strategy)  # every space checked before anything runs
    if args.space:
        for strategy in args.strategy:
            print(f"{strategy}: " + ", ".join(f"{k} {v}" for k, v in search_space(args.scenario, strategy).items()))
        return 0
    if args.trials < 1 or args.jobs < 1 or args.ray_cpus < 1:
        raise UserError("--trials, --jobs and --ray-cpus must be positive integers")
    if args.address and args.launcher != "ray":
        raise UserError("--address needs --launcher ray")
    if not 0 < args.validation_fraction < 1:
        raise UserError(f"--validation-fraction must be in (0, 1), got {args.validation_fraction}")
    try:
        quiet_optuna()
    except ImportError:
        raise UserError('bench.py tune needs Optuna: pip install "optuna>=4.9"') from None
    from nlbench.training.data import select_data
    from nlbench.training.device import resolve_device
    device = resolve_device(args.device)
    data = select_data(args.data, args.data_root, not args.no_download)
    profile = args.profile or C.default_profile(args.scenario, device.type)
    user_sets = C.parse_sets(args.set)
    metric = headline_metric(args.scenario, args.metric)
    if not args.worker:
        print(data.announce())
    import signal

    from nlbench.training.checkpoint import Interrupted

    def stop(signum, frame):  # SIGTERM between trials too (a run's own guard handles it inside a trial)
        raise Interrupted(signum, None)
    signal.signal(signal.SIGTERM, stop)
    for strategy in args.strategy:
        try:
            tune_one(args, strategy, profile, user_sets, metric, device, data, argv)
        except (Interrupted, KeyboardInterrupt) as exc:
            print("\ninterrupted: the study keeps its finished trials (the running one is tried again); rerun the "
                  "same command to continue", file=sys.stderr)
            return 128 + getattr(exc, "signum", signal.SIGINT)
    return 0


def tune_one(args, strategy, profile, user_sets, metric, device, data, argv) -> None:
    from tqdm import tqdm
    name = C.run_name(strategy, user_sets)
    base_cfg = C.resolve(args.scenario, strategy, profile, user_sets)
    trial_sets, run_sets = protocol_sets(args.protocol, base_cfg, args)
    space = search_space(args.scenario, strategy)
    fixed = [k for k in space if _is_set(user_sets, k, strategy)]
    if fixed:  # what the user fixed is not searched (e.g. cms --set strategy.periods=1: its matched control)
        print(f"tune {name}: {', '.join(fixed)} fixed by --set, not searched")
        space = {k: v for k, v in space.items() if k not in fixed}
        if not space:
            raise UserError(f"every key of {strategy}'s search space is fixed by --set; nothing to tune")
    sname = study_name(args.scenario, profile, data.kind, name, args.protocol)
    url = storage_url(args, sname)
    attrs = {"protocol": args.protocol, "protocol_sets": trial_sets, "sets": user_sets, "space": space,
             "budget": args.trials, "metric": ".".join(metric), "seed": args.seed}
    study = open_study(sname, url, attrs)
    objective = Objective(args.scenario, strategy, profile, user_sets, trial_sets, space, metric, args.seed,
                          device, data)
    if args.worker:
        work(study, objective, args.quota, args.trials, args.seed)
        return
    again = requeue_interrupted(study)
    have = len(finished(study))
    if again:
        print(f"tune {sname}: {again} trial(s) interrupted earlier are tried again")
    print(f"tune {sname}: {args.trials} trials ({have} finished before), {args.protocol} protocol, "
          f"maximising validation {'.'.join(metric)}; study in {url}")
    quotas = shares(args.trials - have, args.jobs)
    if args.launcher == "ray" and quotas:
        tune_on_ray(args, objective, sname, url, quotas, attrs)
    elif len(quotas) > 1:
        run_workers(argv, strategy, quotas)
    elif quotas:
        with tqdm(total=args.trials, initial=min(have, args.trials), desc=f"tune {name}", unit="trial",
                  leave=False, disable=None) as bar:
            work(study, objective, quotas[0], args.trials, args.seed, bar)
    doc = write_tuned(tuned_file(args.out, args.scenario, profile, data.kind, name, args.protocol), study,
                      {**{k: attrs[k] for k in ("protocol", "budget", "metric", "seed")}, "storage": shown(url, args.out)},
                      run_sets, space)
    print(f"tuned {name}: {' '.join(f'{k}={fmt_value(v)}' for k, v in doc['values'].items())} (validation "
          f"{doc['best_value']:.2f}, trial {doc['best_trial']} of {doc['trials_finished']}) -> "
          f"{tuned_file(args.out, args.scenario, profile, data.kind, name, args.protocol)}; "
          f"run it with bench.py --scenario {args.scenario} --strategy {strategy} --profile {profile} --tuned "
          f"{args.protocol} --out {args.out}" + (f" --set {' '.join(args.set)}" if args.set else ""))


def run_workers(argv: list[str], strategy: str, quotas: list[int]) -> None:
    """``--jobs J``: J processes work on the one study (each one torch thread per core share)."""
    cmd = [*BENCH, "tune", *_without(
        argv, "--strategy", "--jobs"), "--strategy", strategy, "--worker"]
    threads = max(1, (os.cpu_count() or 1) // len(quotas))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads))}
    procs = []
    for quota in quotas:
        procs.append(subprocess.Popen([*cmd, "--quota", str(quota)], env=env))
        time.sleep(1.0)  # one creates the tables first; SQLite then serialises the writers
    codes = [p.wait() for p in procs]
    if any(codes):
        raise UserError(f"a tuning worker failed (exit codes {codes}); rerun the same command to resume the study")


def _without(argv: list[str], *options: str) -> list[str]:
    """argv without these options and their values."""
    out, skip = [], False
    for a in argv:
        if a in options:
            skip = True
            continue
        if skip and not a.startswith("--"):
            continue
        skip = False
        out.append(a)
    return out


def tune_worker(job: dict) -> int:
    """In a Ray worker: ``quota`` trials of one tuning study (nlbench.launchers.tuning.work), on the study's
    database; returns how many it ran."""
    import torch

    from nlbench.launchers import tuning  # this module: the name a Ray worker imports it by
    from nlbench.training.data import select_data
    from nlbench.plugins import load
    from nlbench.training.device import resolve_device
    load(job["plugins"], [job["strategy"]])
    torch.set_num_threads(job["threads"])
    tuning.quiet_optuna()
    data = select_data(job["data_kind"], job["data_root"], download=False)
    study = tuning.open_study(job["study"], job["storage"], job["attrs"])
    objective = tuning.Objective(job["scenario"], job["strategy"], job["profile"], job["user_sets"],
                                 job["trial_sets"], job["space"], tuple(job["metric"]), job["seed"],
                                 resolve_device(job["device"]), data)
    tuning.work(study, objective, job["quota"], job["budget"], job["seed"])
    return job["quota"]


def tune_on_ray(args, objective, study: str, url: str, quotas: list[int], attrs: dict) -> None:
    """``bench.py tune --launcher ray``: one Ray task per share of the trials, all on one study. The
    study's database must be reachable from every node: the default SQLite file is, on a one-machine
    cluster or a shared filesystem; across machines give ``--storage`` a database server's URL."""
    from nlbench.launchers.ray_launcher import connect, gpus_per_run, import_ray
    ray = import_ray()
    connect(ray, args)
    gpus = gpus_per_run(args, ray.cluster_resources().get("GPU", 0))
    task = ray.remote(tune_worker).options(num_cpus=args.ray_cpus, num_gpus=gpus, max_retries=0)
    job = {"study": study, "storage": url, "attrs": attrs, "scenario": objective.scenario,
           "strategy": objective.strategy, "profile": objective.profile, "user_sets": objective.user_sets,
           "trial_sets": objective.trial_sets, "space": objective.space, "metric": list(objective.metric),
           "seed": objective.seed, "device": args.device, "data_kind": objective.data.kind,
           "data_root": str(pathlib.Path(args.data_root).resolve()) if args.data_root else None,
           "plugins": [str(pathlib.Path(p).resolve()) for p in args.plugin], "threads": args.ray_cpus,
           "budget": attrs["budget"]}
    refs = [task.remote({**job, "quota": q}) for q in quotas]
    print(f"ray: {len(refs)} tuning workers ({'+'.join(map(str, quotas))} trials) on "
          f"{ray.cluster_resources().get('CPU', 0):.0f} CPUs; each {args.ray_cpus} CPU, {gpus:g} GPU")
    try:
        ray.get(refs)
    except ray.exceptions.RayError as exc:
        for ref in refs:
            ray.cancel(ref, force=True)
        cause = getattr(exc, "cause", None) or exc
        raise UserError(f"a tuning worker failed ({type(cause).__name__}: {str(cause).splitlines()[0]}); rerun the "
                        "same command to resume the study") from exc
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
