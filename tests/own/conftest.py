"""The own layer: a student's playbook (--playbook) deployed the way the grader
deploys it, on a fresh unprivileged VM shaped like the course's (group `cloud`,
host `compute01`, user `ubuntu`), upstream's clone URL redirected to the
served app, MNIST in place, fast mode; then checked from outside the VM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def own_grading(request, tmp_path_factory) -> dict:
    playbook = Path(request.config.getoption("--playbook")).resolve()
    out = tmp_path_factory.mktemp("own")
    folder = out / "submission"
    folder.mkdir()
    (folder / "configure.yaml").write_bytes(playbook.read_bytes())
    print(f"own layer: deploying {playbook} on a fresh unprivileged VM, as the grader does", file=sys.stderr)
    proc = subprocess.run(
        [sys.executable, "-m", "dcgan_harness", "grade", "--force", "--out", str(out / "grades"), str(folder)],
        stdout=subprocess.PIPE, stderr=None, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, f"the grader could not run (exit {proc.returncode})"
    results = out / "grades" / "submission" / "results.json"
    assert results.is_file(), f"{results} was not written"
    return {"results": json.loads(results.read_text()), "log": out / "grades" / "submission" / "log.txt"}
