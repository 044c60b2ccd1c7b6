"""A testinfra host on a VM whose commands have deadlines: one each, and one
for all of them together.

testinfra's own docker:// backend waits for a command as long as it runs,
and a playbook can leave on its VM what blocks a reader forever (a FIFO in
place of a file). Past its deadline, a command's `docker exec` is killed and
CommandTimedOut raised; what it left running on the VM goes with the VM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

from testinfra.backend.docker import DockerBackend
from testinfra.host import Host


class CommandTimedOut(Exception):
    """A command on the VM ran past its deadline, or the deadline of them all passed before it began."""


class DeadlineDockerBackend(DockerBackend):
    """testinfra's docker:// backend, with a deadline on each command and one on all of them."""

    def __init__(self, name: str, deadline_s: float, command_timeout_s: float, max_output: int):
        super().__init__(name)
        self.deadline = time.monotonic() + deadline_s
        self.deadline_s = deadline_s
        self.command_timeout_s = command_timeout_s
        self.max_output = max_output

    def run(self, command: str, *args: str, **kwargs):
        cmd = self.get_command(command, *args)
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CommandTimedOut(f"the {self.deadline_s:g}s for all commands on the VM were spent before `{_short(cmd)}`")
        timeout = min(self.command_timeout_s, left)
        user = ["-u", self.user] if self.user is not None else []
        code, stdout, stderr = run_bounded(["docker", "exec", *user, self.name, "/bin/sh", "-c", cmd], timeout, self.max_output)
        if code is None:
            raise CommandTimedOut(f"`{_short(cmd)}` did not finish within {timeout:.0f}s on the VM")
        result = self.result(code, self.encode(cmd), stdout, stderr)
        result.command = self.encode(cmd)
        return result


def run_bounded(argv: list[str], timeout: float, max_output: int) -> tuple[int | None, bytes, bytes]:
    """Exit status (None past the timeout), stdout and stderr, each cut at max_output bytes."""
    # A session of its own, so that the kill reaches whatever it started and the pipes close.
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    outputs = (bytearray(), bytearray())
    readers = [
        threading.Thread(target=_drain, args=(stream, kept, max_output), daemon=True)
        for stream, kept in zip((process.stdout, process.stderr), outputs)
    ]
    for reader in readers:
        reader.start()
    try:
        code: int | None = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        code = None
    for reader in readers:
        reader.join(timeout=5)
    return code, bytes(outputs[0]), bytes(outputs[1])


def _drain(stream, kept: bytearray, limit: int) -> None:
    with stream:
        for chunk in iter(lambda: stream.read1(64 * 1024), b""):
            kept += chunk[: max(0, limit - len(kept))]


def _short(command: str) -> str:
    return command if len(command) <= 80 else command[:77] + "..."


def vm_host(container_name: str, deadline_s: float, command_timeout_s: float, max_output: int) -> Host:
    """A testinfra host on the VM, new each time (testinfra.get_host would keep every one)."""
    backend = DeadlineDockerBackend(container_name, deadline_s, command_timeout_s, max_output)
    host = Host(backend)
    backend.set_host(host)
    return host
