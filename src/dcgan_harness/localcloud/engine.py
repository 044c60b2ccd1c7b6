"""A Docker engine for the local cloud: connect to one, or start one on this machine.

The local cloud runs its "VMs" as containers, so everything starts here. On a
bare Debian host (CI runners, dev VMs) no engine is running; as root we can
install Debian's docker.io and start dockerd by hand, which avoids needing
systemd on the host. Anywhere else we only say what to install.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from ..errors import HarnessError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
ENGINE_START_TIMEOUT_S = 90.0
DOCKERD_LOG = Path("/var/log/dcgan-localcloud-dockerd.log")


class LocalCloudError(HarnessError):
    """A local-cloud failure whose message is one line a person can act on.

    The CLI prints it without a traceback, so the message must name the
    thing that failed and, where there is one, the fix.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def one_line_errors(function):
    """Turn Docker SDK and connection errors escaping `function` into LocalCloudError.

    The SDK's messages are multi-line HTTP dumps; callers (and the CLI) only
    ever need the engine's own explanation, on one line, with what we were doing.
    """

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except docker.errors.APIError as error:
            raise LocalCloudError(f"{function.__name__}: Docker engine said: {error.explanation or error}") from None
        except (docker.errors.DockerException, requests.exceptions.RequestException) as error:
            raise LocalCloudError(f"{function.__name__}: talking to the Docker engine failed: {error}") from None

    return wrapper


NETWORK_ATTEMPTS = 3


def with_retries(action, what: str, attempts: int = NETWORK_ATTEMPTS, pause_s: float = 10.0):
    """Run action(), again after a pause when it fails: these steps fetch from
    package mirrors, whose dropped connections should not fail a whole run."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except LocalCloudError as error:
            if attempt == attempts:
                raise
            progress(f"{what} failed ({error}); trying again in {pause_s:.0f}s ({attempt + 1}/{attempts})")
            time.sleep(pause_s)


def progress(message: str) -> None:
    """A progress line on stderr, so stdout stays free for results scripts capture."""
    print(message, file=sys.stderr, flush=True)


BUILD_TIMES_ENV = "DCGAN_BUILD_TIMES"


def record_build_time(what: str, seconds: float) -> None:
    """One line `<seconds> <what>` in $DCGAN_BUILD_TIMES, where `make test` sums up what a cold machine builds."""
    path = os.environ.get(BUILD_TIMES_ENV)
    if not path:
        return
    try:
        with open(path, "a") as times:
            times.write(f"{seconds:.0f} {what}\n")
    except OSError:
        pass


def remove_container(client: docker.DockerClient, name: str, timeout: float = 30.0) -> None:
    """Force-remove a container and its anonymous volumes; gone already, or going, is fine.

    Two threads of one run may remove the same container at once (Ctrl-C's
    cleanup beside a submission's own `down`): the engine answers the second
    "removal ... already in progress", and that one waits until it is gone.
    """
    try:
        client.api.remove_container(name, force=True, v=True)
        return
    except docker.errors.NotFound:
        return
    except docker.errors.APIError as error:
        if "already in progress" not in str(error):
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client.api.inspect_container(name)
        except docker.errors.NotFound:
            return
        time.sleep(0.2)
    raise LocalCloudError(f"container {name} was still being removed after {timeout:.0f}s; run `dcgan-harness cloud down`")


def ensure_engine(timeout: float = ENGINE_START_TIMEOUT_S) -> docker.DockerClient:
    """Return a client connected to a Docker engine, starting one if we may."""
    client = try_connect()
    if client is not None:
        return client
    if not can_start_engine():
        raise LocalCloudError(_install_hint())
    if shutil.which("dockerd") is None:
        install_docker_io()
    process, log_path = start_dockerd()
    return wait_for_engine(timeout, log_path, process)


def try_connect() -> docker.DockerClient | None:
    """A client if an engine answers a ping now, else None."""
    try:
        client = docker.from_env(timeout=300)
        client.ping()
        return client
    except (docker.errors.DockerException, OSError):
        return None


def can_start_engine() -> bool:
    # Starting dockerd needs root, Linux, and the default socket: if DOCKER_HOST
    # points elsewhere the user meant that engine, and a local one would
    # silently take its place.
    docker_host = os.environ.get("DOCKER_HOST", DEFAULT_SOCKET)
    return (
        sys.platform.startswith("linux")
        and os.geteuid() == 0
        and docker_host in (DEFAULT_SOCKET, "unix://var/run/docker.sock")
    )


def _install_hint() -> str:
    if os.environ.get("DOCKER_HOST"):
        return f"No Docker engine answers at DOCKER_HOST={os.environ['DOCKER_HOST']}; start it or unset DOCKER_HOST."
    if sys.platform.startswith("linux"):
        return (
            "No Docker engine is running; install and start one "
            "(Debian/Ubuntu: sudo apt-get install docker.io && sudo systemctl start docker), "
            "or run as root so the harness starts it."
        )
    return "No Docker engine is running; install and start Docker Desktop (or another Docker engine)."


def install_docker_io() -> None:
    """Install Debian's docker.io with apt, without prompts."""
    progress("engine: installing docker.io with apt-get (one time)...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "docker.io"],
    ):
        with_retries(lambda: _run_or_raise(cmd, env, "installing docker.io"), "installing docker.io")
    if shutil.which("dockerd") is None:
        raise LocalCloudError("apt-get installed docker.io but dockerd is not on PATH; check `dpkg -L docker.io`.")


def _run_or_raise(cmd: list[str], env: dict[str, str], what: str) -> None:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise LocalCloudError(f"{what} failed: `{' '.join(cmd)}` exited {proc.returncode}: {last[0]}")


def dockerd_log_path() -> Path:
    """Where dockerd's output goes: /var/log if writable, else the project cache."""
    if os.access(DOCKERD_LOG.parent, os.W_OK):
        return DOCKERD_LOG
    fallback = Path.cwd() / ".cache" / "localcloud" / "dockerd.log"
    fallback.parent.mkdir(parents=True, exist_ok=True)
    return fallback


def start_dockerd() -> tuple[subprocess.Popen, Path]:
    """Start dockerd detached from us, so the engine outlives this process."""
    log_path = dockerd_log_path()
    progress(f"engine: starting dockerd (log: {log_path})")
    # A new session keeps Ctrl-C in the terminal from reaching dockerd: the
    # engine is shared by later runs and must not die with this one.
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            ["dockerd"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return process, log_path


def wait_for_engine(timeout: float, log_path: Path, process: subprocess.Popen | None = None) -> docker.DockerClient:
    """Poll until the freshly started engine answers, or fail naming its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        client = try_connect()
        if client is not None:
            return client
        if process is not None and process.poll() is not None:
            # Ours lost the race to a dockerd another run started: wait for that one.
            if "pid file found" in _last_line(log_path):
                process = None
                continue
            # Otherwise it will never answer; say why now, not after the timeout.
            raise LocalCloudError(f"dockerd exited with status {process.returncode}: {_last_line(log_path)}")
        time.sleep(0.5)
    raise LocalCloudError(f"dockerd did not answer within {timeout:.0f}s; see {log_path}")


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return f"see {path}"
    return (lines[-1][:200] + f" (log: {path})") if lines else f"no output (log: {path})"
