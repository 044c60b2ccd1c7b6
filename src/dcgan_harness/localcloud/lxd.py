"""The LXD daemon behind the unprivileged VMs: connect to it, or start it here.

Unprivileged VMs are LXD system containers: root in the VM is uid 100000 on
this machine, the VM has its own cgroup and user namespaces and no host
device. As root on a bare Debian host we install Debian's LXD and start the
daemon by hand, as `engine` does for dockerd; anywhere else we say what to
install. The VM image is the Docker VM image's root file system, imported
once per recipe hash.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import docker
import docker.errors

from .engine import LocalCloudError, progress, record_build_time

LXD_SOCKET = Path(os.environ.get("DCGAN_LXD_SOCKET", "/var/lib/lxd/unix.socket"))
LXD_LOG = Path("/var/log/dcgan-localcloud-lxd.log")
LXD_PACKAGES = ("lxd", "lxd-client", "dnsmasq-base")
LXD_START_TIMEOUT_S = 90.0
IMAGE_ALIAS_PREFIX = "dcgan-vm"
# Every unprivileged VM is named dcgan-lxd-<run id>-<node>, and so is its storage pool.
VM_PREFIX = "dcgan-lxd"
# Where each VM's own disk (a file holding an ext4 file system) lives.
DISKS_DIR = Path(os.environ.get("DCGAN_LXD_DISKS", "/var/lib/dcgan-lxd/disks"))
LXD_INSTALL_HINT = "install LXD (Debian/Ubuntu: sudo apt-get install lxd lxd-client dnsmasq-base) and start `lxd`"


def ensure_lxd(timeout: float = LXD_START_TIMEOUT_S):
    """A pylxd client of a running daemon: the one here, or one we install and start as root."""
    client = try_connect_lxd()
    if client is not None:
        return client
    if not can_start_lxd():
        raise LocalCloudError(f"no LXD daemon answers at {LXD_SOCKET}; {LXD_INSTALL_HINT}")
    if shutil.which("lxd") is None:
        _install_lxd()
    _start_lxd(timeout)
    client = try_connect_lxd()
    if client is None:
        raise LocalCloudError(f"lxd started but does not answer at {LXD_SOCKET}; see {LXD_LOG}")
    return client


def try_connect_lxd():
    """The daemon's client when its socket answers, else None."""
    if not LXD_SOCKET.exists():
        return None
    import pylxd
    import pylxd.exceptions

    try:
        client = pylxd.Client(endpoint=str(LXD_SOCKET))
        client.host_info  # noqa: B018 - the first request tells whether it answers
        return client
    except (pylxd.exceptions.ClientConnectionFailed, pylxd.exceptions.LXDAPIException, OSError):
        return None


def lxd_available() -> bool:
    """Whether unprivileged VMs can run here: a daemon answers, or we may install and start one."""
    return try_connect_lxd() is not None or can_start_lxd()


def can_start_lxd() -> bool:
    """Root on a Debian-like host: LXD installs from the archive and starts without systemd."""
    if os.geteuid() != 0:
        return False
    return shutil.which("lxd") is not None or shutil.which("apt-get") is not None


def _install_lxd() -> None:
    started = time.monotonic()
    progress("lxd: installing Debian's LXD with apt-get (one time)...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *LXD_PACKAGES]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise LocalCloudError(f"{' '.join(cmd[:2])} failed: {last}; {LXD_INSTALL_HINT}")
    record_build_time("apt-get install lxd", time.monotonic() - started)


def _start_lxd(timeout: float) -> None:
    LXD_LOG.parent.mkdir(parents=True, exist_ok=True)
    progress(f"lxd: starting the LXD daemon (log: {LXD_LOG})")
    with open(LXD_LOG, "ab") as log:
        # Its own session, so a Ctrl-C meant for the harness does not stop it.
        subprocess.Popen(["lxd", "--group", "root"], stdout=log, stderr=log, start_new_session=True)
    proc = subprocess.run(["lxd", "waitready", f"--timeout={int(timeout)}"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise LocalCloudError(f"lxd did not become ready within {timeout:.0f}s; see {LXD_LOG}")


# --- The VM image ------------------------------------------------------------------


def image_alias(docker_image_id: str) -> str:
    return f"{IMAGE_ALIAS_PREFIX}-{docker_image_id.split(':', 1)[-1][:12]}"


def ensure_lxd_image(lxd, client: docker.DockerClient, docker_image: str) -> str:
    """The LXD image made from a Docker VM image (same recipe, same alias); imported when missing."""
    image_id = client.images.get(docker_image).id
    alias = image_alias(image_id)
    if lxd.images.exists(alias, alias=True):
        return alias
    started = time.monotonic()
    progress(f"lxd: importing {docker_image} as LXD image {alias}")
    rootfs = _export_rootfs(client, docker_image)
    image = lxd.images.create(rootfs, metadata=_metadata_tarball(docker_image), public=False, wait=True)
    image.add_alias(alias, f"the local cloud's VM image {docker_image}")
    progress(f"lxd: imported {alias} in {time.monotonic() - started:.0f}s")
    record_build_time(f"LXD image {alias}", time.monotonic() - started)
    return alias


def _export_rootfs(client: docker.DockerClient, docker_image: str) -> bytes:
    container = client.containers.create(docker_image, command=["true"])
    try:
        return b"".join(container.export())
    finally:
        container.remove(force=True)


def _metadata_tarball(docker_image: str) -> bytes:
    metadata = (
        "architecture: x86_64\n"
        f"creation_date: {int(time.time())}\n"
        "properties:\n"
        f"  description: dcgan-harness VM from {docker_image}\n"
        "  os: debian\n"
    ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("metadata.yaml")
        info.size = len(metadata)
        tar.addfile(info, io.BytesIO(metadata))
    return buffer.getvalue()


# --- One disk per VM ------------------------------------------------------------------


def create_disk_pool(lxd, name: str, size_gb: int) -> str:
    """A storage pool holding one VM: an ext4 file system of size_gb, so the VM's disk is bounded.

    The file is sparse: it takes the space the VM writes, no more.
    """
    image = DISKS_DIR / f"{name}.ext4"
    mountpoint = DISKS_DIR / name
    DISKS_DIR.mkdir(parents=True, exist_ok=True)
    with open(image, "wb") as disk:
        disk.truncate(size_gb << 30)
    # A disk that lives as long as one VM needs no journal to survive a crash,
    # and the kernel's background zeroing of inode tables would compete with
    # the VM's own writes for its first minutes.
    _run(["mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "nodiscard", str(image)], f"making {name}'s disk")
    mountpoint.mkdir(exist_ok=True)
    _run(["mount", "-o", "loop,noatime,noinit_itable", str(image), str(mountpoint)], f"mounting {name}'s disk")
    (mountpoint / "pool").mkdir(exist_ok=True)
    lxd.storage_pools.create({"name": name, "driver": "dir", "config": {"source": str(mountpoint / "pool")}})
    return name


def remove_disk_pool(lxd, name: str) -> None:
    """The pool, its mount and its file; whatever of them is left."""
    import pylxd.exceptions

    try:
        lxd.storage_pools.get(name).delete()
    except pylxd.exceptions.NotFound:
        pass
    remove_disk(name)


def remove_disk(name: str) -> None:
    mountpoint = DISKS_DIR / name
    if os.path.ismount(mountpoint):
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
    if mountpoint.is_dir():
        shutil.rmtree(mountpoint, ignore_errors=True)
    (DISKS_DIR / f"{name}.ext4").unlink(missing_ok=True)


def leftover_disks() -> list[str]:
    return sorted(p.stem for p in DISKS_DIR.glob("*.ext4")) if DISKS_DIR.is_dir() else []


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LocalCloudError(f"{what} failed: {(proc.stderr.strip() or proc.stdout.strip())[:200]}")


def lxd_vms(run_id: str | None = None) -> list[dict]:
    """The unprivileged VMs LXD holds (of one run, or all): name, state, run id and node of each."""
    lxd = try_connect_lxd()
    if lxd is None:
        return []
    found = []
    for instance in lxd.instances.all():
        config = instance.config or {}
        if not instance.name.startswith(f"{VM_PREFIX}-"):
            continue
        if run_id and config.get("user.dcgan.run") != run_id:
            continue
        found.append({
            "name": instance.name, "state": str(instance.status).lower(),
            "run_id": config.get("user.dcgan.run", ""), "node": config.get("user.dcgan.node", ""),
        })  # fmt: skip
    return found


# --- Removing what a run made -------------------------------------------------------


def down_lxd(run_id: str | None = None) -> list[str]:
    """Remove the unprivileged VMs of a run (every run: None) and their disks."""
    lxd = try_connect_lxd()
    removed: list[str] = []
    if lxd is None:
        return removed
    prefix = f"{VM_PREFIX}-{run_id}-" if run_id else f"{VM_PREFIX}-"
    for instance in lxd.instances.all():
        if not instance.name.startswith(prefix):
            continue
        try:
            if instance.status == "Frozen":
                instance.unfreeze(wait=True)
            if instance.status != "Stopped":
                instance.stop(force=True, wait=True)
            instance.delete(wait=True)
        except Exception as error:  # noqa: BLE001 - report and go on with the others
            progress(f"lxd: removing {instance.name} failed: {' '.join(str(error).split())[:200]}")
            continue
        removed.append(instance.name)
    for pool in lxd.storage_pools.all():
        if pool.name.startswith(prefix):
            remove_disk_pool(lxd, pool.name)
    for disk in leftover_disks():
        if disk.startswith(prefix):
            remove_disk(disk)
    return removed
