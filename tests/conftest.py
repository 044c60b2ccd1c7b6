"""Fixtures shared by the infra and e2e layers: one local VM that configure.yaml
has configured, brought up once per test session and removed afterwards."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from dcgan_harness.localrun import FAST_EXTRA_ARGS, FAST_MNIST_LIMIT, LocalSession, RunOptions, open_session
from dcgan_harness.playbook_run import PlaybookResult


@dataclass
class Deployment:
    session: LocalSession
    first_run: PlaybookResult


@pytest.fixture(scope="session")
def deployment(tmp_path_factory):
    """A fresh VM after one fast run of configure.yaml (offline app, MNIST subset)."""
    options = RunOptions(
        app="offline",
        mnist_limit=FAST_MNIST_LIMIT,
        extra_args=FAST_EXTRA_ARGS,
        results_dir=tmp_path_factory.mktemp("resultados"),
    )
    session = open_session(options)
    try:
        yield Deployment(session, session.deploy())
    finally:
        session.close()
