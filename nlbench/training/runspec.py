"""A planned run, in one shape: ``RunSpec`` (scenario, strategy, run name, profile, seed, resolved
config, data set, record path), made by one function (``make_spec``) for the command line's sweeps
(``plan_sweep``) and for the campaign scheduler (nlbench.launchers.campaign.plan), and taken by the local
launcher (nlbench.cli), the campaign, the Ray launcher (nlbench.launchers.ray_launcher) and the identity check
(nlbench.launchers.sweep.check_existing)."""
from __future__ import annotations

import pathlib
from dataclasses import dataclass

from nlbench.training import config as C
from nlbench.errors import UserError
from nlbench.training.records import record_path
from nlbench.registry import AVALANCHE_PREFIX, STRATEGIES, ordered


@dataclass(frozen=True)
class RunSpec:
    scenario: str
    strategy: str        # registry name
    name: str            # run name (strategy@overrides): the record's folder
    profile: str
    seed: int
    cfg: dict            # the resolved config (nlbench.training.config.resolve): what the run trains with
    builder: str         # the scenario's builder (split, permuted, standard, ...), read when planned
    data: str = "full"   # the data set's kind (full, mini): part of where the record lives
    path: pathlib.Path | None = None  # its record (None: a run that writes none, e.g. a tuning trial)

    @property
    def checkpoint(self) -> pathlib.Path:
        return self.path.with_suffix(".ckpt")

    def group_key(self) -> tuple:
        """Runs with the same key differ only by seed: a seed-parallel group may train them together."""
        return (self.scenario, self.name, self.profile, self.data)

    def label(self) -> str:
        return f"{self.scenario}/{self.name} seed {self.seed}"


def make_spec(out: str | pathlib.Path, scenario: str, strategy: str, profile: str, sets: dict, seed: int,
              data_kind: str, tuned: str | None = None) -> RunSpec:
    """The one way a run is planned: its name from the overrides (plus, with ``tuned``, the values a
    study chose: nlbench.training.tuned), its config resolved and validated before anything runs."""
    name = C.run_name(strategy, sets)
    if tuned:
        from nlbench.training.tuned import merge_sets, tuned_sets
        chosen, name = tuned_sets(out, scenario, strategy, profile, data_kind, name, tuned)
        sets = merge_sets(sets, chosen)
    cfg = C.resolve(scenario, strategy, profile, sets)
    return RunSpec(scenario, strategy, name, profile, seed, cfg, C.load_scenario_file(scenario)["builder"],
                   data_kind, record_path(out, profile, data_kind, scenario, name, seed))


def plan_sweep(out, scenarios: list[str], strategies: list[str], seeds: list[int], sets: dict,
               profile: str | None, device_type: str, data_kind: str, tuned: str | None = None,
               say=print) -> list[RunSpec]:
    """The command line's sweep: every scenario x strategy x seed, scenario-major, seeds innermost
    (so that a seed-parallel group's seeds are neighbours)."""
    plan = []
    for scenario in scenarios:
        C.load_scenario_file(scenario)
        chosen = profile or C.default_profile(scenario, device_type)
        if not profile:
            say(f"profile: {chosen} for {scenario} (default on {device_type}; choose with --profile)")
        for strategy in expand_strategies(strategies, scenario):
            plan += [make_spec(out, scenario, strategy, chosen, sets, seed, data_kind, tuned) for seed in seeds]
    return plan


def ordered_strategies() -> list[str]:
    """Every loaded strategy in table order (Avalanche's are asked for by name, never in 'all')."""
    return ordered(s for s in STRATEGIES if not s.startswith(AVALANCHE_PREFIX))


def expand_strategies(names: list[str], scenario: str) -> list[str]:
    """``all``: every registered strategy (those that train exactly like fine-tuning left out of a
    one-task scenario); otherwise the names, each checked."""
    if names != ["all"]:
        for n in names:
            if n not in STRATEGIES:
                raise UserError(f"unknown strategy '{n}'; valid: {', '.join(ordered_strategies())}, all")
        return names
    chosen = ordered_strategies()
    if C.load_scenario_file(scenario)["builder"] == "standard":
        chosen = [s for s in chosen if not STRATEGIES[s].obj.skip_on_one_task]
    return chosen
