"""README and `make help` stay true: every setting documented, every target listed."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_settings_tables_are_current():
    proc = subprocess.run(
        [sys.executable, "scripts/settings_doc.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr


def test_every_make_target_has_help_and_readme_mentions_it():
    makefile = (ROOT / "Makefile").read_text()
    documented = set(re.findall(r"^([a-z][a-z-]+):.*## ", makefile, flags=re.M))
    help_out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True).stdout
    readme = (ROOT / "README.md").read_text()
    for target in documented:
        assert target in help_out
        assert f"`{target}`" in readme, f"README does not mention make target {target}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make setup" in readme
    assert "make test" in ci and "make setup" in ci
