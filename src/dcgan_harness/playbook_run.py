"""Run ansible-playbook with live progress, and read back what it did.

The default output callback stays on, so people watch the run as usual; the
text is also kept to find the tasks that reported a change (Molecule's
idempotence check) and, through ansible.posix.profile_tasks, each task's time.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TASK_HEADER = re.compile(r"^TASK \[(?P<name>.*)\] \**$")
CHANGED_LINE = re.compile(r"^changed: \[(?P<host>[^\]]+)\]")
TASK_TIME = re.compile(r"^(?P<name>.+?) -{2,} (?P<seconds>\d+\.\d+)s$")

# Which step of the assignment each task belongs to, by words in its name.
PHASES = (
    ("fetch", ("Fetch",)),
    ("train", ("Train", "training", "finished a run", "Fail with")),
    ("build", ("image",)),
    ("clone", ("Clone", "MNIST", "folders")),
    ("install", ("apt", "Docker", "docker group", "Reconnect", "SSH", "facts", "placeholder")),
)


@dataclass
class PlaybookResult:
    returncode: int
    output: str
    changed_tasks: list[str] = field(default_factory=list)
    task_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def phase_seconds(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for name, seconds in self.task_seconds.items():
            phase = phase_of(name)
            totals[phase] = round(totals.get(phase, 0.0) + seconds, 2)
        return totals

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def phase_of(task_name: str) -> str:
    for phase, words in PHASES:
        if any(word in task_name for word in words):
            return phase
    return "other"


def changed_tasks(output: str) -> list[str]:
    """Names of the tasks that reported 'changed' on any host, in run order."""
    names: list[str] = []
    current = ""
    for line in output.splitlines():
        header = TASK_HEADER.match(line)
        if header:
            current = header.group("name")
        elif CHANGED_LINE.match(line) and current and current not in names:
            names.append(current)
    return names


def task_seconds(output: str) -> dict[str, float]:
    """Per-task durations from profile_tasks' closing table."""
    seconds: dict[str, float] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("TASKS RECAP"):
            in_recap = True
            continue
        match = TASK_TIME.match(line.strip()) if in_recap else None
        if match:
            seconds[match.group("name")] = seconds.get(match.group("name"), 0.0) + float(match.group("seconds"))
    return seconds


def run_playbook(
    playbook: Path,
    inventory: Path,
    extra_vars: dict | None = None,
    log_path: Path | None = None,
    echo: bool = True,
) -> PlaybookResult:
    """Run a playbook, echoing its output line by line, and parse what it did."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(extra_vars or {}, handle)
        vars_file = handle.name
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO_ROOT / "ansible.cfg"),
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_NOCOLOR="1",
        PROFILE_TASKS_TASK_OUTPUT_LIMIT="all",
        PROFILE_TASKS_SORT_ORDER="none",
        PYTHONUNBUFFERED="1",
    )
    command = [_ansible_playbook(), "-i", str(inventory), "-e", f"@{vars_file}", str(playbook)]
    lines: list[str] = []
    log = open(log_path, "w", encoding="utf-8") if log_path else None
    try:
        with subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        ) as process:
            for line in process.stdout:
                lines.append(line)
                if echo:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                if log:
                    log.write(line)
                    log.flush()
            returncode = process.wait()
    finally:
        if log:
            log.close()
        os.unlink(vars_file)
    output = "".join(lines)
    return PlaybookResult(returncode, output, changed_tasks(output), task_seconds(output))


def _ansible_playbook() -> str:
    beside_python = Path(sys.executable).parent / "ansible-playbook"
    return str(beside_python) if beside_python.exists() else "ansible-playbook"
