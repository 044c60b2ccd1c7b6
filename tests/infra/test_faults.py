"""Faults of the local cloud end in one line a person can act on, and leave nothing behind.

A killed harness, Ctrl-C (or CI's SIGTERM) in the middle of `up`, and VMs
that do not boot. Every test cleans up what it started even when it fails.
`down` is called with the test's run id: without one it would also remove the
VM that the infra and e2e layers share. The leftovers are found by their
labels alone, their run folder being gone, as `down` without a run id finds
them.
"""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from dcgan_harness.localcloud import command, images, vms
from dcgan_harness.localcloud.engine import LocalCloudError

START_TIMEOUT_S = 120  # image checks + container start; images are built by the vm_image fixture
HANG_UNIT = "localcloud-test-hang.service"
INTERRUPTED_LINE = "interrupted; `dcgan-harness cloud down` removes whatever was left"


@pytest.fixture(autouse=True)
def state_root(tmp_path, monkeypatch):
    """Run folders of these tests (keys, inventories) live in tmp, never in the checkout's .localcloud."""
    root = tmp_path / "state"
    monkeypatch.setenv("DCGAN_LOCALCLOUD_STATE", str(root))
    return root


@pytest.fixture(scope="module")
def vm_image(docker_client) -> str:
    """The VM image, built once here so no test's timeout has to cover a build."""
    return images.prepare_images(docker_client).vm


@pytest.fixture
def run_id(docker_client):
    """A fresh run id, whose containers and volumes are removed after the test whatever happens."""
    run_id = "f" + vms.new_run_id()
    try:
        yield run_id
    finally:
        vms.down(run_id, client=docker_client)


def run_filter(run_id: str) -> dict:
    return {"label": f"{vms.RUN_LABEL}={run_id}"}


def leftovers(client, run_id: str) -> tuple[list[str], list[str]]:
    containers = client.containers.list(all=True, filters=run_filter(run_id), ignore_removed=True)
    volumes = client.volumes.list(filters=run_filter(run_id))
    return [c.name for c in containers], [v.name for v in volumes]


def assert_one_line(text: str) -> None:
    assert text.strip() and "\n" not in text.strip(), text
    assert "Traceback" not in text


class CliUp:
    """`python -m dcgan_harness.localcloud up` as a person starts it in a terminal."""

    def __init__(self, run_id: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dcgan_harness.localcloud", "up", "--nodes", "1", "--run-id", run_id],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
            # Its own process group, so killing it (and its ssh children) spares pytest.
            start_new_session=True,
            # A shell that runs pytest in the background ignores SIGINT, and the child
            # would inherit that; a terminal's Ctrl-C reaches a Python with the default.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, prefix: str, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.startswith(prefix) for line in self.lines):
                return
            if self.proc.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"`up` exited {self.proc.returncode} before {prefix!r}:\n" + "\n".join(self.lines))
            time.sleep(0.02)
        pytest.fail(f"`up` printed no {prefix!r} within {timeout:.0f}s:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code, "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(10)
        self.proc.stdout.close()


# --- Leftovers of a killed run -------------------------------------------------------------


@pytest.mark.localcloud
def test_down_removes_a_vm_whose_run_folder_is_gone(docker_client, vm_image, run_id):
    """A run killed after its VM booted, whose folder was lost too: only the labels find it."""
    cloud = vms.up(nodes=1, run_id=run_id, client=docker_client)
    vms._remove_state(run_id)
    assert not vms.state_dir(run_id).exists()

    listed = [m for m in vms.status(client=docker_client) if m.run_id == run_id]
    assert [(m.name, m.role, m.state) for m in listed] == [(cloud.vms[0].name, "vm", "running")]

    removed = vms.down(run_id, client=docker_client)
    assert cloud.vms[0].name in removed
    assert leftovers(docker_client, run_id) == ([], [])
    assert [m for m in vms.status(client=docker_client) if m.run_id == run_id] == []


@pytest.mark.localcloud
def test_down_removes_the_vm_of_an_up_killed_with_sigkill(docker_client, vm_image, run_id):
    """SIGKILL gives `up` no chance to clean up: its booting VM and volume stay until `down`."""
    up = CliUp(run_id)
    try:
        up.wait_for_line(f"localcloud: started {vms.vm_name(run_id, 'compute01')}")
        up.kill()
        containers, volumes = leftovers(docker_client, run_id)
        assert containers == [vms.vm_name(run_id, "compute01")]
        assert volumes == [f"{vms.vm_name(run_id, 'compute01')}-docker"]
        assert [m.name for m in vms.status(client=docker_client) if m.run_id == run_id] == containers

        # Through the CLI, as a person cleaning up would.
        assert command.main(["down", "--run-id", run_id]) == 0
        assert leftovers(docker_client, run_id) == ([], [])
        assert not vms.state_dir(run_id).exists()
    finally:
        up.kill()


# --- Ctrl-C and CI's SIGTERM during `up` ---------------------------------------------------


@pytest.mark.localcloud
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_up_exits_130_with_one_line_and_removes_its_vm(docker_client, vm_image, run_id, signum):
    up = CliUp(run_id)
    try:
        # The container exists and systemd is booting: the middle of starting the VM.
        up.wait_for_line(f"localcloud: started {vms.vm_name(run_id, 'compute01')}")
        assert up.proc.poll() is None, "up finished before it could be interrupted"
        up.proc.send_signal(signum)
        code, err = up.finish()
    finally:
        up.kill()

    assert code == 130, err
    assert "Traceback" not in err
    assert "error:" not in err
    assert err.splitlines()[-1] == INTERRUPTED_LINE, err
    assert f"localcloud: interrupted; removing run {run_id}" in err.splitlines()
    # The interrupted `up` removed its own run on the way out ...
    assert leftovers(docker_client, run_id) == ([], [])
    assert not vms.state_dir(run_id).exists()
    # ... and a `down` afterwards finds nothing of it either.
    vms.down(run_id, client=docker_client)
    assert leftovers(docker_client, run_id) == ([], [])


# --- VMs that do not boot ----------------------------------------------------------------------


def hang_unit_archive() -> bytes:
    """A unit multi-user.target waits for forever: systemd runs but never finishes booting."""
    unit = (
        "[Unit]\nDescription=Never finishes starting (test of boot timeouts)\n\n"
        "[Service]\nType=oneshot\nExecStart=/bin/sleep infinity\nTimeoutStartSec=infinity\n"
    ).encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(f"etc/systemd/system/{HANG_UNIT}")
        info.size, info.mode = len(unit), 0o644
        tar.addfile(info, io.BytesIO(unit))
        link = tarfile.TarInfo(f"etc/systemd/system/multi-user.target.wants/{HANG_UNIT}")
        link.type, link.linkname = tarfile.SYMTYPE, f"../{HANG_UNIT}"
        tar.addfile(link)
    return buffer.getvalue()


@pytest.mark.localcloud
def test_vm_whose_pid_1_is_not_systemd_is_named_in_one_line(docker_client, vm_image, run_id):
    name = vms.vm_name(run_id, "compute01")
    docker_client.containers.run(
        vm_image,
        ["sleep", "infinity"],
        name=name,
        detach=True,
        labels=images.project_labels("vm", **{vms.RUN_LABEL: run_id, vms.NODE_LABEL: "compute01"}),
    )
    started = time.monotonic()
    with pytest.raises(LocalCloudError) as raised:
        vms.wait_for_boot(docker_client, name, timeout=30)
    message = str(raised.value)
    assert_one_line(message)
    assert f"VM {name}: PID 1 is sleep, not systemd" in message
    # Said at once, not after the boot timeout.
    assert time.monotonic() - started < 10


@pytest.mark.localcloud
def test_vm_whose_systemd_never_finishes_booting_times_out_in_one_line(docker_client, vm_image, run_id):
    name = vms.vm_name(run_id, "compute01")
    container = docker_client.containers.create(
        vm_image,
        name=name,
        hostname="compute01",
        labels=images.project_labels("vm", **{vms.RUN_LABEL: run_id, vms.NODE_LABEL: "compute01"}),
        volumes={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"}},
        **vms.vm_run_options(),
    )
    assert container.put_archive("/", hang_unit_archive())
    container.start()

    timeout = 4
    started = time.monotonic()
    with pytest.raises(LocalCloudError) as raised:
        vms.wait_for_boot(docker_client, name, timeout=timeout)
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert_one_line(message)
    assert f"VM {name} did not boot within {timeout}s" in message
    assert f"see `docker logs {name}`" in message
    assert timeout <= elapsed < timeout + 10
    # The fault is the one meant: systemd is PID 1 and still starting, not a broken container.
    code, pid1 = container.exec_run(["cat", "/proc/1/comm"])
    assert (code, pid1.decode().strip()) == (0, "systemd")
    _, state = container.exec_run(["systemctl", "is-system-running"])
    assert state.decode().strip() == "starting"


# --- SIGTERM to `dcgan-harness run` in the middle of the playbook --------------------------

PLAYBOOK_TASK_TO_STOP_IN = "TASK [Refresh the apt cache and install Docker, its Python SDK and git]"
RUN_ID_LINE = re.compile(r"^localcloud: starting \d+ VM\(s\) for run (?P<run_id>[a-z0-9-]+)$")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> dict[int, str]:
    """Every live descendant of root (root included), by pid, with its start time to rule out pid reuse."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields and fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry))
                starts[int(entry)] = fields[19]
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in starts:
            tree[pid] = starts[pid]
            todo += children.get(pid, [])
    return tree


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def still_alive(processes: dict[int, str]) -> list[str]:
    alive = []
    for pid, start in processes.items():
        fields = _stat_fields(pid)
        if fields and fields[0] != "Z" and fields[19] == start:
            alive.append(f"{pid} {command_line(pid)[:120]}")
    return alive


@pytest.mark.localcloud
def test_sigterm_mid_playbook_stops_the_whole_tree_and_removes_the_run(docker_client, vm_image, tmp_path):
    """CI cancels a job with SIGTERM to the harness alone: ansible-playbook, its workers and
    SSH connections must stop with it, and the run's VM and volume must go."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dcgan_harness", "run", "--vms", "docker", "--fast", "--offline",
         "--results-dir", str(tmp_path / "res")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ), start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(line.rstrip("\n") for line in proc.stdout), daemon=True)
    reader.start()
    run_id = None
    seen: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            run_id = run_id or next((m["run_id"] for m in map(RUN_ID_LINE.match, lines) if m), None)
            if any(line.startswith(PLAYBOOK_TASK_TO_STOP_IN) for line in lines):
                break
            time.sleep(0.2)
        assert run_id, "\n".join(lines[-30:])
        assert proc.poll() is None, "the run ended before the playbook got to apt:\n" + "\n".join(lines[-30:])
        # apt is running in the VM now: the tree holds ansible-playbook, a worker and ssh.
        for _ in range(10):
            seen.update(process_tree(proc.pid))
            time.sleep(0.3)
        commands = " ".join(command_line(pid) for pid in seen)
        assert "ansible-playbook" in commands and "ssh" in commands, commands
        containers, _ = leftovers(docker_client, run_id)
        assert containers, "the run's VM should be up while the playbook runs"

        proc.send_signal(signal.SIGTERM)
        # The harness must stop the playbook itself, before it removes the VM:
        # a tree that only dies once its VM is gone was not stopped, it lost its peer.
        tree_gone_at = vm_gone_at = None
        step = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            step += 1
            if tree_gone_at is None and not still_alive({p: s for p, s in seen.items() if p != proc.pid}):
                tree_gone_at = step
            running = docker_client.containers.list(filters={"label": f"{vms.RUN_LABEL}={run_id}", "status": "running"})
            if vm_gone_at is None and not running:
                vm_gone_at = step
            if proc.poll() is not None and vm_gone_at is not None:
                break
            time.sleep(0.05)
        code = proc.wait(30)
        reader.join(10)
        time.sleep(1)
        left_processes = still_alive(seen)
        left_on_engine = leftovers(docker_client, run_id)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        if run_id:
            vms.down(run_id, client=docker_client)
    output = "\n".join(lines)
    assert code == 130, output[-3000:]
    assert "Traceback" not in output
    assert "interrupted; removing the VMs" in lines, output[-3000:]
    assert tree_gone_at is not None and vm_gone_at is not None, (tree_gone_at, vm_gone_at)
    assert tree_gone_at < vm_gone_at, f"the playbook's processes outlived the VM's removal ({tree_gone_at} >= {vm_gone_at})"
    # Nothing of the run's process tree is left, orphaned or not ...
    assert left_processes == []
    # ... and nothing of the run on the Docker engine (looked at before the test's own cleanup).
    assert left_on_engine == ([], [])


# --- A disk too small for the image build ------------------------------------------------------

SMALL_DOCKER_STORAGE = "300m"


@pytest.mark.localcloud
def test_disk_preflight_stops_the_play_in_one_line_before_building(docker_client, vm_image, run_id, tmp_path):
    """/var/lib/docker on a 300 MB volume: the play fails before the build, naming free and needed space."""
    from dcgan_harness.localcloud import serve_app
    from dcgan_harness.localrun import (
        FAST_EXTRA_ARGS,
        FAST_MNIST_LIMIT,
        OFFLINE_APP,
        LocalSession,
        RunOptions,
        stage_mnist,
    )
    from dcgan_harness.targets.docker_vms import DockerVms

    target = DockerVms(1, run_id, client=docker_client, docker_storage_size=SMALL_DOCKER_STORAGE).up()
    cloud = target.cloud
    container = docker_client.containers.get(cloud.vms[0].name)
    code, size = container.exec_run(["df", "-B1", "--output=size", "/var/lib/docker"])
    assert code == 0 and int(size.decode().split()[-1]) <= 300 * 1024 * 1024, size
    served = serve_app(OFFLINE_APP, run_id)
    options = RunOptions(
        app="offline", mnist_limit=FAST_MNIST_LIMIT, extra_args=FAST_EXTRA_ARGS, results_dir=tmp_path / "resultados"
    )
    session = LocalSession(options, cloud, target, served.url, served.commit, stage_mnist(options, tmp_path))

    result = session.deploy(echo=False)

    assert not result.ok
    match = re.search(
        r"Not enough disk for the image build on compute01: (?P<free>[0-9.]+) GB free in /var/lib/docker, "
        r"(?P<need>[0-9.]+) GB needed \(dcgan_build_min_free_gb\); free space or grow the disk, then run the playbook again\.",
        result.output,
    )
    assert match, result.tail(30)
    assert float(match["free"]) <= 0.32 and float(match["need"]) == 9
    # It stopped before the build: no build task ran, no image and no build leftovers in Docker's storage.
    assert "TASK [Build the DCGAN image from the clone]" not in result.output
    code, listed = container.exec_run(["docker", "image", "ls", "--all", "--quiet"])
    assert (code, listed.decode().strip()) == (0, "")
    # The figure is the VM's own: what df says is free on its small Docker storage.
    code, avail = container.exec_run(["df", "-B1", "--output=avail", "/var/lib/docker"])
    assert code == 0 and abs(float(match["free"]) - int(avail.decode().split()[-1]) / 1e9) < 0.05
