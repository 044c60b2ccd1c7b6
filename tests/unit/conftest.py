"""The static layer: every test here runs without a VM or network."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN_DIR = Path(sys.executable).parent
FIXTURES = Path(__file__).parent / "fixtures"


def run_tool(tool: str, *args: str, cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    """Run a command-line tool of this virtualenv, capturing its output as text."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(cwd / "ansible.cfg"), NO_COLOR="1", ANSIBLE_NOCOLOR="1")
    return subprocess.run(
        [str(BIN_DIR / tool), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def tool():
    return run_tool


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES
