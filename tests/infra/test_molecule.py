"""`molecule test` on the local cloud: create, converge (configure.yaml),
idempotence, verify (the testinfra checks in molecule/default/tests), destroy.

The infra layer's checks of a deployed VM are Molecule's verify step, so they
run on the same VM, through the same connection, in both."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dcgan_harness.localcloud import status
from dcgan_harness.localcloud.lxd import lxd_vms
from dcgan_harness.molecule_cloud import MOLECULE_RUN_PREFIX

pytestmark = pytest.mark.infra
VERIFY_TESTS = len(re.findall(r"^def test_", (Path(__file__).parents[2] / "molecule/default/tests/test_default.py").read_text(), re.M))


@pytest.fixture(scope="module")
def molecule_test(repo_root, tmp_path_factory):
    env = dict(os.environ, ANSIBLE_CONFIG=str(repo_root / "ansible.cfg"), MOLECULE_NO_LOG="false", NO_COLOR="1",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # fmt: skip
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "molecule"), "test"], cwd=repo_root, env=env,
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
    return proc


def test_molecule_test_passes(molecule_test):
    assert molecule_test.returncode == 0, (molecule_test.stdout + molecule_test.stderr)[-5000:]


def test_idempotence_found_no_changed_task(molecule_test):
    output = molecule_test.stdout + molecule_test.stderr
    assert "default > idempotence: Executed: Successful" in output, output[-3000:]


def test_verify_ran_every_testinfra_check(molecule_test):
    output = molecule_test.stdout + molecule_test.stderr
    assert re.search(rf"\b{VERIFY_TESTS} passed\b", output), output[-3000:]


def test_destroy_left_nothing_of_the_scenario(molecule_test):
    # create names its runs mol<hex>.
    assert "default > create: Executed: Successful" in molecule_test.stdout + molecule_test.stderr
    assert [vm["name"] for vm in lxd_vms() if vm["run_id"].startswith(MOLECULE_RUN_PREFIX)] == []
    assert [m.name for m in status() if m.run_id.startswith(MOLECULE_RUN_PREFIX)] == []
