"""Options and fixtures shared by every test layer."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent


def pytest_addoption(parser):
    parser.addoption(
        "--playbook",
        default=str(REPO_ROOT / "configure.yaml"),
        help="configure.yaml to validate (default: the repository's own)",
    )


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def playbook_path(request) -> Path:
    path = Path(request.config.getoption("--playbook")).resolve()
    if not path.is_file():
        pytest.exit(f"--playbook {path}: no such file; pass the path of a configure.yaml", returncode=4)
    return path
