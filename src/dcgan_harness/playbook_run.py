"""Run ansible-playbook with live progress, and read back what it did.

The default output callback stays on, so people watch the run as usual; the
text is also kept to find the tasks that reported a change (Molecule's
idempotence check) and, through ansible.posix.profile_tasks, each task's time.

ansible-playbook runs in a session of its own with SSH control sockets in a
folder of its own, so that stopping the harness (Ctrl-C, CI's SIGTERM) stops
ansible-playbook, its workers and its SSH connections too: nothing of the run
is left orphaned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TASK_HEADER = re.compile(r"^TASK \[(?P<name>.*)\] \**$")
CHANGED_LINE = re.compile(r"^changed: \[(?P<host>[^\]]+)\]")
TASK_TIME = re.compile(r"^(?P<name>.+?) -{2,} (?P<seconds>\d+\.\d+)s$")
# Seconds ansible-playbook gets to stop after SIGTERM before the rest of its tree is killed.
STOP_GRACE_S = 5.0

# Which step of the assignment each task belongs to, by words in its name.
PHASES = (
    ("fetch", ("Fetch",)),
    ("train", ("Train", "training", "finished a run", "Fail with")),
    ("build", ("image", "free space")),
    ("clone", ("Clone", "MNIST", "folders")),
    ("install", ("apt", "Docker", "docker group", "Reconnect")),
    # Reaching the VM and learning its facts: no install's work, and no part of
    # the bare apt-get install the benchmark compares the install with.
    ("connect", ("SSH", "facts", "placeholder")),
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
    # Short enough for a unix socket path (ansible adds a 40-character hash).
    control_dir = tempfile.mkdtemp(prefix="dcgan-cp-")
    env["ANSIBLE_SSH_CONTROL_PATH_DIR"] = control_dir
    command = [_ansible_playbook(), "-i", str(inventory), "-e", f"@{vars_file}", str(playbook)]
    lines: list[str] = []
    log = open(log_path, "w", encoding="utf-8") if log_path else None
    process = None
    try:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            # Its own session: a terminal's Ctrl-C reaches only the harness,
            # which then stops the whole tree below, in order.
            start_new_session=True,
        )
        for line in process.stdout:
            lines.append(line)
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
            if log:
                log.write(line)
                log.flush()
        returncode = process.wait()
    except BaseException:
        # Interrupted (KeyboardInterrupt from Ctrl-C or SIGTERM) or broken: the
        # playbook must not keep running on its own, orphaned.
        if process is not None:
            with _signals_held():
                stop_process_tree(process, control_dir)
        raise
    finally:
        if process is not None and process.stdout:
            process.stdout.close()
        if log:
            log.close()
        os.unlink(vars_file)
        _close_control_masters(control_dir)
    output = "".join(lines)
    return PlaybookResult(returncode, output, changed_tasks(output), task_seconds(output))


def stop_process_tree(process: subprocess.Popen, control_dir: str, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM to ansible-playbook's whole session, SIGKILL to what is left after grace seconds.

    The session holds ansible-playbook, its forked workers and the ssh
    clients they started; SSH control masters detach into sessions of their
    own, so they are found by their control folder and stopped the same way.
    """
    session = process.pid
    _signal_session(session, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _session_members(session):
        if process.poll() is None:
            try:
                process.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        else:
            time.sleep(0.1)
    _signal_session(session, signal.SIGKILL)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    for pid in _processes_naming(control_dir):
        _kill(pid, signal.SIGKILL)


@contextmanager
def _signals_held():
    """A second Ctrl-C or SIGTERM must not cut the stopping of the tree short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _signal_session(session: int, signum: int) -> None:
    try:
        os.killpg(session, signum)
    except (ProcessLookupError, PermissionError):
        pass
    # A member that made its own process group is still in the session.
    for pid in _session_members(session):
        _kill(pid, signum)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _proc_stat(pid: str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            text = handle.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields after it do not.
    return text[text.rindex(")") + 2 :].split()


def _session_members(session: int) -> list[int]:
    """Live (not zombie) processes whose session id is the given one."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _proc_stat(entry)
        # fields: state ppid pgrp session ...
        if fields and fields[0] != "Z" and int(fields[3]) == session:
            members.append(int(entry))
    return members


def _processes_naming(text: str) -> list[int]:
    """Processes whose command line contains the text (the run's SSH control folder)."""
    found = []
    needle = text.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if needle in handle.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _close_control_masters(control_dir: str) -> None:
    """Stop the SSH control masters of a finished run and remove their folder.

    Their sockets live only in this run's folder, so no later run could reuse
    them; left alone they would idle for ControlPersist seconds.
    """
    for pid in _processes_naming(control_dir):
        _kill(pid, signal.SIGTERM)
    shutil.rmtree(control_dir, ignore_errors=True)


def _ansible_playbook() -> str:
    beside_python = Path(sys.executable).parent / "ansible-playbook"
    return str(beside_python) if beside_python.exists() else "ansible-playbook"
