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
import shutil
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import docker
import docker.errors
import docker.types
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
from .logcap import MAX_LOG_BYTES, CappedLog, capped_command

CONTROLLER_REPO = "dcgan-controller"
CONTROLLER_UID = 1000
WORK_DIR = PurePosixPath("/grade")
RESULTS_DIR = WORK_DIR / "resultados"
# Limits of one controller: enough for ansible-playbook and its forks, not
# enough for a playbook to starve the grading machine.
CPU_LIMIT = 1.0
MEMORY_LIMIT = "1g"
PIDS_LIMIT = 256
# What a hostile playbook may leave in resultados/ before we stop copying it
# out. A fetch of the assignment's output.txt is one file five levels down
# (host/home/ubuntu/Distributed-DCGAN/output.txt).
MAX_RESULTS_BYTES = 64 * 1024 * 1024
MAX_RESULTS_FILES = 1000
MAX_RESULTS_DEPTH = 16
# Entries of any kind looked at: a tree of empty folders or links costs time too.
MAX_RESULTS_ENTRIES = 10 * MAX_RESULTS_FILES
# The engine keeps its own copy of a controller's output until the container
# is removed; rotation bounds it. Two files, because a follower of the log
# stalls when a single file rotates (moby/moby#39235).
STOP_GRACE_S = 10
CONTROLLER_LOG_CONFIG = docker.types.LogConfig(
    # Twice what the in-container cap lets through: one file that never rotates under the reader.
    type=docker.types.LogConfig.types.JSON, config={"max-size": f"{2 * MAX_LOG_BYTES >> 20}m", "max-file": "1"}
)

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
    log: str  # its first and last lines (CappedLog.text); the log file holds more

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
    before the start. The log streams to log_path (and on_line) as it comes,
    capped (logcap); the result holds its beginning and its end.
    """
    container = client.containers.create(
        image,
        capped_command(command),
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
        log_config=CONTROLLER_LOG_CONFIG,
        labels=project_labels("controller", **labels),
    )
    container.put_archive(str(WORK_DIR), tar_of_files(files))
    started = time.monotonic()
    container.start()
    log = CappedLog(log_path, on_line=on_line)
    pump = threading.Thread(target=_pump_logs, args=(container, log), daemon=True)
    pump.start()
    returncode, timed_out = _wait(container, timeout)
    pump.join(timeout=10)
    seconds = round(time.monotonic() - started, 1)
    return SandboxResult(returncode, timed_out, seconds, log.text())


def _wait(container, timeout: float) -> tuple[int | None, bool]:
    try:
        status = container.wait(timeout=timeout)
        return int(status.get("StatusCode", 1)), False
    except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
        try:
            # SIGTERM first: the log's cap then writes the play's last lines before it ends.
            container.stop(timeout=STOP_GRACE_S)
        except (docker.errors.APIError, requests.exceptions.RequestException):
            pass  # it ended by itself in the meantime
        return None, True


def _pump_logs(container, log: CappedLog) -> None:
    try:
        for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
            log.feed(chunk)
    except (docker.errors.APIError, requests.exceptions.RequestException):
        pass  # the container was removed under us (Ctrl-C); the log so far is kept
    finally:
        log.close()


@dataclass
class CollectedResults:
    files: list[Path] = field(default_factory=list)
    dropped: str = ""  # one line saying what was not copied, when something was not


def collect_results(container_name: str, client: docker.DockerClient, dest: Path) -> CollectedResults:
    """Copy the controller's resultados/ out, as plain files only, within bounds.

    Links, devices and paths that leave the folder are dropped: the archive
    comes from a playbook we do not trust. The archive is read as it streams,
    never whole, and no further than twice MAX_RESULTS_BYTES.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        stream, _ = client.containers.get(container_name).get_archive(str(RESULTS_DIR))
    except docker.errors.NotFound:
        return CollectedResults()  # the playbook made no resultados/ folder
    collected = CollectedResults()
    skipped = {"deep": 0, "unwritable": 0}
    stopped = ""
    total = entries = 0
    archive = io.BufferedReader(_ChunkReader(stream, MAX_RESULTS_BYTES * 2))
    try:
        with tarfile.open(fileobj=archive, mode="r|*") as tar:
            for member in tar:
                entries += 1
                if entries > MAX_RESULTS_ENTRIES:
                    stopped = f"everything after its first {MAX_RESULTS_ENTRIES} entries"
                    break
                relative = _inside_results(member.name)
                if relative is None or not member.isfile():
                    continue
                if len(relative.parts) > MAX_RESULTS_DEPTH:
                    skipped["deep"] += 1
                    continue
                if len(collected.files) == MAX_RESULTS_FILES:
                    stopped = f"everything after its first {MAX_RESULTS_FILES} files"
                    break
                total += member.size
                if total > MAX_RESULTS_BYTES:
                    stopped = f"everything beyond its first {MAX_RESULTS_BYTES >> 20} MiB"
                    break
                try:
                    _extract(tar, member, dest / relative)
                except OSError:
                    skipped["unwritable"] += 1  # a name too long here, a file where a folder was
                    continue
                collected.files.append(dest / relative)
    except tarfile.TarError:
        stopped = f"the rest of an archive over {MAX_RESULTS_BYTES * 2 >> 20} MiB"
    finally:
        stream.close()
    reasons = [stopped] if stopped else []
    if skipped["deep"]:
        reasons.append(f"{skipped['deep']} file(s) more than {MAX_RESULTS_DEPTH} levels down")
    if skipped["unwritable"]:
        reasons.append(f"{skipped['unwritable']} file(s) that could not be written here")
    if reasons:
        collected.dropped = "resultados/ was not copied whole: left out " + "; ".join(reasons)
        progress(f"grade: {container_name}: {collected.dropped}")
    return collected


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    source = tar.extractfile(member)
    with open(target, "wb") as handle:
        if source:
            shutil.copyfileobj(source, handle)


class _ChunkReader(io.RawIOBase):
    """The chunks of an HTTP stream as a file, ending after `limit` bytes."""

    def __init__(self, chunks, limit: int):
        self._chunks = iter(chunks)
        self._left = limit
        self._buffer = memoryview(b"")  # a view: taking from a 2 MB chunk copies nothing

    def readable(self) -> bool:
        return True

    def readinto(self, into) -> int:
        if not self._buffer:
            if self._left <= 0:
                return 0
            self._buffer = memoryview(next(self._chunks, b""))[: self._left]
            self._left -= len(self._buffer)
        count = min(len(into), len(self._buffer))
        into[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count


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
