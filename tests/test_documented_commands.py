"""Commands the README and the docs tell a new user to type, run as written (on tiny settings added with
--set): the two a new user found wrong (issue 46) and the main job's record path."""
from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
TINY = ["--data", "mini", "--quiet", "--set", "data.tasks=[0,1]", "train.epochs=1", "data.train_per_class=256",
        "data.test_per_class=20"]


def documented(page: str, pattern: str) -> str:
    """The first command of a page that matches ``pattern`` (in a code span or an indented block)."""
    text = (ROOT / page).read_text()
    found = re.search(pattern, text)
    assert found, f"{page} no longer shows {pattern}"
    return found.group(0)


def test_the_readme_main_job_writes_its_record_where_the_readme_says(tmp_path):
    command = documented("README.md", r"python bench.py --scenario split-cifar --strategy nested")
    said = documented("README.md", r"runs/quick/mini/split-cifar/nested/seed0\.json")
    args = command.split()[2:]
    done = subprocess.run([sys.executable, str(ROOT / "bench.py"), *args, *TINY], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / said).exists()


def test_the_plugin_example_of_docs_strategies_runs_as_written_and_equals_the_built_in_adam(tmp_path):
    page = (ROOT / "docs" / "strategies.md").read_text()
    code = re.search(r"```python\n(from nlbench import Strategy, register_strategy.*?)```", page, re.S).group(1)
    (tmp_path / "my_strategy.py").write_text(code)
    command = documented("docs/strategies.md", r"python bench\.py --scenario split-cifar --plugin my_strategy\.py "
                                               r"--strategy my-finetune")
    out = tmp_path / "runs"
    done = subprocess.run([sys.executable, str(ROOT / "bench.py"), *command.split()[2:], "--out", str(out), *TINY],
                          cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    builtin = subprocess.run([sys.executable, str(ROOT / "bench.py"), "--scenario", "split-cifar", "--strategy", "adam",
                              "--out", str(out), *TINY], cwd=tmp_path, capture_output=True, text=True)
    assert builtin.returncode == 0, builtin.stderr
    import json
    mine = json.loads(next(out.rglob("my-finetune/seed0.json")).read_text())
    adam = json.loads(next(out.rglob("adam/seed0.json")).read_text())
    assert mine["acc"] == adam["acc"]
