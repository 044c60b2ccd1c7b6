"""Fixtures for tests that run the local cloud (VM containers on a Docker engine)."""

from __future__ import annotations

import pytest

from dcgan_harness.localcloud import engine, vms


@pytest.fixture(scope="session")
def docker_client():
    """A connected engine, started here when none answers (root on Linux).

    Elsewhere ensure_engine fails with a message saying what to install: a
    missing engine is a failed layer, never a skipped one."""
    return engine.ensure_engine()


@pytest.fixture(scope="module")
def cloud(docker_client):
    """One VM for the module's tests, removed afterwards even when they fail."""
    run_id = "t" + vms.new_run_id()
    try:
        yield vms.up(nodes=1, run_id=run_id, client=docker_client)
    finally:
        vms.down(run_id, client=docker_client)

