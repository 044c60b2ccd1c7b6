"""Helpers of the grade layer: the test class, the canary home, the grader's run."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
# Graded in its own run, with a short --timeout.
NEVER_ENDS = "never-ends"
NEVER_ENDS_TIMEOUT_S = 30
# What the hostile submissions try to leave on the machine that runs ansible-playbook.
HOSTILE_MARKERS = "/tmp/dcgan-hostile-*"
GRADING_ID = re.compile(r"grade: run (g[0-9a-f]+)")


@dataclass
class GradedClass:
    out: Path
    stdout: str
    stderr: str
    returncode: int
    canary: str
    home: Path

    @property
    def grading_id(self) -> str:
        match = GRADING_ID.search(self.stderr)
        assert match, f"no 'grade: run <id>' line in the grader's output:\n{self.stderr[-2000:]}"
        return match.group(1)

    def results(self, name: str) -> dict:
        path = self.out / name / "results.json"
        assert path.is_file(), f"{path} was not written; grader output:\n{self.stderr[-3000:]}"
        return json.loads(path.read_text())


def canary_home(root: Path, canary: str) -> Path:
    """A home folder holding what a grader's home holds: AWS keys, an SSH key."""
    home = root / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {canary}\n")
    (home / ".ssh").mkdir()
    (home / ".ssh" / "id_rsa").write_text(f"-----BEGIN OPENSSH PRIVATE KEY-----\n{canary}\n")
    return home


def class_folder(root: Path) -> Path:
    """The test submissions, plus two of them packed as the archives students upload."""
    folder = root / "class"
    shutil.copytree(SUBMISSIONS, folder, ignore=shutil.ignore_patterns(f"{NEVER_ENDS}.yaml", "__pycache__"))
    with tarfile.open(folder / "packed-tarball.tar.gz", "w:gz") as tar:
        tar.add(SUBMISSIONS / "fails-at-runtime.yaml", arcname="student/configure.yaml")
    with zipfile.ZipFile(folder / "packed-plugins.zip", "w") as bundle:
        for path in sorted((SUBMISSIONS / "hostile-plugins").rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                bundle.write(path, arcname=str(path.relative_to(SUBMISSIONS)))
    return folder


def run_grader(args: list[str], home: Path, canary: str, out: Path) -> GradedClass:
    env = dict(
        os.environ,
        HOME=str(home),
        AWS_ACCESS_KEY_ID="AKIA" + canary[:16].upper(),
        AWS_SECRET_ACCESS_KEY=canary,
        DCGAN_CANARY=canary,
    )
    command = [sys.executable, "-m", "dcgan_harness", "grade", "--out", str(out), *args]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    sys.stderr.write(proc.stderr[-6000:])
    return GradedClass(out, proc.stdout, proc.stderr, proc.returncode, canary, home)


def remove_markers() -> None:
    for path in glob.glob(HOSTILE_MARKERS):
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)
