"""Which VMs `dcgan-harness run` starts, and the playbook it deploys."""

from __future__ import annotations

import subprocess
import sys

from dcgan_harness import localrun
from dcgan_harness.localrun import DOCKER_VMS, UNPRIVILEGED_VMS, build_parser, chosen_vms, options_from


def test_auto_takes_the_unprivileged_vms_where_lxd_can_run(monkeypatch):
    monkeypatch.setattr(localrun, "lxd_available", lambda: True)
    assert chosen_vms("auto", None) == UNPRIVILEGED_VMS
    assert chosen_vms("auto", "bookworm") == UNPRIVILEGED_VMS


def test_auto_takes_the_docker_vms_for_images_lxd_cannot_run_and_for_upstream(monkeypatch):
    monkeypatch.setattr(localrun, "lxd_available", lambda: True)
    assert chosen_vms("auto", "bullseye") == DOCKER_VMS
    assert chosen_vms("auto", None, upstream=True) == DOCKER_VMS
    monkeypatch.setattr(localrun, "lxd_available", lambda: False)
    assert chosen_vms("auto", None) == DOCKER_VMS


def test_a_kind_asked_for_by_name_is_kept():
    assert chosen_vms(DOCKER_VMS, None) == DOCKER_VMS
    assert chosen_vms(UNPRIVILEGED_VMS, "bookworm") == UNPRIVILEGED_VMS


def test_the_playbook_option_names_a_students_file(tmp_path):
    playbook = tmp_path / "configure.yaml"
    playbook.write_text("- hosts: cloud\n  tasks: []\n")
    options = options_from(build_parser().parse_args(["--playbook", str(playbook), "--vms", "docker"]))
    assert options.playbook == playbook.resolve()


def test_a_missing_playbook_is_one_line_before_anything_starts(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dcgan_harness", "run", "--vms", "docker", "--playbook", str(tmp_path / "nope.yaml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: --playbook {tmp_path / 'nope.yaml'}: no such file; give the path of a configure.yaml"]
