"""Molecule's verify: testinfra checks, over Ansible, of the VM configure.yaml configured.

Molecule hands testinfra its inventory (the VM create started); the served
commit comes from the variables create wrote.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

WORK_DIR = "/home/ubuntu/Distributed-DCGAN"
testinfra_hosts = ["compute01"]


def served_commit() -> str:
    values = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "dcgan-vars.yml"
    return yaml.safe_load(values.read_text())["dcgan_repo_commit"]


def test_docker_is_installed_active_and_enabled(host):
    assert host.package("docker.io").is_installed
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_login_user_is_in_the_docker_group(host):
    assert "docker" in host.user("ubuntu").groups


def test_repository_is_cloned_at_the_served_commit(host):
    assert host.check_output(f"git -C {WORK_DIR} rev-parse HEAD") == served_commit()


def test_image_dist_dcgan_latest_is_present(host):
    inspect = host.run("docker image inspect --format '{{.Id}}' dist_dcgan:latest")
    assert inspect.rc == 0, inspect.stderr
    assert inspect.stdout.strip().startswith("sha256:")


def test_output_txt_is_present_on_the_vm(host):
    output = host.file(f"{WORK_DIR}/output.txt")
    assert output.is_file
    assert output.user == "ubuntu"
    assert "Epoch 0 took" in output.content_string
