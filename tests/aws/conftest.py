"""The AWS layer: provision.yaml, teardown.yaml, the dynamic inventory and
dcgan_harness.aws against a moto server on 127.0.0.1; nothing leaves the host."""

from __future__ import annotations

import pytest
from moto_cloud import Cloud, moto_server, new_cloud


@pytest.fixture(scope="session")
def moto_url(tmp_path_factory):
    with moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def cloud(moto_url, tmp_path) -> Cloud:
    return new_cloud(moto_url, tmp_path)


@pytest.fixture(scope="module")
def module_cloud(moto_url, tmp_path_factory) -> Cloud:
    """Shared by the tests of one module that only read what its setup made."""
    return new_cloud(moto_url, tmp_path_factory.mktemp("cloud"))
