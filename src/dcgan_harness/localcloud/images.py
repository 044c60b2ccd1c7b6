"""Images of the local cloud, built without any registry, and the registry mirror.

Nothing here may pull from Docker Hub: CI runners and course machines are
often offline from it. So the base is a Debian 12 root filesystem made with
debootstrap from the apt mirror this machine already uses, and every other
image is built from it with the Docker SDK. Each image is tagged or labelled
with a hash of its recipe, so a second run reuses it and a changed recipe
rebuilds it.

Images:
  dcgan-base:<suite>-<hash>    debootstrapped Debian 12 (bookworm) or 11 (bullseye)
  dcgan-vm:<hash>              systemd + sshd + sudo + python3 on Debian 12: what a cloud VM looks like to Ansible
  dcgan-vm-bullseye:<hash>     the same on Debian 11, the course-like VM (Python 3.9, docker.io 20.10, python3-docker 4.1.0)
  dcgan-vm-ubuntu:<hash>       the same on ubuntu:20.04 from Docker Hub, where it can be pulled
  dcgan-runtime:latest         python 3.11 + torch CPU + torchvision: what the app's Dockerfile builds FROM
  dcgan-services:<hash>        docker-registry + git daemon: the registry mirror and the app's git server

The VMs' own Docker engines (installed later by the playbook with apt) find
`dcgan-runtime:latest` through a registry mirror: a registry container that
holds it as `library/dcgan-runtime:latest`, named in the VMs' daemon.json.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

from .engine import (
    LocalCloudError,
    one_line_errors,
    progress,
    record_build_time,
    with_retries,
)

PROJECT_LABEL = "dcgan.localcloud"
PROJECT_VALUE = "dcgan-harness"
RECIPE_LABEL = "dcgan.localcloud.recipe"
ROLE_LABEL = "dcgan.localcloud.role"

DEBIAN_SUITE = "bookworm"
DEFAULT_ARCHIVE = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"
UBUNTU_IMAGE = "ubuntu:20.04"
UBUNTU_PULL_TIMEOUT_S = 30

# The VM images `--vm-image` / DCGAN_VM_IMAGE choose from, and what each is.
VM_IMAGES = {
    "bookworm": "Debian 12, Python 3.11, docker.io 20.10 and python3-docker 5.0 from Debian",
    "bullseye": "Debian 11, Python 3.9, docker.io 20.10 and python3-docker 4.1.0, like the course's Ubuntu 20.04",
    "ubuntu": "Ubuntu 20.04 (ubuntu:20.04 from Docker Hub), the course's AMI",
}
DEFAULT_VM_IMAGE = "bookworm"
VM_IMAGE_ENV = "DCGAN_VM_IMAGE"

BASE_REPO = "dcgan-base"
VM_REPO = "dcgan-vm"
RUNTIME_IMAGE = "dcgan-runtime:latest"
SERVICES_REPO = "dcgan-services"

# torch is resolved by requirement through pip, so pip's own settings decide
# which build: a local wheel in its find-links, PyTorch's CPU index in
# PIP_EXTRA_INDEX_URL, or PyPI's default (CUDA) build. DCGAN_TORCH_WHEEL names
# a wheel file to use instead.
TORCH_REQUIREMENT = "torch==2.13.0"
TORCH_WHEEL_ENV = "DCGAN_TORCH_WHEEL"
# pip settings that change which wheels a download picks; part of the wheel cache's key.
PIP_SOURCE_ENV = ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX")
TORCHVISION_REQUIREMENT = "torchvision==0.28.0"
# Pinned so that the runtime image, and so its recipe hash, does not move
# whenever PyPI publishes a release.
EXTRA_REQUIREMENTS = ("numpy==2.4.6", "pillow==13.0.0")
# The wheels are fetched on the host for the image's interpreter, not the host's.
WHEEL_TARGET = (
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--platform",
    "manylinux_2_28_x86_64",
)
SHIM_DIR = Path(__file__).resolve().parents[1] / "runtime"
SHIM_FILES = ("torchvision_cpu_shim.py", "torchvision-cpu-shim.pth")

REGISTRY_NAME = "dcgan-registry"
# The same storage served read-only to the VMs: they pull the runtime through
# it and can push nothing that another submission would pull.
REGISTRY_READONLY_NAME = "dcgan-registry-readonly"
# The registry's own setting for where it listens, which overrides its file.
WRITER_ADDRESS_VARIABLE = "REGISTRY_HTTP_ADDR"
REGISTRY_VOLUME = "dcgan-registry-data"
REGISTRY_PORT = int(os.environ.get("DCGAN_REGISTRY_PORT", "5055"))
REGISTRY_RUNTIME_REPO = "library/dcgan-runtime"
GIT_DAEMON_PORT = 9418


# --- Where things live ----------------------------------------------------------


def project_root() -> Path:
    """The checkout this package runs from, else the working directory."""
    candidate = Path(__file__).resolve().parents[3]
    if (candidate / "pyproject.toml").is_file() and (candidate / "src" / "dcgan_harness").is_dir():
        return candidate
    return Path.cwd()


def cache_dir() -> Path:
    """The git-ignored folder for root filesystems, wheels, build contexts and logs."""
    path = Path(os.environ.get("DCGAN_LOCALCLOUD_CACHE", project_root() / ".cache" / "localcloud"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def project_labels(role: str, **extra: str) -> dict[str, str]:
    """Labels that let `down` find everything we made, even after a killed run."""
    return {PROJECT_LABEL: PROJECT_VALUE, ROLE_LABEL: role, **extra}


# --- Recipes and builds -----------------------------------------------------------


def recipe_hash(*parts: str | bytes | Path) -> str:
    """A short, stable fingerprint of everything an image is made from.

    Large files (wheels) count by name and size: hashing 200 MB on every `up`
    would cost more than it protects, and wheel names carry their versions.
    """
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            stat = part.stat()
            if stat.st_size > 16 * 1024 * 1024:
                digest.update(f"{part.name}:{stat.st_size}".encode())
            else:
                digest.update(part.name.encode() + b"\0" + part.read_bytes())
        elif isinstance(part, str):
            digest.update(part.encode())
        else:
            digest.update(part)
        digest.update(b"\0\0")
    return digest.hexdigest()[:12]


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
        return True
    except docker.errors.ImageNotFound:
        return False


def image_recipe(client: docker.DockerClient, ref: str) -> str | None:
    try:
        labels = client.images.get(ref).labels or {}
    except docker.errors.ImageNotFound:
        return None
    return labels.get(RECIPE_LABEL)


def write_context(name: str, files: dict[str, str | bytes | Path]) -> Path:
    """Lay out a fresh build context; big files are hard links, not copies."""
    context = cache_dir() / "contexts" / name
    shutil.rmtree(context, ignore_errors=True)
    for relpath, content in files.items():
        target = context / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            _link_or_copy(content, target)
        elif isinstance(content, str):
            target.write_text(content)
        else:
            target.write_bytes(content)
    return context


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def ensure_recipe_image(client: docker.DockerClient, repo: str, name: str, files: dict[str, str | Path]) -> str:
    """<repo>:<hash of files>, built from those files unless it exists; older tags go.

    Text files count by name and content, files on disk (wheels) as recipe_hash counts them.
    """
    parts: list[str | Path] = []
    for relpath, content in sorted(files.items()):
        parts += [relpath, content] if isinstance(content, Path) else [f"{relpath}\n{content}"]
    recipe = recipe_hash(*parts)
    tag = f"{repo}:{recipe}"
    if not image_exists(client, tag):
        context = write_context(name, files)
        build_image(client, tag, context, {**project_labels(f"{name}-image"), RECIPE_LABEL: recipe})
        drop_older_tags(client, repo, tag)
    return tag


def build_image(client: docker.DockerClient, tag: str, context: Path, labels: dict[str, str]) -> None:
    with_retries(lambda: _build_image_once(client, tag, context, labels), f"building {tag}")


def _build_image_once(client: docker.DockerClient, tag: str, context: Path, labels: dict[str, str]) -> None:
    """Build with the SDK, echoing each Dockerfile step; the full log goes to a file."""
    log_path = cache_dir() / "logs" / f"build-{tag.replace(':', '_').replace('/', '_')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    progress(f"images: building {tag} (log: {log_path})")
    with open(log_path, "w") as log:
        try:
            chunks = client.api.build(
                path=str(context), tag=tag, labels=labels, rm=True, forcerm=True, pull=False, decode=True
            )
            for chunk in chunks:
                _echo_build_chunk(chunk, log, started, tag, log_path)
        except docker.errors.APIError as error:
            raise LocalCloudError(f"building {tag} failed: {error.explanation}; full log: {log_path}") from None
    progress(f"images: built {tag} in {time.monotonic() - started:.0f}s")
    record_build_time(f"image {tag}", time.monotonic() - started)


def _echo_build_chunk(chunk: dict, log, started: float, tag: str, log_path: Path) -> None:
    if "error" in chunk:
        log.write(chunk["error"] + "\n")
        last = chunk["error"].strip().splitlines()[-1]
        raise LocalCloudError(f"building {tag} failed: {last}; full log: {log_path}")
    text = chunk.get("stream", "")
    log.write(text)
    log.flush()
    if text.startswith("Step "):
        step = text.strip()
        progress(f"  [{time.monotonic() - started:4.0f}s] {step[:110]}")


def drop_older_tags(client: docker.DockerClient, repository: str, keep: str) -> None:
    """Remove this repository's other recipe tags, so rebuilds do not pile up.

    No force: an image a container (a VM of another run) still uses stays.
    """
    for image in client.images.list(name=repository):
        for tag in image.tags:
            if tag != keep and tag.startswith(f"{repository}:"):
                try:
                    client.images.remove(tag)
                except docker.errors.APIError:
                    pass


def run_with_progress(cmd: list[str], log_path: Path, what: str, every_s: float = 15.0) -> None:
    """Run a long command, logging everything and echoing its latest line now and then."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = last_echo = time.monotonic()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    with open(log_path, "a") as log:
        log.write(f"\n$ {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        last_line = ""
        for line in proc.stdout:
            log.write(line)
            last_line = line.strip() or last_line
            if time.monotonic() - last_echo >= every_s:
                last_echo = time.monotonic()
                progress(f"  [{last_echo - started:4.0f}s] {what}: {last_line[:100]}")
        code = proc.wait()
    if code != 0:
        raise LocalCloudError(f"{what} failed (exit {code}): {last_line[:160]}; full log: {log_path}")


# --- Base image ------------------------------------------------------------------


def host_debian_mirrors() -> tuple[str, str]:
    """The archive and security mirrors this machine's apt uses.

    Reusing them keeps builds working wherever the host's apt works (a proxy,
    a local mirror, a snapshot) instead of assuming deb.debian.org is reachable.
    """
    archive, security = DEFAULT_ARCHIVE, DEFAULT_SECURITY
    for uri in _apt_source_uris():
        path = uri.rstrip("/")
        if path.endswith("/debian-security"):
            security = path
        elif path.endswith("/debian"):
            archive = path
    return archive, security


def _apt_source_uris() -> list[str]:
    files = [Path("/etc/apt/sources.list")]
    sources_d = Path("/etc/apt/sources.list.d")
    if sources_d.is_dir():
        files += sorted(p for p in sources_d.iterdir() if p.suffix in (".list", ".sources"))
    uris: list[str] = []
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        uris += re.findall(r"^\s*URIs:\s*(\S+)", text, flags=re.M)
        uris += re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s", text, flags=re.M)
    # file: mirrors exist only on the host, where containers cannot read them.
    return [u for u in uris if u.startswith(("http://", "https://"))]


def debian_sources(archive: str, security: str, suite: str = DEBIAN_SUITE) -> str:
    """apt sources for images: the same three suites a Debian cloud image has."""
    return (
        f"Types: deb\nURIs: {archive}\nSuites: {suite} {suite}-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {suite}-security\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


@one_line_errors
def ensure_debian_base(client: docker.DockerClient, suite: str = DEBIAN_SUITE) -> str:
    """The debootstrapped Debian image of a suite (12 by default), made once per mirror configuration."""
    archive, security = host_debian_mirrors()
    sources = debian_sources(archive, security, suite)
    recipe = recipe_hash("debootstrap", "--variant=minbase", suite, archive, sources)
    tag = f"{BASE_REPO}:{suite}-{recipe}"
    if image_exists(client, tag):
        return tag
    tarball = cache_dir() / "rootfs" / f"{suite}-{recipe}.tar"
    if not tarball.is_file():
        with_retries(lambda: make_debian_rootfs(tarball, archive, sources, suite), "debootstrap")
    import_rootfs(client, tarball, tag, recipe)
    return tag


def ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    if os.geteuid() != 0:
        raise LocalCloudError("debootstrap is missing; install it: sudo apt-get install debootstrap")
    progress("images: installing debootstrap with apt-get (one time)...")
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "debootstrap"]):
        with_retries(
            lambda: run_with_progress(cmd, cache_dir() / "logs" / "apt-debootstrap.log", "installing debootstrap"),
            "installing debootstrap",
        )


def make_debian_rootfs(tarball: Path, archive: str, sources: str, suite: str = DEBIAN_SUITE) -> None:
    """debootstrap a minimal Debian of a suite and pack it as a tarball for `docker import`."""
    ensure_debootstrap()
    started = time.monotonic()
    progress(f"images: debootstrap {suite} from {archive} (a few minutes, one time)")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the tarball, not in /tmp: /tmp may be a small tmpfs, or
    # mounted nodev, which would break the device nodes debootstrap makes.
    workdir = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    try:
        rootfs = workdir / "rootfs"
        run_with_progress(
            ["debootstrap", "--variant=minbase", suite, str(rootfs), archive],
            cache_dir() / "logs" / "debootstrap.log",
            "debootstrap",
        )
        _prepare_rootfs_for_containers(rootfs, sources)
        partial = tarball.with_suffix(".partial")
        run_with_progress(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."],
            cache_dir() / "logs" / "debootstrap.log",
            "packing the root filesystem",
        )
        partial.rename(tarball)
    finally:
        _unmount_below(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
    progress(f"images: debootstrap done in {time.monotonic() - started:.0f}s")
    record_build_time(f"debootstrap {suite}", time.monotonic() - started)


def _unmount_below(folder: Path) -> None:
    """Undo mounts an interrupted debootstrap left in its target (/proc, /sys, devices).

    Deleting the folder with them still mounted would reach into the host's
    /proc, /sys or /dev; lazy unmounts, deepest first, make that impossible.
    """
    prefix = str(folder.resolve()) + "/"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].replace("\\040", " ") for line in mounts]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _prepare_rootfs_for_containers(rootfs: Path, sources: str) -> None:
    # All suites, not just the one debootstrap used, so that apt inside sees
    # the same packages (security fixes included) as a Debian cloud VM.
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(sources)
    # Downloaded .debs and package lists would only make the image larger.
    for folder in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for entry in (rootfs / folder).glob("*"):
            if entry.is_file():
                entry.unlink()
    # Docker provides these per container.
    for name in ("etc/hostname", "etc/resolv.conf"):
        (rootfs / name).unlink(missing_ok=True)


def import_rootfs(client: docker.DockerClient, tarball: Path, tag: str, recipe: str) -> None:
    progress(f"images: importing {tarball.name} as {tag}")
    repository, _, version = tag.partition(":")
    client.api.import_image(
        src=str(tarball),
        repository=repository,
        tag=version,
        changes=[
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            f'LABEL {PROJECT_LABEL}="{PROJECT_VALUE}" {RECIPE_LABEL}="{recipe}"',
            'CMD ["bash"]',
        ],
    )
    if not image_exists(client, tag):
        raise LocalCloudError(f"docker import of {tarball} did not produce {tag}; remove the tarball and retry")


def pull_ubuntu(client: docker.DockerClient, timeout: float = UBUNTU_PULL_TIMEOUT_S) -> str:
    """ubuntu:20.04 (what the course's VMs run), present or pulled; a failed pull says why."""
    if image_exists(client, UBUNTU_IMAGE):
        return UBUNTU_IMAGE
    # A separate client whose socket timeout bounds the wait: offline, the
    # engine may sit on a DNS lookup or a TCP connect far longer than we want.
    reason = "no error reported"
    try:
        quick = docker.from_env(timeout=timeout).api
    except docker.errors.DockerException as error:
        raise LocalCloudError(f"pulling {UBUNTU_IMAGE} failed: {error}; {_OTHER_VM_IMAGES}") from None
    progress(f"images: pulling {UBUNTU_IMAGE} (at most {timeout:.0f}s)")
    try:
        repository, _, tag = UBUNTU_IMAGE.partition(":")
        for chunk in quick.pull(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                reason = str(chunk["error"])
                break
    except Exception as error:  # noqa: BLE001 - whatever it was, it is the reason given
        reason = str(getattr(error, "explanation", None) or error) or type(error).__name__
    finally:
        quick.close()
    if image_exists(client, UBUNTU_IMAGE):
        return UBUNTU_IMAGE
    reason = " ".join(reason.split())[:200]
    raise LocalCloudError(f"pulling {UBUNTU_IMAGE} failed: {reason}; {_OTHER_VM_IMAGES}")


_OTHER_VM_IMAGES = "no Docker Hub here? use --vm-image bullseye (Debian 11, course-like) or bookworm"


def chosen_vm_image(name: str | None = None) -> str:
    """The VM image asked for (argument, else $DCGAN_VM_IMAGE, else bookworm), checked."""
    chosen = (name or os.environ.get(VM_IMAGE_ENV) or DEFAULT_VM_IMAGE).strip().lower()
    if chosen not in VM_IMAGES:
        source = "--vm-image" if name else VM_IMAGE_ENV
        raise LocalCloudError(f"{source} {chosen!r} is not a VM image; use one of {', '.join(VM_IMAGES)}")
    return chosen


def ensure_vm_base(client: docker.DockerClient, vm_image: str = DEFAULT_VM_IMAGE) -> str:
    """The base the VM image is built on: a debootstrapped Debian suite, or ubuntu:20.04 pulled."""
    if vm_image == "ubuntu":
        return pull_ubuntu(client)
    return ensure_debian_base(client, vm_image)


# --- VM image --------------------------------------------------------------------

VM_DOCKERFILE = """\
FROM {base}
# systemd changes its behaviour for containers only when told.
ENV container=docker
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \\
 && apt-get install -y -q --no-install-recommends \\
      systemd systemd-sysv dbus openssh-server sudo python3 ca-certificates gnupg iproute2 \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --shell /bin/bash ubuntu \\
 && install -d -m 700 -o ubuntu -g ubuntu /home/ubuntu/.ssh
COPY files/ /
RUN chmod 440 /etc/sudoers.d/90-localcloud-ubuntu \\
 && rm -f /etc/ssh/ssh_host_* \\
 && systemctl enable localcloud-hostkeys.service ssh.service \\
 && systemctl mask {masked}
# What `docker stop` sends; systemd shuts down cleanly on it.
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""

# Units that need hardware or a console a container does not have; left
# enabled they only fail and turn the VM "degraded" for no reason.
VM_MASKED_UNITS = (
    "getty.target",
    "console-getty.service",
    "systemd-udevd.service",
    "systemd-udevd-control.socket",
    "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service",
    "systemd-modules-load.service",
    "systemd-remount-fs.service",
    "sys-kernel-config.mount",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
)

HOSTKEYS_UNIT = """\
[Unit]
Description=Generate this VM's own SSH host keys
# Every VM gets fresh keys instead of sharing the ones baked into the image.
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""

SSHD_CONFIG = """\
# Cloud-VM defaults: keys only, no root login. Only options that OpenSSH 8.2
# (Ubuntu 20.04) knows too: sshd refuses to start on an unknown one.
PubkeyAuthentication yes
PasswordAuthentication no
PermitRootLogin no
UseDNS no
"""

SUDOERS = "ubuntu ALL=(ALL) NOPASSWD:ALL\n"


def vm_daemon_json(mirror: Registry) -> str:
    """The Docker engine the playbook installs reads this and pulls through our mirror."""
    return (
        json.dumps(
            {"registry-mirrors": [mirror.url_for_vms], "insecure-registries": [mirror.address_for_vms]}, indent=2
        )
        + "\n"
    )


def vm_repository(vm_image: str) -> str:
    """One repository per VM image, so that building one never drops another's tag."""
    return VM_REPO if vm_image == DEFAULT_VM_IMAGE else f"{VM_REPO}-{vm_image}"


@one_line_errors
def ensure_vm_image(client: docker.DockerClient, mirror: Registry, vm_image: str = DEFAULT_VM_IMAGE) -> str:
    """dcgan-vm[-<image>]:<hash>: a container that Ansible cannot tell from a fresh cloud VM."""
    base = ensure_vm_base(client, vm_image)
    dockerfile = VM_DOCKERFILE.format(base=base, masked=" ".join(VM_MASKED_UNITS))
    files = {
        "Dockerfile": dockerfile,
        "files/etc/systemd/system/localcloud-hostkeys.service": HOSTKEYS_UNIT,
        "files/etc/ssh/sshd_config.d/localcloud.conf": SSHD_CONFIG,
        "files/etc/sudoers.d/90-localcloud-ubuntu": SUDOERS,
        "files/etc/docker/daemon.json": vm_daemon_json(mirror),
    }
    return ensure_recipe_image(client, vm_repository(vm_image), "vm", files)


# --- Runtime image ---------------------------------------------------------------

RUNTIME_DOCKERFILE = """\
# Stage 1 installs from the wheels; only its site-packages reach the final
# image, so the 200 MB of wheels do not stay behind in a COPY layer.
FROM {base} AS wheels
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \\
 && apt-get install -y -q --no-install-recommends python3 python3-pip
COPY wheels/ /wheels/
RUN pip install --no-cache-dir --break-system-packages --no-index --find-links /wheels \\
      "{torch}" {extras} \\
 && pip install --no-cache-dir --break-system-packages --no-index --no-deps /wheels/{torchvision_wheel}
# torch's C++ test programs, headers and protoc: nothing a training run opens,
# and about 190 MB less for every VM's engine to pull and unpack.
RUN cd /usr/local/lib/python3.11/dist-packages/torch \\
 && rm -rf test include \\
 && find bin -type f ! -name torch_shm_manager -delete

FROM {base}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \\
 && apt-get install -y -q --no-install-recommends python3 python3-pip python-is-python3 ca-certificates \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY --from=wheels /usr/local/lib/python3.11/dist-packages/ /usr/local/lib/python3.11/dist-packages/
COPY --from=wheels /usr/local/bin/ /usr/local/bin/
{shim}# Fail the build, not the first training run, if torch and torchvision disagree.
RUN python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
CMD ["python"]
"""

# Only where torch is the CPU build and torchvision PyPI's CUDA build (see the shim's docstring).
RUNTIME_SHIM_STEP = """\
# Last, so that a change to the shim rebuilds one small layer, not the 1 GB above.
COPY shim/ /usr/local/lib/python3.11/dist-packages/
"""


def torch_source() -> str:
    """What pip downloads torch from: the DCGAN_TORCH_WHEEL file, else the requirement."""
    override = os.environ.get(TORCH_WHEEL_ENV, "").strip()
    if not override:
        return TORCH_REQUIREMENT
    wheel = Path(override).expanduser()
    if not wheel.is_file():
        raise LocalCloudError(
            f"{TORCH_WHEEL_ENV}={override} is not a file; point it at a torch wheel, or unset it to let pip find {TORCH_REQUIREMENT}"
        )
    return str(wheel.resolve())


def runtime_wheels() -> list[Path]:
    """torch, its dependencies, numpy, pillow and torchvision as wheels on the host.

    Downloaded once into the cache, for CPython 3.11 on manylinux, so that
    builds are offline and every build installs exactly the same files.
    """
    torch = torch_source()
    pip_settings = [f"{name}={os.environ[name]}" for name in PIP_SOURCE_ENV if os.environ.get(name)]
    spec = "\n".join([torch, TORCHVISION_REQUIREMENT, *EXTRA_REQUIREMENTS, *WHEEL_TARGET, *pip_settings])
    folder = cache_dir() / "wheels" / recipe_hash(spec)
    done = folder / "complete.txt"
    if not (done.is_file() and done.read_text() == spec):
        _download_wheels(folder, torch)
        done.write_text(spec)
    return sorted(folder.glob("*.whl"))


def _download_wheels(folder: Path, torch: str) -> None:
    progress(f"images: downloading runtime wheels ({torch}, {TORCHVISION_REQUIREMENT}) into {folder}")
    started = time.monotonic()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(folder), *WHEEL_TARGET]
    log = cache_dir() / "logs" / "pip-download.log"
    run_with_progress([*pip, torch, *EXTRA_REQUIREMENTS], log, f"pip download {torch}")
    # torchvision's declared torch dependency may be another build of torch
    # (PyPI's CUDA one): left out on purpose, torch is already there.
    run_with_progress([*pip, "--no-deps", TORCHVISION_REQUIREMENT], log, "pip download torchvision")
    record_build_time("runtime wheels (pip download)", time.monotonic() - started)


def wheel_version(wheels: list[Path], project: str) -> str:
    """The version in a downloaded wheel's file name, local label included (2.13.0+cpu)."""
    for wheel in wheels:
        name, _, rest = wheel.name.partition("-")
        if name.lower().replace("-", "_") == project:
            return rest.split("-", 1)[0]
    raise LocalCloudError(f"no {project} wheel in {wheels[0].parent if wheels else 'the wheel cache'}; delete that folder and retry")


def needs_torchvision_shim(torch_version: str, torchvision_version: str) -> bool:
    """A CPU torch with a torchvision built for CUDA (PyPI's) cannot import torchvision without it."""
    return torch_version.endswith("+cpu") and not torchvision_version.endswith("+cpu")


def runtime_dockerfile(base: str, wheels: list[Path]) -> tuple[str, dict[str, str | Path]]:
    """The runtime image's Dockerfile and build context for these wheels."""
    torch_version = wheel_version(wheels, "torch")
    torchvision_version = wheel_version(wheels, "torchvision")
    torchvision_wheel = next(w.name for w in wheels if w.name.startswith("torchvision-"))
    shim = needs_torchvision_shim(torch_version, torchvision_version)
    dockerfile = RUNTIME_DOCKERFILE.format(
        base=base,
        torch=f"torch=={torch_version}",
        extras=" ".join(f'"{r}"' for r in EXTRA_REQUIREMENTS),
        torchvision_wheel=torchvision_wheel,
        shim=RUNTIME_SHIM_STEP if shim else "",
    )
    files: dict[str, str | Path] = {"Dockerfile": dockerfile, **(shim_files() if shim else {})}
    files.update({f"wheels/{w.name}": w for w in wheels})
    return dockerfile, files


def shim_files() -> dict[str, Path]:
    missing = [name for name in SHIM_FILES if not (SHIM_DIR / name).is_file()]
    if missing:
        raise LocalCloudError(f"the torchvision CPU shim is missing: {SHIM_DIR}/{missing[0]}; restore it from git")
    return {f"shim/{name}": SHIM_DIR / name for name in SHIM_FILES}


@one_line_errors
def ensure_runtime_image(client: docker.DockerClient) -> str:
    """dcgan-runtime:latest, rebuilt only when its wheels, shim or Dockerfile change."""
    base = ensure_debian_base(client)
    dockerfile, files = runtime_dockerfile(base, runtime_wheels())
    recipe = recipe_hash(dockerfile, *(p for k, p in sorted(files.items()) if isinstance(p, Path)))
    if image_recipe(client, RUNTIME_IMAGE) != recipe:
        previous = _image_id(client, RUNTIME_IMAGE)
        context = write_context("runtime", files)
        build_image(client, RUNTIME_IMAGE, context, {**project_labels("runtime-image"), RECIPE_LABEL: recipe})
        shutil.rmtree(context, ignore_errors=True)
        _remove_unused_image(client, previous)
    return RUNTIME_IMAGE


def _image_id(client: docker.DockerClient, ref: str) -> str | None:
    try:
        return client.images.get(ref).id
    except docker.errors.ImageNotFound:
        return None


def _remove_unused_image(client: docker.DockerClient, image_id: str | None) -> None:
    # 1 GB per superseded runtime otherwise; one still in use stays (no force).
    if image_id and image_id != _image_id(client, RUNTIME_IMAGE):
        try:
            client.images.remove(image_id)
        except docker.errors.APIError:
            pass


# --- Services image: registry mirror and git server --------------------------------

SERVICES_DOCKERFILE = """\
FROM {base}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \\
 && apt-get install -y -q --no-install-recommends docker-registry git ca-certificates \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
# Repositories arrive by put_archive, owned by whoever ran the harness.
RUN git config --system --add safe.directory '*' && mkdir -p /srv/git
COPY registry.yml registry-readonly.yml /etc/localcloud/
"""

REGISTRY_CONFIG = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  delete:
    enabled: true
http:
  addr: :5000
"""

# What the VMs reach: every push refused, and nothing of the storage written
# (the volume is mounted read-only too).
REGISTRY_READONLY_CONFIG = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: /var/lib/registry
  maintenance:
    readonly:
      enabled: true
    uploadpurging:
      enabled: false
http:
  addr: :5000
"""


@one_line_errors
def ensure_services_image(client: docker.DockerClient) -> str:
    """dcgan-services:<hash>: Debian's docker-registry and git, for the two servers VMs use."""
    base = ensure_debian_base(client)
    files = {
        "Dockerfile": SERVICES_DOCKERFILE.format(base=base),
        "registry.yml": REGISTRY_CONFIG,
        "registry-readonly.yml": REGISTRY_READONLY_CONFIG,
    }
    return ensure_recipe_image(client, SERVICES_REPO, "services", files)


@dataclass(frozen=True)
class Registry:
    """Where the mirror answers: the host pushes to one address, VMs pull from another."""

    push_address: str  # 127.0.0.1:<port>, which the host engine trusts without TLS
    address_for_vms: str  # <bridge gateway>:<port>, which containers reach

    @property
    def url_for_vms(self) -> str:
        return f"http://{self.address_for_vms}"


def bridge_gateway(client: docker.DockerClient) -> str:
    """The host's address as seen from containers on the default bridge."""
    try:
        for config in client.networks.get("bridge").attrs["IPAM"]["Config"] or []:
            if config.get("Gateway"):
                return config["Gateway"]
    except (docker.errors.DockerException, KeyError):
        pass
    return "172.17.0.1"


def registry_for(client: docker.DockerClient, port: int = REGISTRY_PORT) -> Registry:
    return Registry(push_address=f"127.0.0.1:{port}", address_for_vms=f"{bridge_gateway(client)}:{port}")


@one_line_errors
def ensure_registry(client: docker.DockerClient, port: int = REGISTRY_PORT) -> Registry:
    """Start (or reuse) the registry container; its data volume survives `down` as a cache."""
    registry = registry_for(client, port)
    image = ensure_services_image(client)
    for name in (REGISTRY_NAME, REGISTRY_READONLY_NAME):
        container = _find_registry(client, name)
        if container is not None and not _registry_is_current(container, image, port):
            container.remove(force=True)
    _start_registry(client, image, registry, port)
    wait_for_registry(registry)
    return registry


def _registry_is_current(container, image: str, port: int) -> bool:
    if container.status != "running" or image not in container.image.tags:
        return False
    host_config = container.attrs["HostConfig"]
    if host_config.get("NetworkMode") == "host":
        return f"{WRITER_ADDRESS_VARIABLE}=127.0.0.1:{port}" in (container.attrs["Config"].get("Env") or [])
    bindings = (host_config.get("PortBindings") or {}).get("5000/tcp") or []
    return bool(bindings) and all(b.get("HostPort") == str(port) for b in bindings)


def _find_registry(client: docker.DockerClient, name: str = REGISTRY_NAME):
    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def _start_registry(client: docker.DockerClient, image: str, registry: Registry, port: int) -> None:
    """The writer on the host's loopback alone, the read-only reader on the VMs' gateway.

    The writer shares the host's network and listens on 127.0.0.1 only: on
    a bridge of its own, a VM could reach its container address and push.
    """
    if not client.volumes.list(filters={"name": f"^{REGISTRY_VOLUME}$"}):
        client.volumes.create(REGISTRY_VOLUME, labels=project_labels("registry-data"))
    gateway = registry.address_for_vms.rsplit(":", 1)[0]
    if _find_registry(client, REGISTRY_NAME) is None:
        _run_registry(
            client, image, REGISTRY_NAME, "registry.yml", "rw", port,
            network_mode="host", environment={WRITER_ADDRESS_VARIABLE: f"127.0.0.1:{port}"},
        )
    if _find_registry(client, REGISTRY_READONLY_NAME) is None:
        _run_registry(
            client, image, REGISTRY_READONLY_NAME, "registry-readonly.yml", "ro", port,
            ports={"5000/tcp": [(gateway, port)]},
        )


def _run_registry(client, image: str, name: str, config: str, mode: str, port: int, **network) -> None:
    try:
        client.containers.run(
            image,
            ["docker-registry", "serve", f"/etc/localcloud/{config}"],
            name=name,
            detach=True,
            labels=project_labels("registry"),
            volumes={REGISTRY_VOLUME: {"bind": "/var/lib/registry", "mode": mode}},
            **network,
        )
    except docker.errors.APIError as error:
        if error.status_code == 409:
            return  # a parallel `up` started it a moment ago
        if "address already in use" in str(error) or "port is already allocated" in str(error):
            raise LocalCloudError(
                f"port {port} for the registry mirror is in use; free it or set DCGAN_REGISTRY_PORT to another port"
            ) from None
        raise LocalCloudError(f"starting the registry mirror failed: {error.explanation}") from None


def wait_for_registry(registry: Registry, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    # No proxy: an http_proxy from the environment cannot reach our loopback.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for address, name in ((registry.push_address, REGISTRY_NAME), (registry.address_for_vms, REGISTRY_READONLY_NAME)):
        url = f"http://{address}/v2/"
        while True:
            try:
                with opener.open(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise LocalCloudError(
                    f"the registry mirror did not answer at {url} within {timeout:.0f}s; see `docker logs {name}`"
                )
            time.sleep(0.3)


@one_line_errors
def publish_runtime(client: docker.DockerClient, registry: Registry) -> None:
    """Push dcgan-runtime:latest as the Docker Hub name VMs' engines will ask the mirror for."""
    repository = f"{registry.push_address}/{REGISTRY_RUNTIME_REPO}"
    client.images.get(RUNTIME_IMAGE).tag(repository, "latest")
    started = time.monotonic()
    progress(f"images: pushing {RUNTIME_IMAGE} to the mirror as {REGISTRY_RUNTIME_REPO}:latest")
    for chunk in client.api.push(repository, tag="latest", stream=True, decode=True):
        if "error" in chunk:
            raise LocalCloudError(f"pushing {RUNTIME_IMAGE} to {repository} failed: {chunk['error']}")
    progress(f"images: pushed in {time.monotonic() - started:.0f}s")


def mirror_holds_runtime(registry: Registry) -> bool:
    """Whether the mirror answers and serves the runtime under the name VMs ask for."""
    return runtime_digest(registry) is not None


def runtime_digest(registry: Registry, address: str | None = None) -> str | None:
    """The manifest digest under which the mirror serves the runtime to VMs; None when it does not."""
    request = urllib.request.Request(
        f"http://{address or registry.address_for_vms}/v2/{REGISTRY_RUNTIME_REPO}/manifests/latest",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.headers.get("Docker-Content-Digest") if response.status == 200 else None
    except (urllib.error.URLError, OSError):
        return None


@one_line_errors
def ensure_mirror(client: docker.DockerClient) -> Registry:
    """The mirror running and holding the runtime, for an `up` given images prepared earlier.

    Another run's `down` stops the mirror when it sees no VM left, for
    instance between two graded submissions; a VM started after that would
    pull the runtime from Docker Hub and fail offline.
    """
    registry = ensure_registry(client)
    if not mirror_holds_runtime(registry):
        publish_runtime(client, registry)
    return registry


@dataclass(frozen=True)
class CloudImages:
    vm: str
    runtime: str
    services: str
    registry: Registry
    # Which of VM_IMAGES the VM image is built on.
    vm_image: str = DEFAULT_VM_IMAGE


@one_line_errors
def prepare_images(client: docker.DockerClient, vm_image: str | None = None) -> CloudImages:
    """Everything `up` needs before the first VM starts, built or reused.

    vm_image: one of VM_IMAGES; default $DCGAN_VM_IMAGE, else bookworm.
    """
    vm_image = chosen_vm_image(vm_image)
    registry = ensure_registry(client)
    runtime = ensure_runtime_image(client)
    publish_runtime(client, registry)
    vm = ensure_vm_image(client, registry, vm_image)
    progress(f"images: VM image {vm_image} ({VM_IMAGES[vm_image]}): {vm}")
    return CloudImages(
        vm=vm, runtime=runtime, services=ensure_services_image(client), registry=registry, vm_image=vm_image
    )


def tar_folder(folder: Path, arcname: str) -> bytes:
    """A folder as an in-memory tar, for `put_archive` into a container."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(folder), arcname=arcname)
    return buffer.getvalue()
