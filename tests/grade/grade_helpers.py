"""Helpers of the grade layer: the test class, the canary home, the grader's run."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

SUBMISSIONS = Path(__file__).resolve().parent / "submissions"
# Graded in its own run, with a short --timeout.
NEVER_ENDS = "never-ends"
NEVER_ENDS_TIMEOUT_S = 30
# What the hostile submissions try to leave on the machine that runs ansible-playbook.
HOSTILE_MARKERS = "/tmp/dcgan-hostile-*"
# The port hostile-network.yaml tries on the grading machine's addresses.
HOSTILE_PORT = 47611
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


def grader_env(home: Path, canary: str) -> dict[str, str]:
    """The grader's environment with the secrets a teaching assistant's would hold."""
    return dict(
        os.environ,
        HOME=str(home),
        AWS_ACCESS_KEY_ID="AKIA" + canary[:16].upper(),
        AWS_SECRET_ACCESS_KEY=canary,
        DCGAN_CANARY=canary,
    )


def grader_command(args: list[str], out: Path) -> list[str]:
    return [sys.executable, "-m", "dcgan_harness", "grade", "--out", str(out), *args]


def run_grader(args: list[str], home: Path, canary: str, out: Path) -> GradedClass:
    proc = subprocess.run(grader_command(args, out), env=grader_env(home, canary), capture_output=True, text=True, timeout=3600)
    sys.stderr.write(proc.stderr[-6000:])
    return GradedClass(out, proc.stdout, proc.stderr, proc.returncode, canary, home)


def remove_markers() -> None:
    for path in glob.glob(HOSTILE_MARKERS):
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)


class Listener:
    """A service of the grading machine on all its interfaces, counting who connects."""

    def __init__(self, port: int):
        self.peers: list[str] = []
        self.server = socket.create_server(("0.0.0.0", port), reuse_port=False)
        self.server.settimeout(0.5)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, address = self.server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.peers.append(address[0])
            connection.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=2)
        self.server.close()


def start_grader(args: list[str], home: Path, canary: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        grader_command(args, out),
        env=grader_env(home, canary),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A shell that runs pytest in the background ignores SIGINT, and the
        # grader would inherit that; Ctrl-C must reach it as at a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_line(process: subprocess.Popen, pattern: re.Pattern, timeout: float) -> re.Match:
    """Read the grader's progress until a line matches; the rest stays unread."""
    deadline = time.monotonic() + timeout
    seen = []
    for line in process.stderr:
        seen.append(line)
        match = pattern.search(line)
        if match:
            return match
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no line matching {pattern.pattern!r}; the grader said:\n{''.join(seen[-20:])}")


def unprivileged_vms_of(grading_id: str) -> list[str]:
    """The LXD VMs (and their disks) a grading run left; none when LXD never ran."""
    from dcgan_harness.localcloud.lxd import VM_PREFIX, leftover_disks, try_connect_lxd

    lxd = try_connect_lxd()
    names = [i.name for i in lxd.instances.all()] if lxd is not None else []
    names += [f"disk {d}" for d in leftover_disks()]
    return [n for n in names if n.removeprefix("disk ").startswith(f"{VM_PREFIX}-{grading_id}")]
