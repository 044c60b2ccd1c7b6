"""Faults a real VM meets, at the playbook level, on one VM shared in file order.

1. another apt process holds the dpkg lock for a minute after boot (as
   cloud-init does): the play waits for it and succeeds;
2. the kernel kills the app with SIGKILL (as the OOM killer does): the play
   fails naming exit status 137, and the partial output.txt is fetched;
3. every SSH session to the VM is killed and sshd restarted while the
   training is being polled: the play reconnects, finishes and fetches a
   complete output.txt.

The training runs on 1024 MNIST images (8 iterations), long enough to hit it
mid-way. `down` is called with this module's run id only.
"""

from __future__ import annotations

import re
import time

import pytest

from dcgan_harness.localcloud import serve_app, vms
from dcgan_harness.localrun import FAST_EXTRA_ARGS, OFFLINE_APP, LocalSession, RunOptions, stage_mnist
from dcgan_harness.output import Expectations, check_complete, parse_output_file

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


@pytest.fixture(scope="module")
def faulty(docker_client, tmp_path_factory):
    """A fresh VM with the offline app served; configure.yaml has not run on it yet."""
    run_id = "p" + vms.new_run_id()
    work = tmp_path_factory.mktemp("playbook-faults")
    try:
        cloud = vms.up(nodes=1, run_id=run_id, client=docker_client)
        served = serve_app(OFFLINE_APP, run_id)
        options = RunOptions(
            app="offline", mnist_limit=MNIST_LIMIT, extra_args=FAST_EXTRA_ARGS, results_dir=work / "resultados"
        )
        session = LocalSession(options, cloud, served.url, served.commit, stage_mnist(options, work))
        yield session, docker_client.containers.get(cloud.vms[0].name)
    finally:
        vms.down(run_id, client=docker_client)


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


def failure_lines(result) -> str:
    return "\n".join(line for line in result.output.splitlines() if re.search(r"fatal|ERROR|msg|FAILED", line))[-3000:]


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
    thread.join(300)
    result = outcome["result"]

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
    thread.join(300)
    result = outcome["result"]

    assert result.ok, result.tail(30)
    assert check_complete(parse_output_file(session.output_file()), Expectations(iterations=ITERATIONS)) == []
    assert "Wait for the training job to finish on every VM" in result.output

