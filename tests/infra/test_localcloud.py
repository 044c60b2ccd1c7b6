"""The local cloud: one-line errors without Docker, then one real VM end to end."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
import yaml

from dcgan_harness.localcloud import command, gitserver, images, vms
from dcgan_harness.localcloud.engine import LocalCloudError



@pytest.fixture
def listening_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


@pytest.fixture
def state_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_LOCALCLOUD_STATE", str(tmp_path))
    return tmp_path


def assert_one_line(text: str) -> None:
    assert text.strip() and "\n" not in text.strip(), text
    assert "Traceback" not in text


# --- Without Docker ------------------------------------------------------------------


def test_port_in_use_names_the_port_and_the_fix(listening_port):
    with pytest.raises(LocalCloudError) as raised:
        vms.choose_ssh_ports(1, base=listening_port)
    message = str(raised.value)
    assert_one_line(message)
    assert f"127.0.0.1:{listening_port}" in message
    assert "--ssh-port-base" in message


def test_cli_up_on_a_busy_port_exits_2_with_one_line(listening_port, state_root, capsys):
    code = command.main(["up", "--nodes", "1", "--ssh-port-base", str(listening_port)])
    err = capsys.readouterr().err
    assert code == 2
    assert_one_line(err)
    assert str(listening_port) in err


def test_free_ports_are_distinct():
    ports = vms.choose_ssh_ports(3)
    assert len(set(ports)) == 3


def test_key_readable_by_others_is_refused_with_chmod_600(tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("not really a key\n")
    key.chmod(0o644)
    with pytest.raises(LocalCloudError) as raised:
        vms.check_key_permissions(key)
    assert_one_line(str(raised.value))
    assert f"chmod 600 {key}" in str(raised.value)


def test_cli_up_refuses_a_run_key_readable_by_others(state_root, capsys):
    key = state_root / "r1" / "id_ed25519"
    key.parent.mkdir()
    key.write_text("not really a key\n")
    key.chmod(0o640)
    code = command.main(["up", "--run-id", "r1"])
    err = capsys.readouterr().err
    assert code == 2
    assert_one_line(err)
    assert "chmod 600" in err


def test_generated_key_is_ed25519_and_private(tmp_path):
    key = vms.ensure_ssh_key(tmp_path / "run")
    assert oct(key.stat().st_mode & 0o777) == oct(0o600)
    assert key.with_suffix(".pub").read_text().startswith("ssh-ed25519 ")
    assert vms.ensure_ssh_key(tmp_path / "run") == key


def test_bad_run_id_is_refused():
    with pytest.raises(LocalCloudError):
        vms.check_run_id("Has Spaces")


def test_inventory_matches_the_project_shape(tmp_path):
    vm = vms.Machine(
        name="dcgan-vm-x-compute01", role="vm", state="running", run_id="x", node="compute01", ssh_port=2222
    )
    path = vms.write_inventory(tmp_path / "inventory.yaml", [vm], tmp_path / "id_ed25519")
    host = yaml.safe_load(path.read_text())["cloud"]["hosts"]["compute01"]
    assert host["ansible_host"] == "127.0.0.1"
    assert host["ansible_port"] == 2222
    assert host["ansible_user"] == "ubuntu"
    assert host["ansible_ssh_private_key_file"] == str((tmp_path / "id_ed25519").resolve())
    assert host["ansible_ssh_common_args"] == "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"


def test_same_folder_gives_same_commit(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "Dockerfile").write_text("FROM dcgan-runtime:latest\n")
    (app / "dist_dcgan.py").write_text("print('hi')\n")
    first = gitserver.commit_folder(app, tmp_path / "one" / "app.git")
    (app / "__pycache__").mkdir()
    (app / "__pycache__" / "dist_dcgan.cpython-311.pyc").write_bytes(b"\0")
    second = gitserver.commit_folder(app, tmp_path / "two" / "app.git")
    assert first == second and len(first) == 40


def test_missing_app_files_are_one_line_errors(tmp_path):
    with pytest.raises(LocalCloudError) as raised:
        gitserver.serve_app(tmp_path, run_id="x")
    assert_one_line(str(raised.value))
    assert "Dockerfile" in str(raised.value)


# --- One real VM -----------------------------------------------------------------------


def ssh(cloud, command: str) -> subprocess.CompletedProcess:
    vm = cloud.vms[0]
    return subprocess.run(
        vms.ssh_command(vm, cloud.key, command),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.localcloud
def test_systemd_is_pid_1(cloud):
    result = ssh(cloud, "ps -o comm= -p 1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "systemd"


@pytest.mark.localcloud
def test_sudo_needs_no_password(cloud):
    result = ssh(cloud, "sudo -n id -u")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"


@pytest.mark.localcloud
def test_python3_exists(cloud):
    result = ssh(cloud, "python3 --version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Python 3.")


@pytest.mark.localcloud
def test_inventory_points_at_the_vm(cloud):
    hosts = yaml.safe_load(cloud.inventory.read_text())["cloud"]["hosts"]
    assert hosts["compute01"]["ansible_port"] == cloud.vms[0].ssh_port
    assert os.path.samefile(hosts["compute01"]["ansible_ssh_private_key_file"], cloud.key)


@pytest.mark.localcloud
def test_vm_reaches_the_registry_mirror(cloud, docker_client):
    mirror = images.registry_for(docker_client)
    probe = f"import urllib.request; print(urllib.request.urlopen('{mirror.url_for_vms}/v2/{images.REGISTRY_RUNTIME_REPO}/tags/list').read().decode())"
    result = ssh(cloud, f'python3 -c "{probe}"')
    assert result.returncode == 0, result.stderr
    assert '"latest"' in result.stdout


@pytest.mark.localcloud
def test_served_app_is_reachable_from_the_vm(cloud, docker_client, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM dcgan-runtime:latest\n")
    (tmp_path / "dist_dcgan.py").write_text("print('hi')\n")
    served = gitserver.serve_app(tmp_path, cloud.run_id, client=docker_client)
    host = served.url.split("/")[2]
    result = ssh(cloud, f"timeout 5 bash -c '</dev/tcp/{host}/{images.GIT_DAEMON_PORT}' && echo open")
    assert result.stdout.strip() == "open", result.stderr


@pytest.mark.localcloud
def test_status_lists_the_vm(cloud, docker_client):
    machines = vms.status(cloud.run_id, client=docker_client)
    listed = [m for m in machines if m.role == "vm"]
    assert [(m.name, m.state, m.ssh_port, m.run_id) for m in listed] == [
        (cloud.vms[0].name, "running", cloud.vms[0].ssh_port, cloud.run_id)
    ]


@pytest.mark.localcloud
def test_down_removes_the_vm_and_its_volume(cloud, docker_client):
    """Last on purpose: the VM is gone after it (the fixture's own `down` is then a no-op)."""
    vms.down(cloud.run_id, client=docker_client)
    run_filter = {"label": f"{vms.RUN_LABEL}={cloud.run_id}"}
    assert docker_client.containers.list(all=True, filters=run_filter) == []
    assert docker_client.volumes.list(filters=run_filter) == []
    assert not vms.state_dir(cloud.run_id).exists()


@pytest.mark.localcloud
def test_up_with_prepared_images_restarts_a_mirror_stopped_since(docker_client):
    """The grader prepares images once; another run's `down` may stop the mirror before the next VM starts."""
    prepared = images.prepare_images(docker_client)
    docker_client.containers.get(images.REGISTRY_NAME).remove(force=True)
    run_id = "t" + vms.new_run_id()
    try:
        cloud = vms.up(nodes=1, run_id=run_id, client=docker_client, images=prepared)
        mirror = images.registry_for(docker_client)
        probe = f"import urllib.request; print(urllib.request.urlopen('{mirror.url_for_vms}/v2/{images.REGISTRY_RUNTIME_REPO}/tags/list').read().decode())"
        result = ssh(cloud, f'python3 -c "{probe}"')
        assert result.returncode == 0, result.stderr
        assert '"latest"' in result.stdout
    finally:
        vms.down(run_id, client=docker_client)


@pytest.mark.localcloud
def test_down_keeps_the_mirror_while_another_runs_git_server_serves(docker_client, tmp_path):
    """One VM after another under one served app (the grader): the mirror must outlive each VM.

    Other tests' VMs may keep the mirror too, so the served app must be counted on its own.
    """
    (tmp_path / "Dockerfile").write_text("FROM dcgan-runtime:latest\n")
    (tmp_path / "dist_dcgan.py").write_text("print('hi')\n")
    serving, passing = "t" + vms.new_run_id(), "t" + vms.new_run_id()
    try:
        gitserver.serve_app(tmp_path, serving, client=docker_client)
        vms.up(nodes=1, run_id=passing, client=docker_client)
        vms.down(passing, client=docker_client)
        assert f"{gitserver.GIT_PREFIX}-{serving}" in vms.shared_service_users(docker_client)
        assert docker_client.containers.get(images.REGISTRY_NAME).status == "running"
    finally:
        vms.down(passing, client=docker_client)
        vms.down(serving, client=docker_client)
