"""The documentation: the site builds with mkdocs --strict (a broken link or a missing page fails), the
README stays a landing page, and the command line's options are all documented."""
import argparse
import pathlib
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
    import re
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        assert (ROOT / target).exists(), target


def test_every_command_line_option_is_documented():
    from nlbench.campaign import build_parser as campaign_parser
    from nlbench.cli import build_parser
    from nlbench.tuning import build_parser as tune_parser
    docs = "".join((ROOT / "docs" / name).read_text() for name in ("command-line.md", "protocols.md", "ray.md",
                                                                   "tuning.md"))
    for parser in (build_parser(), campaign_parser(), tune_parser()):
        options = [o for a in parser._actions for o in a.option_strings
                   if o.startswith("--") and o != "--help" and a.help != argparse.SUPPRESS]
        assert [o for o in options if o not in docs] == []
