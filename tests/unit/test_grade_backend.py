"""Which VMs `grade` runs a class on: unprivileged ones, unless the Docker VMs are asked for by name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dcgan_harness.grade import command
from dcgan_harness.grade.command import build_parser, chosen_backend
from dcgan_harness.grade.submission import SubmissionError
from dcgan_harness.targets.lxd import UNDELEGATED_CGROUPS, hide_undelegated_cgroups


def test_unprivileged_vms_are_the_default():
    assert build_parser().parse_args(["x"]).vms == "unprivileged"


def test_the_docker_vms_need_to_be_allowed_by_name():
    with pytest.raises(SubmissionError, match="--allow-privileged-vms"):
        chosen_backend(build_parser().parse_args(["x", "--vms", "docker"]))
    assert chosen_backend(build_parser().parse_args(["x", "--vms", "docker", "--allow-privileged-vms"])) == "docker"


def test_without_lxd_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(command, "lxd_available", lambda: False)
    with pytest.raises(SubmissionError, match="apt-get install lxd") as caught:
        chosen_backend(build_parser().parse_args(["x"]))
    assert "\n" not in str(caught.value)


def test_refusing_the_docker_vms_is_one_line_and_exit_status_two(tmp_path):
    (tmp_path / "configure.yaml").write_text("- hosts: cloud\n  tasks: []\n")
    proc = subprocess.run(
        [sys.executable, "-m", "dcgan_harness", "grade", "--vms", "docker", "--out", str(tmp_path / "out"), str(tmp_path)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "--allow-privileged-vms" in proc.stderr


def test_the_vm_hides_every_undelegated_controller_and_tolerates_missing_ones(tmp_path):
    script = hide_undelegated_cgroups().replace("/sys/fs/cgroup/", f"{tmp_path}/")
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert all(name in script for name in UNDELEGATED_CGROUPS)
