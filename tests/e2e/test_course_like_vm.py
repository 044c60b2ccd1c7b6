"""The e2e layer's VM is the course-like one: Debian 11 with the Python, Docker
engine and Docker SDK versions of the course's Ubuntu 20.04 VM, and
configure.yaml's community.docker modules work there."""

from __future__ import annotations

import subprocess

from dcgan_harness.localcloud import ssh_command


def on_vm(deployment, command: str) -> str:
    session = deployment.session
    vm = session.cloud.vms[0]
    proc = subprocess.run(ssh_command(vm, session.cloud.key, command), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_the_e2e_vm_runs_debian_11_like_the_courses_ubuntu_20_04(deployment):
    assert deployment.session.cloud.vm_image == "bullseye"
    assert on_vm(deployment, ". /etc/os-release && echo $ID $VERSION_ID $VERSION_CODENAME") == "debian 11 bullseye"
    # Ubuntu 20.04 has 3.8; 3.9 is the closest Debian release, and as old as ansible-core 2.19 still manages.
    assert on_vm(deployment, "python3 -c 'import sys; print(sys.version_info[:2])'") == "(3, 9)"
    versions = dict(
        line.split("\t")
        for line in on_vm(deployment, "dpkg-query -W -f '${Package}\\t${Version}\\n' python3-docker docker.io").splitlines()
    )
    assert versions["python3-docker"].startswith("4.1.0"), versions
    assert versions["docker.io"].startswith("20.10."), versions
    # The SDK the playbook installed is the one the VM's Python imports.
    assert on_vm(deployment, "python3 -c 'import docker; print(docker.__version__)'") == "4.1.0"


def test_configure_yaml_runs_its_docker_modules_on_the_old_sdk(deployment):
    result = deployment.first_run
    assert result.ok, result.tail()
    for task in ("Look up the image built on an earlier run", "Build the DCGAN image from the clone"):
        assert f"TASK [{task}]" in result.output
    assert "fatal:" not in result.output
