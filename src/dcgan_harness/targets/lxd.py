"""Unprivileged VMs: LXD system containers whose root is not this machine's root.

Each VM has its own user namespace (VM root is uid 100000 here), its own
cgroups with a t2.medium's limits (2 CPUs, 4 GiB, a pids cap), its own disk
(an ext4 file system of the course's 16 GB), and no network card at all:
the services it needs (apt cache, registry mirror, git server) appear on its
loopback through LXD proxy devices, and its sshd on one address of this
machine. Nothing else of this machine, of another VM or of the internet
answers from inside.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from ..localcloud import aptcache
from ..localcloud.engine import LocalCloudError, progress
from ..localcloud.images import GIT_DAEMON_PORT, REGISTRY_PORT
from ..localcloud.lxd import (
    VM_PREFIX,
    create_disk_pool,
    ensure_lxd,
    ensure_lxd_image,
)
from ..localcloud.vms import (
    apt_cache_address,
    check_run_id,
    choose_ssh_ports,
    ensure_ssh_key,
    node_name,
    state_dir,
)
from .base import Endpoint, Machine, Target

BOOT_TIMEOUT_S = 180.0
SSH_TIMEOUT_S = 60.0
# A t2.medium's shape.
CPUS = 2
MEMORY = "4GiB"
DISK_GB = 16
MAX_PROCESSES = 4096
# The cgroup-v1 controllers this host does not delegate to a user namespace:
# a nested runc fails mkdir in them, so the VM hides them before Docker starts.
UNDELEGATED_CGROUPS = ("hugetlb", "net_cls,net_prio", "perf_event", "cpu,cpuacct", "net_cls", "net_prio", "cpu", "cpuacct")
APT_CACHE_PORT = 3142
GIT_PORT = 9418


@dataclass(frozen=True)
class Service:
    """A service of this machine a VM reaches on its own loopback: 127.0.0.1:port inside -> address here."""

    name: str
    port: int
    address: str  # host:port, as this machine reaches it


@dataclass(frozen=True)
class Network:
    """An existing bridge the VMs join (a Docker network with no address of this machine on it).

    Each VM gets a fixed address from the top of the subnet, which Docker's
    own allocation (from the bottom) does not reach. The VM image masks udev,
    so networkd never configures a card: the address is set by hand.
    """

    bridge: str
    subnet: str

    def address(self, index: int) -> str:
        """The address of the index-th VM (1, 2, ...)."""
        network = ipaddress.ip_network(self.subnet)
        return str(network.broadcast_address - 1 - index)

    @property
    def prefix(self) -> int:
        return ipaddress.ip_network(self.subnet).prefixlen


@dataclass
class LxdVm(Machine):
    name: str
    node: str
    endpoint: Endpoint
    lxd: object = field(repr=False)
    # Its address on the target's network; empty without one.
    address: str = ""

    def instance(self):
        return self.lxd.instances.get(self.name)

    def ssh(self) -> Endpoint:
        return self.endpoint

    def exec(self, command: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        result = self.instance().execute(command, environment=env or {})
        return result.exit_code, ((result.stdout or "") + (result.stderr or "")).strip()

    def init_pid(self) -> int:
        return int(self.instance().state().pid or 0)

    @property
    def cgroup_marker(self) -> str:
        return f"/lxc.payload.{self.name}"

    def owns(self, pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/cgroup") as groups:
                return any(_in_group(line, self.cgroup_marker) for line in groups)
        except OSError:
            return False

    def pids(self) -> list[int]:
        from pathlib import Path as _Path

        found = []
        for entry in _Path("/proc").iterdir():
            if entry.name.isdigit() and self.owns(int(entry.name)):
                found.append(int(entry.name))
        return sorted(found)

    def freeze(self) -> bool:
        try:
            self.instance().freeze(wait=True)
            return True
        except Exception:  # noqa: BLE001 - a host without the freezer still grades, from a running VM
            return False


def _in_group(line: str, marker: str) -> bool:
    path = line.rstrip("\n").split(":", 2)[-1]
    return path == marker or path.startswith(marker + "/")


class LxdVms(Target):
    """N unprivileged VMs shaped like the course's, reaching only the given services."""

    def __init__(
        self,
        nodes: int = 1,
        run_id: str | None = None,
        *,
        docker_client=None,
        vm_image: str,
        services: Sequence[Service] = (),
        mirror_port: int | None = None,
        network: Network | None = None,
        boot_timeout: float = BOOT_TIMEOUT_S,
        disk_gb: int = DISK_GB,
    ):
        if nodes < 1:
            raise LocalCloudError(f"--nodes must be at least 1, not {nodes}")
        self.run_id = check_run_id(run_id or secrets.token_hex(3))
        self.nodes = nodes
        self.docker_client = docker_client
        self.vm_image = vm_image
        self.services = list(services)
        self.mirror_port = mirror_port
        self.network = network
        self.boot_timeout = boot_timeout
        self.disk_gb = disk_gb
        self.key = ensure_ssh_key(state_dir(self.run_id), comment=f"dcgan-localcloud-{self.run_id}")
        self.machines: list[LxdVm] = []
        self.lxd = None

    def name_of(self, node: str) -> str:
        return f"{VM_PREFIX}-{self.run_id}-{node}"

    def up(self) -> LxdVms:
        started = time.monotonic()
        self.lxd = ensure_lxd()
        alias = ensure_lxd_image(self.lxd, self.docker_client, self.vm_image)
        ports = choose_ssh_ports(self.nodes, None)
        progress(f"lxd: starting {self.nodes} unprivileged VM(s) for run {self.run_id}")
        for index, port in enumerate(ports, 1):
            address = self.network.address(index) if self.network else ""
            self.machines.append(self._create(node_name(index), alias, Endpoint("127.0.0.1", port), address))
        for machine in self.machines:
            self._boot(machine)
        for machine in self.machines:
            self._configure(machine)
        for machine in self.machines:
            wait_for_ssh(machine, self.key)
        progress(f"lxd: {self.nodes} VM(s) up in {time.monotonic() - started:.0f}s")
        return self

    def _create(self, node: str, alias: str, endpoint: Endpoint, address: str) -> LxdVm:
        name = self.name_of(node)
        pool = create_disk_pool(self.lxd, name, self.disk_gb)
        devices = {"root": {"type": "disk", "path": "/", "pool": pool}}
        # This machine's way in, on its own loopback: the VM cannot reach it.
        devices["ssh"] = _proxy("host", f"{endpoint.host}:{endpoint.port}", "127.0.0.1:22")
        if self.network:
            devices["eth0"] = {"type": "nic", "nictype": "bridged", "parent": self.network.bridge, "name": "eth0"}
        for service in self.services:
            devices[f"svc-{service.name}"] = _proxy("instance", f"127.0.0.1:{service.port}", service.address)
        config = {
            "name": name,
            "source": {"type": "image", "alias": alias},
            "profiles": [],
            "devices": devices,
            "config": {
                "security.nesting": "true",
                "limits.cpu": str(CPUS),
                "limits.memory": MEMORY,
                "limits.memory.swap": "false",
                "limits.processes": str(MAX_PROCESSES),
                "user.dcgan.run": self.run_id,
                "user.dcgan.node": node,
            },
        }
        try:
            instance = self.lxd.instances.create(config, wait=True)
            instance.start(wait=True)
        except Exception as error:  # noqa: BLE001 - pylxd raises several kinds; all end the same way
            raise LocalCloudError(f"starting VM {name} failed: {_one_line(error)}") from None
        progress(f"lxd: started {name} (ssh {endpoint.host}:{endpoint.port})")
        return LxdVm(name=name, node=node, endpoint=endpoint, lxd=self.lxd, address=address)

    def _boot(self, machine: LxdVm) -> None:
        deadline = time.monotonic() + self.boot_timeout
        state = "not started"
        while time.monotonic() < deadline:
            code, output = machine.exec(["systemctl", "is-system-running"])
            state = output.splitlines()[-1] if output else "unknown"
            if state in ("running", "degraded"):
                return
            time.sleep(0.5)
        raise LocalCloudError(
            f"VM {machine.name} did not boot within {self.boot_timeout:.0f}s (systemd: {state}); "
            f"see `lxc console {machine.name} --show-log`"
        )

    def _configure(self, machine: LxdVm) -> None:
        """What the cloud's image would have: the host name, the key, and the services on loopback."""
        public_key = self.key.with_suffix(".pub").read_text().strip()
        steps = [
            f"hostname {machine.node} && echo {machine.node} > /etc/hostname",
            f"grep -q ' {machine.node}$' /etc/hosts || echo '127.0.1.1 {machine.node}' >> /etc/hosts",
            'umask 077 && printf "%s\\n" "$KEY" > /home/ubuntu/.ssh/authorized_keys'
            " && chown -R ubuntu:ubuntu /home/ubuntu/.ssh",
            hide_undelegated_cgroups(),
            # A cloud VM's disk syncs fast; dpkg's fsync per file on a loop device does not.
            "echo force-unsafe-io > /etc/dpkg/dpkg.cfg.d/localcloud-unsafe-io",
        ]
        env = {"KEY": public_key}
        if machine.address:
            steps.append(f"ip addr add {machine.address}/{self.network.prefix} dev eth0 && ip link set eth0 up")
        if self.mirror_port:
            address = f"127.0.0.1:{self.mirror_port}"
            mirror = json.dumps({"registry-mirrors": [f"http://{address}"], "insecure-registries": [address]})
            steps.append('mkdir -p /etc/docker && printf "%s\\n" "$DAEMON" > /etc/docker/daemon.json')
            env["DAEMON"] = mirror
        if any(s.port == APT_CACHE_PORT for s in self.services):
            steps.append(
                f'install -d /usr/local/lib/localcloud && printf "%s" "$HOOK" > {aptcache.VM_HOOK_PATH}'
                f' && chmod 755 {aptcache.VM_HOOK_PATH} && printf "%s" "$CONF" > {aptcache.VM_APT_CONF_PATH}'
            )
            env["HOOK"] = aptcache.vm_hook(f"127.0.0.1:{APT_CACHE_PORT}")
            env["CONF"] = aptcache.VM_APT_CONF.format(hook=aptcache.VM_HOOK_PATH)
        code, output = machine.exec(["sh", "-ec", " && ".join(f"( {s} )" for s in steps)], env)
        if code != 0:
            raise LocalCloudError(f"configuring VM {machine.name} failed: {output[-200:]}")

    def down(self) -> None:
        """The run's VMs and disks, and what else of the run the local cloud holds (git server, networks, key)."""
        from ..localcloud.vms import down

        down(self.run_id, client=self.docker_client)
        self.machines = []


def local_services(client, images, served_url: str) -> tuple[list[Service], str]:
    """The local cloud's services as an unprivileged VM reaches them (its loopback), and the served URL as the VM names it.

    The registry is the mirror's read-only reader; the apt cache is left out when it cannot run.
    """
    git_host = urlsplit(served_url).hostname or ""
    services = [
        Service("registry", REGISTRY_PORT, images.registry.address_for_vms),
        Service("git", GIT_PORT, f"{git_host}:{GIT_DAEMON_PORT}"),
    ]
    apt_cache = apt_cache_address(client)
    if apt_cache:
        services.append(Service("apt", APT_CACHE_PORT, apt_cache))
    return services, served_url.replace(f"://{git_host}", "://127.0.0.1", 1)


def bridge_of(client, network: str) -> Network:
    """A Docker network as LXD sees it: its Linux bridge and its subnet."""
    attrs = client.networks.get(network).attrs
    bridge = (attrs.get("Options") or {}).get("com.docker.network.bridge.name") or f"br-{attrs['Id'][:12]}"
    return Network(bridge=bridge, subnet=attrs["IPAM"]["Config"][0]["Subnet"])


def hide_undelegated_cgroups() -> str:
    names = " ".join(shlex.quote(n) for n in UNDELEGATED_CGROUPS)
    return f"for c in {names}; do mountpoint -q /sys/fs/cgroup/$c && umount -l /sys/fs/cgroup/$c || true; done"


def _proxy(bind: str, listen: str, connect: str) -> dict:
    return {"type": "proxy", "bind": bind, "listen": f"tcp:{listen}", "connect": f"tcp:{connect}"}


def wait_for_ssh(machine: Machine, key: Path, timeout: float = SSH_TIMEOUT_S) -> None:
    import subprocess

    endpoint = machine.ssh()
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        proc = subprocess.run(
            [
                "ssh", "-i", str(key), "-p", str(endpoint.port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "ConnectTimeout=5", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", f"ubuntu@{endpoint.host}", "true",
            ],
            capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if proc.returncode == 0:
            return
        lines = proc.stderr.strip().splitlines()
        last = lines[-1] if lines else f"ssh exited {proc.returncode}"
        time.sleep(0.5)
    raise LocalCloudError(f"VM {machine.name} does not accept SSH on {endpoint.host}:{endpoint.port}: {last}")


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:300]
