"""The local cloud's apt cache: Debian's apt-cacher-ng as a service beside the registry mirror.

Every fresh VM installs docker.io and its dependencies (about 60 MB) with
apt. Without a cache each VM downloads them from the archive again; with it,
the first VM of the machine's life fetches them and every later one, of any
run or grader job, gets them over the Docker bridge.

The cache runs in one container (`dcgan-apt-cache`) whose data lives in a
volume (`dcgan-apt-cache-data`) that survives `cloud down`, like the registry
mirror's; `cloud down --all` removes it. VMs find it through apt's
Proxy-Auto-Detect hook, which `up` installs in each VM: the hook names the
cache while it answers and says DIRECT otherwise, so apt, and the playbook,
work the same with or without it.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass

import docker
import docker.errors

from .engine import LocalCloudError, one_line_errors, progress, remove_container
from .images import (
    bridge_gateway,
    ensure_debian_base,
    ensure_recipe_image,
    host_debian_mirrors,
    project_labels,
)

APT_CACHE_REPO = "dcgan-apt-cache"
APT_CACHE_NAME = "dcgan-apt-cache"
APT_CACHE_VOLUME = "dcgan-apt-cache-data"
APT_CACHE_PORT = int(os.environ.get("DCGAN_APT_CACHE_PORT", "3142"))
# apt-cacher-ng's own port inside the container.
CONTAINER_PORT = 3142
CACHE_DIR = "/var/cache/apt-cacher-ng"
LOG_FILE = "/var/log/apt-cacher-ng/apt-cacher.log"
# Where `up` puts the hook and apt's setting in every VM.
VM_HOOK_PATH = "/usr/local/lib/localcloud/apt-proxy"
VM_APT_CONF_PATH = "/etc/apt/apt.conf.d/00localcloud-apt-cache"


# --- Image ------------------------------------------------------------------------

APT_CACHE_DOCKERFILE = """\
FROM {base}
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update -q \\
 && apt-get install -y -q --no-install-recommends apt-cacher-ng \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
# Its own user owns the cache and the folders it writes at run time; a new
# volume on the cache folder takes that ownership from the image.
RUN install -d -o apt-cacher-ng -g apt-cacher-ng {cache_dir} /var/log/apt-cacher-ng /run/apt-cacher-ng
COPY localcloud.conf /etc/apt-cacher-ng/zz-localcloud.conf
# Debian's default backend is ftp.debian.org; the archive this machine's apt
# uses is the one known to answer here.
COPY backends_debian /etc/apt-cacher-ng/backends_debian
USER apt-cacher-ng
CMD ["apt-cacher-ng", "-c", "/etc/apt-cacher-ng", "ForeGround=1"]
"""

# Read after acng.conf (files of the folder, in name order), so these win.
APT_CACHE_CONFIG = """\
Port: {port}
BindAddress: 0.0.0.0
CacheDir: {cache_dir}
LogDir: /var/log/apt-cacher-ng
# Keep packages nobody asked for in a month, not the default 4 days: a course
# machine may sit idle between terms of grading.
ExThreshold: 30
# No report and maintenance page: from it a VM could delete or expire what
# every other VM installs from.
ReportPage:
"""


def apt_cache_config(upstream_proxy: str | None = None) -> str:
    """The container's apt-cacher-ng settings; a host behind a proxy passes it on."""
    config = APT_CACHE_CONFIG.format(port=CONTAINER_PORT, cache_dir=CACHE_DIR)
    if upstream_proxy:
        config += f"Proxy: {upstream_proxy}\n"
    return config


@one_line_errors
def ensure_apt_cache_image(client: docker.DockerClient) -> str:
    """dcgan-apt-cache:<hash>: Debian's apt-cacher-ng on the debootstrapped base."""
    base = ensure_debian_base(client)
    archive, _ = host_debian_mirrors()
    files = {
        "Dockerfile": APT_CACHE_DOCKERFILE.format(base=base, cache_dir=CACHE_DIR),
        "localcloud.conf": apt_cache_config(os.environ.get("http_proxy") or os.environ.get("HTTP_PROXY")),
        "backends_debian": archive.rstrip("/") + "/\n",
    }
    return ensure_recipe_image(client, APT_CACHE_REPO, "apt-cache", files)


# --- Service ------------------------------------------------------------------------


@dataclass(frozen=True)
class AptCache:
    """One apt cache: its container, data volume and port; tests run their own beside the shared one."""

    name: str = APT_CACHE_NAME
    volume: str = APT_CACHE_VOLUME
    port: int = APT_CACHE_PORT

    def address_for_vms(self, client: docker.DockerClient) -> str:
        return f"{bridge_gateway(client)}:{self.port}"


SHARED = AptCache()


@one_line_errors
def ensure_apt_cache(client: docker.DockerClient, cache: AptCache = SHARED, timeout: float = 30.0) -> str:
    """Start (or reuse) the cache container; the address VMs reach it at."""
    image = ensure_apt_cache_image(client)
    container = _find(client, cache.name)
    if container is not None and not _is_current(container, image, cache.port):
        container.remove(force=True)
        container = None
    if container is None:
        _start(client, image, cache)
    wait_for_apt_cache(cache, timeout)
    return cache.address_for_vms(client)


def _find(client: docker.DockerClient, name: str):
    try:
        return client.containers.get(name)
    except docker.errors.NotFound:
        return None


def _is_current(container, image: str, port: int) -> bool:
    bindings = (container.attrs["HostConfig"].get("PortBindings") or {}).get(f"{CONTAINER_PORT}/tcp") or []
    return (
        container.status == "running"
        and image in container.image.tags
        and bool(bindings)
        and all(b.get("HostPort") == str(port) for b in bindings)
    )


def _start(client: docker.DockerClient, image: str, cache: AptCache) -> None:
    if not client.volumes.list(filters={"name": f"^{cache.volume}$"}):
        client.volumes.create(cache.volume, labels=project_labels("apt-cache-data"))
    gateway = bridge_gateway(client)
    try:
        client.containers.run(
            image,
            name=cache.name,
            detach=True,
            labels=project_labels("apt-cache"),
            volumes={cache.volume: {"bind": CACHE_DIR, "mode": "rw"}},
            # The bridge gateway for the VMs, loopback for checks from the host;
            # never all interfaces, or the machine's neighbours could use it.
            ports={f"{CONTAINER_PORT}/tcp": [("127.0.0.1", cache.port), (gateway, cache.port)]},
            restart_policy={"Name": "unless-stopped"},
        )
    except docker.errors.APIError as error:
        if error.status_code == 409:
            return  # a parallel `up` started it a moment ago
        if "address already in use" in str(error) or "port is already allocated" in str(error):
            remove_container(client, cache.name)
            raise LocalCloudError(
                f"port {cache.port} for the apt cache is in use; free it or set DCGAN_APT_CACHE_PORT to another port"
            ) from None
        raise LocalCloudError(f"starting the apt cache failed: {error.explanation}") from None
    progress(f"localcloud: started the apt cache {cache.name} on port {cache.port}")


def wait_for_apt_cache(cache: AptCache = SHARED, timeout: float = 30.0) -> None:
    """Until apt-cacher-ng accepts connections on the host's loopback."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", cache.port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise LocalCloudError(
        f"the apt cache did not answer on 127.0.0.1:{cache.port} within {timeout:.0f}s; see `docker logs {cache.name}`"
    )


@one_line_errors
def stop_apt_cache(client: docker.DockerClient, cache: AptCache = SHARED, keep_data: bool = True) -> list[str]:
    """Remove the cache container and, unless keep_data, its volume; the names removed."""
    removed: list[str] = []
    if _find(client, cache.name) is not None:
        remove_container(client, cache.name)
        removed.append(cache.name)
    if not keep_data:
        for volume in client.volumes.list(filters={"name": f"^{cache.volume}$"}):
            volume.remove(force=True)
            removed.append(cache.volume)
    return removed


# --- In each VM ---------------------------------------------------------------------

# apt runs this with the URL it is about to fetch and uses the line it prints:
# a proxy URL, or DIRECT. A one-second connect keeps apt working, at the
# archive's speed, when the cache is stopped or was never started.
VM_HOOK = """\
#!/bin/bash
# Installed by the local cloud: apt's proxy is its apt cache while that answers.
if timeout 1 bash -c ': > /dev/tcp/{host}/{port}' 2>/dev/null; then
  echo "http://{host}:{port}"
else
  echo DIRECT
fi
"""

VM_APT_CONF = """\
// Installed by the local cloud: http sources go through its apt cache when it answers.
Acquire::http::Proxy-Auto-Detect "{hook}";
"""


def vm_hook(address: str) -> str:
    host, _, port = address.rpartition(":")
    return VM_HOOK.format(host=host, port=port)


def configure_vm(container, address: str) -> None:
    """Point a VM's apt at the cache at address (host:port), with the DIRECT fallback."""
    script = (
        f'install -d /usr/local/lib/localcloud && printf "%s" "$HOOK" > {VM_HOOK_PATH} '
        f'&& chmod 755 {VM_HOOK_PATH} && printf "%s" "$CONF" > {VM_APT_CONF_PATH}'
    )
    environment = {"HOOK": vm_hook(address), "CONF": VM_APT_CONF.format(hook=VM_HOOK_PATH)}
    try:
        code, output = container.exec_run(["sh", "-c", script], environment=environment)
    except docker.errors.APIError as error:
        raise LocalCloudError(
            f"configuring apt in VM {container.name} failed: {error.explanation}; see `docker logs {container.name}`"
        ) from None
    if code != 0:
        text = (output or b"").decode(errors="replace").strip()
        raise LocalCloudError(f"configuring apt in VM {container.name} failed: {text[:160]}")
