"""The VM image a run uses is said, and asking for ubuntu:20.04 where it cannot
be pulled fails in one line naming the pull's error, instead of silently
running another system."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dcgan_harness.localcloud import vms


@pytest.fixture
def state_root(tmp_path, monkeypatch):
    monkeypatch.setenv("DCGAN_LOCALCLOUD_STATE", str(tmp_path / "state"))
    return tmp_path / "state"


@pytest.mark.localcloud
def test_ubuntu_vm_image_is_pulled_or_its_failure_is_reported(docker_client, state_root):
    run_id = "u" + vms.new_run_id()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dcgan_harness", "cloud", "up", "--vm-image", "ubuntu", "--run-id", run_id],
            capture_output=True, text=True, timeout=300,
        )
        containers = [c.name for c in docker_client.containers.list(all=True, filters={"label": f"{vms.RUN_LABEL}={run_id}"})]
    finally:
        vms.down(run_id, client=docker_client)
    assert "Traceback" not in proc.stderr
    if proc.returncode == 0:
        # Docker Hub answered: the VM runs Ubuntu 20.04, and the output says so.
        assert f"run {run_id} is up on VM image ubuntu" in proc.stderr
        assert containers == [vms.vm_name(run_id, "compute01")]
    else:
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 2, proc.stderr
        assert last.startswith("error: pulling ubuntu:20.04 failed: "), proc.stderr
        reason = last.removeprefix("error: pulling ubuntu:20.04 failed: ").split("; no Docker Hub here?")[0]
        assert reason.strip() and reason != "no error reported", last
        assert last.endswith("use --vm-image bullseye (Debian 11, course-like) or bookworm"), last
        # No other system was started in its place.
        assert containers == []
        assert "VMs run Debian" not in proc.stderr
