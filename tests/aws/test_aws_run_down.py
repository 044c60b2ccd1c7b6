"""`make aws-run AWS_DOWN=1` against moto: aws-down follows the run, also a
run whose aws-up, preflight or configure.yaml failed or was interrupted, and
make still fails with the status of the step that failed.

make runs the real targets in a copy of the repository's tracked files, as
tests/journey does, so a vars.sh or key.pem in the checkout plays no part.
moto's VMs never boot, and every SSH connection goes through a ProxyCommand
that is `false`: each made-up address is unreachable without a packet sent,
which is how a run fails here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from moto_cloud import BIN_DIR, PROJECT_FILTERS, REPO_ROOT, Cloud, describe, kill_tree, run_to_completion

MAKE_TIMEOUT_S = 300
NO_SSH = "-o ProxyCommand=false -o ControlMaster=no"
# aws-up's own wait for SSH would only meet the guard above; the tests that
# are not about aws-up skip it.
NO_WAIT = "AWS_ARGS=-e wait_for_ssh=false"
FAILING_CONNECT = "AWS_RUN_ARGS=-e dcgan_connect_timeout=3"
TEARDOWN_PLAY = "PLAY [Tear down the DCGAN virtual machines on AWS]"
CONFIGURE_PLAY = "PLAY [Deploy and train the distributed DCGAN on the cloud VMs]"
# Stands in for configure.yaml where a run has to succeed or last; neither
# play logs in to a VM.
PASSING_PLAYBOOK = """\
- name: Stand in for configure.yaml without logging in
  hosts: cloud
  gather_facts: false
  tasks:
    - name: Name the VM the run would deploy to
      ansible.builtin.debug:
        msg: "would deploy to {{ inventory_hostname }}"
"""
LONG_PLAYBOOK = """\
- name: Stand in for a long training
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Train for a long time
      ansible.builtin.command: sleep 240
      changed_when: false
"""

# A passing run that leaves aws-down broken behind it.
BREAKING_PLAYBOOK = """\
- name: Stand in for configure.yaml, then break teardown.yaml
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Replace teardown.yaml with a play that fails
      ansible.builtin.copy:
        dest: {teardown}
        mode: "0644"
        content: |
          - name: Fail as a teardown that AWS refused would
            hosts: localhost
            gather_facts: false
            tasks:
              - name: Fail
                ansible.builtin.fail:
                  msg: teardown refused
"""


@dataclass
class Checkout:
    """A copy of the repository to run make in, aimed at moto."""

    path: Path
    cloud: Cloud
    env: dict[str, str]

    def command(self, target: str, *variables: str) -> list[str]:
        # The virtualenv running these tests, and a stamp newer than the copied
        # pyproject.toml, so make neither builds nor updates a virtualenv.
        stamp = f"STAMP={self.path / '.aws-test-venv-ready'}"
        return [
            "make",
            "--no-print-directory",
            "-C",
            str(self.path),
            target,
            f"VENV={BIN_DIR.parent}",
            stamp,
            *variables,
        ]

    def make(self, target: str, *variables: str) -> subprocess.CompletedProcess:
        return run_to_completion(self.command(target, *variables), self.env, MAKE_TIMEOUT_S)

    def playbook(self, name: str, text: str) -> str:
        path = self.path.parent / name
        path.write_text(text)
        return f"PLAYBOOK={path}"

    def run_vms(self) -> list[dict]:
        return self.cloud.project_instances()

    def launched(self) -> list[str]:
        """Every VM the run ever had, terminated ones included."""
        return [i["InstanceId"] for i in self.cloud.instances(*PROJECT_FILTERS, live=False)]


@pytest.fixture
def checkout(cloud, tmp_path) -> Checkout:
    copy = tmp_path / "repo"
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name, follow_symlinks=False)
    (copy / ".aws-test-venv-ready").touch()
    # Where the Makefile's preflight and provision.yaml look for it.
    shutil.copy2(cloud.key_file, copy / "key.pem")
    env = dict(
        cloud.env,
        ANSIBLE_CONFIG=str(copy / "ansible.cfg"),
        ANSIBLE_SSH_ARGS=NO_SSH,
        ANSIBLE_SSH_RETRIES="0",
    )
    return Checkout(copy, cloud, env)


def error_status(result: subprocess.CompletedProcess) -> str:
    """make's last word on a failed recipe, e.g. 'Error 2'."""
    # make[N]: when these tests run under make (make test).
    lines = [line for line in result.stderr.splitlines() if re.match(r"make(\[\d+\])?: \*\*\* \[", line)]
    assert lines, describe(result)
    return lines[-1].rsplit("] ", 1)[1]


def assert_torn_down(checkout: Checkout, result: subprocess.CompletedProcess, after: str) -> None:
    """teardown.yaml ran after `after` and left nothing of the run."""
    assert after in result.stdout and TEARDOWN_PLAY in result.stdout, describe(result)
    assert result.stdout.index(TEARDOWN_PLAY) > result.stdout.index(after), describe(result)
    assert len(checkout.launched()) == 1, describe(result)
    assert checkout.run_vms() == [], describe(result)
    groups = [g["GroupName"] for g in checkout.cloud.security_groups()]
    assert "dcgan-harness-dcgan" not in groups, describe(result)


def test_aws_down_follows_a_failing_run_and_make_fails_with_its_status(checkout):
    result = checkout.make("aws-run", "AWS_DOWN=1", NO_WAIT, FAILING_CONNECT)
    assert result.returncode != 0, describe(result)
    assert "fatal: [compute01]: FAILED!" in result.stdout.split(CONFIGURE_PLAY, 1)[1], describe(result)
    assert "AWS_DOWN=1: aws-down, although the run failed (exit status 2)" in result.stdout, describe(result)
    assert_torn_down(checkout, result, after=CONFIGURE_PLAY)
    assert error_status(result) == "Error 2"
    assert "error: the run failed with exit status 2 (see above aws-down's output)" in result.stderr, describe(result)


# Slow (a make run against moto each): pytest -m slow tests/aws.
@pytest.mark.slow
def test_the_failing_steps_own_status_is_kept(checkout):
    # A root volume other than the preflight's spec: the preflight exits 1, not make's usual 2.
    result = checkout.make("aws-run", "AWS_DOWN=1", f"{NO_WAIT} -e root_volume_gb=20")
    assert "root volume is 20 GB, expected 16 GB" in result.stdout, describe(result)
    assert CONFIGURE_PLAY not in result.stdout, describe(result)
    assert_torn_down(checkout, result, after="root volume is 20 GB")
    assert error_status(result) == "Error 1"


# Slow (a make run against moto each): pytest -m slow tests/aws.
@pytest.mark.slow
def test_aws_down_follows_a_failing_aws_up(checkout):
    # The VM is started, then never answers SSH.
    result = checkout.make("aws-run", "AWS_DOWN=1", "AWS_ARGS=-e ssh_wait_timeout=3")
    assert "did not answer SSH" in result.stdout, describe(result)
    assert "preflight" not in result.stdout.split("did not answer SSH", 1)[1].split(TEARDOWN_PLAY, 1)[0]
    assert_torn_down(checkout, result, after="did not answer SSH")
    assert error_status(result) == "Error 2"


def test_without_aws_down_a_failing_run_leaves_the_vms(checkout):
    result = checkout.make("aws-run", NO_WAIT, FAILING_CONNECT)
    assert result.returncode != 0, describe(result)
    assert "fatal: [compute01]: FAILED!" in result.stdout, describe(result)
    assert TEARDOWN_PLAY not in result.stdout and "AWS_DOWN" not in result.stdout, describe(result)
    assert len(checkout.run_vms()) == 1, describe(result)
    assert error_status(result) == "Error 2"


def test_aws_down_follows_a_passing_run_and_make_succeeds(checkout):
    playbook = checkout.playbook("passing.yaml", PASSING_PLAYBOOK)
    result = checkout.make("aws-run", "AWS_DOWN=1", NO_WAIT, playbook)
    assert result.returncode == 0, describe(result)
    assert '"msg": "would deploy to compute01"' in result.stdout, describe(result)
    assert "AWS_DOWN=1: aws-down\n" in result.stdout, describe(result)
    assert_torn_down(checkout, result, after="would deploy to compute01")


# Slow (a make run against moto each): pytest -m slow tests/aws.
@pytest.mark.slow
def test_a_failing_aws_down_fails_make_and_says_the_vms_may_still_run(checkout):
    playbook = checkout.playbook("breaking.yaml", BREAKING_PLAYBOOK.format(teardown=checkout.path / "teardown.yaml"))
    result = checkout.make("aws-run", "AWS_DOWN=1", NO_WAIT, playbook)
    assert "teardown refused" in result.stdout, describe(result)
    assert "error: aws-down failed, so VMs may still run" in result.stderr, describe(result)
    assert len(checkout.run_vms()) == 1, describe(result)
    assert error_status(result) == "Error 2"


# Slow (a make run against moto each): pytest -m slow tests/aws.
@pytest.mark.slow
def test_aws_down_follows_an_interrupted_run(checkout):
    playbook = checkout.playbook("long.yaml", LONG_PLAYBOOK)
    command = checkout.command("aws-run", "AWS_DOWN=1", NO_WAIT, playbook)
    # Its own session, so the Ctrl-C below reaches make and what it runs, as a
    # terminal's would, and nothing else.
    process = subprocess.Popen(
        command, env=checkout.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    out, err = [], []
    readers = [
        threading.Thread(target=lambda stream=stream, sink=sink: sink.extend(stream), daemon=True)
        for stream, sink in ((process.stdout, out), (process.stderr, err))
    ]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + MAKE_TIMEOUT_S
        while "TASK [Train for a long time]" not in "".join(out):
            assert process.poll() is None and time.monotonic() < deadline, "".join(out) + "".join(err)
            time.sleep(0.2)
        time.sleep(2)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=MAKE_TIMEOUT_S)
    finally:
        if process.poll() is None:
            kill_tree(process.pid)
            process.wait()
        for reader in readers:
            reader.join(timeout=10)
    result = subprocess.CompletedProcess(command, process.returncode, "".join(out), "".join(err))
    assert result.returncode != 0, describe(result)
    assert "interrupted: aws-down follows (AWS_DOWN=1)" in result.stderr, describe(result)
    assert_torn_down(checkout, result, after="TASK [Train for a long time]")


@pytest.mark.parametrize("value", ["yes", "2"])
def test_aws_down_takes_only_1_or_0(checkout, value):
    result = checkout.make("aws-run", f"AWS_DOWN={value}", NO_WAIT)
    assert result.returncode != 0, describe(result)
    assert f"error: AWS_DOWN must be 1 (run aws-down afterwards) or 0, not {value}" in result.stderr
    assert "provision.yaml" not in result.stdout, describe(result)
    assert checkout.launched() == []
