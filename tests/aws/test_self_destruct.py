"""The self-destruct provision.yaml gives each VM it starts: a power-off from
inside terminates the VM, and the user data powers it off max_hours after the
first boot, reboots included.

moto keeps the user data but never boots anything, so the script is run here
with its /var/lib paths moved into a temporary folder and a `shutdown` that
only writes down its arguments.
"""

from __future__ import annotations

import base64
import os
import subprocess
import time
from pathlib import Path

import pytest
from moto_cloud import PROJECT_FILTERS, describe

SHORT_RUN = "short"
PER_BOOT_SCRIPT = "/var/lib/cloud/scripts/per-boot/dcgan-self-destruct"
DEADLINE_FILE = "/var/lib/dcgan-self-destruct"
FAKE_SHUTDOWN = """#!/bin/sh
printf '%s\\n' "$@" > "$(dirname "$0")/shutdown-args"
"""


@pytest.fixture(scope="module")
def launched(module_cloud):
    """One VM of the default run (max_hours 4) and one of a run with max_hours 1.5."""
    default = module_cloud.playbook("provision.yaml")
    assert default.returncode == 0, describe(default)
    short = module_cloud.playbook(
        "provision.yaml", "-e", "max_hours=1.5", env=dict(module_cloud.env, DCGAN_RUN=SHORT_RUN)
    )
    assert short.returncode == 0, describe(short)
    (vm,) = module_cloud.project_instances()
    (short_vm,) = module_cloud.instances(PROJECT_FILTERS[0], {"Name": "tag:Run", "Values": [SHORT_RUN]})
    return module_cloud, vm["InstanceId"], short_vm["InstanceId"]


def attribute(cloud, instance_id: str, name: str) -> dict:
    return cloud.ec2().describe_instance_attribute(InstanceId=instance_id, Attribute=name)


def user_data(cloud, instance_id: str) -> str:
    encoded = attribute(cloud, instance_id, "userData")["UserData"]
    assert encoded, f"{instance_id} has no user data"
    return base64.b64decode(encoded["Value"]).decode()


class FirstBoot:
    """A folder standing in for the VM's root file system, and what the user data did in it."""

    def __init__(self, root: Path):
        self.root = root
        self.bin = root / "fake-bin"
        self.bin.mkdir(parents=True)
        # There on every Ubuntu VM; cloud-init's own folders are made by the script.
        (root / "var" / "lib").mkdir(parents=True)
        shutdown = self.bin / "shutdown"
        shutdown.write_text(FAKE_SHUTDOWN)
        shutdown.chmod(0o755)

    def moved(self, script: str) -> str:
        return script.replace("/var/lib/", f"{self.root}/var/lib/")

    def run(self, script: Path) -> subprocess.CompletedProcess:
        args = self.bin / "shutdown-args"
        args.unlink(missing_ok=True)
        env = dict(os.environ, PATH=f"{self.bin}:/usr/bin:/bin")
        return subprocess.run(["sh", str(script)], check=False, env=env, capture_output=True, text=True, timeout=30)

    def boot(self, data: str) -> subprocess.CompletedProcess:
        script = self.root / "user-data"
        script.write_text(self.moved(data))
        return self.run(script)

    def reboot(self) -> subprocess.CompletedProcess:
        return self.run(self.root / PER_BOOT_SCRIPT.lstrip("/"))

    def shutdown_args(self) -> list[str]:
        return (self.bin / "shutdown-args").read_text().splitlines()

    def set_deadline(self, seconds_from_now: int) -> None:
        (self.root / DEADLINE_FILE.lstrip("/")).write_text(f"{int(time.time()) + seconds_from_now}\n")


def booted(tmp_path: Path, data: str) -> FirstBoot:
    vm = FirstBoot(tmp_path / "vm")
    result = vm.boot(data)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n--- user data\n{data}"
    return vm


def test_a_power_off_from_inside_terminates_the_vm(launched):
    cloud, vm, short_vm = launched
    for instance_id in (vm, short_vm):
        behaviour = attribute(cloud, instance_id, "instanceInitiatedShutdownBehavior")
        assert behaviour["InstanceInitiatedShutdownBehavior"] == {"Value": "terminate"}, instance_id


def test_user_data_is_a_script_cloud_init_runs_with_a_per_boot_part(launched):
    cloud, vm, _ = launched
    data = user_data(cloud, vm)
    assert data.startswith("#!/bin/sh\n"), data
    # The folder whose scripts cloud-init runs at every boot.
    assert f"cat > {PER_BOOT_SCRIPT} <<" in data, data


def test_first_boot_schedules_the_power_off_after_max_hours(launched, tmp_path):
    cloud, vm, _ = launched
    first_boot = booted(tmp_path, user_data(cloud, vm))
    args = first_boot.shutdown_args()
    assert args[:2] == ["-h", "+240"], args
    assert "max_hours" in args[2], args
    assert os.access(first_boot.root / PER_BOOT_SCRIPT.lstrip("/"), os.X_OK)


def test_another_max_hours_moves_the_power_off(launched, tmp_path):
    cloud, _, short_vm = launched
    data = user_data(cloud, short_vm)
    assert "max_hours=1.5" in data, data
    assert booted(tmp_path, data).shutdown_args()[:2] == ["-h", "+90"]


@pytest.mark.parametrize(
    ("seconds_left", "expected"),
    [(30 * 60, "+30"), (30 * 60 - 20, "+30"), (-3600, "+0")],
    ids=["30-min-left", "rounded-up", "deadline-past"],
)
def test_a_reboot_resumes_the_countdown_instead_of_cancelling_it(launched, tmp_path, seconds_left, expected):
    cloud, vm, _ = launched
    first_boot = booted(tmp_path, user_data(cloud, vm))
    first_boot.set_deadline(seconds_left)
    result = first_boot.reboot()
    assert result.returncode == 0, result.stderr
    assert first_boot.shutdown_args()[:2] == ["-h", expected]


def test_a_rerun_keeps_the_vm_and_its_countdown(launched):
    cloud, vm, _ = launched
    before = user_data(cloud, vm)
    rerun = cloud.playbook("provision.yaml", "-e", "max_hours=2")
    assert rerun.returncode == 0, describe(rerun)
    assert [i["InstanceId"] for i in cloud.project_instances()] == [vm]
    assert user_data(cloud, vm) == before


# Last: the `cloud` fixture empties the moto account the module's VMs live in.
@pytest.mark.parametrize("max_hours", ["0", "soon"])
def test_max_hours_must_be_a_number_above_zero(cloud, max_hours):
    result = cloud.playbook("provision.yaml", "-e", f"max_hours={max_hours}")
    assert result.returncode != 0, describe(result)
    assert "max_hours a number of hours above 0" in result.stdout, describe(result)
    assert cloud.instances() == []
