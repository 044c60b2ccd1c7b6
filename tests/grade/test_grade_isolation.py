"""What a submission's VM is, as the test class's probe saw it from inside.

vm-probe.yaml reports its VM's user namespace, cgroups, limits, disk and which
addresses and ports answer. The grader runs every submission on an
unprivileged VM: root there is not root here, the VM is limited like a
t2.medium, and it reaches only the services a playbook needs.
"""

from __future__ import annotations

import re

import pytest

# A t2.medium: 4 GiB, and the course's 16 GB disk (with room for the file system's own blocks).
MAX_MEMORY = 4 << 30
MAX_DISK = 17 * 10**9
# apt cache, registry mirror, git server; and the VM's own sshd.
NEEDED = {"127.0.0.1:3142", "127.0.0.1:5055", "127.0.0.1:9418", "127.0.0.1:22"}
REPORT_LINE = re.compile(r'^\s*"(probe_\w+)=([^"]*)",?$')


@pytest.fixture(scope="module")
def probe(graded) -> dict[str, list[str]]:
    """Each probe_<name>=<value> line of the debug task's output, by name."""
    log = (graded.out / "vm-probe" / "log.txt").read_text(errors="replace")
    report: dict[str, list[str]] = {}
    for line in log.splitlines():
        match = REPORT_LINE.match(line)
        if match:
            report.setdefault(match.group(1), []).append(match.group(2))
    assert "probe_uid_map" in report, f"the probe reported nothing:\n{log[-3000:]}"
    return report


def test_root_in_the_vm_is_an_unprivileged_uid_here(probe):
    inside, outside, _count = probe["probe_uid_map"][0].split()
    assert inside == "0" and int(outside) >= 100000


def test_the_vm_has_its_own_cgroup_tree(probe):
    assert probe["probe_host_cgroup_tree"] == ["no"]


def test_the_vm_is_limited_like_a_t2_medium(probe):
    assert int(probe["probe_memory_limit"][0]) <= MAX_MEMORY
    assert probe["probe_pids_max"][0] != "max" and int(probe["probe_pids_max"][0]) <= 4096
    assert int(probe["probe_disk_bytes"][0]) <= MAX_DISK


def test_only_the_needed_services_answer(probe):
    # The probe tried its controller's address: it must have found one to try.
    assert probe["probe_controller"][0], probe
    answered = set(probe.get("probe_answers", []))
    assert answered <= NEEDED, f"answered besides the needed services: {sorted(answered - NEEDED)}"
    assert {"127.0.0.1:3142", "127.0.0.1:5055", "127.0.0.1:9418"} <= answered


def test_the_apt_caches_report_page_is_refused(probe):
    assert probe["probe_apt_report_page"] == ["no"]
