"""The sandbox a grader runs a student's ansible-playbook in.

Ansible runs parts of a playbook on the machine that runs ansible-playbook
(lookups, local_action, delegate_to localhost, plugins, ProxyCommand), and no
static rule can find them all in Jinja. So the controller is a throwaway
container: its own image with the pinned ansible, no mounts of the grading
machine (the playbook, key and inventory are copied in, results are copied
out), no Docker socket, none of the grader's environment, CPU, memory and PID
limits, and only one network: an internal one that holds it and the VM it
grades. Whatever a hostile playbook does to "localhost" happens in there and
is removed with it.
"""

from __future__ import annotations

import importlib.metadata
import io
import sys
import tarfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import docker
import docker.errors
import requests.exceptions

from .engine import LocalCloudError, one_line_errors, progress
from .images import (
    cache_dir,
    ensure_debian_base,
    ensure_recipe_image,
    project_labels,
    recipe_hash,
    run_with_progress,
)

CONTROLLER_REPO = "dcgan-controller"
CONTROLLER_UID = 1000
WORK_DIR = PurePosixPath("/grade")
RESULTS_DIR = WORK_DIR / "resultados"
# Limits of one controller: enough for ansible-playbook and its forks, not
# enough for a playbook to starve the grading machine.
CPU_LIMIT = 1.0
MEMORY_LIMIT = "1g"
PIDS_LIMIT = 256
# What a hostile playbook may leave in resultados/ before we stop copying it out.
MAX_RESULTS_BYTES = 64 * 1024 * 1024

CONTROLLER_DOCKERFILE = """\
# Stage 1 installs ansible from wheels fetched on the host; only its
# site-packages reach the final image.
FROM {base} AS wheels
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \\
 && apt-get install -y -q --no-install-recommends python3 python3-pip
COPY wheels/ /wheels/
RUN pip install --no-cache-dir --break-system-packages --no-index --find-links /wheels {requirements}

FROM {base}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \\
 && apt-get install -y -q --no-install-recommends python3 openssh-client ca-certificates \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=wheels /usr/local/lib/python3.11/dist-packages/ /usr/local/lib/python3.11/dist-packages/
COPY --from=wheels /usr/local/bin/ /usr/local/bin/
COPY ansible.cfg /etc/ansible/ansible.cfg
RUN useradd --create-home --uid {uid} --shell /bin/bash grader \\
 && install -d -o grader -g grader -m 0755 {work_dir} \\
 && ansible-playbook --version
USER grader
WORKDIR {work_dir}
CMD ["ansible-playbook", "--version"]
"""

# The settings of the course's runner, plus what a fresh VM needs; nothing
# of the grading machine's own ansible.cfg.
CONTROLLER_ANSIBLE_CFG = """\
[defaults]
host_key_checking = False
interpreter_python = auto_silent
retry_files_enabled = False
callbacks_enabled = ansible.posix.profile_tasks
timeout = 30

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=30 -o UserKnownHostsFile=/dev/null
"""


# ansible and everything it imports: pinned to the versions of the harness's
# own environment, so that pip resolves nothing (and picks no pre-release).
CONTROLLER_DISTRIBUTIONS = (
    "ansible", "ansible-core", "jinja2", "markupsafe", "pyyaml", "cryptography", "cffi", "pycparser",
    "packaging", "resolvelib",
)  # fmt: skip


def ansible_requirements() -> list[str]:
    """The very ansible the harness itself runs, so grading and `make lint` agree."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in CONTROLLER_DISTRIBUTIONS]


def controller_wheels(requirements: list[str]) -> list[Path]:
    # For this interpreter and platform: the image's Debian 12 has the same
    # Python 3.11 and x86_64 glibc as the machines the harness runs on.
    spec = "\n".join(requirements)
    folder = cache_dir() / "wheels" / f"controller-{recipe_hash(spec)}"
    done = folder / "complete.txt"
    if not (done.is_file() and done.read_text() == spec):
        progress(f"images: downloading ansible wheels into {folder}")
        folder.mkdir(parents=True, exist_ok=True)
        run_with_progress(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--dest", str(folder), *requirements],
            cache_dir() / "logs" / "pip-download-controller.log",
            "pip download ansible",
        )
        done.write_text(spec)
    return sorted(folder.glob("*.whl"))


@one_line_errors
def ensure_controller_image(client: docker.DockerClient) -> str:
    """dcgan-controller:<hash>: Debian 12, ssh and the pinned ansible, built offline."""
    requirements = ansible_requirements()
    dockerfile = CONTROLLER_DOCKERFILE.format(
        base=ensure_debian_base(client),
        requirements=" ".join(f'"{r}"' for r in requirements),
        uid=CONTROLLER_UID,
        work_dir=WORK_DIR,
    )
    files: dict[str, str | Path] = {"Dockerfile": dockerfile, "ansible.cfg": CONTROLLER_ANSIBLE_CFG}
    files.update({f"wheels/{w.name}": w for w in controller_wheels(requirements)})
    return ensure_recipe_image(client, CONTROLLER_REPO, "controller", files)


# --- One sandboxed run --------------------------------------------------------------


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None  # None when the run was stopped at its time limit
    timed_out: bool
    seconds: float
    log: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def tar_of_files(files: dict[str, bytes], mode: int = 0o600) -> bytes:
    """Files for put_archive, owned by the controller's user."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mode = mode
            info.uid = info.gid = CONTROLLER_UID
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def create_sandbox_network(client: docker.DockerClient, name: str, labels: dict[str, str]):
    """A network whose members reach each other and nothing else, the grading machine included.

    internal=True keeps packets from leaving the bridge, but the bridge's own
    gateway address is the host: services bound to all of its interfaces
    would still answer there. With no address on the bridge, they cannot.
    """
    return client.networks.create(
        name,
        driver="bridge",
        internal=True,
        options={"com.docker.network.bridge.inhibit_ipv4": "true"},
        labels=project_labels("sandbox-net", **labels),
    )


def address_on(container, network_name: str) -> str:
    container.reload()
    address = container.attrs["NetworkSettings"]["Networks"].get(network_name, {}).get("IPAddress")
    if not address:
        raise LocalCloudError(f"{container.name} has no address on network {network_name}; see `docker inspect {container.name}`")
    return address


@one_line_errors
def run_sandboxed(
    client: docker.DockerClient,
    image: str,
    name: str,
    network: str,
    files: dict[str, bytes],
    command: list[str],
    timeout: float,
    log_path: Path,
    labels: dict[str, str],
    on_line=None,
) -> SandboxResult:
    """Run `command` in a fresh controller container; the container stays for `collect_results`.

    files: paths relative to the work folder and their contents, copied in
    before the start. The log streams to log_path (and on_line) as it comes.
    """
    container = client.containers.create(
        image,
        command,
        name=name,
        working_dir=str(WORK_DIR),
        user=str(CONTROLLER_UID),
        # The whole environment: nothing of the grader's (no AWS_*, HOME, SSH agent).
        environment={
            "HOME": "/home/grader",
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "ANSIBLE_CONFIG": "/etc/ansible/ansible.cfg",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_NOCOLOR": "1",
            "PYTHONUNBUFFERED": "1",
        },
        network=network,
        nano_cpus=int(CPU_LIMIT * 1e9),
        mem_limit=MEMORY_LIMIT,
        memswap_limit=MEMORY_LIMIT,
        pids_limit=PIDS_LIMIT,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        labels=project_labels("controller", **labels),
    )
    container.put_archive(str(WORK_DIR), tar_of_files(files))
    started = time.monotonic()
    container.start()
    pump = threading.Thread(target=_pump_logs, args=(container, log_path, on_line), daemon=True)
    pump.start()
    returncode, timed_out = _wait(container, timeout)
    pump.join(timeout=10)
    seconds = round(time.monotonic() - started, 1)
    return SandboxResult(returncode, timed_out, seconds, log_path.read_text(errors="replace") if log_path.exists() else "")


def _wait(container, timeout: float) -> tuple[int | None, bool]:
    try:
        status = container.wait(timeout=timeout)
        return int(status.get("StatusCode", 1)), False
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        try:
            container.kill()
        except docker.errors.APIError:
            pass  # it ended by itself in the meantime
        return None, True


def _pump_logs(container, log_path: Path, on_line) -> None:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            pending = b""
            for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    log.write(line + "\n")
                    log.flush()
                    if on_line:
                        on_line(line)
            if pending:
                log.write(pending.decode(errors="replace"))
        except (docker.errors.APIError, requests.exceptions.RequestException):
            pass  # the container was removed under us (Ctrl-C); the log so far is kept


def collect_results(container_name: str, client: docker.DockerClient, dest: Path) -> list[Path]:
    """Copy the controller's resultados/ out, as plain files only, within a size bound.

    Links, devices and paths that leave the folder are dropped: the archive
    comes from a playbook we do not trust.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        stream, _ = client.containers.get(container_name).get_archive(str(RESULTS_DIR))
    except docker.errors.NotFound:
        return []  # the playbook made no resultados/ folder
    buffer = io.BytesIO()
    for chunk in stream:
        buffer.write(chunk)
        if buffer.tell() > MAX_RESULTS_BYTES * 2:
            break
    buffer.seek(0)
    written: list[Path] = []
    total = 0
    with tarfile.open(fileobj=buffer, mode="r|*") as tar:
        for member in tar:
            relative = _inside_results(member.name)
            if relative is None or not member.isfile():
                continue
            total += member.size
            if total > MAX_RESULTS_BYTES:
                progress(f"grade: resultados/ of {container_name} exceeds {MAX_RESULTS_BYTES >> 20} MiB; the rest is dropped")
                break
            target = dest / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = tar.extractfile(member)
            target.write_bytes(source.read() if source else b"")
            written.append(target)
    return written


def _inside_results(member_name: str) -> PurePosixPath | None:
    """The member's path below resultados/, or None when it is the folder itself or escapes it."""
    parts = PurePosixPath(member_name).parts
    if len(parts) < 2 or parts[0] != "resultados" or any(part in ("..", "") for part in parts):
        return None
    return PurePosixPath(*parts[1:])


def remove_network(client: docker.DockerClient, name: str) -> None:
    try:
        network = client.networks.get(name)
    except docker.errors.NotFound:
        return
    network.reload()
    for member in network.containers:
        try:
            network.disconnect(member, force=True)
        except docker.errors.APIError:
            pass
    try:
        network.remove()
    except docker.errors.NotFound:
        pass
