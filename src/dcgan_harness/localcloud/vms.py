"""The local cloud's VMs: containers that look like Ubuntu/Debian VMs to Ansible.

Each VM boots systemd as PID 1, runs sshd on a loopback port, and can run the
Docker engine the playbook installs (nested containers included). Each run
has its own id, so parallel runs (CI jobs, pytest workers, grading jobs) never
collide, and every container and volume carries labels, so `down` finds what
a killed run left behind.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import yaml

from ..keys import too_open_mode
from . import aptcache
from .engine import (
    LocalCloudError,
    ensure_engine,
    one_line_errors,
    progress,
    remove_container,
    try_connect,
)
from .images import (
    PROJECT_LABEL,
    PROJECT_VALUE,
    REGISTRY_NAME,
    REGISTRY_READONLY_NAME,
    REGISTRY_VOLUME,
    ROLE_LABEL,
    CloudImages,
    ensure_mirror,
    prepare_images,
    project_labels,
    project_root,
)
from .lxd import down_lxd, lxd_vms

RUN_LABEL = "dcgan.localcloud.run"
NODE_LABEL = "dcgan.localcloud.node"
VM_IMAGE_LABEL = "dcgan.localcloud.vm-image"
VM_PREFIX = "dcgan-vm"
BOOT_TIMEOUT_S = 180.0
SSH_TIMEOUT_S = 30.0
RUN_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")
SSH_COMMON_ARGS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"


@dataclass(frozen=True)
class Machine:
    """One container of the local cloud as `status` sees it."""

    name: str
    role: str  # vm, git or registry
    state: str
    run_id: str
    node: str = ""
    ssh_port: int | None = None
    ip: str = ""


@dataclass(frozen=True)
class Cloud:
    """What `up` hands over: enough to run ansible-playbook against the VMs."""

    run_id: str
    inventory: Path
    key: Path
    vms: list[Machine] = field(default_factory=list)
    # Which VM image (images.VM_IMAGES) the VMs run.
    vm_image: str = ""


# --- Names, folders, checks that need no Docker -------------------------------------


def new_run_id() -> str:
    return secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    if not RUN_ID_PATTERN.match(run_id):
        raise LocalCloudError(
            f"run id {run_id!r} is not usable in container names; use 1-24 lowercase letters, digits or dashes"
        )
    return run_id


def node_name(index: int) -> str:
    return f"compute{index:02d}"


def vm_name(run_id: str, node: str) -> str:
    return f"{VM_PREFIX}-{run_id}-{node}"


def state_root() -> Path:
    return Path(os.environ.get("DCGAN_LOCALCLOUD_STATE", project_root() / ".localcloud"))


def state_dir(run_id: str) -> Path:
    return state_root() / run_id


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    """Fail with the fix when something already listens on the port we want to publish."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Only a listener should count as "in use", not connections in TIME_WAIT.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                raise LocalCloudError(_port_in_use_message(port, host)) from None
            raise


def _port_in_use_message(port: int, host: str = "127.0.0.1") -> str:
    return (
        f"SSH port {host}:{port} is already in use; stop what listens there (ss -ltnp 'sport = :{port}') "
        "or pass another --ssh-port-base, or none to pick free ports"
    )


def choose_ssh_ports(nodes: int, base: int | None = None) -> list[int]:
    """Loopback ports for the VMs' SSH: base, base+1, ... or free ones the kernel picks."""
    if base is not None:
        ports = [base + i for i in range(nodes)]
        for port in ports:
            check_port_free(port)
        return ports
    # All probes stay open until every port is chosen, so no two VMs get the same one.
    probes = []
    try:
        for _ in range(nodes):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind(("127.0.0.1", 0))
            probes.append(probe)
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


def check_key_permissions(key: Path) -> None:
    """ssh refuses a private key others can read; say so before Ansible does, with the fix."""
    mode = too_open_mode(key)
    if mode is not None:
        raise LocalCloudError(f"SSH key {key} has mode {mode:04o}, readable by others; run: chmod 600 {key}")


def ensure_ssh_key(folder: Path, comment: str = "dcgan-localcloud") -> Path:
    """An ed25519 key pair for the run, made once; an existing one is reused if safe."""
    key = folder / "id_ed25519"
    if key.exists():
        check_key_permissions(key)
        if not key.with_suffix(".pub").exists():
            public = _ssh_keygen(["-y", "-f", str(key)])
            key.with_suffix(".pub").write_text(public)
        return key
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    _ssh_keygen(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])
    os.chmod(key, 0o600)
    return key


def _ssh_keygen(args: list[str]) -> str:
    if shutil.which("ssh-keygen") is None:
        raise LocalCloudError(
            "ssh-keygen is missing; install the OpenSSH client (Debian/Ubuntu: apt-get install openssh-client)"
        )
    proc = subprocess.run(["ssh-keygen", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LocalCloudError(f"ssh-keygen {' '.join(args)} failed: {proc.stderr.strip()[:160]}")
    return proc.stdout


def write_inventory(path: Path, vms: list[Machine], key: Path) -> Path:
    """An inventory shaped like the project's inventory.yaml, pointing at the VMs."""
    hosts = {
        vm.node: {
            "ansible_host": "127.0.0.1",
            "ansible_port": vm.ssh_port,
            "ansible_user": "ubuntu",
            "ansible_ssh_private_key_file": str(key.resolve()),
            "ansible_ssh_common_args": SSH_COMMON_ARGS,
            # The VM's address on the Docker bridge, where the other VMs reach it.
            "localcloud_ip": vm.ip,
        }
        for vm in vms
    }
    header = f"# Local cloud run {vms[0].run_id if vms else '?'}: written by `up`, deleted by `down`.\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump({"cloud": {"hosts": hosts}}, sort_keys=False))
    return path


# --- VMs -------------------------------------------------------------------------


@one_line_errors
def up(
    nodes: int = 1,
    run_id: str | None = None,
    ssh_port_base: int | None = None,
    boot_timeout: float = BOOT_TIMEOUT_S,
    client: docker.DockerClient | None = None,
    images: CloudImages | None = None,
    vm_image: str | None = None,
    docker_storage_size: str | None = None,
    authorized_keys: Sequence[str] = (),
) -> Cloud:
    """Start N VMs, wait until each answers SSH, write their inventory.

    images: what prepare_images returned, when the caller already ran it.
    vm_image: bookworm, bullseye or ubuntu when images is not given
    (default $DCGAN_VM_IMAGE, else bookworm).
    docker_storage_size: a size such as "512m" makes each VM's /var/lib/docker
    a memory-backed volume of that size, a small disk for the disk-space tests.
    authorized_keys: public keys (OpenSSH one-line form) that `ubuntu` accepts
    besides the run's own, as a cloud VM accepts its key pair's: the offline
    AWS journey logs in with the key imported into its moto key pair.
    """
    if nodes < 1:
        raise LocalCloudError(f"--nodes must be at least 1, not {nodes}")
    run_id = check_run_id(run_id or new_run_id())
    # Everything that can fail without Docker fails first, in a second.
    ports = choose_ssh_ports(nodes, ssh_port_base)
    key = ensure_ssh_key(state_dir(run_id), comment=f"dcgan-localcloud-{run_id}")
    try:
        client = client or ensure_engine()
        if images is None:
            images = prepare_images(client, vm_image)
        else:
            ensure_mirror(client)
        vms = _start_and_boot(client, images, run_id, ports, key, boot_timeout, docker_storage_size, authorized_keys)
    except KeyboardInterrupt:
        progress(f"localcloud: interrupted; removing run {run_id}")
        if client is not None:
            down(run_id, client)
        else:
            _remove_state(run_id)
        raise
    except LocalCloudError:
        # A VM that failed to boot stays for `docker logs`; with none, the
        # run folder would only keep the registry alive at the next `down`.
        if client is None or not client.containers.list(all=True, filters=_project_filter(run_id)):
            _remove_state(run_id)
        raise
    inventory = write_inventory(state_dir(run_id) / "inventory.yaml", vms, key)
    return Cloud(run_id=run_id, inventory=inventory, key=key, vms=vms, vm_image=images.vm_image)


def _start_and_boot(
    client: docker.DockerClient,
    images: CloudImages,
    run_id: str,
    ports: list[int],
    key: Path,
    boot_timeout: float,
    docker_storage_size: str | None = None,
    authorized_keys: Sequence[str] = (),
) -> list[Machine]:
    apt_cache = apt_cache_address(client)
    progress(f"localcloud: starting {len(ports)} VM(s) for run {run_id}")
    progress(f"localcloud: VM image {images.vm_image} ({images.vm})")
    # All containers first, then all waits: the VMs boot in parallel.
    names = [
        start_vm(client, images.vm, run_id, node_name(i), port, images.vm_image, docker_storage_size)
        for i, port in enumerate(ports, 1)
    ]
    # The run's key stays first: up's own SSH check below logs in with it.
    public_key = "\n".join([key.with_suffix(".pub").read_text().strip(), *(k.strip() for k in authorized_keys)])
    for name in names:
        wait_for_boot(client, name, boot_timeout)
        install_public_key(client, name, public_key)
        if apt_cache:
            aptcache.configure_vm(client.containers.get(name), apt_cache)
    vms = [machine_from(client.containers.get(name)) for name in names]
    for vm in vms:
        wait_for_ssh(vm, key)
    return vms


def apt_cache_address(client: docker.DockerClient) -> str | None:
    """The shared apt cache's address for the VMs, started if need be; None when it cannot run.

    A cache only saves time: VMs without one install from the archive, as
    cloud VMs do, so a failure here is a warning, not a failed `up`.
    """
    try:
        return aptcache.ensure_apt_cache(client)
    except LocalCloudError as error:
        progress(f"localcloud: warning: no apt cache ({error}); VMs install packages from the archive")
        return None


def vm_run_options() -> dict:
    """What a container needs to boot systemd and run nested Docker without --privileged.

    --privileged fails on hosts whose engine lacks CAP_SYS_RESOURCE ("unable to
    apply caps"); all capabilities but that one, no seccomp/AppArmor filter,
    every device, and the host's cgroup tree writable give the same result.
    """
    return {
        "cap_add": ["ALL"],
        "cap_drop": ["SYS_RESOURCE"],
        "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
        "device_cgroup_rules": ["a *:* rmw"],
        "cgroupns": "host",
        "tmpfs": {"/run": "", "/run/lock": ""},
    }


def start_vm(
    client: docker.DockerClient,
    image: str,
    run_id: str,
    node: str,
    ssh_port: int,
    vm_image: str = "",
    docker_storage_size: str | None = None,
) -> str:
    name = vm_name(run_id, node)
    labels = project_labels("vm", **{RUN_LABEL: run_id, NODE_LABEL: node, VM_IMAGE_LABEL: vm_image})
    # Created before the container and labelled, so `down` finds it even when
    # the run dies between the two calls.
    # A size makes it a tmpfs: the engine mounts it, so no extra privilege is needed.
    storage = {"driver_opts": {"type": "tmpfs", "device": "tmpfs", "o": f"size={docker_storage_size}"}}
    volume = client.volumes.create(
        f"{name}-docker",
        labels=project_labels("vm-docker", **{RUN_LABEL: run_id}),
        **(storage if docker_storage_size else {}),
    )
    try:
        client.containers.run(
            image,
            name=name,
            hostname=node,
            detach=True,
            labels=labels,
            volumes={
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                # The nested engine's overlay2 cannot sit on the container's own overlay.
                volume.name: {"bind": "/var/lib/docker", "mode": "rw"},
            },
            ports={"22/tcp": ("127.0.0.1", ssh_port)},
            **vm_run_options(),
        )
    except docker.errors.APIError as error:
        text = str(error)
        if "address already in use" in text or "port is already allocated" in text:
            raise LocalCloudError(_port_in_use_message(ssh_port)) from None
        if "Conflict" in text and "already in use" in text:
            raise LocalCloudError(
                f"VM {name} exists already; run `down --run-id {run_id}` or pick another run id"
            ) from None
        raise LocalCloudError(f"starting VM {name} failed: {error.explanation}") from None
    progress(f"localcloud: started {name} (ssh 127.0.0.1:{ssh_port})")
    return name


def exec_in(container, command: list[str], **kwargs) -> tuple[int, str]:
    """Run a command in a local-cloud container: exit status and output, or a one-line error."""
    try:
        code, output = container.exec_run(command, **kwargs)
    except docker.errors.APIError as error:
        # Most often the container has just exited; its log says why.
        raise LocalCloudError(
            f"running {command[0]} in {container.name} failed: {error.explanation}; see `docker logs {container.name}`"
        ) from None
    return code, (output or b"").decode(errors="replace").strip()


def wait_for_boot(client: docker.DockerClient, name: str, timeout: float = BOOT_TIMEOUT_S) -> str:
    """Wait until systemd reports the VM up; 'degraded' counts, a failed unit is no reason to stop."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    state = "not started"
    container = client.containers.get(name)
    while time.monotonic() < deadline:
        container.reload()
        if container.status in ("exited", "dead"):
            code = container.attrs["State"].get("ExitCode")
            raise LocalCloudError(f"VM {name} stopped while booting (exit code {code}); see `docker logs {name}`")
        if container.status == "running":
            state = _boot_state(container, name)
            if state in ("running", "degraded"):
                _report_boot(container, name, state, time.monotonic() - started)
                return state
        time.sleep(0.5)
    raise LocalCloudError(f"VM {name} did not boot within {timeout:.0f}s (systemd: {state}); see `docker logs {name}`")


def _boot_state(container, name: str) -> str:
    # The program, not /proc/1/comm: started as /sbin/init, systemd is named
    # "init" there until it renames itself, which a loaded machine can catch.
    code, pid1 = exec_in(container, ["readlink", "/proc/1/exe"])
    program = pid1.rsplit("/", 1)[-1]
    if code == 0 and program and program != "systemd":
        raise LocalCloudError(f"VM {name}: PID 1 is {program}, not systemd; the VM image must start /sbin/init")
    _, state = exec_in(container, ["systemctl", "is-system-running"])
    # Before dbus is up systemctl prints a connection error, not a state.
    return state.splitlines()[-1] if state else "unknown"


def _report_boot(container, name: str, state: str, seconds: float) -> None:
    if state == "degraded":
        _, failed = exec_in(container, ["systemctl", "list-units", "--failed", "--plain", "--no-legend"])
        units = " ".join(line.split()[0] for line in failed.splitlines() if line.strip())
        progress(f"localcloud: {name} booted in {seconds:.0f}s, degraded (failed units: {units or '?'})")
    else:
        progress(f"localcloud: {name} booted in {seconds:.0f}s")


def install_public_key(client: docker.DockerClient, name: str, public_key: str) -> None:
    """Authorise the run's key (one line per key) for `ubuntu`, as a cloud does from its key pair."""
    script = (
        'umask 077 && printf "%s\\n" "$KEY" > /home/ubuntu/.ssh/authorized_keys '
        "&& chown -R ubuntu:ubuntu /home/ubuntu/.ssh"
    )
    code, output = exec_in(client.containers.get(name), ["sh", "-c", script], environment={"KEY": public_key})
    if code != 0:
        raise LocalCloudError(f"installing the SSH key in VM {name} failed: {output[:160]}")


def wait_for_ssh(vm: Machine, key: Path, timeout: float = SSH_TIMEOUT_S) -> None:
    """Log in once with the run's key: what Ansible will do first, checked here."""
    if shutil.which("ssh") is None:
        raise LocalCloudError(
            "ssh is missing; install the OpenSSH client (Debian/Ubuntu: apt-get install openssh-client)"
        )
    deadline = time.monotonic() + timeout
    last = "no attempt"
    while time.monotonic() < deadline:
        proc = subprocess.run(
            ssh_command(vm, key, "true", connect_timeout=5), capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if proc.returncode == 0:
            return
        lines = proc.stderr.strip().splitlines()
        last = lines[-1] if lines else f"ssh exited {proc.returncode}"
        time.sleep(0.5)
    raise LocalCloudError(
        f"VM {vm.name} does not accept SSH on 127.0.0.1:{vm.ssh_port}: {last}; see `docker logs {vm.name}`"
    )


def ssh_command(vm: Machine, key: Path, remote: str, connect_timeout: int = 10) -> list[str]:
    """The ssh command line that logs into a VM as ubuntu with the run's key."""
    return [
        "ssh", "-i", str(key), "-p", str(vm.ssh_port),
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", f"ConnectTimeout={connect_timeout}",
        "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
        "ubuntu@127.0.0.1", remote,
    ]  # fmt: skip


# --- Finding and removing what we made ---------------------------------------------


def _project_filter(run_id: str | None = None) -> dict:
    labels = [f"{PROJECT_LABEL}={PROJECT_VALUE}"]
    if run_id:
        labels.append(f"{RUN_LABEL}={run_id}")
    return {"label": labels}


def machine_from(container) -> Machine:
    labels = container.labels or {}
    bindings = (container.attrs.get("HostConfig", {}).get("PortBindings") or {}).get("22/tcp") or []
    port = int(bindings[0]["HostPort"]) if bindings and bindings[0].get("HostPort") else None
    return Machine(
        name=container.name,
        role=labels.get(ROLE_LABEL, "?"),
        state=container.status,
        run_id=labels.get(RUN_LABEL, ""),
        node=labels.get(NODE_LABEL, ""),
        ssh_port=port,
        ip=container.attrs.get("NetworkSettings", {}).get("IPAddress", ""),
    )


@one_line_errors
def status(run_id: str | None = None, client: docker.DockerClient | None = None) -> list[Machine]:
    """Every container of the local cloud (VMs, git servers, the registry), stopped ones too."""
    # No engine, nothing running: not a reason to start one.
    unprivileged = [Machine(v["name"], "vm", v["state"], v["run_id"], v["node"]) for v in lxd_vms(run_id)]
    client = client or try_connect()
    if client is None:
        return unprivileged
    containers = client.containers.list(all=True, filters=_project_filter(run_id))
    machines = [machine_from(c) for c in containers] + unprivileged
    return sorted(machines, key=lambda m: (m.role != "vm", m.run_id, m.name))


@one_line_errors
def down(run_id: str | None = None, client: docker.DockerClient | None = None) -> list[str]:
    """Remove the run's VMs, their volumes, git server, controllers and sandbox networks; all runs when run_id is None.

    Found by label rather than from a state file, so leftovers of runs that
    were killed before writing anything go too. The registry mirror and the
    apt cache stop when no VM is left and no other run is starting; their data
    volumes stay as caches for the next `up` (`down_all` removes them).
    """
    # The unprivileged VMs of the same run go too; LXD never started: none.
    unprivileged = down_lxd(run_id)
    client = client or try_connect()
    if client is None:
        _remove_state(run_id)
        return unprivileged
    removed = unprivileged + _remove_containers(client, run_id, roles=("vm", "git", "controller", "reference"))
    for network in client.networks.list(filters=_project_filter(run_id)):
        # Sandbox networks of the grader; their members are gone by now.
        try:
            network.remove()
            removed.append(network.name)
        except docker.errors.APIError:
            pass
    for volume in client.volumes.list(filters=_project_filter(run_id)):
        if (volume.attrs.get("Labels") or {}).get(ROLE_LABEL) == "vm-docker":
            _remove_volume(volume)
            removed.append(volume.name)
    _remove_state(run_id)
    if not shared_service_users(client) and not _runs_in_progress():
        removed += _stop_registry(client)
        removed += aptcache.stop_apt_cache(client)
    return removed


def shared_service_users(client: docker.DockerClient) -> list[str]:
    """The containers (VMs, served apps) for which `down` keeps the mirror and the apt cache."""
    # A run's git server outlives its VMs when the run starts them one after
    # another (the grader, one VM per submission): the mirror stays for it.
    users = [vm["name"] for vm in lxd_vms()]
    for role in ("vm", "git"):
        users += [c.name for c in client.containers.list(all=True, filters={"label": f"{ROLE_LABEL}={role}"})]
    return users


@one_line_errors
def down_all(client: docker.DockerClient | None = None) -> list[str]:
    """Every run, then the shared services and the caches `down` keeps: the apt cache's and the mirror's data."""
    client = client or try_connect()
    if client is None:
        _remove_state(None)
        return []
    removed = down(None, client)
    removed += _stop_registry(client)
    removed += aptcache.stop_apt_cache(client, keep_data=False)
    for volume in client.volumes.list(filters={"name": f"^{REGISTRY_VOLUME}$"}):
        _remove_volume(volume)
        removed.append(volume.name)
    return removed


def _runs_in_progress() -> list[str]:
    # A run makes its folder (and key) before it builds images or starts the
    # registry, so a folder without VMs may be an `up` still on its way.
    root = state_root()
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _remove_containers(client: docker.DockerClient, run_id: str | None, roles: tuple[str, ...]) -> list[str]:
    """Force-remove matching containers, retrying those caught mid-change.

    A run interrupted while the engine was still creating or starting a
    container leaves it briefly in a state where removal answers "no such
    container" or "already in progress"; a second pass a moment later works.
    """
    removed: list[str] = []
    for attempt in range(10):
        listed = client.api.containers(all=True, filters=_project_filter(run_id))
        targets = [c for c in listed if (c.get("Labels") or {}).get(ROLE_LABEL) in roles]
        if not targets:
            return removed
        for entry in targets:
            name = entry["Names"][0].lstrip("/") if entry.get("Names") else entry["Id"][:12]
            try:
                remove_container(client, entry["Id"])
                removed.append(name)
            except docker.errors.APIError:
                if attempt == 9:
                    raise
        time.sleep(0.5)
    return removed


def _remove_volume(volume) -> None:
    # The engine may still hold the volume for a moment after its container went.
    for _ in range(20):
        try:
            volume.remove(force=True)
            return
        except docker.errors.NotFound:
            return
        except docker.errors.APIError:
            time.sleep(0.25)
    volume.remove(force=True)


def _stop_registry(client: docker.DockerClient) -> list[str]:
    stopped = []
    for name in (REGISTRY_NAME, REGISTRY_READONLY_NAME):
        try:
            client.containers.get(name)
        except docker.errors.NotFound:
            continue
        remove_container(client, name)
        stopped.append(name)
    return stopped


def _remove_state(run_id: str | None) -> None:
    root = state_root()
    targets = [state_dir(run_id)] if run_id else (sorted(root.iterdir()) if root.is_dir() else [])
    for folder in targets:
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
