"""Fixtures shared by the infra and e2e layers: local VMs that configure.yaml
has configured, one per VM image and kind, brought up once per test session and
removed afterwards (the e2e layer's on Debian 11 Docker VMs, the infra layer's
on Debian 12 unprivileged VMs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from dcgan_harness.localrun import (
    DOCKER_VMS,
    FAST_EXTRA_ARGS,
    FAST_MNIST_LIMIT,
    LocalSession,
    RunOptions,
    open_session,
)
from dcgan_harness.playbook_run import PlaybookResult

# Each layer's folder marks its tests (markers registered in pyproject.toml),
# so `-m aws` or `-m "not grade"` selects by layer.
LAYERS = ("unit", "aws", "journey", "e2e", "grade", "own")
# The grader's file-level tests start no VM: only the class graded end to end is `grade`.
UNMARKED_FILES = ("test_grade_files.py",)


def pytest_collection_modifyitems(items):
    tests_dir = Path(__file__).parent
    for item in items:
        path = Path(str(item.fspath))
        if not path.is_relative_to(tests_dir) or path.name in UNMARKED_FILES:
            continue
        layer = path.relative_to(tests_dir).parts[0]
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))


@dataclass
class Deployment:
    session: LocalSession
    first_run: PlaybookResult


@pytest.fixture(scope="session")
def deployments(tmp_path_factory):
    """Fast deployments by VM image: a fresh VM after one fast run of configure.yaml
    (offline app, MNIST subset), made on first use and removed at the session's end."""
    made: dict[str, Deployment] = {}
    sessions: list[LocalSession] = []

    def deployment_on(vm_image: str, vms: str = DOCKER_VMS) -> Deployment:
        if (vm_image, vms) not in made:
            options = RunOptions(
                app="offline",
                mnist_limit=FAST_MNIST_LIMIT,
                extra_args=FAST_EXTRA_ARGS,
                results_dir=tmp_path_factory.mktemp(f"resultados-{vm_image}-{vms}"),
                vm_image=vm_image,
                vms=vms,
            )
            session = open_session(options)
            sessions.append(session)
            made[vm_image, vms] = Deployment(session, session.deploy())
        return made[vm_image, vms]

    try:
        yield deployment_on
    finally:
        for session in sessions:
            session.close()


@pytest.fixture(scope="session")
def deployment(deployments):
    """The e2e layer's VM: Debian 11 (bullseye), the course-like VM image (Python 3.9,
    docker.io 20.10, python3-docker 4.1.0 as on Ubuntu 20.04). The infra layer
    overrides it with a Debian 12 one, so both VM images run configure.yaml."""
    return deployments("bullseye")
