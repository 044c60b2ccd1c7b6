"""The AWS layer: provision.yaml, teardown.yaml, the dynamic inventory and
dcgan_harness.aws against a moto server on 127.0.0.1; nothing leaves the host."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from moto_cloud import UBUNTU_IMAGE, Cloud, free_port, moto_ready, new_cloud


def pytest_configure(config):
    config.addinivalue_line("markers", "aws: AWS provisioning against a local moto server")


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.aws)


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory):
    """A moto server in its own process, so its MOTO_* settings apply from import on."""
    workdir = tmp_path_factory.mktemp("moto")
    amis = workdir / "amis.json"
    amis.write_text(json.dumps([UBUNTU_IMAGE]))
    log = (workdir / "moto.log").open("w")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        MOTO_AMIS_PATH=str(amis),
        MOTO_ENABLE_KEYPAIR_VALIDATION="true",
        MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="true",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while not moto_ready(url):
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto server did not start: {(workdir / 'moto.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


@pytest.fixture
def cloud(moto_url, tmp_path) -> Cloud:
    return new_cloud(moto_url, tmp_path)


@pytest.fixture(scope="module")
def module_cloud(moto_url, tmp_path_factory) -> Cloud:
    """Shared by the tests of one module that only read what its setup made."""
    return new_cloud(moto_url, tmp_path_factory.mktemp("cloud"))
