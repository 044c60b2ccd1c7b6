"""The student's AWS path end to end, offline: settings, `make aws-up` (which
waits for SSH on the new VM), `make aws-run` (preflight, then configure.yaml
through inventory.aws_ec2.yaml), output.txt in resultados/, and `make aws-down`
leaving nothing behind. A wrong key, user or address fails while provision.yaml
waits for SSH, with one line that names it.

The tests run in file order, each step on what the one before left.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess

import pytest
from backed_cloud import PROJECT_FILTERS, Journey, journey_machines, wait_until
from moto_cloud import BIN_DIR

from dcgan_harness.localrun import FAST_MNIST_LIMIT
from dcgan_harness.output import Expectations, check_complete, parse_output_file

WAIT_TASK = "TASK [Wait for SSH and a working Python on the VM]"
# Short, so each wrong setting fails in seconds; the journey keeps the default.
FAILING_WAIT_S = 10
UNBACKED_RUN = "journey-unbacked"


@pytest.fixture(scope="module")
def provisioned(journey: Journey):
    result = journey.make("aws-up")
    assert result.returncode == 0, journey.describe(result)
    return result


@pytest.fixture(scope="module")
def trained(journey: Journey, provisioned):
    result = journey.make("aws-run", f"AWS_RUN_ARGS=-e @{journey.run_vars}")
    assert result.returncode == 0, journey.describe(result)
    return result


@pytest.fixture(scope="module")
def torn_down(journey: Journey, trained):
    result = journey.make("aws-down")
    assert result.returncode == 0, journey.describe(result)
    return result


def task_output(stdout: str, task: str) -> str:
    """What Ansible printed under one task header, up to the next blank line."""
    assert task in stdout, stdout[-4000:]
    return stdout.split(task, 1)[1].split("\n\n", 1)[0]


def failure_message(result: subprocess.CompletedProcess, host: str = "compute01") -> str:
    """The message with which the wait play failed for host, checked to be one line."""
    lines = [line for line in result.stdout.splitlines() if line.startswith(f"fatal: [{host}]: FAILED! => ")]
    assert lines, result.stdout[-4000:]
    message = json.loads(lines[-1].split(" => ", 1)[1])["msg"]
    assert "\n" not in message and "\r" not in message, message
    return message


def vm_address(journey: Journey, run: str = "dcgan") -> str:
    filters = [PROJECT_FILTERS[0], {"Name": "tag:Run", "Values": [run]}]
    filters.append({"Name": "instance-state-name", "Values": ["running"]})
    (reservation,) = journey.ec2.describe_instances(Filters=filters)["Reservations"]
    (instance,) = reservation["Instances"]
    return instance["PublicIpAddress"]


def test_settings_from_vars_sh_pass_the_check(journey: Journey):
    # What `make aws-up` checks first, asked the way the README tells students to.
    result = subprocess.run(
        ["sh", "-c", f". ./vars.sh && {shlex.quote(str(BIN_DIR / 'dcgan-harness'))} aws check"],
        cwd=journey.copy, env=journey.env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("AWS settings OK: region eu-west-1, key pair dcgan-test-key"), result.stdout


def test_aws_up_waits_until_the_vm_behind_the_instance_answers(journey: Journey, provisioned):
    assert task_output(provisioned.stdout, WAIT_TASK).strip().endswith("ok: [compute01]"), journey.describe(provisioned)
    (backing,) = journey.backer.backed.values()
    assert backing.address == vm_address(journey)
    assert journey.backer.errors == []


def test_aws_run_preflights_then_trains_through_the_dynamic_inventory(journey: Journey, trained):
    assert "preflight OK: the VMs of run dcgan in eu-west-1 match the spec" in trained.stdout, journey.describe(trained)
    # configure.yaml ran on the host the dynamic inventory named, at moto's address.
    assert re.search(r"^ok: \[compute01\]", trained.stdout, re.MULTILINE), journey.describe(trained)
    output = journey.copy / "resultados" / "compute01" / "output.txt"
    assert output.is_file(), journey.describe(trained)
    expected = Expectations.from_settings(FAST_MNIST_LIMIT, 128, world_size=1, ranks=[0])
    assert check_complete(parse_output_file(output), expected) == []


@pytest.mark.parametrize(
    ("setting", "reason"),
    [
        ("ssh_key_file", "Permission denied (publickey)"),
        ("ssh_user", "Permission denied (publickey)"),
    ],
)
def test_a_wrong_login_fails_the_wait_naming_it(journey: Journey, provisioned, setting: str, reason: str):
    values = {"ssh_key_file": str(journey.key_file), "ssh_user": "ubuntu"}
    values[setting] = str(journey.wrong_key_file) if setting == "ssh_key_file" else "ec2-user"
    args = f"-e ssh_wait_timeout={FAILING_WAIT_S} " + " ".join(f"-e {k}={shlex.quote(v)}" for k, v in values.items())
    result = journey.make("aws-up", f"AWS_ARGS={args}")
    assert result.returncode != 0, journey.describe(result)
    line = failure_message(result)
    address = vm_address(journey)
    assert (
        f"compute01 ({address}) did not answer SSH as user {values['ssh_user']} "
        f"with key file {values['ssh_key_file']} within {FAILING_WAIT_S}s"
    ) in line, line
    assert f"{reason}. Fix: the key file must be the private key of key pair KEYPAIR_NAME" in line, line


def test_an_address_no_vm_answers_fails_the_wait_naming_it(journey: Journey, provisioned):
    # The backer only backs the journey's run, so this run's instance is an
    # address nothing answers at, as a stale or mistyped one would be.
    env = dict(journey.env, DCGAN_RUN=UNBACKED_RUN)
    result = journey.make("aws-up", f"AWS_ARGS=-e ssh_wait_timeout={FAILING_WAIT_S}", env=env)
    try:
        assert result.returncode != 0, journey.describe(result)
        line = failure_message(result)
        address = vm_address(journey, UNBACKED_RUN)
        assert (
            f"compute01 ({address}) did not answer SSH as user ubuntu with key file {journey.key_file} "
            f"within {FAILING_WAIT_S}s"
        ) in line, line
        assert f"no local VM backs {address}" in line, line
        assert "Fix: check that the VM is running and its public address is current" in line, line
    finally:
        down_result = journey.make("aws-down", env=env)
    assert down_result.returncode == 0, journey.describe(down_result)


def test_aws_down_leaves_no_instance_group_or_vm(journey: Journey, torn_down):
    live = ["pending", "running", "stopping", "stopped"]
    filters = [PROJECT_FILTERS[0], {"Name": "instance-state-name", "Values": live}]
    assert journey.ec2.describe_instances(Filters=filters)["Reservations"] == []
    groups = journey.ec2.describe_security_groups()["SecurityGroups"]
    assert [g["GroupName"] for g in groups if g["GroupName"].startswith("dcgan-harness")] == []
    # The backer removes a VM once its instance is gone; the git server stays until the end.
    assert wait_until(lambda: not journey.backer.backed, timeout=60), journey.backer.backed
    assert [m.name for m in journey_machines(journey) if m.role == "vm"] == []
    assert journey.backer.errors == []
