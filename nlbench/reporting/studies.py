"""Reading tuning studies (Optuna's SQLite files under a records folder): the report's studies table and
figures, and the helpers nlbench.launchers.tuning shares (Optuna kept quiet; which trials count against the
budget; the best trial, if any). The report reads studies through this module only, so it does not
depend on the tuner or its launchers."""
from __future__ import annotations

import json
import pathlib


def quiet_optuna():
    """Optuna, imported with its logging at ERROR (a trial stopped by Ctrl-C / SIGTERM is "failed" to it,
    which would log its traceback: the command says it in one line; a real error still propagates) and
    without the warnings that heartbeats and fail_stale_trials are experimental (the suite pins optuna>=4.9)."""
    import warnings

    import optuna
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def finished(study) -> list:
    """The trials that count against the budget: complete, pruned, or failed by divergence."""
    from optuna.trial import TrialState
    return [t for t in study.get_trials(deepcopy=False)
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and t.user_attrs.get("diverged"))]


def fmt_value(v) -> str:
    if isinstance(v, str):  # a categorical parameter as the study stores it (JSON text), or a decoded string
        try:
            v = json.loads(v)
        except json.JSONDecodeError:
            pass
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def best_or_none(study):
    try:
        return study.best_trial
    except ValueError:  # no complete trial yet
        return None


def study_files(roots: list[pathlib.Path]) -> list[pathlib.Path]:
    """The tuning studies under the records folders."""
    return sorted(p for root in roots for p in root.rglob("tuning/*.sqlite3"))


def studies_table(roots: list[pathlib.Path]) -> str | None:
    """One row per study found under the records folders: its budget and what it chose."""
    files = study_files(roots)
    if not files:
        return None
    import pandas as pd
    from optuna.trial import TrialState
    optuna = quiet_optuna()
    rows = []
    for path in files:
        study = optuna.load_study(study_name=path.stem, storage=f"sqlite:///{path.resolve()}")
        trials = study.get_trials(deepcopy=False)
        count = {s: sum(t.state == s for t in trials) for s in (TrialState.COMPLETE, TrialState.PRUNED)}
        best = best_or_none(study)
        rows.append({"Study": path.stem, "Protocol": study.user_attrs.get("protocol", "?"),
                     "Metric": study.user_attrs.get("metric", "?"), "Budget": str(study.user_attrs.get("budget")),
                     "Complete / pruned / diverged": f"{count[TrialState.COMPLETE]} / {count[TrialState.PRUNED]} / "
                                                     f"{len(finished(study)) - sum(count.values())}",
                     "Best (validation)": "n/a" if best is None else f"{best.value:.2f}",
                     "Chosen values": "n/a" if best is None else " ".join(
                         f"{k}={fmt_value(v)}" for k, v in best.params.items())})
    return ("Tuning studies (`python bench.py tune`, nlbench.launchers.tuning; docs/tuning.md): the budget is finished "
            "trials per method; values are validation accuracies (held-out training images, never the test set) "
            "at the study's seed, from TPE with median pruning.\n\n"
            f"{pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)}\n")


def study_figures(roots: list[pathlib.Path], folder: pathlib.Path) -> list[tuple[str, str]]:
    """Optuna's own plots of each study: the optimization history and the parameter importances."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm
    optuna = quiet_optuna()
    written = []
    for path in study_files(roots):
        study = optuna.load_study(study_name=path.stem, storage=f"sqlite:///{path.resolve()}")
        if best_or_none(study) is None:
            continue
        plots = [("history", ovm.plot_optimization_history, "optimization history")]
        if len(study.best_trial.params) > 1:  # importances need two parameters or more
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)  # its forest is random: fixed, reproducible
            plots.append(("importance", lambda s: ovm.plot_param_importances(s, evaluator=evaluator),
                          "parameter importances (fANOVA)"))
        for kind, plot, what in plots:
            name = f"tuning-{path.stem}-{kind}.png"
            ax = plot(study)
            ax.set_title(f"{ax.get_title()}: study {path.stem}", fontsize=9)  # which strategy, scenario, protocol
            ax.figure.tight_layout()
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{name}.tmp.png"
            ax.figure.savefig(tmp, dpi=110, metadata={"Software": None})
            tmp.replace(folder / name)
            plt.close(ax.figure)
            written.append((f"figures/{name}", f"Tuning study {path.stem}: {what} (Optuna)"))
    return written
