"""`make own PLAYBOOK=...` on a student's broken playbook: the layer fails, on the steps it misses only,
each with the grader's own words."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from grade_helpers import SUBMISSIONS

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_own_layer_fails_a_playbook_without_the_install_on_that_step_and_its_followers(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rA", "-q", "--basetemp", str(tmp_path),
         "tests/own", "--playbook", str(SUBMISSIONS / "missing-install.yaml")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    failed = [line for line in proc.stdout.splitlines() if line.startswith("FAILED ")]
    passed = [line for line in proc.stdout.splitlines() if line.startswith("PASSED ")]
    assert sorted(line.split("[")[-1].split("]")[0] for line in failed) == ["build", "fetch", "install", "run"], output[-3000:]
    assert any("[clone]" in line for line in passed) and any("static" in line for line in passed), output[-3000:]
    # The failure says what the grader said about the step, and where the play's log is.
    install = next(line for line in proc.stdout.splitlines() if "AssertionError: install: " in line)
    assert "play log: " in proc.stdout[proc.stdout.index(install):], output[-3000:]
