"""The local cloud's Docker VMs as a target.

These VMs are root on this machine (no user namespace, the host's cgroup
tree writable), so they serve trusted runs: a student's own playbook on their
own machine, the harness's tests. The grader uses them only when told
`--allow-privileged-vms`.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..localcloud.vms import Cloud, check_run_id, down, exec_in, new_run_id, up
from .base import Endpoint, Machine, Target


class DockerVm(Machine):
    def __init__(self, client, name: str, node: str, ssh_port: int):
        self.client, self.name, self.node, self.ssh_port = client, name, node, ssh_port

    def container(self):
        return self.client.containers.get(self.name)

    def ssh(self) -> Endpoint:
        return Endpoint("127.0.0.1", self.ssh_port)

    def exec(self, command: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        return exec_in(self.container(), command, environment=env or {})

    def init_pid(self) -> int:
        return int((self.container().attrs.get("State") or {}).get("Pid") or 0)

    def owns(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cgroup") as groups:
                return self.container().id in groups.read()
        except OSError:
            return False

    def pids(self) -> list[int]:
        try:
            return [int(row[0]) for row in self.container().top(ps_args="-eo pid").get("Processes") or []]
        except Exception:  # noqa: BLE001 - a VM that stopped has no processes
            return []

    def freeze(self) -> bool:
        try:
            self.container().pause()
            return True
        except Exception:  # noqa: BLE001 - an engine without the freezer still grades, from a running VM
            return False


class DockerVms(Target):
    """N Docker-container VMs (localcloud.vms) behind the Target shape."""

    def __init__(self, nodes: int = 1, run_id: str | None = None, *, client=None, images=None, **up_options):
        self.nodes = nodes
        self.run_id = check_run_id(run_id or new_run_id())
        self.client, self.images, self.up_options = client, images, up_options
        self.cloud: Cloud | None = None
        self.machines: list[DockerVm] = []

    def up(self) -> DockerVms:
        self.cloud = up(self.nodes, self.run_id, client=self.client, images=self.images, **self.up_options)
        self.key = self.cloud.key
        if self.client is None:
            from ..localcloud.engine import ensure_engine

            self.client = ensure_engine()
        self.machines = [DockerVm(self.client, vm.name, vm.node, vm.ssh_port) for vm in self.cloud.vms]
        return self

    def down(self) -> None:
        down(self.run_id, client=self.client)
        self.machines = []


def machines_of(client, cloud: Cloud) -> Sequence[DockerVm]:
    return [DockerVm(client, vm.name, vm.node, vm.ssh_port) for vm in cloud.vms]
