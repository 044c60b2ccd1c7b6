"""Fixtures of the grade layer: the test class graded once per session, the way
a teaching assistant runs it, with a canary secret in the grader's
environment and home folder that no output may ever show."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from grade_helpers import (
    HOSTILE_PORT,
    NEVER_ENDS,
    NEVER_ENDS_TIMEOUT_S,
    SUBMISSIONS,
    GradedClass,
    Listener,
    canary_home,
    class_folder,
    remove_markers,
    run_grader,
)


@pytest.fixture(scope="session")
def canary(tmp_path_factory) -> tuple[str, Path]:
    secret = "canary-" + secrets.token_hex(12)
    return secret, canary_home(tmp_path_factory.mktemp("grader-home"), secret)


@pytest.fixture(scope="session")
def host_service():
    """What hostile-network.yaml tries to reach; no connection may arrive."""
    listener = Listener(HOSTILE_PORT)
    yield listener
    listener.close()


@pytest.fixture(scope="session")
def graded(tmp_path_factory, canary, host_service) -> GradedClass:
    """Every test submission but the endless one, two at a time."""
    secret, home = canary
    remove_markers()
    root = tmp_path_factory.mktemp("grade")
    return run_grader(["--jobs", "2", str(class_folder(root))], home, secret, root / "out")


@pytest.fixture(scope="session")
def graded_endless(tmp_path_factory, canary) -> GradedClass:
    secret, home = canary
    root = tmp_path_factory.mktemp("grade-endless")
    args = ["--timeout", str(NEVER_ENDS_TIMEOUT_S), str(SUBMISSIONS / f"{NEVER_ENDS}.yaml")]
    return run_grader(args, home, secret, root / "out")
