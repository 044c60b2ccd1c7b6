"""A target: a place a playbook runs, in one shape for every backend.

`up()` brings the machines up and answers SSH, `run()` runs a playbook on
them and returns one PlaybookResult, `host()` hands the checks a testinfra
host on the same connection Ansible uses, `down()` removes everything; used
as a context manager, down comes even after a failure or Ctrl-C. Each
machine also offers what the grader needs from outside the VM: the init
process, the other processes, and a pause.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..playbook_run import PlaybookResult, run_playbook

SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
COURSE_GROUP = "cloud"
COURSE_USER = "ubuntu"


@dataclass(frozen=True)
class Endpoint:
    """Where SSH reaches a machine."""

    host: str
    port: int


class Machine(abc.ABC):
    """One VM of a target."""

    name: str  # the backend's name for it
    node: str  # the inventory's host name: compute01, ...

    @abc.abstractmethod
    def ssh(self) -> Endpoint:
        """Where this machine's sshd answers from the grading machine."""

    @abc.abstractmethod
    def exec(self, command: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run a command as the VM's root, through the backend (not SSH): status and output."""

    @abc.abstractmethod
    def init_pid(self) -> int:
        """The VM's init as this machine numbers it; 0 when the VM is not running."""

    @abc.abstractmethod
    def owns(self, pid: int) -> bool:
        """Whether the process is the VM's, read from this machine's /proc."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Every process of the VM, nested containers' included, as this machine numbers them."""

    @abc.abstractmethod
    def freeze(self) -> bool:
        """Pause every process of the VM; False when the backend cannot."""


class Target(abc.ABC):
    """A place a playbook runs: up, run, host, down."""

    key: Path
    machines: list[Machine]

    @abc.abstractmethod
    def up(self) -> Target:
        """Start the machines and wait until each answers SSH with the target's key."""

    @abc.abstractmethod
    def down(self) -> None:
        """Remove the machines and everything made for them; safe to call twice."""

    def inventory(self) -> dict:
        """The course's inventory shape (group cloud, user ubuntu, a key) for these machines."""
        hosts = {}
        for machine in self.machines:
            endpoint = machine.ssh()
            hosts[machine.node] = {
                "ansible_host": endpoint.host,
                "ansible_port": endpoint.port,
                "ansible_user": COURSE_USER,
                "ansible_ssh_private_key_file": str(self.key.resolve()),
                "ansible_ssh_common_args": SSH_COMMON_ARGS,
            }
        return {COURSE_GROUP: {"hosts": hosts}}

    def write_inventory(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.inventory(), sort_keys=False))
        return path

    def run(
        self, playbook: Path, extra_vars: dict | None = None, log_path: Path | None = None, echo: bool = True
    ) -> PlaybookResult:
        """ansible-playbook on this machine against the target's machines."""
        inventory = self.write_inventory(self.key.parent / "inventory.yaml")
        return run_playbook(playbook, inventory, extra_vars, log_path=log_path, echo=echo)

    def host(self, node: str):
        """A testinfra host logged in over SSH as Ansible is."""
        import testinfra

        machine = self.machine(node)
        endpoint = machine.ssh()
        return testinfra.get_host(
            f"paramiko://{COURSE_USER}@{endpoint.host}:{endpoint.port}",
            ssh_identity_file=str(self.key),
            sudo=True,
        )

    def machine(self, node: str) -> Machine:
        for machine in self.machines:
            if node in (machine.node, machine.name):
                return machine
        raise KeyError(f"no machine {node!r} in this target; it has {', '.join(m.node for m in self.machines)}")

    def __enter__(self) -> Target:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc) -> None:
        self.down()
