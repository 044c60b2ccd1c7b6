"""Faults a real VM meets, at the playbook level, on one VM shared in file order.

1. another apt process holds the dpkg lock for a minute after boot (as
   cloud-init does): the play waits for it and succeeds;
2. the kernel kills the app with SIGKILL (as the OOM killer does): the play
   fails naming exit status 137, and the partial output.txt is fetched;
3. every SSH session to the VM is killed and sshd restarted while the
   training is being polled: the play reconnects, finishes and fetches a
   complete output.txt;
4. the VM reboots mid-training: the play fails naming the reboot, and a rerun
   trains again (no finished marker) on the image that survived on disk;
5. the Docker engine restarts mid-build: the play fails naming the restart,
   and a rerun builds and trains;
6. the disk fills mid-build (on a VM of its own, whose Docker storage is
   3 GB): the play fails naming no space left, and once the space is freed a
   rerun completes.

The training runs on 1024 MNIST images (8 iterations), long enough to hit it
mid-way. `down` is called with this module's run ids only.
"""

from __future__ import annotations

import re
import time

import pytest

from dcgan_harness.localcloud import serve_app, vms
from dcgan_harness.localrun import (
    FAST_EXTRA_ARGS,
    OFFLINE_APP,
    LocalSession,
    RunOptions,
    stage_mnist,
)
from dcgan_harness.output import Expectations, check_complete, parse_output_file
from dcgan_harness.targets.docker_vms import DockerVms

MNIST_LIMIT = 1024
ITERATIONS = 8  # ceil(1024 / 128)
LOCK_SECONDS = 60
OUTPUT_ON_VM = "/home/ubuntu/Distributed-DCGAN/output.txt"
ITERATION_LINE = re.compile(rb"\[epoch: \d+/\d+\]\[iteration: \d+/\d+\]")
# sshd restarted and every session of the login user cut, Ansible's control
# master included, the moment a module runs over SSH; exit 1 if none ran within 60 s.
CUT_SSH_DURING_A_POLL = """
timeout 60 sh -c 'until pgrep -f "python3[.0-9]* [&][&] sleep 0" >/dev/null; do sleep 0.01; done'
caught=$?
systemctl restart ssh
pkill -KILL -f '^sshd: ubuntu'
[ "$caught" -eq 0 ]
"""
APT_TASK = "Refresh the apt cache and install Docker, its Python SDK and git"
BUILD_TASK = "Build the DCGAN image from the clone"
TRAIN_TASK = "Train the DCGAN with its standard output going to output.txt"
# The async build module as it runs on the VM (from its AnsiballZ file).
BUILD_MODULE = "AnsiballZ_docker_image"
# Every image on the VM goes, so that the next build pulls its base image again
# (about 25 s here): long enough to be hurt mid-way.
# A parent image cannot go before its children (the build's RUN step makes
# one), so removal is repeated until nothing is left; nothing may remain.
DROP_IMAGES = (
    "for pass in 1 2 3 4; do docker image ls --all --quiet | sort -u | xargs -r docker image rm --force"
    " >/dev/null 2>&1; done; test -z \"$(docker image ls --all --quiet)\""
)
SMALL_DOCKER_STORAGE = "3g"
# Preflight need in the disk test: under the 3 GB the small VM has free before
# the build, so the check passes and the disk fills during the build instead.
LOWERED_NEED_GB = 2
# All but 300 MB of Docker's storage in one file, written at once (fallocate).
FILL_DOCKER_STORAGE = """
free=$(df -B1 --output=avail /var/lib/docker | tail -n 1)
fallocate -l $((free - 300000000)) /var/lib/docker/ballast
"""

# Holds apt's and dpkg's locks the way apt itself does (fcntl), then lets go.
HOLD_DPKG_LOCK = f"""
import fcntl, time
held = []
for path in ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock"):
    handle = open(path, "a")
    fcntl.lockf(handle, fcntl.LOCK_EX)
    held.append(handle)
open("/run/dpkg-lock-held", "w").write("held")
time.sleep({LOCK_SECONDS})
open("/run/dpkg-lock-released", "w").write(str(time.time()))
"""


def fresh_vm(docker_client, tmp_path_factory, prefix: str, **up_options):
    """A fresh VM with the offline app served, configure.yaml not run on it yet; removed afterwards."""
    run_id = prefix + vms.new_run_id()
    work = tmp_path_factory.mktemp("playbook-faults")
    try:
        target = DockerVms(1, run_id, client=docker_client, **up_options).up()
        cloud = target.cloud
        served = serve_app(OFFLINE_APP, run_id)
        options = RunOptions(
            app="offline", mnist_limit=MNIST_LIMIT, extra_args=FAST_EXTRA_ARGS, results_dir=work / "resultados"
        )
        session = LocalSession(options, cloud, target, served.url, served.commit, stage_mnist(options, work))
        yield session, docker_client.containers.get(cloud.vms[0].name)
    finally:
        vms.down(run_id, client=docker_client)


@pytest.fixture(scope="module")
def faulty(docker_client, tmp_path_factory):
    """The VM that tests 1 to 5 share, in file order."""
    yield from fresh_vm(docker_client, tmp_path_factory, "p")


@pytest.fixture(scope="module")
def small_disk(docker_client, tmp_path_factory):
    """A VM whose /var/lib/docker is a 3 GB tmpfs."""
    yield from fresh_vm(docker_client, tmp_path_factory, "q", docker_storage_size=SMALL_DOCKER_STORAGE)


def in_vm(container, *command: str) -> tuple[int, bytes]:
    code, output = container.exec_run(list(command))
    return code, output or b""


def wait_for_iterations(container, at_least: int, timeout: float = 240) -> None:
    """Until output.txt on the VM shows that many iterations of the training in progress."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The play empties output.txt just before it starts the container, so
        # with the container running, the lines counted are this run's.
        code, running = in_vm(container, "docker", "inspect", "--format", "{{.State.Running}}", "dcgan_train-0")
        if code == 0 and running.strip() == b"true":
            _, text = in_vm(container, "cat", OUTPUT_ON_VM)
            if len(ITERATION_LINE.findall(text)) >= at_least:
                return
        time.sleep(0.2)
    pytest.fail(f"the training showed no {at_least} iteration(s) within {timeout:.0f}s")


def wait_for_build(container, timeout: float = 240) -> None:
    """Until the play's image build runs on the VM."""
    deadline = time.monotonic() + timeout
    while in_vm(container, "pgrep", "-f", BUILD_MODULE)[0] != 0:
        if time.monotonic() > deadline:
            pytest.fail(f"no image build started within {timeout:.0f}s")
        time.sleep(0.2)


def images_on_vm(container) -> str:
    code, listed = in_vm(container, "docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}")
    assert code == 0, listed
    return listed.decode()


def iterations_in(path) -> int:
    return len(parse_output_file(path).iterations)


def failure_lines(result) -> str:
    return "\n".join(line for line in result.output.splitlines() if re.search(r"fatal|ERROR|msg|FAILED", line))[-3000:]


def finished_play(thread, outcome: dict, within: float = 300):
    """The result of the play start_training began, which must end within that many seconds."""
    thread.join(within)
    assert not thread.is_alive(), f"the play was still running {within:.0f} s later"
    return outcome["result"]


def start_training(session: LocalSession, **overrides):
    """The play in a thread, so that the test can hurt the VM while it runs."""
    import threading

    outcome: dict = {}

    def play():
        outcome["result"] = session.deploy(echo=False, **overrides)

    thread = threading.Thread(target=play, daemon=True)
    thread.start()
    return thread, outcome


@pytest.mark.localcloud
def test_dpkg_lock_held_for_a_minute_after_boot_is_waited_for(faulty):
    session, vm = faulty
    vm.exec_run(["python3", "-c", HOLD_DPKG_LOCK], detach=True)
    deadline = time.monotonic() + 30
    while in_vm(vm, "test", "-e", "/run/dpkg-lock-held")[0] != 0:
        assert time.monotonic() < deadline, "the lock holder did not start"
        time.sleep(0.2)

    result = session.deploy(echo=False)

    assert result.ok, failure_lines(result)
    # apt really waited: the holder let go before dpkg installed anything.
    code, released = in_vm(vm, "cat", "/run/dpkg-lock-released")
    assert code == 0, "the play finished while the lock was still held"
    code, first_install = in_vm(
        vm, "sh", "-c", "grep -m1 ' install docker.io' /var/log/dpkg.log | cut -c1-19 | xargs -I{} date -d {} +%s"
    )
    assert code == 0 and first_install.strip(), first_install
    assert int(first_install) >= int(float(released)) - 1
    assert result.task_seconds.get(APT_TASK, 0) >= LOCK_SECONDS / 2, result.task_seconds
    assert check_complete(parse_output_file(session.output_file()), Expectations(iterations=ITERATIONS)) == []


@pytest.mark.localcloud
def test_app_killed_with_sigkill_fails_naming_137_and_fetches_the_partial_output(faulty, tmp_path):
    session, vm = faulty
    thread, outcome = start_training(session, dcgan_fresh_run=True, dcgan_results_dir=str(tmp_path))
    wait_for_iterations(vm, 1)
    # What the kernel's OOM killer does to the training process (PID 1 of its container).
    code, out = in_vm(vm, "docker", "kill", "--signal", "KILL", "dcgan_train-0")
    assert code == 0, out
    result = finished_play(thread, outcome)

    assert not result.ok
    messages = failure_lines(result)
    assert re.search(r"fatal: \[compute01\]: FAILED!.*exited with status 137", messages), messages
    assert "compute01" in messages
    fetched = tmp_path / "compute01" / "output.txt"
    assert fetched.is_file(), "the partial output.txt was not fetched"
    partial = parse_output_file(fetched)
    done = len(partial.iterations)
    assert 1 <= done < ITERATIONS, done
    # No finished marker for a killed run: the next run trains again.
    code, markers = in_vm(vm, "sh", "-c", "ls -a /home/ubuntu/Distributed-DCGAN | grep -c '^.dcgan-trained-' || true")
    assert markers.strip() == b"0", markers


@pytest.mark.localcloud
def test_ssh_sessions_killed_while_training_is_polled_the_play_still_completes(faulty):
    session, vm = faulty
    thread, outcome = start_training(session)
    wait_for_iterations(vm, 1)
    # The hard moment: while a poll runs on the VM (Ansible pipelines each module
    # into `python3 && sleep 0`), so that the cut breaks a command in flight.
    # Watched from inside the VM; the bracket keeps the watcher from matching itself.
    code, out = in_vm(vm, "sh", "-c", CUT_SSH_DURING_A_POLL)
    in_flight = code == 0
    assert in_flight, "no poll was seen running on the VM to cut"
    result = finished_play(thread, outcome)

    assert result.ok, result.tail(30)
    assert check_complete(parse_output_file(session.output_file()), Expectations(iterations=ITERATIONS)) == []
    assert "Wait for the training job to finish on every VM" in result.output



@pytest.mark.localcloud
def test_vm_rebooted_mid_training_fails_naming_the_reboot_and_a_rerun_trains_again(faulty, tmp_path):
    session, vm = faulty
    # Polls 15 s apart (the playbook's default), so that the reboot, a few
    # seconds here, ends before the next poll: the play then meets the VM up
    # again, as it does on a cloud VM that reboots between two polls.
    thread, outcome = start_training(session, dcgan_fresh_run=True, dcgan_run_poll=15, dcgan_results_dir=str(tmp_path))
    wait_for_iterations(vm, 1)
    # The VM image's stop signal is SIGRTMIN+3, so systemd shuts down in order,
    # stopping Docker and its containers, as `reboot` does; /tmp and /run are
    # emptied at boot, /var/lib/docker is a volume and survives, as a disk does.
    vm.restart()
    rebooted_at = time.monotonic()
    thread.join(300)
    # Before the job status moved to /tmp the poll waited out dcgan_run_async (2 h) here.
    assert not thread.is_alive(), "the play was still waiting 300 s after the reboot"
    assert time.monotonic() - rebooted_at < 90, "the play took longer than a few polls to see the reboot"
    result = outcome["result"]

    assert not result.ok
    messages = failure_lines(result)
    assert re.search(
        r"fatal: \[compute01\]: FAILED!.*compute01 \(rank 0\) rebooted during the training: its job status in "
        r"/tmp/dcgan-jobs-ubuntu, which every boot empties, is gone.*Run the playbook again: it trains anew\.",
        messages,
    ), messages
    # What the training printed before the reboot is fetched.
    assert 1 <= iterations_in(tmp_path / "compute01" / "output.txt") < ITERATIONS
    # No finished marker survives the reboot, so the rerun trains again ...
    code, markers = in_vm(vm, "sh", "-c", "ls -a /home/ubuntu/Distributed-DCGAN | grep -c '^.dcgan-trained-' || true")
    assert markers.strip() == b"0", markers

    rerun = session.deploy(echo=False)

    assert rerun.ok, failure_lines(rerun)
    assert TRAIN_TASK in rerun.changed_tasks, rerun.changed_tasks
    # ... on the image that survived the reboot on disk: nothing is rebuilt.
    assert BUILD_TASK not in rerun.changed_tasks, rerun.changed_tasks
    assert check_complete(parse_output_file(session.output_file()), Expectations(iterations=ITERATIONS)) == []


@pytest.mark.localcloud
def test_docker_engine_restarted_mid_build_fails_naming_it_and_a_rerun_builds(faulty, tmp_path):
    session, vm = faulty
    code, out = in_vm(vm, "sh", "-c", DROP_IMAGES)
    assert code == 0, out
    thread, outcome = start_training(session, dcgan_results_dir=str(tmp_path))
    wait_for_build(vm)
    time.sleep(2)  # into the pull of the base image
    code, out = in_vm(vm, "systemctl", "restart", "docker")
    assert code == 0, out
    result = finished_play(thread, outcome)

    assert not result.ok
    messages = failure_lines(result)
    # A restart after the build would have let the play train and succeed.
    assert re.search(
        r"fatal: \[compute01\]: FAILED!.*The Docker engine on compute01 restarted during the image build, which broke "
        r"it; run the playbook again: it starts the engine and the build over\. Nothing half-built is tagged\. "
        r"Docker said: \S",
        messages,
    ), messages
    assert f"TASK [{TRAIN_TASK}]" not in result.output
    assert "dist_dcgan:" not in images_on_vm(vm)

    rerun = session.deploy(echo=False)

    assert rerun.ok, failure_lines(rerun)
    assert BUILD_TASK in rerun.changed_tasks, rerun.changed_tasks
    assert "dist_dcgan:latest" in images_on_vm(vm)
    assert check_complete(parse_output_file(session.output_file()), Expectations(iterations=ITERATIONS)) == []


@pytest.mark.localcloud
def test_disk_filled_mid_build_fails_naming_no_space_and_a_rerun_completes_once_freed(small_disk, tmp_path):
    session, vm = small_disk
    thread, outcome = start_training(session, dcgan_build_min_free_gb=LOWERED_NEED_GB, dcgan_results_dir=str(tmp_path))
    wait_for_build(vm)
    # The preflight has passed; something else now takes all but 300 MB.
    code, out = in_vm(vm, "sh", "-c", FILL_DOCKER_STORAGE)
    assert code == 0, out
    result = finished_play(thread, outcome)

    assert not result.ok
    messages = failure_lines(result)
    match = re.search(
        r"fatal: \[compute01\]: FAILED!.*The image build on compute01 ran out of disk space "
        r"\(no space left on device\): "
        rf"(?P<free>[0-9.]+) GB free in /var/lib/docker, {LOWERED_NEED_GB} GB needed \(dcgan_build_min_free_gb\); "
        r"free space or grow the disk, then run the playbook again\. Nothing half-built is tagged\.",
        messages,
    )
    assert match, messages
    assert float(match["free"]) <= 0.4
    assert f"TASK [{TRAIN_TASK}]" not in result.output
    # Nothing half-written is kept: no image, and Docker's storage holds no more
    # than the ballast and its own few files.
    assert images_on_vm(vm).strip() == ""
    code, used = in_vm(vm, "du", "-s", "-B1", "--exclude=ballast", "/var/lib/docker")
    assert code == 0 and int(used.split()[0]) < 50_000_000, used

    code, out = in_vm(vm, "rm", "/var/lib/docker/ballast")
    assert code == 0, out
    rerun = session.deploy(echo=False, dcgan_build_min_free_gb=LOWERED_NEED_GB)

    assert rerun.ok, failure_lines(rerun)
    assert "dist_dcgan:latest" in images_on_vm(vm)
    assert check_complete(parse_output_file(session.output_file()), Expectations(iterations=ITERATIONS)) == []
