"""The documentation: the site builds with mkdocs --strict (a broken link or a missing page fails), the
README stays a landing page, and the command line's options are all documented."""
import argparse
import pathlib
import re
import shlex
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_the_docs_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "site" / "verdict" / "index.html").exists()


def test_the_readme_is_a_landing_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        assert (ROOT / target).exists(), target


def test_every_command_line_option_is_documented():
    from nlbench.launchers.campaign import build_parser as campaign_parser
    from nlbench.cli import build_parser
    from nlbench.launchers.tuning import build_parser as tune_parser
    docs = "".join((ROOT / "docs" / name).read_text() for name in ("command-line.md", "protocols.md", "ray.md",
                                                                   "tuning.md"))
    for parser in (build_parser(), campaign_parser(), tune_parser()):
        options = [o for a in parser._actions for o in a.option_strings
                   if o.startswith("--") and o != "--help" and a.help != argparse.SUPPRESS]
        assert [o for o in options if o not in docs] == []


PLACEHOLDER = re.compile(r"^[A-Z][A-Z_=]*$|[\[\]{}]|\.\.\.|^\$")  # synopsis words (NAME, SECONDS), [opt], {a,b}, ..., $VAR


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every ``python bench.py ...`` example of README.md and docs/*.md, as (where, its arguments):
    code lines (backslash continuations joined, a trailing ``# comment`` dropped) and inline code."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"\\\n\s*", " ", path.read_text())
        lines = [line.strip() for line in text.splitlines() if line.strip().startswith("python bench.py")]
        lines += re.findall(r"`(python bench\.py[^`]*)`", text)
        for line in lines:
            args = shlex.split(line.split(" #")[0], comments=False)[2:]
            found.append((f"{path.name}: {line}", args))
    return found


def concrete(args: list[str]) -> bool:
    """An example to check, not a synopsis with placeholders."""
    return bool(args) and not any(PLACEHOLDER.search(a) for a in args)


SUBCOMMANDS = ("report", "campaign", "tune", "speed", "calibrate")


def options_of(subcommand: str | None, capsys) -> str:
    from nlbench.cli import main
    with pytest.raises(SystemExit):
        main([*([subcommand] if subcommand else []), "--help"])
    return capsys.readouterr().out


def test_every_documented_command_uses_options_and_names_that_exist(capsys):
    """The README's and the docs' concrete commands: each option is one its subcommand has, each
    scenario, profile, strategy and campaign it names exists, and its --set keys resolve."""
    from nlbench.training import config as C
    from nlbench.reporting.specs import load_campaign
    from nlbench.plugins import load
    examples = [(where, args) for where, args in documented_commands() if concrete(args)]
    assert len(examples) >= 15, examples  # the extraction still finds them
    helps = {sub: options_of(sub, capsys) for sub in (None, *SUBCOMMANDS)}
    for where, args in examples:
        sub = args[0] if args[0] in SUBCOMMANDS else None
        rest = args[1:] if sub else args
        unknown = [a.split("=")[0] for a in rest if a.startswith("--") and a.split("=")[0] not in helps[sub]]
        assert not unknown, f"{where}: unknown options {unknown}"
        if sub == "campaign":
            for name in [a for a in rest if not a.startswith("-")][:1]:
                load_campaign(name)
        if sub in (None, "tune") and "--scenario" in rest and "--plugin" not in rest:  # a plugin's own example
            # (docs/strategies.md) is run whole by tests/test_documented_commands.py
            values = option_values(rest)
            load((), values.get("--strategy", []))
            scenario = values["--scenario"][0]
            profile = (values.get("--profile") or [C.default_profile(scenario, "cpu")])[0]
            for strategy in values.get("--strategy", []):
                C.resolve(scenario, strategy, profile, C.parse_sets(values.get("--set", [])))


def option_values(args: list[str]) -> dict[str, list[str]]:
    """--option -> the words after it, up to the next option."""
    values, current = {}, None
    for a in args:
        if a.startswith("--"):
            current = values.setdefault(a, [])
        elif current is not None:
            current.append(a)
    return values


def test_the_quick_start_and_the_fast_documented_commands_run(bench, tmp_path, capsys):
    """The README's quick start and the documented commands that take seconds, run as written (the
    training one on the synthetic data at the tests' tiny size)."""
    from nlbench.cli import main
    commands = {" ".join(args) for _, args in documented_commands()}
    quick_start = "--scenario split-cifar --strategy nested"
    assert quick_start in commands
    code, out = bench(*quick_start.split())
    assert code == 0 and (out / "quick" / "full" / "split-cifar" / "nested" / "seed0.json").exists()
    for fast in ("--list", "tune --scenario split-cifar --strategy nested --space",
                 "campaign der-table2 --status --out results/runs"):
        assert fast in commands, fast
        assert main(fast.split()) == 0, fast
    assert main(["report", "--runs", str(out), "--out", str(tmp_path / "report"), "--no-figures"]) == 0
    assert (tmp_path / "report" / "tables" / "split-cifar.md").exists()
    # a quick-profile run alone pairs nothing in the avalanche-parity campaign: no empty campaign table
    assert not list((tmp_path / "report" / "tables").glob("*avalanche-parity*"))
