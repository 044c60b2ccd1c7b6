"""pytest-testinfra checks, over Ansible, of the VM that configure.yaml configured."""

from __future__ import annotations

import os

import pytest
import testinfra

WORK_DIR = "/home/ubuntu/Distributed-DCGAN"

pytestmark = pytest.mark.infra


@pytest.fixture(scope="module")
def host(deployment, repo_root):
    assert deployment.first_run.ok, deployment.first_run.tail()
    os.environ["ANSIBLE_CONFIG"] = str(repo_root / "ansible.cfg")
    inventory = deployment.session.cloud.inventory
    return testinfra.get_host(f"ansible://compute01?ansible_inventory={inventory}")


def test_docker_is_installed_active_and_enabled(host):
    assert host.package("docker.io").is_installed
    docker = host.service("docker")
    assert docker.is_running
    assert docker.is_enabled


def test_login_user_is_in_the_docker_group(host):
    assert "docker" in host.user("ubuntu").groups


def test_repository_is_cloned_at_the_served_commit(host, deployment):
    head = host.check_output(f"git -C {WORK_DIR} rev-parse HEAD")
    assert head == deployment.session.repo_commit


def test_image_dist_dcgan_latest_is_present(host):
    inspect = host.run("docker image inspect --format '{{.Id}}' dist_dcgan:latest")
    assert inspect.rc == 0, inspect.stderr
    assert inspect.stdout.strip().startswith("sha256:")


def test_output_txt_is_present_on_the_vm(host):
    output = host.file(f"{WORK_DIR}/output.txt")
    assert output.is_file
    assert output.user == "ubuntu"
    assert "Epoch 0 took" in output.content_string
